package milterbench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/metrics"
	"github.com/snowrain/snowrain/milter"
	"github.com/snowrain/snowrain/resolver"
)

// BenchmarkFilterInProcess runs snowrain's filter inside the test process,
// put together as `snowrain serve` puts it together with its defaults
// (the batched SQLite writer, the caching resolver, the text log line of
// every message), on a unix socket, driven by BenchmarkAnchors's corpus,
// DNS server and client with 8 sessions at once. It exists for the
// profiles a separate daemon cannot give: with -cpuprofile and
// -memprofile, `go tool pprof` shows where the milter path spends its CPU
// and what it allocates at saturation (the client's share is in the same
// profile: -ignore 'milterbench' leaves the server's). With
// BENCH_PPROF_DIR set, it writes DIR/cpu.pprof for the timed load only
// (not the corpus's signing and the checked pass), and DIR/allocs.pprof
// and DIR/allocs-base.pprof, the allocation profile at the end and at the
// start of the timed load (`go tool pprof -sample_index alloc_space -base
// DIR/allocs-base.pprof DIR/allocs.pprof`).
//
//	BENCH_PPROF_DIR=/tmp/prof go test -run '^$' -bench FilterInProcess \
//	    -benchtime 20000x ./internal/milterbench/
func BenchmarkFilterInProcess(b *testing.B) {
	c, err := Generate(2000, 100)
	if err != nil {
		b.Fatal(err)
	}
	dns := dnstest.Start(b, c.Zone) // snowrain takes a port; no anchor runs here
	def := config.Default()
	dir := b.TempDir()
	store, err := measure.Open(context.Background(), filepath.Join(dir, "snowrain.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	writer := measure.NewWriter(store, measure.WriterConfig{QueueSize: def.QueueSize, BatchSize: def.BatchSize,
		Interval: def.BatchInterval.Duration, Logger: log})
	defer writer.Close(context.Background())
	mt := metrics.New()
	res, err := resolver.New(resolver.Config{Servers: []string{dns.Addr}, Timeout: def.DNSTimeout.Duration,
		CacheSize: def.DNSCacheSize, Observe: mt.ObserveDNS})
	if err != nil {
		b.Fatal(err)
	}
	f := milter.NewFilter(milter.Config{AuthServID: "mx.test.example", DNSBudget: def.DNSBudget.Duration,
		MaxSignatures: def.MaxSignatures, CheckHelo: def.CheckHelo, MaxHeaderBytes: def.MaxHeaderBytes,
		MaxPacket: def.MilterMaxPacket, ReadTimeout: def.MilterReadTimeout.Duration,
		IdleTimeout: def.MilterIdleTimeout.Duration}, res, writer, mt, log)
	sock := filepath.Join(dir, "milter.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := f.NewServer()
	go srv.Serve(ln)
	defer srv.Close()
	ch := NewChain("snowrain", sock)
	// The checked pass: caches filled as in BenchmarkAnchors, verdicts right.
	r := Run(ch, c.Messages, Load{Workers: 8, Messages: len(c.Messages)}, nil)
	if r.Errors > 0 {
		b.Fatalf("%d errors, first: %v", r.Errors, r.FirstErr)
	}
	if a := Agree(r, c.Messages); a.SPF != a.Messages || a.DKIMPass != a.Messages || a.DMARC != a.Messages {
		b.Fatalf("agreement %d SPF, %d DKIM, %d DMARC of %d messages; wrong: %v", a.SPF, a.DKIMPass, a.DMARC, a.Messages, a.Wrong)
	}
	b.ReportAllocs()
	stop := profile(b, os.Getenv("BENCH_PPROF_DIR"))
	b.ResetTimer()
	r = Run(ch, c.Messages, Load{Workers: 8, Messages: b.N}, nil)
	b.StopTimer()
	stop()
	if r.Errors > 0 {
		b.Fatalf("%d errors, first: %v", r.Errors, r.FirstErr)
	}
	b.ReportMetric(r.Rate(), "msgs/s")
	b.ReportMetric(float64(r.CPU[selfName].Microseconds())/1000/float64(b.N), "cpu-ms/msg")
}

// profile starts a CPU profile in dir and writes the allocation profile
// there now and when the returned function is called; dir "" does nothing.
func profile(b *testing.B, dir string) (stop func()) {
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	allocs := func(name string) {
		runtime.GC() // the profile is as of the last GC
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
	}
	allocs("allocs-base.pprof")
	cpu, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		cpu.Close()
		allocs("allocs.pprof")
	}
}
