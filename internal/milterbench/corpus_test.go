package milterbench

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/milter"
	"github.com/snowrain/snowrain/resolver"
)

type discard struct{}

func (discard) Enqueue(measure.Event) bool { return true }

// TestCorpusThroughChain replays a small corpus through snowrain's filter
// over a unix socket, with the chain client and a loopback DNS server, and
// checks that every message gets the SPF, DKIM and DMARC results the
// generator made it for (forged and broken signatures fail, dual and ESP
// signatures pass), so that the benchmark's corpus is what it claims.
func TestCorpusThroughChain(t *testing.T) {
	c, err := Generate(150, 12)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range c.Messages {
		seen[m.Kind] = true
	}
	for _, k := range kinds {
		if !seen[k.name] {
			t.Errorf("no message of kind %s in the corpus", k.name)
		}
	}
	dns := dnstest.Start(t, c.Zone)
	res, err := resolver.New(resolver.Config{Servers: []string{dns.Addr}, Timeout: time.Second, CacheSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := milter.NewFilter(milter.Config{AuthServID: "mx.test.example"}, res, discard{}, nil, quiet)
	sock := filepath.Join(t.TempDir(), "milter.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := f.NewServer()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	r := Run(NewChain("snowrain", sock), c.Messages, Load{Workers: 4, Messages: len(c.Messages)}, nil)
	if r.Errors > 0 {
		t.Fatalf("%d errors, first: %v", r.Errors, r.FirstErr)
	}
	a := Agree(r, c.Messages)
	if a.Messages != len(c.Messages) || a.SPF != a.Messages || a.DKIMPass != a.Messages || a.DMARC != a.Messages {
		t.Errorf("agreement %d SPF, %d DKIM, %d DMARC of %d messages; wrong: %v", a.SPF, a.DKIMPass, a.DMARC, a.Messages, a.Wrong)
	}
}
