package scanner

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Target is one thing a sweep probes (zgrab2's ScanTarget): an address,
// for the host and resolver sweeps, or a domain with its list rank, for
// the domain sweep.
type Target struct {
	IP     netip.Addr
	Domain string
	Rank   int
}

// Key names the target in a run's store: its domain, or its address.
func (t Target) Key() string {
	if t.IP.IsValid() {
		return t.IP.String()
	}
	return t.Domain
}

// Status is what a probe found at its target, and so what the sweep keeps
// (zgrab2's ScanStatus, reduced to what decides storing).
type Status string

const (
	// StatusFound: something answered, or a domain was judged. The result
	// is stored and written as a JSON line.
	StatusFound Status = "found"
	// StatusAbsent: nothing there, a closed port or an address where no
	// resolver answers. The target counts as tried (Table 9's "addresses
	// probed") but is not stored one by one: a full IPv4 sweep has
	// billions.
	StatusAbsent Status = "absent"
)

// Module probes one target through the sweep's dialer (zgrab2's
// ScanModule): the Engine owns everything around it. A non-nil error
// means the probe did not finish (the sweep was stopped): its result is
// dropped and its target stays undone, so a resumed sweep probes it.
type Module[R Result] interface {
	Scan(ctx context.Context, d *Dialer, t Target) (Status, R, error)
}

// Checkpoint is how far an address sweep got: every permutation step
// below Next was probed, skipped as already stored, or blocklisted, and
// Tried of them were addresses tried (Table 9's "addresses probed":
// closed ports included, blocklisted addresses not). A run stores it with
// the results it covers, so a resumed sweep starts at Next and counts no
// address twice.
type Checkpoint struct {
	Next  uint64 `json:"next"`
	Tried uint64 `json:"tried"`
}

// SweepOptions shape the loop every sweep shares (zgrab2's split: the
// loop owns iteration, rate, resume and counting; a module only probes).
type SweepOptions struct {
	Seed          uint64 // the permutation of an address sweep
	Shard, Shards int
	Workers       int        // probes in flight; default 256
	Rate          rate.Limit // probes per second; 0: unlimited
	// Skip reports targets (by Target.Key) a resumed run already stored:
	// they count as tried without a new probe.
	Skip func(key string) bool
	// From is where a resumed address sweep stopped.
	From Checkpoint
	// OnCheckpoint is called as an address sweep advances, after the
	// results of the steps it covers were handed on.
	OnCheckpoint func(Checkpoint)
	// Dialer is the sweep's one dialer: an address it blocks is skipped
	// without a socket (and not counted as tried). Nil refuses the
	// DefaultBlocklist.
	Dialer *Dialer
	// Progress, when set, gets a line a second: targets done of the
	// total, rate and time left.
	Progress *Progress
}

// Source is what a sweep walks: *Targets (this shard of an address
// permutation) or Domains (this shard of a list).
type Source interface {
	// open returns the walk from step o.From.Next and its length (0:
	// unknown).
	open(o *SweepOptions) (next func(context.Context) (Target, bool), total uint64)
	// checkpointed says whether a step number names the same target in
	// every process: then a run stores how far the sweep got, and a
	// resumed one starts there.
	checkpointed() bool
}

// Domains is a domain list as a sweep's source; total (0: unknown) is for
// the progress line. Of several shards, each takes the domains
// DomainShard gives it. A list has no checkpoint: it may differ between
// machines and runs (--from-db), so a resumed domain sweep reads the list
// again and skips the domains its run stored.
func Domains(in <-chan Input, total uint64) Source { return domainList{in, total} }

type domainList struct {
	in    <-chan Input
	total uint64
}

func (l domainList) open(o *SweepOptions) (func(context.Context) (Target, bool), uint64) {
	return func(ctx context.Context) (Target, bool) {
		for {
			select {
			case in, ok := <-l.in:
				if !ok {
					return Target{}, false
				}
				if o.Shards > 1 && DomainShard(in.Domain, o.Seed, o.Shards) != o.Shard {
					continue
				}
				return Target{Domain: in.Domain, Rank: in.Rank}, true
			case <-ctx.Done():
				return Target{}, false
			}
		}
	}, l.total / uint64(max(o.Shards, 1))
}

func (domainList) checkpointed() bool { return false }

func (*Targets) checkpointed() bool { return true }

// domainKey is a domain as a run stores it and shards spread it: lower
// case, without the trailing dot.
func domainKey(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// DomainShard is the shard of shards that sweeps domain under seed:
// FNV-1a (64 bits) of the seed and the domain's key, modulo shards. It
// depends on the name alone, not on its place in the list, so shards on
// machines whose lists differ in order or length still never take the
// same domain.
func DomainShard(domain string, seed uint64, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	h.Write([]byte(domainKey(domain)))
	return int(h.Sum64() % uint64(shards))
}

func (t *Targets) open(o *SweepOptions) (func(context.Context) (Target, bool), uint64) {
	perm := NewPermutation(t.Len(), o.Seed, o.Shard, o.Shards)
	for i := uint64(0); i < o.From.Next; i++ {
		if _, ok := perm.Next(); !ok {
			break
		}
	}
	return func(context.Context) (Target, bool) {
		i, ok := perm.Next()
		if !ok {
			return Target{}, false
		}
		return Target{IP: t.At(i)}, true
	}, t.Len() / uint64(max(o.Shards, 1))
}

// Engine is the one sweep loop. It walks a Source, this shard of an
// address permutation from its checkpoint or a domain list, with
// Workers probes in flight started at most Rate a second; skips what the
// Dialer blocks and what Skip says a resumed run stored; hands every
// finished probe to OnResult and the found ones to Run (the store and the
// JSON lines), flushed once a second with the checkpoint they reach; and
// prints Progress.
type Engine[R Result] struct {
	SweepOptions
	Module Module[R]
	// Run, when set, is where results go and what a resumed sweep skips
	// and continues from (its current shard's checkpoint).
	Run *Run
	// OnResult, when set, sees every finished probe, absent ones too,
	// before its result is stored.
	OnResult func(Target, Status, R)
}

type job struct {
	step uint64
	t    Target
}

// Sweep runs the loop until src ends, ctx ends (ctx.Err()) or the run
// cannot store (that error).
func (e *Engine[R]) Sweep(ctx context.Context, src Source) error {
	o := e.options(src)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next, total := src.open(&o)
	c := &counter{base: o.From.Next, total: total}
	if o.OnCheckpoint != nil {
		c.tr = newTracker(o.From, uint64(4*o.Workers+64), o.OnCheckpoint)
		defer context.AfterFunc(ctx, c.tr.wake)()
	}
	stopTicks := e.tick(&o, c, cancel)
	jobs := make(chan job, o.Workers)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			for j := range jobs {
				e.probe(ctx, &o, c, j, cancel)
			}
		})
	}
	e.dispatch(ctx, &o, c, next, jobs)
	close(jobs)
	wg.Wait()
	stopTicks()
	if e.Run != nil {
		if err := e.Run.Flush(); err != nil {
			return err
		}
	}
	// ctx's own error (an interrupted sweep), or why the run stopped it.
	return context.Cause(ctx)
}

// dispatch hands the targets to the workers in order, at most Rate a
// second; blocklisted and already stored ones are done at once.
func (e *Engine[R]) dispatch(ctx context.Context, o *SweepOptions, c *counter,
	next func(context.Context) (Target, bool), jobs chan<- job) {
	var lim *rate.Limiter
	if o.Rate > 0 && o.Rate != rate.Inf {
		lim = rate.NewLimiter(o.Rate, 1)
	}
	step := o.From.Next
	for t, ok := next(ctx); ok && ctx.Err() == nil; t, ok = next(ctx) {
		if c.tr != nil && c.tr.reserve(ctx, step) != nil {
			return
		}
		switch {
		case t.IP.IsValid() && o.Dialer.Blocked(t.IP):
			c.done(step, false)
		case o.Skip != nil && o.Skip(t.Key()):
			c.done(step, true)
		default:
			if lim != nil && lim.Wait(ctx) != nil {
				return
			}
			jobs <- job{step, t}
		}
		step++
	}
}

// options fills in the defaults and what Run holds: for a source with
// checkpoints, the current shard's.
func (e *Engine[R]) options(src Source) SweepOptions {
	o := e.SweepOptions
	if o.Workers <= 0 {
		o.Workers = 256
	}
	if e.Run == nil {
		return o
	}
	if o.Skip == nil {
		o.Skip = e.Run.Done
	}
	if st, ok := e.Run.current(); ok && src.checkpointed() {
		o.From = st.Checkpoint
		if o.OnCheckpoint == nil {
			o.OnCheckpoint = e.Run.Checkpoint
		}
	}
	return o
}

// probe runs the module on one target and hands its result on before the
// step counts as done: a checkpoint never passes a result not stored.
func (e *Engine[R]) probe(ctx context.Context, o *SweepOptions, c *counter, j job, stop context.CancelCauseFunc) {
	st, r, err := e.Module.Scan(ctx, o.Dialer, j.t)
	if err != nil || ctx.Err() != nil {
		return
	}
	if e.OnResult != nil {
		e.OnResult(j.t, st, r)
	}
	if st == StatusFound && e.Run != nil {
		if err := e.Run.save(r); err != nil {
			stop(err)
			return
		}
	}
	c.done(j.step, true)
}

// tick flushes the run (results and checkpoint) and prints the progress
// line once a second, so a killed sweep loses at most a second's work.
func (e *Engine[R]) tick(o *SweepOptions, c *counter, stop context.CancelCauseFunc) func() {
	if e.Run == nil && o.Progress == nil {
		return func() {}
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				o.Progress.end(c, time.Since(start))
				return
			case <-t.C:
				if e.Run != nil {
					if err := e.Run.Flush(); err != nil {
						stop(err)
					}
				}
				o.Progress.show(c, time.Since(start))
			}
		}
	}()
	return func() { close(quit); <-finished }
}

// counter counts finished steps for the progress line and, in an
// address sweep, advances the checkpoint.
type counter struct {
	tr       *tracker // nil: no checkpoint (a domain list)
	base     uint64   // steps done before this process started
	total    uint64
	finished atomic.Uint64 // steps done by this process, skipped ones too
}

func (c *counter) done(step uint64, tried bool) {
	c.finished.Add(1)
	if c.tr != nil {
		c.tr.done(step, tried)
	}
}

// tracker advances the checkpoint over completed steps. Steps complete
// out of order; a window bounds how far the dispatcher runs ahead of the
// oldest step in flight, and with it the tracker's memory.
type tracker struct {
	mu     sync.Mutex
	cond   *sync.Cond
	cp     Checkpoint
	ring   []uint8 // step%len: 0 pending, 1 done, 2 done and tried
	notify func(Checkpoint)
}

func newTracker(from Checkpoint, window uint64, notify func(Checkpoint)) *tracker {
	tr := &tracker{cp: from, ring: make([]uint8, window), notify: notify}
	tr.cond = sync.NewCond(&tr.mu)
	return tr
}

// reserve waits until step fits in the window.
func (tr *tracker) reserve(ctx context.Context, step uint64) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for step >= tr.cp.Next+uint64(len(tr.ring)) && ctx.Err() == nil {
		tr.cond.Wait()
	}
	return ctx.Err()
}

func (tr *tracker) wake() {
	tr.mu.Lock()
	tr.cond.Broadcast()
	tr.mu.Unlock()
}

// done marks step complete and advances over the completed prefix.
func (tr *tracker) done(step uint64, tried bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	state := uint8(1)
	if tried {
		state = 2
	}
	tr.ring[step%uint64(len(tr.ring))] = state
	advanced := false
	for {
		slot := &tr.ring[tr.cp.Next%uint64(len(tr.ring))]
		if *slot == 0 {
			break
		}
		if *slot == 2 {
			tr.cp.Tried++
		}
		*slot = 0
		tr.cp.Next++
		advanced = true
	}
	if advanced {
		if tr.notify != nil {
			tr.notify(tr.cp)
		}
		tr.cond.Broadcast()
	}
}
