package milterbench

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/snowrain/snowrain/internal/dnstest"
)

// BenchmarkPacedSnowrain offers `snowrain serve` alone the paced load of
// BenchmarkAnchors (8 sessions, one message each, open loop at
// $BENCH_RATE messages a second, 1,000 by default; b.N messages) after the
// same checked pass, and prints the latency percentiles, the daemon's CPU
// per message and the load average: the latency half of `make
// bench-anchors` in about ten seconds, to repeat when the machine is
// quiet.
//
//	go test -run '^$' -bench PacedSnowrain -benchtime 10000x ./internal/milterbench/
func BenchmarkPacedSnowrain(b *testing.B) {
	rate := 1000.0
	if s := os.Getenv("BENCH_RATE"); s != "" {
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			b.Fatalf("BENCH_RATE %q: want messages per second", s)
		}
		rate = r
	}
	bin := snowrainBinary(b)
	c, err := Generate(2000, 100)
	if err != nil {
		b.Fatal(err)
	}
	dns := dnstest.Start(b, c.Zone) // snowrain takes a port; no anchor runs here
	sr, err := StartSnowrain(Env{Dir: b.TempDir(), DNSAddr: dns.Addr}, bin)
	if err != nil {
		b.Fatal(err)
	}
	defer sr.Stop()
	ch := NewChain("snowrain", sr.Sock)
	r := Run(ch, c.Messages, Load{Workers: 8, Messages: len(c.Messages)}, nil)
	if r.Errors > 0 {
		b.Fatalf("%d errors, first: %v\n%s", r.Errors, r.FirstErr, sr.Log())
	}
	if a := Agree(r, c.Messages); a.SPF != a.Messages || a.DKIMPass != a.Messages || a.DMARC != a.Messages {
		b.Fatalf("agreement %d SPF, %d DKIM, %d DMARC of %d messages; wrong: %v", a.SPF, a.DKIMPass, a.DMARC, a.Messages, a.Wrong)
	}
	if b.N == 1 {
		return // the testing package's first call
	}
	load0 := LoadAvg()
	b.ResetTimer()
	r = Run(ch, c.Messages, Load{Workers: 8, Messages: b.N, Rate: rate}, []*Proc{sr})
	b.StopTimer()
	if r.Errors > 0 {
		b.Fatalf("%d errors, first: %v", r.Errors, r.FirstErr)
	}
	fmt.Printf("\nsnowrain paced %.0f/s: %.0f msgs/s, p50 %s p90 %s p99 %s p99.9 %s max %s ms, daemon CPU %.3f ms/msg; load average before %s, after %s\n",
		rate, r.Rate(), ms(r.Pct(50)), ms(r.Pct(90)), ms(r.Pct(99)), ms(r.Pct(99.9)), ms(r.Lat[len(r.Lat)-1]),
		cpuMs(r, "snowrain"), load0, LoadAvg())
	b.ReportMetric(float64(r.Pct(50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(r.Pct(99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(cpuMs(r, "snowrain"), "daemon-cpu-ms/msg")
}
