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

	"golang.org/x/time/rate"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/resolver"
)

// TestMain lets the benchmarks run their servers in a child process, so
// the scanner's CPU time excludes theirs.
func TestMain(m *testing.M) {
	EnableLegacyCrypto() // the scanner's tests run as `snowrain scan` does
	if os.Getenv("SNOWRAIN_BENCH_SERVERS") != "" {
		benchServers()
		return
	}
	os.Exit(pgtest.Main(m)) // the backend tests share one PostgreSQL cluster
}

// benchServers runs 8 STARTTLS sinks and one bare TLS server with the
// same certificate, prints their addresses and the CA, and waits.
func benchServers() {
	t := &testing.T{}
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.bench.example")
	kp, _ := tls.LoadX509KeyPair(cert, key)
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}}
	var addrs, plain []string
	for i := 0; i < 8; i++ {
		s := smtpsink.StartWith(t, fmt.Sprintf("127.63.0.%d:0", i+1), smtpsink.Options{TLS: cfg})
		addrs = append(addrs, s.Addr)
		p := smtpsink.StartWith(t, fmt.Sprintf("127.63.2.%d:0", i+1), smtpsink.Options{})
		plain = append(plain, p.Addr)
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
	fmt.Printf("%s\n%s\n%s\n%s\n", strings.Join(addrs, " "), ln.Addr(), ca.CAFile(), strings.Join(plain, " "))
	os.Stdout.Sync()
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchEnv is the child process of servers and its addresses.
type benchEnv struct {
	sinks, plain []string
	tlsAddr      string
	roots        *x509.CertPool
	stop         func()
}

func startBenchServers(b *testing.B) *benchEnv {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SNOWRAIN_BENCH_SERVERS=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	rd := bufio.NewReader(stdout)
	var lines [4]string
	for i := range lines {
		lines[i], _ = rd.ReadString('\n')
	}
	pem, _ := os.ReadFile(strings.TrimSpace(lines[2]))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &benchEnv{sinks: strings.Fields(lines[0]), tlsAddr: strings.TrimSpace(lines[1]), roots: roots,
		plain: strings.Fields(lines[3]), stop: func() { stdin.Close(); cmd.Wait() }}
}

// runParallel runs one(i) for i < n on 4×CPU workers, returning wall time,
// this process's CPU time and the successes.
func runParallel(n int, one func(i int) bool) (time.Duration, time.Duration, int64) {
	var next, ok atomic.Int64
	var wg sync.WaitGroup
	cpu0, t0 := cpuTime(), time.Now()
	for w := 0; w < 4*runtime.NumCPU(); w++ {
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

// BenchmarkGrab measures, in one run: the loopback limit of bare TLS
// handshakes (Go client and server, same certificate), the scanner's full
// SMTP + STARTTLS + validation rate against STARTTLS servers, their ratio,
// and the scanner's CPU per grab and a bare client's per handshake
// (servers in another process).
func BenchmarkGrab(b *testing.B) {
	env := startBenchServers(b)
	defer env.stop()
	sinks, tlsAddr, roots := env.sinks, env.tlsAddr, env.roots
	// The loopback limit: bare handshakes (no SMTP, no verification) with
	// the same certificate and key exchange.
	handshake := func(int) bool {
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{InsecureSkipVerify: true,
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}})
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	g := &Grabber{EHLOName: "bench.test.example", Timeout: 10 * time.Second, Roots: roots, Dialer: &Dialer{}}
	grab := func(i int) bool {
		ap, _ := netip.ParseAddrPort(sinks[i%len(sinks)])
		r := g.Grab(context.Background(), ap.Addr(), int(ap.Port()))
		return r.TLS != nil && r.TLS.Trust == TrustTrusted
	}
	// Limit and grabs alternate in ten rounds, so that both see the same
	// machine: on a shared one the load drifts within a run.
	var hsWall, hsCPU, wall, cpu time.Duration
	var grabs int64
	b.ResetTimer()
	for round, done := 0, 0; round < 10 && done < b.N; round++ {
		n := (b.N - done) / (10 - round)
		if round == 9 || n == 0 {
			n = b.N - done
		}
		b.StopTimer()
		w, c, _ := runParallel(n, handshake)
		hsWall, hsCPU = hsWall+w, hsCPU+c
		b.StartTimer()
		w, c, ok := runParallel(n, func(i int) bool { return grab(done + i) })
		wall, cpu, grabs = wall+w, cpu+c, grabs+ok
		done += n
	}
	b.StopTimer()
	if grabs != int64(b.N) {
		b.Fatalf("%d of %d grabs succeeded", grabs, b.N)
	}
	limit := float64(b.N) / hsWall.Seconds()
	rate := float64(b.N) / wall.Seconds()
	b.ReportMetric(limit, "handshakes/s")
	b.ReportMetric(rate, "grabs/s")
	b.ReportMetric(100*rate/limit, "%-of-limit")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(grabs), "cpu-ms/grab")
	b.ReportMetric(float64(hsCPU.Microseconds())/1000/float64(b.N), "cpu-ms/handshake")
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

// BenchmarkHostSweep measures the port-25 sweep's connect + banner + EHLO
// + STARTTLS-reply classification against servers without TLS, and its
// handshakes against TLS servers as a share of the loopback limit.
func BenchmarkHostSweep(b *testing.B) {
	env := startBenchServers(b)
	defer env.stop()
	g := &Grabber{EHLOName: "bench.test.example", Timeout: 10 * time.Second, Dialer: &Dialer{}}
	grab := func(addrs []string, want StripClass) func(int) bool {
		return func(i int) bool {
			ap, _ := netip.ParseAddrPort(addrs[i%len(addrs)])
			return g.HostGrab(context.Background(), ap.Addr(), int(ap.Port())).Class == want
		}
	}
	b.ResetTimer()
	wall, cpu, ok := runParallel(b.N, grab(env.plain, StripNoEcho))
	if ok != int64(b.N) {
		b.Fatalf("%d of %d classified", ok, b.N)
	}
	b.ReportMetric(float64(b.N)/wall.Seconds(), "hosts/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/host")
	hs, _, _ := runParallel(b.N, func(int) bool {
		c, err := tls.Dial("tcp", env.tlsAddr, &tls.Config{InsecureSkipVerify: true,
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	tw, tcpu, tok := runParallel(b.N, grab(env.sinks, StripHandshake))
	if tok != int64(b.N) {
		b.Fatalf("%d of %d handshakes", tok, b.N)
	}
	b.ReportMetric(100*(float64(b.N)/tw.Seconds())/(float64(b.N)/hs.Seconds()), "tls-%-of-limit")
	b.ReportMetric(float64(tcpu.Microseconds())/1000/float64(b.N), "cpu-ms/tls-grab")
}

// BenchmarkResolverSweep measures queries per second of the resolver
// sweep (MX and A for two providers per target) against a loopback server.
func BenchmarkResolverSweep(b *testing.B) {
	srv := dnstest.Start(b, providerZone)
	res, _ := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: time.Second})
	truth, _ := GroundTruth(context.Background(), res, []string{"gmail.example", "yahoo.example"})
	ap, _ := netip.ParseAddrPort(srv.Addr)
	p := &ResolverProber{Port: int(ap.Port()), Timeout: time.Second, Dialer: &Dialer{}, Truth: truth, PerTarget: rate.Inf}
	before := srv.Queries()
	b.ResetTimer()
	wall, _, _ := runParallel(b.N, func(int) bool {
		r := p.Probe(context.Background(), ap.Addr())
		return r.Providers["gmail.example"] == DNSCorrect
	})
	b.ReportMetric(float64(srv.Queries()-before)/wall.Seconds(), "queries/s")
}

// BenchmarkPermutation8 walks a /8-sized permutation (addresses generated,
// not dialed): rate and heap.
func BenchmarkPermutation8(b *testing.B) {
	t := NewTargets([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	for i := 0; i < b.N; i++ {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapInuse
		p := NewPermutation(t.Len(), 3, 0, 1)
		n := 0
		start := time.Now()
		for v, ok := p.Next(); ok; v, ok = p.Next() {
			_ = t.At(v)
			n++
		}
		runtime.ReadMemStats(&ms)
		if n != 1<<24 {
			b.Fatalf("%d addresses", n)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "addresses/s")
		b.ReportMetric(float64(int64(ms.HeapInuse)-int64(before))/(1<<20), "heap-growth-MiB")
	}
}
