package milterbench

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Load is how messages are offered to a chain.
type Load struct {
	Workers  int     // concurrent SMTP sessions, each with its own milter connections
	Messages int     // messages to send, cycling through the corpus
	Rate     float64 // messages per second, paced open-loop; 0: as fast as the chain answers
	// PerSession is the number of transactions per SMTP session (and so
	// per milter connection); 0 or 1: one, as in most inbound sessions.
	// Later transactions of a session keep the client of the first (the
	// filters' work is the same; only the first pass's verdicts are
	// checked, and it uses one).
	PerSession int
}

// Result is one run of a chain.
type Result struct {
	Chain    string
	Load     Load
	Wall     time.Duration
	Lat      []time.Duration // per message, sorted
	Outcomes []Outcome       // by corpus index, from the first pass over the corpus
	Errors   int
	FirstErr error
	CPU      map[string]time.Duration // user+system time of each measured process during the run
	// DNSQueries is what the test DNS server answered during the run,
	// when the caller counts it: how much each chain leans on its cache.
	DNSQueries int64
}

// Rate returns the messages per second the chain completed.
func (r *Result) Rate() float64 { return float64(len(r.Lat)) / r.Wall.Seconds() }

// Pct returns the p-th percentile latency (0 < p < 100).
func (r *Result) Pct(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	return r.Lat[min(len(r.Lat)-1, int(float64(len(r.Lat))*p/100))]
}

// Run sends l.Messages messages of msgs through c in SMTP sessions of
// l.PerSession transactions (connect, HELO, transactions, QUIT) and
// measures wall time, the latency of each message (from its scheduled
// start, or from when a worker took it, to the last milter's
// end-of-message answer, the session's setup included for its first) and
// the CPU time of procs.
func Run(c *Chain, msgs []Message, l Load, procs []*Proc) *Result {
	r := &Result{Chain: c.Name, Load: l, Outcomes: make([]Outcome, len(msgs)), CPU: map[string]time.Duration{}}
	type job struct {
		i     int
		start time.Time
	}
	jobs := make(chan job, l.Messages)
	lat := make([]time.Duration, l.Messages)
	var errs atomic.Int64
	var errOnce sync.Once
	var wg sync.WaitGroup
	cpu0 := cpuTimes(procs)
	t0 := time.Now()
	for w := 0; w < l.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s *smtpSession
			sent := 0
			defer func() {
				if s != nil {
					s.close()
				}
			}()
			for j := range jobs {
				if j.start.IsZero() {
					j.start = time.Now()
				}
				m := &msgs[j.i%len(msgs)]
				var out Outcome
				var err error
				if s == nil {
					s, err = c.open(m)
				}
				if err == nil {
					out, err = s.send(m)
					sent++
				}
				if s != nil && (err != nil || sent >= max(1, l.PerSession)) {
					s.close()
					s, sent = nil, 0
				}
				lat[j.i] = time.Since(j.start)
				if err != nil {
					errs.Add(1)
					errOnce.Do(func() { r.FirstErr = fmt.Errorf("%s, message %d (%s): %w", c.Name, j.i, m.Kind, err) })
					continue
				}
				if j.i < len(msgs) {
					r.Outcomes[j.i] = out
				}
			}
		}()
	}
	if l.Rate > 0 {
		every := time.Duration(float64(time.Second) / l.Rate)
		for i := 0; i < l.Messages; i++ {
			at := t0.Add(time.Duration(i) * every)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			jobs <- job{i, at}
		}
	} else {
		for i := 0; i < l.Messages; i++ {
			jobs <- job{i: i}
		}
	}
	close(jobs)
	wg.Wait()
	r.Wall = time.Since(t0)
	cpu1 := cpuTimes(procs)
	for _, p := range procs {
		r.CPU[p.Name] = cpu1[p.Name] - cpu0[p.Name]
	}
	r.CPU[selfName] = cpu1[selfName] - cpu0[selfName]
	r.Errors = int(errs.Load())
	r.Lat = lat
	slices.Sort(r.Lat)
	return r
}

// selfName is the key of this process (client and DNS server) in
// Result.CPU.
const selfName = "client+dns"

func cpuTimes(procs []*Proc) map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, p := range procs {
		m[p.Name] = p.CPU()
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	m[selfName] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return m
}
