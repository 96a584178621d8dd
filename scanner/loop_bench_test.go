package scanner

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/snowrain/snowrain/internal/testnet"
)

// BenchmarkSweepLoop measures the sweep loop itself: one op walks a /20
// of loopback addresses whose port is closed (a refused connect is the
// cheapest probe there is), so addresses per second and CPU per address
// are the permutation, dispatch, checkpoint and result path. The port is
// picked and reserved closed on the whole /20: no program of the
// machine's answers on it.
func BenchmarkSweepLoop(b *testing.B) {
	const prefix = "127.72.0.0/20"
	closed := testnet.Pick(b, testnet.Request{Closed: prefix})
	targets := NewTargets([]netip.Prefix{netip.MustParsePrefix(prefix)})
	g := &Grabber{Timeout: 2 * time.Second, Dialer: &Dialer{}}
	var n, steps atomic.Int64
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		err := SweepHosts(context.Background(), HostOptions{Grabber: g, Port: closed.Port,
			SweepOptions: SweepOptions{Seed: uint64(i), Shards: 1, Workers: 256, Rate: rate.Inf,
				OnCheckpoint: func(c Checkpoint) { steps.Store(int64(c.Next)) }},
			OnResult: func(*HostResult) { n.Add(1) }}, targets)
		if err != nil {
			b.Fatal(err)
		}
	}
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	if n.Load() != int64(b.N)*int64(targets.Len()) || steps.Load() != int64(targets.Len()) {
		b.Fatalf("%d results, checkpoint at %d; want %d a sweep", n.Load(), steps.Load(), targets.Len())
	}
	b.ReportMetric(float64(n.Load())/wall.Seconds(), "addresses/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n.Load()), "cpu-µs/address")
}
