package scanner

import (
	"context"
	"net/netip"
	"sync"

	"golang.org/x/time/rate"
)

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

// SweepOptions shape an address sweep (zgrab2's split: the sweep owns
// iteration, rate, resume and counting; a module only probes).
type SweepOptions struct {
	Seed          uint64
	Shard, Shards int
	Workers       int        // probes in flight; default 256
	Rate          rate.Limit // probes per second; 0: unlimited
	// Skip reports addresses a resumed run already stored: they count as
	// tried without a new probe.
	Skip func(ip string) bool
	// From is where a resumed run stopped.
	From Checkpoint
	// OnCheckpoint is called as the sweep advances, after the results of
	// the steps it covers were handed to the result callback.
	OnCheckpoint func(Checkpoint)
}

// walk sends every address of this shard, in permutation order from
// o.From, to probe, which returns false when it was interrupted (its
// result is not kept and its step stays undone).
func walk(ctx context.Context, t *Targets, o SweepOptions, blocked func(netip.Addr) bool,
	probe func(context.Context, netip.Addr) bool) error {
	if o.Workers <= 0 {
		o.Workers = 256
	}
	perm := NewPermutation(t.Len(), o.Seed, o.Shard, o.Shards)
	for i := uint64(0); i < o.From.Next; i++ {
		if _, ok := perm.Next(); !ok {
			break
		}
	}
	var lim *rate.Limiter
	if o.Rate > 0 && o.Rate != rate.Inf {
		lim = rate.NewLimiter(o.Rate, 1)
	}
	tr := newTracker(o.From, uint64(4*o.Workers+64), o.OnCheckpoint)
	stop := context.AfterFunc(ctx, tr.wake)
	defer stop()
	type job struct {
		step uint64
		ip   netip.Addr
	}
	jobs := make(chan job, o.Workers)
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if probe(ctx, j.ip) {
					tr.done(j.step, true)
				}
			}
		}()
	}
	step := o.From.Next
dispatch:
	for i, ok := perm.Next(); ok && ctx.Err() == nil; i, ok = perm.Next() {
		if tr.reserve(ctx, step) != nil {
			break
		}
		ip := t.At(i)
		switch {
		case blocked(ip):
			tr.done(step, false)
		case o.Skip != nil && o.Skip(ip.String()):
			tr.done(step, true)
		default:
			if lim != nil && lim.Wait(ctx) != nil {
				break dispatch
			}
			jobs <- job{step, ip}
		}
		step++
	}
	close(jobs)
	wg.Wait()
	return ctx.Err()
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
