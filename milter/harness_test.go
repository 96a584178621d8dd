package milter

import (
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
	"github.com/snowrain/snowrain/internal/miltertest"
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
	return newHarnessOn(t, cfg, "unix")
}

// newHarnessOn listens on a unix socket or, for MTAs running as another
// user, on a loopback TCP port (h.sock is then "HOST:PORT").
func newHarnessOn(t testing.TB, cfg Config, network string) *harness {
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
	if network == "tcp" {
		h.sock = "127.0.0.1:0"
	}
	ln, err := net.Listen(network, h.sock)
	if err != nil {
		t.Fatal(err)
	}
	h.sock = ln.Addr().String()
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

type flavor = miltertest.Flavor

var (
	postfixFlavor  = miltertest.Postfix
	sendmailFlavor = miltertest.Sendmail
)

func (h *harness) client() *gomilter.Client { return miltertest.NewClient("unix", h.sock) }

type result struct {
	mods []gomilter.ModifyAction
	act  *gomilter.Action
}

func sendOn(t testing.TB, s *gomilter.ClientSession, c corpus.Case) result {
	t.Helper()
	r, err := miltertest.Send(s, c)
	if err != nil {
		t.Fatal(err)
	}
	return result{r.Mods, r.Act}
}

func (h *harness) openSession(cl *gomilter.Client, fl flavor, c corpus.Case) *gomilter.ClientSession {
	h.t.Helper()
	s, err := miltertest.Open(cl, fl, c)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) send(fl flavor, c corpus.Case) result {
	h.t.Helper()
	s := h.openSession(h.client(), fl, c)
	defer s.Close()
	return sendOn(h.t, s, c)
}

var header = miltertest.Header
