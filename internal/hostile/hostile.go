// Package hostile runs loopback servers that attack their clients with
// endless or dripping data, for tests that show a reader is bounded while
// reading (issue 10): each counts the bytes it managed to send.
package hostile

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Limit is how much a server offers: far beyond any bound of ours, far
// below what a client reading it all could survive in a test.
const Limit = 1 << 30

// Kind is an attack.
type Kind string

// SMTP attacks.
const (
	EndlessLine      Kind = "endless-line"      // "220 AAAA…" without a newline
	EndlessMultiline Kind = "endless-multiline" // "220-xxx" lines forever
	EndlessEHLO      Kind = "endless-ehlo"      // a proper banner, then 250- lines forever
	Drip             Kind = "drip"              // one byte every 20 ms: only a whole-session deadline ends it
)

// SMTPKinds are the SMTP attacks.
var SMTPKinds = []Kind{EndlessLine, EndlessMultiline, EndlessEHLO, Drip}

// Server is a running attacker.
type Server struct {
	Addr string
	sent atomic.Int64
	wg   sync.WaitGroup
}

// Sent is how many bytes the server wrote before its client went away.
func (s *Server) Sent() int64 { return s.sent.Load() }

// StartSMTP listens on addr and attacks every client with kind.
func StartSMTP(t testing.TB, addr string, kind Kind) *Server {
	t.Helper()
	return ServeSMTP(t, listen(t, addr), kind)
}

// ServeSMTP attacks every client of ln (e.g. of a port picked on many
// addresses, testnet.Pick) with kind.
func ServeSMTP(t testing.TB, ln net.Listener, kind Kind) *Server {
	s := &Server{}
	s.serve(t, ln, func(c net.Conn) { s.smtp(c, kind) })
	return s
}

func listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func (s *Server) serve(t testing.TB, ln net.Listener, serve func(net.Conn)) {
	s.Addr = ln.Addr().String()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				serve(c)
			}()
		}
	}()
}

func (s *Server) smtp(c net.Conn, kind Kind) {
	switch kind {
	case EndlessLine:
		s.write(c, []byte("220 "))
		s.stream(c, bytes.Repeat([]byte("A"), 64<<10))
	case EndlessMultiline:
		s.stream(c, []byte("220-"+strings.Repeat("x", 90)+"\r\n"))
	case EndlessEHLO:
		s.write(c, []byte("220 hostile.example ESMTP\r\n"))
		bufio.NewReader(c).ReadString('\n')
		s.stream(c, []byte("250-"+strings.Repeat("X", 60)+"\r\n"))
	case Drip:
		for i := 0; i < 100000 && s.write(c, []byte("2")); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	default:
		panic(fmt.Sprintf("hostile: unknown kind %q", kind))
	}
}

func (s *Server) write(w io.Writer, p []byte) bool {
	n, err := w.Write(p)
	s.sent.Add(int64(n))
	return err == nil
}

// stream writes chunk until the client goes away or Limit is sent.
func (s *Server) stream(w io.Writer, chunk []byte) {
	for s.sent.Load() < Limit && s.write(w, chunk) {
	}
}

// HTTPS attacks on an MTA-STS policy fetch.
const (
	EndlessHeader Kind = "endless-header" // one response header that never ends
	EndlessBody   Kind = "endless-body"   // 200 OK and a policy body that never ends
)

// StartHTTPS serves kind over TLS with cfg on addr, to any request.
func StartHTTPS(t testing.TB, addr string, cfg *tls.Config, kind Kind) *Server {
	t.Helper()
	return ServeHTTPS(t, listen(t, addr), cfg, kind)
}

// ServeHTTPS serves kind over TLS with cfg on ln, to any request.
func ServeHTTPS(t testing.TB, ln net.Listener, cfg *tls.Config, kind Kind) *Server {
	s := &Server{}
	s.serve(t, ln, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(tc))
		if err != nil {
			return
		}
		req.Body.Close()
		switch kind {
		case EndlessHeader:
			s.write(tc, []byte("HTTP/1.1 200 OK\r\nX-Hostile: "))
			s.stream(tc, bytes.Repeat([]byte("h"), 16<<10))
		case EndlessBody:
			s.write(tc, []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\nmode: enforce\n"))
			s.stream(tc, []byte("mx: "+strings.Repeat("m", 60)+".example\n"))
		default:
			panic(fmt.Sprintf("hostile: unknown kind %q", kind))
		}
	})
	return s
}
