package scanner

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/resolver"
)

// TestMain lets the benchmarks run their servers in a child process, so
// the scanner's CPU time excludes theirs.
func TestMain(m *testing.M) {
	if os.Getenv("SNOWRAIN_BENCH_SERVERS") != "" {
		benchServers()
		return
	}
	os.Exit(m.Run())
}

// benchServers runs 8 STARTTLS sinks and one bare TLS server with the
// same certificate, prints their addresses and the CA, and waits.
func benchServers() {
	t := &testing.T{}
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.bench.example")
	kp, _ := tls.LoadX509KeyPair(cert, key)
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}}
	var addrs []string
	for i := 0; i < 8; i++ {
		s := smtpsink.StartWith(t, fmt.Sprintf("127.63.0.%d:0", i+1), smtpsink.Options{TLS: cfg})
		addrs = append(addrs, s.Addr)
	}
	ln, _ := tls.Listen("tcp", "127.63.1.1:0", cfg)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	fmt.Printf("%s\n%s\n%s\n", strings.Join(addrs, " "), ln.Addr(), ca.CAFile())
	os.Stdout.Sync()
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGrab measures, in one run: the loopback limit of bare TLS
// handshakes (Go client and server, same certificate), the scanner's full
// SMTP + STARTTLS + validation rate against STARTTLS servers, their ratio,
// and the scanner's CPU per grab (servers in another process).
func BenchmarkGrab(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SNOWRAIN_BENCH_SERVERS=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	rd := bufio.NewReader(stdout)
	line1, _ := rd.ReadString('\n')
	line2, _ := rd.ReadString('\n')
	line3, _ := rd.ReadString('\n')
	sinks, tlsAddr := strings.Fields(line1), strings.TrimSpace(line2)
	pem, _ := os.ReadFile(strings.TrimSpace(line3))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	workers := 4 * runtime.NumCPU()

	run := func(n int, one func(i int) bool) (time.Duration, time.Duration, int64) {
		var next, ok atomic.Int64
		var wg sync.WaitGroup
		cpu0, t0 := cpuTime(), time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					if one(int(i)) {
						ok.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(t0), cpuTime() - cpu0, ok.Load()
	}
	// The loopback limit: bare handshakes (no SMTP, no verification) with
	// the same certificate and key exchange.
	hs, _, _ := run(b.N, func(int) bool {
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{InsecureSkipVerify: true,
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	g := &Grabber{EHLOName: "bench.test.example", Timeout: 10 * time.Second, Roots: roots}
	b.ResetTimer()
	wall, cpu, grabs := run(b.N, func(i int) bool {
		ap, _ := netip.ParseAddrPort(sinks[i%len(sinks)])
		r := g.Grab(context.Background(), ap.Addr(), int(ap.Port()))
		return r.TLS != nil && r.TLS.Trust == TrustTrusted
	})
	b.StopTimer()
	if grabs != int64(b.N) {
		b.Fatalf("%d of %d grabs succeeded", grabs, b.N)
	}
	limit := float64(b.N) / hs.Seconds()
	rate := float64(b.N) / wall.Seconds()
	b.ReportMetric(limit, "handshakes/s")
	b.ReportMetric(rate, "grabs/s")
	b.ReportMetric(100*rate/limit, "%-of-limit")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(grabs), "cpu-ms/grab")
}

// BenchmarkDNSPhase measures uncached queries per second against a
// loopback authoritative server, 256 in flight.
func BenchmarkDNSPhase(b *testing.B) {
	var zone strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&zone, "d%d.bench.example. MX 10 mx%d.bench.example.\n", i, i%50)
	}
	srv := dnstest.Start(b, zone.String())
	res, _ := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 2 * time.Second})
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < 256; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				res.LookupMX(context.Background(), fmt.Sprintf("d%d.bench.example", i%1000))
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
}

// nxResolver answers every question "no such name" at once: the 1M-domain
// memory benchmark measures the pipeline, not DNS.
type nxResolver struct{}

func nx(name string) error { return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true} }

func (nxResolver) LookupTXT(_ context.Context, n string) ([]string, error)        { return nil, nx(n) }
func (nxResolver) LookupMX(_ context.Context, n string) ([]*net.MX, error)        { return nil, nx(n) }
func (nxResolver) LookupIPAddr(_ context.Context, n string) ([]net.IPAddr, error) { return nil, nx(n) }
func (nxResolver) LookupAddr(_ context.Context, n string) ([]string, error)       { return nil, nx(n) }
func (nxResolver) Query(_ context.Context, n string, _ uint16) (*resolver.Answer, error) {
	return nil, nx(n)
}

// BenchmarkMillionDomains streams 1,000,000 generated domains through the
// sweep and reports the heap at 10% and at the end: flat means streaming.
func BenchmarkMillionDomains(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		pr, pw := net.Pipe()
		go func() {
			w := bufio.NewWriter(pw)
			for j := 0; j < n; j++ {
				fmt.Fprintf(w, "%d,d%d.example\n", j+1, j)
			}
			w.Flush()
			pw.Close()
		}()
		in := make(chan Input, 1024)
		go ReadInput(context.Background(), pr, 0, in)
		var done atomic.Int64
		var at10, at100 uint64
		var ms runtime.MemStats
		Sweep(context.Background(), Options{Resolver: nxResolver{}, Workers: 256, DryRun: true,
			OnDomain: func(*DomainResult) {
				if done.Add(1) == n/10 {
					runtime.GC()
					runtime.ReadMemStats(&ms)
					at10 = ms.HeapInuse
				}
			}}, in)
		if done.Load() != n {
			b.Fatalf("%d of %d domains swept", done.Load(), n)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		at100 = ms.HeapInuse
		b.ReportMetric(float64(at10)/(1<<20), "heap-MiB-at-10%")
		b.ReportMetric(float64(at100)/(1<<20), "heap-MiB-at-100%")
	}
}
