package milter

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/miltertest"
)

// BenchmarkMilterThroughput drives the filter over a unix socket from 8
// concurrent milter sessions (as 8 smtpd processes would), each sending
// the mixed corpus, with DNS answered by a loopback server.
func BenchmarkMilterThroughput(b *testing.B) {
	h := newHarness(b, Config{AuthServID: "mx.test.example"})
	cases := corpus.Cases()
	const workers = 8
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := h.client()
			var s = h.openSession(cl, postfixFlavor, cases[0])
			defer s.Close()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if _, err := miltertest.Send(s, cases[i%int64(len(cases))]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkMilterLatency1000 paces messages at 1,000/s over 16 sessions
// and reports the round-trip time of each transaction (MAIL FROM to the
// end-of-message reply): an upper bound of the latency the milter adds.
func BenchmarkMilterLatency1000(b *testing.B) {
	h := newHarness(b, Config{AuthServID: "mx.test.example"})
	cases := corpus.Cases()
	const workers = 16
	jobs := make(chan corpus.Case, workers)
	lat := make([]time.Duration, 0, b.N)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := h.openSession(h.client(), postfixFlavor, cases[0])
			defer s.Close()
			for c := range jobs {
				t0 := time.Now()
				if _, err := miltertest.Send(s, c); err != nil {
					b.Error(err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	b.ResetTimer()
	tick := time.NewTicker(time.Millisecond)
	for i := 0; i < b.N; i++ {
		<-tick.C
		jobs <- cases[i%len(cases)]
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
