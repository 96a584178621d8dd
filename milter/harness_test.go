package milter

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/metrics"
	"github.com/snowrain/snowrain/resolver"
)

// quiet swallows the logs of injected faults.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// harness runs the filter on a unix socket with a real store and a
// loopback DNS server serving the corpus zone.
type harness struct {
	t       testing.TB
	dns     *dnstest.Server
	store   *measure.Store
	writer  *measure.Writer
	filter  *Filter
	metrics *metrics.Metrics
	sock    string
	srv     *gomilter.Server
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, dns: dnstest.Start(t, corpus.Zone()), metrics: metrics.New()}
	for _, n := range corpus.ServFail {
		h.dns.ServFail(n)
	}
	dir := t.TempDir()
	var err error
	h.store, err = measure.Open(context.Background(), filepath.Join(dir, "snowrain.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	h.writer = measure.NewWriter(h.store, measure.WriterConfig{Interval: 50 * time.Millisecond, Logger: quiet})
	t.Cleanup(func() { h.writer.Close(context.Background()) })
	res, err := resolver.New(resolver.Config{Servers: []string{h.dns.Addr}, Timeout: 500 * time.Millisecond, CacheSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DNSBudget == 0 {
		cfg.DNSBudget = 3 * time.Second
	}
	h.filter = NewFilter(cfg, res, h.writer, h.metrics, quiet)
	h.sock = filepath.Join(dir, "milter.sock")
	ln, err := net.Listen("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = h.filter.NewServer()
	go h.srv.Serve(ln)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

// flush writes everything queued; the harness records nothing after.
func (h *harness) flush() {
	h.t.Helper()
	h.srv.Shutdown(context.Background())
	if err := h.writer.Close(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// flavor is the macro set one MTA sends.
type flavor struct {
	name  string
	fill  func(b *gomilter.MacroBag, c corpus.Case)
}

var tlsMacros = map[string][3]string{
	"1.2": {"TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "128"},
	"1.3": {"TLSv1.3", "TLS_AES_256_GCM_SHA384", "256"},
}

var postfixFlavor = flavor{"postfix", func(b *gomilter.MacroBag, c corpus.Case) {
	b.Set("j", "mx.test.example")
	b.Set("v", "Postfix 3.7.11")
	b.Set("{daemon_name}", "smtpd")
	b.Set("{client_addr}", c.ClientIP)
	b.Set("_", "unknown ["+c.ClientIP+"]")
	if m, ok := tlsMacros[c.TLS]; ok {
		b.Set("{tls_version}", m[0])
		b.Set("{cipher}", m[1])
		b.Set("{cipher_bits}", m[2])
	}
	b.Set("i", c.Name)
}}

var sendmailFlavor = flavor{"sendmail", func(b *gomilter.MacroBag, c corpus.Case) {
	b.Set("j", "mx.test.example")
	b.Set("v", "8.17.1")
	b.Set("{daemon_name}", "MTA")
	b.Set("{client_addr}", c.ClientIP)
	b.Set("_", "client.example ["+c.ClientIP+"] (may be forged)")
	if m, ok := tlsMacros[c.TLS]; ok {
		b.Set("{tls_version}", m[0])
		b.Set("{cipher}", m[1])
		b.Set("{cipher_bits}", m[2])
		b.Set("{verify}", "NO")
	}
	b.Set("i", c.Name)
}}

func (h *harness) client() *gomilter.Client {
	return gomilter.NewClient("unix", h.sock,
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithProtocols(gomilter.OptHeaderLeadingSpace|gomilter.OptNoUnknown),
		gomilter.WithoutDefaultMacros())
}

// result is what the milter answered for one message.
type result struct {
	mods []gomilter.ModifyAction
	act  *gomilter.Action
}

// sendOn runs one transaction of c on an open session.
func sendOn(t testing.TB, s *gomilter.ClientSession, c corpus.Case) result {
	t.Helper()
	must := func(a *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if a.Type != gomilter.ActionContinue {
			t.Fatalf("%s: unexpected action %v", c.Name, a)
		}
	}
	must(s.Mail("<"+c.MailFrom+">", ""))
	must(s.Rcpt("<"+c.Rcpt+">", ""))
	must(s.DataStart())
	fields, body := corpus.Split(c.Message)
	for _, f := range fields {
		must(s.HeaderField(f.Name, f.Value, nil))
	}
	must(s.HeaderEnd())
	mods, act, err := s.BodyReadFrom(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: body: %v", c.Name, err)
	}
	if act == nil {
		mods, act, err = s.End()
		if err != nil {
			t.Fatalf("%s: end: %v", c.Name, err)
		}
	}
	return result{mods, act}
}

// openSession connects and greets for c.
func (h *harness) openSession(cl *gomilter.Client, fl flavor, c corpus.Case) *gomilter.ClientSession {
	h.t.Helper()
	bag := gomilter.NewMacroBag()
	fl.fill(bag, c)
	s, err := cl.Session(bag)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := s.Conn("[" + c.ClientIP + "]", gomilter.FamilyInet, 40000, c.ClientIP); err != nil {
		h.t.Fatal(err)
	}
	if _, err := s.Helo(c.Helo); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// send runs c in a connection of its own.
func (h *harness) send(fl flavor, c corpus.Case) result {
	h.t.Helper()
	s := h.openSession(h.client(), fl, c)
	defer s.Close()
	return sendOn(h.t, s, c)
}

func header(mods []gomilter.ModifyAction, name string) (string, bool) {
	for _, m := range mods {
		if (m.Type == gomilter.ActionInsertHeader || m.Type == gomilter.ActionAddHeader) && m.HeaderName == name {
			return m.HeaderValue, true
		}
	}
	return "", false
}
