package milter

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/snowrain/snowrain/internal/miltertest"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/metrics"
	"github.com/snowrain/snowrain/resolver"
)

// oneConnListener hands out one connection, then waits to be closed.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
	close  sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{conn: c, closed: make(chan struct{})}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.close.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// sessionStream is a well-formed Postfix-like milter conversation: two
// messages, the first aborted.
func sessionStream() []byte {
	p := miltertest.Packet
	var b []byte
	for _, part := range [][]byte{
		miltertest.Negotiation(),
		p('D', "Cj\x00mx.test.example\x00{daemon_name}\x00smtpd\x00v\x00Postfix 3.7.11\x00"),
		miltertest.Connect(),
		p('D', "H{tls_version}\x00TLSv1.3\x00{cipher}\x00TLS_AES_256_GCM_SHA384\x00"),
		p('H', "client.example\x00"),
		p('M', "<a@evil.example>\x00SIZE=100\x00"), p('R', "<b@dest.example>\x00"), p('T', ""),
		p('L', "From\x00 x@evil.example\x00"), p('A', ""),
		p('M', "<a@evil.example>\x00"), p('R', "<b@dest.example>\x00"), p('T', ""),
		p('L', "From\x00 CEO <ceo@bank.example>\x00"),
		p('L', "From\x00 a@evil.example, <ceo@bank.example>>\x00"),
		p('L', "DKIM-Signature\x00 v=1; a=rsa-sha256; d=bank.example; s=s; h=from; bh=x; b=y\x00"),
		p('L', "Authentication-Results\x00 mx.test.example.; dkim=pass\x00"),
		p('L', "Subject\x00 x\n y\n z\x00"),
		p('N', ""), p('B', "hello\r\n\r\n"), p('D', "Ei\x00ABC123\x00"), p('E', ""),
		p('U', "HELP\x00"), p('K', ""), p('Q', ""),
	} {
		b = append(b, part...)
	}
	return b
}

// FuzzMilterStream feeds raw bytes to the milter server as an MTA would
// (issue 10: four zero bytes killed the daemon). No input may panic, in a
// handler or in the library, or keep the session alive after the peer
// hung up. Seeds: a whole conversation and every hostile class, in
// testdata/fuzz/FuzzMilterStream and below.
func FuzzMilterStream(f *testing.F) {
	f.Add(sessionStream())
	for _, h := range miltertest.HostileStreams {
		if h.Raw {
			f.Add(h.Data)
		} else {
			f.Add(append(miltertest.Negotiation(), h.Data...))
		}
	}
	// Lookups go to a port reserved closed and fail at once.
	dead := testnet.Pick(f, testnet.Request{Closed: "127.0.0.1/32"}).Addr("127.0.0.1")
	r, err := resolver.New(resolver.Config{Servers: []string{dead}, Timeout: 50 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	m := metrics.New()
	fl := NewFilter(Config{AuthServID: "mx.test.example", DNSBudget: 100 * time.Millisecond, EnforceDMARC: true,
		ReadTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}, r, nil, m, quiet)
	f.Fuzz(func(t *testing.T, stream []byte) {
		srv := fl.NewServer()
		server, client := net.Pipe()
		go srv.Serve(newOneConnListener(server))
		go io.Copy(io.Discard, client) // the milter's answers
		client.Write(stream)           // fails once the milter closes
		client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("session still running after the peer closed: %v", err)
		}
		if n := testutil.ToFloat64(m.MilterConnErrors.WithLabelValues("panic")) + testutil.ToFloat64(m.Panics); n != 0 {
			t.Fatalf("%v panics", n)
		}
	})
}
