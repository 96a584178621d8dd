package scanner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/measure"
)

// backends runs fn on a SQLite file and on a database of the package's
// PostgreSQL cluster. open opens another handle on the same database, as
// another machine (or process) would.
func backends(t *testing.T, fn func(t *testing.T, open func() *measure.Store)) {
	for _, b := range []struct {
		name string
		dsn  func(testing.TB) string
	}{
		{"sqlite", func(t testing.TB) string { return filepath.Join(t.(*testing.T).TempDir(), "scan.db") }},
		{"postgres", pgtest.DB},
	} {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			fn(t, func() *measure.Store {
				s, err := measure.Open(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

// TestNamedRunBothBackends: a named run is created by the first shard and
// joined by the others, with the run's seed and targets when they give
// none; a shard of another kind, seed or shard count is refused; a shard
// is started once and continued from any machine; the run finishes with
// its last shard.
func TestNamedRunBothBackends(t *testing.T) {
	backends(t, func(t *testing.T, open func() *measure.Store) {
		ctx := context.Background()
		m1, m2 := open(), open()
		spec := RunSpec{Name: "survey-1", Kind: "hosts", Input: "192.0.2.0/24", Targets: "192.0.2.0/24", Seed: 7, Shards: 2}
		r1, err := JoinRun(ctx, m1.DB, spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		joined := spec
		joined.Targets, joined.AnyTargets, joined.Seed, joined.AnySeed = "", true, 99, true
		r2, err := JoinRun(ctx, m2.DB, joined, nil)
		if err != nil || r2.ID != r1.ID || r2.Spec().Seed != 7 || r2.Spec().Targets != "192.0.2.0/24" {
			t.Fatalf("joined run %+v (%v), want run %d with seed 7 and its targets", r2, err, r1.ID)
		}
		for _, c := range []struct {
			change func(*RunSpec)
			want   string
		}{
			{func(s *RunSpec) { s.Seed = 8 }, `run "survey-1" sweeps 192.0.2.0/24 with seed 7 in 2 shards; this shard: 192.0.2.0/24 with seed 8 in 2`},
			{func(s *RunSpec) { s.Shards = 3 }, "in 2 shards; this shard: 192.0.2.0/24 with seed 7 in 3"},
			{func(s *RunSpec) { s.Targets = "192.0.2.0/25" }, "this shard: 192.0.2.0/25 with seed 7"},
			{func(s *RunSpec) { s.Kind = "resolvers" }, `run "survey-1" is a hosts scan, not resolvers`},
		} {
			bad := spec
			c.change(&bad)
			if _, err := JoinRun(ctx, m2.DB, bad, nil); !errors.Is(err, ErrRunMismatch) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("JoinRun %+v: %v, want ErrRunMismatch saying %q", bad, err, c.want)
			}
		}
		if _, err := JoinRun(ctx, m2.DB, RunSpec{Name: "nope", Kind: "hosts", AnyTargets: true, Shards: 1}, nil); err == nil ||
			!strings.Contains(err.Error(), `no run "nope": give its targets`) {
			t.Errorf("joining a missing run without targets: %v", err)
		}
		// PostgreSQL's sequence moves on a conflict too: IDs may skip.
		if other, err := NewRun(ctx, m1.DB, "hosts", "other", nil); err != nil || other.ID <= r1.ID {
			t.Errorf("unnamed run %v (%v), want an ID after %d", other, err, r1.ID)
		}

		st0 := SweepState{Targets: "192.0.2.0/24", Seed: 7, Shard: 0, Shards: 2, Node: "m1"}
		if _, err := r1.NewShard(ctx, st0); err != nil {
			t.Fatal(err)
		}
		taken := st0
		taken.Node = "m2"
		if _, err := r2.NewShard(ctx, taken); !errors.Is(err, ErrShardStarted) || !strings.Contains(err.Error(), "started by node m1") {
			t.Errorf("second start of shard 0: %v, want ErrShardStarted naming m1", err)
		}
		if _, err := r2.NewShard(ctx, SweepState{Targets: "192.0.2.0/24", Seed: 8, Shard: 1, Shards: 2}); !errors.Is(err, ErrRunMismatch) {
			t.Errorf("a shard with another seed: %v, want ErrRunMismatch", err)
		}
		if _, err := r2.NewShard(ctx, SweepState{Targets: "192.0.2.0/24", Seed: 7, Shard: 1, Shards: 2, Node: "m2"}); err != nil {
			t.Fatal(err)
		}
		r1.Checkpoint(Checkpoint{Next: 10, Tried: 9})
		if err := r1.SaveHost(&HostResult{Type: "host", IP: "192.0.2.9", Banner: "220 x ESMTP", Class: StripHandshake}); err != nil {
			t.Fatal(err)
		}
		if err := r1.Flush(); err != nil { // machine 1 dies here
			t.Fatal(err)
		}
		m3 := open()
		r3, err := ResumeRun(ctx, m3.DB, r1.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := r3.StartSweep(ctx, SweepState{Targets: "192.0.2.0/24", Seed: 7, Shard: 0, Shards: 2, Node: "m3"})
		if err != nil || st.Next != 10 || st.Tried != 9 || st.Node != "m3" || !r3.Done("192.0.2.9") {
			t.Fatalf("continued shard 0: %+v (%v), want its checkpoint 10/9 on m3 and its host done", st, err)
		}
		if err := r2.Finish(); err != nil {
			t.Fatal(err)
		}
		info, ok, err := LookupRun(ctx, m1.DB, "survey-1")
		if err != nil || !ok || info.ID != r1.ID || !info.Finished.IsZero() {
			t.Fatalf("run with one shard finished: %+v %v %v", info, ok, err)
		}
		if got, want := info.ShardsLine(), "2 of 2 shards reported: 0/2 on m3 not finished (step 10), 1/2 on m2 finished"; got != want {
			t.Errorf("shards: %q, want %q", got, want)
		}
		if err := r3.Finish(); err != nil {
			t.Fatal(err)
		}
		info, _, err = LookupRun(ctx, m2.DB, fmt.Sprint(r1.ID))
		if err != nil || info.Finished.IsZero() || info.Name != "survey-1" || info.ShardsLine() != "2 of 2 shards reported: 0/2 on m3 finished, 1/2 on m2 finished" {
			t.Errorf("finished run %+v (%v): %s", info, err, info.ShardsLine())
		}
		sum, err := SummarizeHosts(ctx, m2.DB, r1.ID)
		if err != nil || sum.Probed != 9 || sum.Responsive != 1 || sum.Handshake != 1 {
			t.Errorf("summary %+v (%v), want 9 tried (the checkpoints'), 1 responsive", sum, err)
		}
		if _, ok, err := LookupRun(ctx, m1.DB, "missing"); ok || err != nil {
			t.Errorf("missing run: %v %v", ok, err)
		}
	})
}

// jsonlRun is one machine's run handle and its JSON lines.
type jsonlRun struct {
	run   *Run
	lines bytes.Buffer
}

// lineKeys returns the "type:key" of every JSON line of runs, sorted,
// repeats kept.
func lineKeys(t *testing.T, runs ...*jsonlRun) []string {
	t.Helper()
	var out []string
	for _, r := range runs {
		for _, line := range strings.Split(strings.TrimSuffix(r.lines.String(), "\n"), "\n") {
			if line == "" {
				continue
			}
			var v struct{ Type, IP, Domain string }
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatalf("JSON line %q: %v", line, err)
			}
			out = append(out, v.Type+":"+v.IP+v.Domain)
		}
	}
	slices.Sort(out)
	return out
}

// storedRows returns the "type:key" of every row run id stores in the
// result tables, sorted.
func storedRows(t *testing.T, s *measure.Store, id int64) []string {
	t.Helper()
	var out []string
	for table, typ := range map[string]string{"scan_domains": "domain", "scan_ips": "mx_ip", "scan_hosts": "host", "scan_resolvers": "resolver"} {
		key := "ip"
		if table == "scan_domains" {
			key = "domain"
		}
		keys, err := measure.Rows(context.Background(), s.DB, `SELECT `+key+` FROM `+table+` WHERE run_id = ?`, []any{id}, measure.Column[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			out = append(out, typ+":"+k)
		}
	}
	slices.Sort(out)
	return out
}

// TestShardedHostSweepBothBackends: two shards on two store handles
// sweep a /27 of loopback servers into one named run at the same time:
// every open server is stored once, the JSON lines of both hold each
// once, and the run's tables equal those of the same sweep unsharded.
func TestShardedHostSweepBothBackends(t *testing.T) {
	const prefix = "127.75.0.0/27"
	var open []string
	for i := 3; i < 32; i += 4 {
		open = append(open, fmt.Sprintf("127.75.0.%d", i))
	}
	backends(t, func(t *testing.T, openStore func() *measure.Store) {
		ports := testnet.Pick(t, testnet.Request{TCP: open, Closed: prefix})
		var sinks []*smtpsink.Sink
		for _, ln := range ports.TCP {
			sinks = append(sinks, smtpsink.Serve(t, ln, smtpsink.Options{}))
		}
		block, _ := ParseBlocklist(strings.NewReader("127.75.0.30/32\n"))
		targets := NewTargets([]netip.Prefix{netip.MustParsePrefix(prefix)})
		sweep := func(s *measure.Store, spec RunSpec, shard int) *jsonlRun {
			ctx := context.Background()
			jr := &jsonlRun{}
			var err error
			if spec.Name != "" {
				jr.run, err = JoinRun(ctx, s.DB, spec, &jr.lines)
			} else {
				jr.run, err = CreateRun(ctx, s.DB, spec, &jr.lines)
			}
			if err != nil {
				t.Error(err)
				return jr
			}
			st, err := jr.run.NewShard(ctx, SweepState{Targets: spec.Targets, Seed: spec.Seed, Shard: shard, Shards: spec.Shards,
				Node: fmt.Sprintf("m%d", shard+1)})
			if err != nil {
				t.Error(err)
				return jr
			}
			g := &Grabber{Timeout: 5 * time.Second, Dialer: &Dialer{Blocklist: block}}
			e := &Engine[*HostResult]{SweepOptions: SweepOptions{Seed: st.Seed, Shard: st.Shard, Shards: st.Shards, Workers: 4, Dialer: g.Dialer},
				Module: &HostProbe{Grabber: g, Port: ports.Port}, Run: jr.run}
			if err := e.Sweep(ctx, targets); err != nil {
				t.Error(err)
			}
			if err := jr.run.Finish(); err != nil {
				t.Error(err)
			}
			return jr
		}
		spec := RunSpec{Name: "hosts-2", Kind: "hosts", Input: prefix, Targets: targets.String(), Seed: 5, Shards: 2}
		shards := make([]*jsonlRun, 2)
		stores := []*measure.Store{openStore(), openStore()} // opened in turn: each migrates
		var wg sync.WaitGroup
		for i := range shards {
			wg.Go(func() { shards[i] = sweep(stores[i], spec, i) })
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		whole := sweep(openStore(), RunSpec{Kind: "hosts", Input: prefix, Targets: targets.String(), Seed: 5, Shards: 1}, 0)
		s := openStore()
		id := shards[0].run.ID
		var want []string
		for _, ip := range open {
			want = append(want, "host:"+ip)
		}
		slices.Sort(want)
		if got := storedRows(t, s, id); !slices.Equal(got, want) {
			t.Errorf("sharded run stores %v, want every open server once: %v", got, want)
		}
		if got := lineKeys(t, shards...); !slices.Equal(got, want) {
			t.Errorf("the shards' JSON lines hold %v, want %v", got, want)
		}
		for _, sk := range sinks {
			if sk.Accepts() != 2 {
				t.Errorf("%s grabbed %d times, want once per run", sk.Addr, sk.Accepts())
			}
		}
		a, err := SummarizeHosts(context.Background(), s.DB, id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := SummarizeHosts(context.Background(), s.DB, whole.run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) || a.Probed != 31 || a.Open != int64(len(open)) {
			t.Errorf("sharded tables %+v, unsharded %+v; want equal, 31 tried, %d open", a, b, len(open))
		}
		info, _, err := LookupRun(context.Background(), s.DB, "hosts-2")
		if err != nil || info.Finished.IsZero() || !strings.HasPrefix(info.ShardsLine(), "2 of 2 shards reported: 0/2 on m1 finished, 1/2 on m2 finished") {
			t.Errorf("run %+v (%v): %s", info, err, info.ShardsLine())
		}
	})
}

// TestShardedDomainSweepBothBackends: two shards of a domain list, on
// two store handles at once, take disjoint halves of it (DomainShard),
// store every domain once and each grabbed address once (a server both
// shards grabbed gets one row and one JSON line), and give the tables of
// the same list swept unsharded.
func TestShardedDomainSweepBothBackends(t *testing.T) {
	backends(t, func(t *testing.T, openStore func() *measure.Store) {
		w := newWorld(t)
		sweep := func(s *measure.Store, spec RunSpec, shard int) *jsonlRun {
			ctx := context.Background()
			jr := &jsonlRun{}
			var err error
			if spec.Name != "" {
				jr.run, err = JoinRun(ctx, s.DB, spec, &jr.lines)
			} else {
				jr.run, err = CreateRun(ctx, s.DB, spec, &jr.lines)
			}
			if err == nil {
				_, err = jr.run.NewShard(ctx, SweepState{Targets: spec.Targets, Seed: spec.Seed, Shard: shard, Shards: spec.Shards})
			}
			if err != nil {
				t.Error(err)
				return jr
			}
			o := w.options(jr.run)
			e := &Engine[*DomainResult]{Module: NewDomainProbe(o), Run: jr.run,
				SweepOptions: SweepOptions{Workers: 8, Dialer: o.Grabber.Dialer, Seed: spec.Seed, Shard: shard, Shards: spec.Shards}}
			if err := e.Sweep(ctx, Domains(feed(ctx, w.domains), uint64(len(w.domains)))); err != nil {
				t.Error(err)
			}
			if err := jr.run.Finish(); err != nil {
				t.Error(err)
			}
			return jr
		}
		list := fmt.Sprintf("%d domains", len(w.domains))
		spec := RunSpec{Name: "domains-2", Kind: "domains", Input: "test", Targets: list, Seed: 3, Shards: 2}
		shards := make([]*jsonlRun, 2)
		stores := []*measure.Store{openStore(), openStore()} // opened in turn: each migrates
		var wg sync.WaitGroup
		for i := range shards {
			wg.Go(func() { shards[i] = sweep(stores[i], spec, i) })
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		whole := sweep(openStore(), RunSpec{Kind: "domains", Input: "test", Targets: list, Seed: 3, Shards: 1}, 0)
		s := openStore()
		id := shards[0].run.ID
		var halves [2][]string
		for i, sh := range shards {
			for _, k := range lineKeys(t, sh) {
				if d, ok := strings.CutPrefix(k, "domain:"); ok {
					halves[i] = append(halves[i], d)
					if DomainShard(d, 3, 2) != i {
						t.Errorf("shard %d swept %s, DomainShard's for shard %d", i, d, DomainShard(d, 3, 2))
					}
				}
			}
		}
		if len(halves[0]) == 0 || len(halves[1]) == 0 || len(halves[0])+len(halves[1]) != len(w.domains) {
			t.Errorf("shards swept %d and %d domains, want two parts of %d", len(halves[0]), len(halves[1]), len(w.domains))
		}
		stored := storedRows(t, s, id)
		if got := lineKeys(t, shards...); !slices.Equal(got, stored) {
			t.Errorf("the shards' JSON lines hold %v, the run stores %v: want each stored row once", got, stored)
		}
		if got := storedRows(t, s, whole.run.ID); !slices.Equal(got, stored) {
			t.Errorf("unsharded run stores %v, sharded %v", got, stored)
		}
		a, err := Summarize(context.Background(), s.DB, id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Summarize(context.Background(), s.DB, whole.run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) || a.Domains != int64(len(w.domains)) {
			t.Errorf("sharded tables %+v\nunsharded %+v", a, b)
		}
		sa, err := SummarizeSoftware(context.Background(), s.DB, id, "domains")
		if err != nil {
			t.Fatal(err)
		}
		sb, err := SummarizeSoftware(context.Background(), s.DB, whole.run.ID, "domains")
		if err != nil || !reflect.DeepEqual(sa, sb) || sa.Servers == 0 {
			t.Errorf("Table 5 sharded %+v, unsharded %+v (%v)", sa, sb, err)
		}
	})
}

// TestDomainShard: the split depends on the name (case and trailing dot
// aside) and the seed, and covers every shard.
func TestDomainShard(t *testing.T) {
	if DomainShard("Example.COM.", 9, 4) != DomainShard("example.com", 9, 4) {
		t.Error("a domain's shard depends on its case or trailing dot")
	}
	counts := make([]int, 4)
	moved := 0
	for i := range 1000 {
		d := fmt.Sprintf("d%d.example", i)
		counts[DomainShard(d, 9, 4)]++
		if DomainShard(d, 9, 4) != DomainShard(d, 10, 4) {
			moved++
		}
		if DomainShard(d, 9, 1) != 0 {
			t.Fatal("one shard is not shard 0")
		}
	}
	for i, n := range counts {
		if n < 150 || n > 350 {
			t.Errorf("shard %d of 4 takes %d of 1000 domains", i, n)
		}
	}
	if moved < 500 {
		t.Errorf("another seed moved %d of 1000 domains", moved)
	}
}
