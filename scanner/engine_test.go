package scanner

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/measure"
)

func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		done, total, mine uint64
		elapsed           time.Duration
		noun, want        string
	}{
		{0, 0, 0, 0, "domains", "0 domains, 0/s"},
		{250, 0, 250, 2 * time.Second, "domains", "250 domains, 125/s"},
		{100, 1000, 100, 10 * time.Second, "addresses", "100/1000 addresses (10.0%), 10/s, ETA 1m30s"},
		// Resumed: 600 were done before; the rate is this process's.
		{700, 1000, 100, 10 * time.Second, "addresses", "700/1000 addresses (70.0%), 10/s, ETA 30s"},
		{0, 1000, 0, time.Second, "addresses", "0/1000 addresses (0.0%), 0/s, ETA ?"},
		// A shard's length is estimated; a longer shard is not over 100%.
		{3, 2, 3, time.Second, "addresses", "3/3 addresses (100.0%), 3/s, ETA 0s"},
	} {
		if got := progressLine(c.done, c.total, c.mine, c.elapsed, c.noun); got != c.want {
			t.Errorf("progressLine(%d, %d, %d, %s) = %q, want %q", c.done, c.total, c.mine, c.elapsed, got, c.want)
		}
	}
}

// TestEngineStoreFails: a sweep whose results cannot be stored ends with
// the store's error, not as a sweep that completed.
func TestEngineStoreFails(t *testing.T) {
	// One server on a picked port, the rest of the swept /28 closed on it.
	ports := testnet.Pick(t, testnet.Request{TCP: []string{"127.74.0.1"}, Closed: "127.74.0.0/28"})
	sink := smtpsink.Serve(t, ports.TCP[0], smtpsink.Options{})
	store, run := newStoredRun(t, "hosts")
	targets := NewTargets([]netip.Prefix{netip.MustParsePrefix("127.74.0.0/28")})
	if _, err := run.StartSweep(context.Background(), SweepState{Targets: targets.String(), Seed: 3, Shards: 1}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	g := &Grabber{Timeout: 2 * time.Second, Dialer: &Dialer{}}
	e := &Engine[*HostResult]{SweepOptions: SweepOptions{Seed: 3, Shards: 1, Workers: 2, Dialer: g.Dialer},
		Module: &HostProbe{Grabber: g, Port: ports.Port}, Run: run}
	if err := e.Sweep(context.Background(), targets); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("sweep into a closed store: %v, want the store's error", err)
	}
	if sink.Accepts() != 1 {
		t.Errorf("the one server was grabbed %d times", sink.Accepts())
	}
}

// TestEngineDomainsResume sweeps a domain list into a run, stops it, and
// resumes it through the same engine: the run holds every domain once.
func TestEngineDomainsResume(t *testing.T) {
	w := newWorld(t)
	store, run := newStoredRun(t, "domains")
	ctx, cancel := context.WithCancel(context.Background())
	var half, probed atomic.Int64
	o := w.options(run)
	e := &Engine[*DomainResult]{SweepOptions: SweepOptions{Workers: 4, Dialer: o.Grabber.Dialer}, Module: NewDomainProbe(o), Run: run,
		OnResult: func(Target, Status, *DomainResult) {
			if half.Add(1) == int64(len(w.domains)/2) {
				cancel()
			}
		}}
	if err := e.Sweep(ctx, Domains(feed(ctx, w.domains), 0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted sweep: %v", err)
	}
	first := len(results(t, store, run.ID))
	resumed, _ := ResumeRun(context.Background(), store.DB, run.ID, nil)
	o = w.options(resumed)
	e = &Engine[*DomainResult]{SweepOptions: SweepOptions{Workers: 4, Dialer: o.Grabber.Dialer}, Module: NewDomainProbe(o), Run: resumed,
		OnResult: func(Target, Status, *DomainResult) { probed.Add(1) }}
	if err := e.Sweep(context.Background(), Domains(feed(context.Background(), w.domains), 0)); err != nil {
		t.Fatal(err)
	}
	if got := len(results(t, store, run.ID)); got != len(w.domains) || probed.Load() != int64(len(w.domains)-first) {
		t.Errorf("resumed run holds %d of %d domains, %d probed again after %d stored", got, len(w.domains), probed.Load(), first)
	}
}

// newStoredRun opens a store in a temporary directory and starts a run of
// kind in it.
func newStoredRun(t *testing.T, kind string) (*measure.Store, *Run) {
	t.Helper()
	store, err := measure.Open(context.Background(), filepath.Join(t.TempDir(), "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	run, err := NewRun(context.Background(), store.DB, kind, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return store, run
}
