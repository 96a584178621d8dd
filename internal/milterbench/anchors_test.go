package milterbench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/testnet"
)

// benchDNS serves zone on a picked port (for snowrain) and on port 53 of
// anchorsDNS inside ns, which resolv.conf can name (OpenDMARC's resolver
// knows no port): OpenDKIM and OpenDMARC run inside ns.
func benchDNS(b *testing.B, ns *testnet.NS, zone string) *dnstest.Server {
	srv := dnstest.Start(b, zone)
	srv.ServeIn(b, ns, anchorsDNS)
	return srv
}

const anchorsDNS = "127.53.15.1:53"

// snowrainBinary is $SNOWRAIN_BIN (the binary `make bench-anchors` built)
// or one built from this tree.
func snowrainBinary(b *testing.B) string {
	if bin := os.Getenv("SNOWRAIN_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(b.TempDir(), "snowrain")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/snowrain/snowrain/cmd/snowrain").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// BenchmarkAnchors runs, in one process and one run: the same corpus, DNS
// server and client through OpenDKIM then OpenDMARC (chained as Postfix
// chains two smtpd_milters) and through `snowrain serve`, 8 concurrent
// SMTP sessions, first as fast as each answers (b.N messages each), then
// paced at 1,000 msgs/s; it prints throughput, latency, CPU per message of
// each daemon and how far each agrees with the corpus. `make
// bench-anchors` runs it. With BENCH_PERF_DIR set, `perf record` follows
// each daemon during the first saturated load (DIR/NAME.perf.data).
func BenchmarkAnchors(b *testing.B) {
	if err := Available(); err != nil {
		b.Fatal(err)
	}
	bin := snowrainBinary(b)
	c, err := Generate(2000, 100)
	if err != nil {
		b.Fatal(err)
	}
	ns := testnet.NewNS(b)
	dns := benchDNS(b, ns, c.Zone)
	env := Env{Dir: b.TempDir(), DNSAddr: dns.Addr}
	var dkim, dmarc *Proc
	inNS := Env{Dir: env.Dir, DNSAddr: anchorsDNS} // the anchors, inside ns
	if err := ns.Do(func() (err error) { dkim, err = StartOpenDKIM(inNS); return err }); err != nil {
		b.Fatal(err)
	}
	defer dkim.Stop()
	if err := ns.Do(func() (err error) { dmarc, err = StartOpenDMARC(inNS); return err }); err != nil {
		b.Fatal(err)
	}
	defer dmarc.Stop()
	sr, err := StartSnowrain(env, bin)
	if err != nil {
		b.Fatal(err)
	}
	defer sr.Stop()
	anchors := NewChain("opendkim+opendmarc", dkim.Sock, dmarc.Sock)
	ours := NewChain("snowrain", sr.Sock)
	procs := map[string][]string{anchors.Name: {"opendkim", "opendmarc"}, ours.Name: {"snowrain"}}
	all := []*Proc{dkim, dmarc, sr}
	const workers = 8
	run := func(ch *Chain, l Load) *Result {
		q := dns.Queries()
		r := Run(ch, c.Messages, l, all)
		r.DNSQueries = dns.Queries() - q
		return r
	}
	// One pass over the corpus each fills every cache (snowrain's DNS
	// cache, OpenDKIM's unbound and QueryCache) and records the verdicts.
	agree := map[string]Agreement{}
	for _, ch := range []*Chain{anchors, ours} {
		r := run(ch, Load{Workers: workers, Messages: len(c.Messages)})
		if r.Errors > 0 {
			b.Fatalf("%d errors, first: %v\nopendkim: %s\nopendmarc: %s\nsnowrain: %s", r.Errors, r.FirstErr,
				dkim.Log(), dmarc.Log(), sr.Log())
		}
		agree[ch.Name] = Agree(r, c.Messages)
	}
	if b.N == 1 {
		return // the testing package's first call: the checked pass above is enough
	}
	fmt.Printf("\nmachine: %s\n", Machine())
	b.ResetTimer()
	// BENCH_PERF_DIR: perf record every daemon during the first loads.
	perfDir := os.Getenv("BENCH_PERF_DIR")
	var runs []*Result
	for _, per := range []int{1, 10} {
		for _, ch := range []*Chain{anchors, ours} {
			var stops []func()
			for _, p := range all {
				if perfDir != "" && per == 1 && slices.Contains(procs[ch.Name], p.Name) {
					stop, err := p.Record(perfDir)
					if err != nil {
						b.Fatal(err)
					}
					stops = append(stops, stop)
				}
			}
			runs = append(runs, run(ch, Load{Workers: workers, Messages: b.N, PerSession: per}))
			for _, stop := range stops {
				stop()
			}
		}
	}
	b.StopTimer()
	sat := runs[:2]
	for _, ch := range []*Chain{anchors, ours} {
		runs = append(runs, run(ch, Load{Workers: workers, Messages: min(b.N, 10000), Rate: 1000}))
	}
	paced := runs[4:]
	for _, r := range runs {
		if r.Errors > 0 {
			b.Errorf("%s: %d errors, first: %v", r.Chain, r.Errors, r.FirstErr)
		}
	}
	fmt.Printf("corpus: %d messages from %d domains; %d sent per chain and load, %d SMTP sessions at once; load average after: %s\n",
		len(c.Messages), c.Domains, b.N, workers, LoadAvg())
	Print(os.Stdout, runs, procs, agree)
	b.ReportMetric(sat[0].Rate(), "anchors-msgs/s")
	b.ReportMetric(sat[1].Rate(), "snowrain-msgs/s")
	b.ReportMetric(sat[1].Rate()/sat[0].Rate(), "ratio")
	b.ReportMetric(float64(paced[0].Pct(99).Microseconds())/1000, "anchors-p99-ms@1000/s")
	b.ReportMetric(float64(paced[1].Pct(99).Microseconds())/1000, "snowrain-p99-ms@1000/s")
}
