// Package smtpsink is a small SMTP server on loopback that keeps what it
// receives, for tests where a real MTA delivers to it.
package smtpsink

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is one received message.
type Message struct {
	From   string
	To     []string
	Data   []byte
	TLS    string // the TLS version the session negotiated (tls.VersionName: "TLS 1.3"); "": cleartext
	Cipher string // its cipher suite (tls.CipherSuiteName)
}

// Options shape a sink's STARTTLS behaviour.
type Options struct {
	TLS         *tls.Config   // offer STARTTLS with this configuration
	FailTLS     bool          // offer STARTTLS, then break the handshake
	BannerDelay time.Duration // wait before the banner (greet_pause, tarpits)
	Drop        bool          // close every connection at once
	// DataReply, when set, gives the reply to the end of the n-th DATA
	// the sink receives (n counts from 1 over the sink's life), e.g. a
	// 4xx to make the client retry; only a 2xx reply keeps the message.
	DataReply func(n int) string
}

// Sink is a running SMTP sink.
type Sink struct {
	Addr string
	opts Options

	ln      net.Listener
	mu      sync.Mutex
	msgs    []Message
	accepts int
	datas   int
	wg      sync.WaitGroup
	done    chan struct{}
}

// Accepts returns how many connections the sink accepted: a scanner test
// proves a blocklisted address was never contacted with it.
func (s *Sink) Accepts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepts
}

// Start listens on addr ("127.0.0.1:0" for any port) until the test ends.
func Start(t testing.TB, addr string) *Sink { return StartWith(t, addr, Options{}) }

// StartWith starts a sink with STARTTLS options.
func StartWith(t testing.TB, addr string, o Options) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, ln, o)
}

// Serve runs a sink on a listener the test made: one of a port picked on
// many addresses (testnet.Pick), or one inside a network namespace.
func Serve(t testing.TB, ln net.Listener, o Options) *Sink {
	s := &Sink{Addr: ln.Addr().String(), ln: ln, opts: o, done: make(chan struct{})}
	// The accept loop is counted too, so every session's Add comes
	// while the count is above zero (sync.WaitGroup's rule for a Wait).
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serve()
	}()
	t.Cleanup(func() { close(s.done); ln.Close(); s.wg.Wait() })
	return s
}

// Messages returns what arrived so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Wait waits until n messages arrived or the limit passes.
func (s *Sink) Wait(n int, limit time.Duration) []Message {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if m := s.Messages(); len(m) >= n {
			return m
		}
	}
	return s.Messages()
}

func (s *Sink) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.accepts++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(c)
		}()
	}
}

func (s *Sink) session(c net.Conn) {
	defer func() { c.Close() }()
	if s.opts.Drop {
		return
	}
	if s.opts.BannerDelay > 0 {
		select {
		case <-time.After(s.opts.BannerDelay):
		case <-s.done:
			return
		}
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	say := func(line string) { c.Write([]byte(line + "\r\n")) }
	say("220 sink.test.example ESMTP")
	tlsOn := false
	var version, suite string
	var m Message
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			say("250-sink.test.example")
			if !tlsOn && (s.opts.TLS != nil || s.opts.FailTLS) {
				say("250-STARTTLS")
			}
			say("250 8BITMIME")
		case cmd == "STARTTLS" && !tlsOn && (s.opts.TLS != nil || s.opts.FailTLS):
			say("220 go ahead")
			if s.opts.FailTLS {
				c.Write([]byte("this is not a TLS server hello\r\n"))
				return
			}
			// Bytes pipelined after STARTTLS are discarded (no injection).
			tc := tls.Server(c, s.opts.TLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, r, tlsOn = tc, bufio.NewReader(tc), true
			st := tc.ConnectionState()
			version, suite = tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
		case strings.HasPrefix(cmd, "HELO"):
			say("250 sink.test.example")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			m = Message{From: strings.TrimSpace(line[10:]), TLS: version, Cipher: suite}
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			m.To = append(m.To, strings.TrimSpace(line[8:]))
			say("250 ok")
		case cmd == "DATA":
			say("354 go ahead")
			var data bytes.Buffer
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			m.Data = data.Bytes()
			reply := "250 queued"
			s.mu.Lock()
			s.datas++
			if s.opts.DataReply != nil {
				reply = s.opts.DataReply(s.datas)
			}
			if strings.HasPrefix(reply, "2") {
				s.msgs = append(s.msgs, m)
			}
			s.mu.Unlock()
			say(reply)
		case cmd == "RSET", cmd == "NOOP":
			say("250 ok")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("502 not implemented")
		}
	}
}
