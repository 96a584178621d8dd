package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/scanner"
)

// runRef names a scan run on the command line: its ID, or its name. The
// zero runRef names none (a report then reads the latest run).
type runRef struct {
	id   int64
	name string
}

func (r runRef) String() string {
	if r.name != "" {
		return r.name
	}
	return strconv.FormatInt(r.id, 10)
}

func (r runRef) zero() bool { return r.id == 0 && r.name == "" }

// parseRunRef takes a run ID (a whole number, 0: none) or a run name.
func parseRunRef(s string) (runRef, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return runRef{}, errors.New("want a whole number, at least 0")
		}
		return runRef{id: n}, nil
	}
	if err := scanner.ValidRunName(s); err != nil {
		return runRef{}, fmt.Errorf("want a run ID or name: %w", err)
	}
	return runRef{name: s}, nil
}

// runFlag takes a scan run's ID or name; none given is the latest.
func runFlag(fs *flag.FlagSet, name, usage string) *runRef {
	return checkedVar(fs, name, runRef{}, usage, parseRunRef, runRef.String)
}

// findRun is the run ref names, of kind, or the latest one of kind when
// ref names none; ID 0 in the result means no such run is stored (the
// report then says so). flagName is the flag that named it, for errors.
func findRun(ctx context.Context, store *measure.Store, flagName, kind string, ref runRef) (scanner.RunInfo, error) {
	if ref.zero() {
		run, _, err := scanner.LatestRun(ctx, store.DB, kind)
		return run, err
	}
	run, ok, err := scanner.LookupRun(ctx, store.DB, ref.String())
	if err != nil {
		return run, err
	}
	if !ok {
		return run, fmt.Errorf("--%s %s: no such run in the database", flagName, ref)
	}
	if run.Kind != kind {
		return run, fmt.Errorf("--%s %s is a %s run, not %s", flagName, ref, run.Kind, kind)
	}
	return run, nil
}

// runFlags name the run a scan writes and this machine's part of it:
// shards on several machines write one run in one database (PostgreSQL),
// each its own shard, and any machine continues any shard.
type runFlags struct {
	name   *string
	resume *runRef
	shard  *shard
	seed   *uint64
	node   *string
	jsonl  *string
}

func bindRunFlags(fs *flag.FlagSet) *runFlags {
	return &runFlags{
		name: stringFlag(fs, "run", "", "create or join the run named `NAME`: the shards on other machines give the same name, seed and shard count",
			scanner.ValidRunName),
		resume: runFlag(fs, "resume", "continue run `ID|NAME` where it stopped, with its targets and seed (--shard i/n: that shard, from any machine)"),
		shard:  shardFlag(fs, "this machine's shard `i/n` of the run (0 ≤ i < n)"),
		seed:   fs.Uint64("seed", 0, "the order and the split into shards, the same on every shard (default: the run's, or a random one)"),
		node:   stringFlag(fs, "node", config.Default().Node, "this machine's `NAME` in the run (default: the host name)", config.CheckNode),
		jsonl:  fs.String("jsonl", "", "write every result this process stores as a JSON line to `FILE` (- for standard output)"),
	}
}

// check refuses flags that do not go together, before anything is
// opened; what is what the scan lacks when none of targets, --run and
// --resume says what to scan.
func (f *runFlags) check(targets bool, what string) error {
	switch {
	case !f.resume.zero() && *f.name != "":
		return usagef("--run creates or joins a run, --resume continues one: give one")
	case f.resume.zero() && *f.name == "" && !targets:
		return usagef("%s (or --run NAME to join a run, --resume ID|NAME to continue one)", what)
	}
	return nil
}

// scanRun is the run a scan writes and the shard this process sweeps.
type scanRun struct {
	run   *scanner.Run
	shard scanner.SweepState
	close func() // the JSON lines file
}

// open opens the run the flags name for a scan of kind: a new run, the
// run named --run (created by the first shard to start, joined by the
// others), or the run --resume names. targets is what this command would
// sweep ("" when not given: a joined or resumed run's are taken); input
// describes it. The shard is a new one, unless --resume continues it.
func (f *runFlags) open(ctx context.Context, c *call, store *measure.Store, kind, input, targets string, out io.Writer) (*scanRun, error) {
	resuming := !f.resume.zero()
	if !c.given("seed") {
		*f.seed = rand.Uint64()
	}
	spec := scanner.RunSpec{Name: *f.name, Kind: kind, Input: input, Targets: targets, Seed: *f.seed, Shards: f.shard.n,
		AnySeed: !c.given("seed"), AnyTargets: targets == ""}
	jw, truncate, closeJSON, err := openJSONLines(*f.jsonl, resuming, out)
	if err != nil {
		return nil, err
	}
	var run *scanner.Run
	shard := f.shard.i
	switch {
	case resuming:
		run, shard, err = f.resumeRun(ctx, c, store, spec, jw)
	case *f.name != "":
		run, err = scanner.JoinRun(ctx, store.DB, spec, jw)
	default:
		run, err = scanner.CreateRun(ctx, store.DB, spec, jw)
	}
	if err != nil {
		closeJSON()
		return nil, err
	}
	have := run.Spec()
	st := scanner.SweepState{Targets: have.Targets, Seed: have.Seed, Shard: shard, Shards: max(have.Shards, 1), Node: *f.node}
	if have.Shards == 0 { // a run made before runs held what they sweep
		st.Targets, st.Seed, st.Shards = spec.Targets, spec.Seed, spec.Shards
		if stored := run.Sweeps(); len(stored) > 0 {
			st.Targets, st.Seed, st.Shards = stored[0].Targets, stored[0].Seed, stored[0].Shards
		}
	}
	if resuming {
		st, err = run.StartSweep(ctx, st)
	} else {
		st, err = run.NewShard(ctx, st)
		if errors.Is(err, scanner.ErrShardStarted) {
			err = fmt.Errorf("%w; to continue it: snowrain scan %s --resume %s --shard %d/%d", err, kind, label(run), st.Shard, st.Shards)
		}
	}
	if err == nil {
		err = truncate()
	}
	if err != nil {
		closeJSON()
		return nil, err
	}
	return &scanRun{run: run, shard: st, close: closeJSON}, nil
}

// resumeRun reopens the run --resume names and picks the shard to
// continue: the one --shard names (a new one when another machine swept
// the others), or without --shard, the run's only one.
func (f *runFlags) resumeRun(ctx context.Context, c *call, store *measure.Store, spec scanner.RunSpec, jw io.Writer) (*scanner.Run, int, error) {
	ref := *f.resume
	info, ok, err := scanner.LookupRun(ctx, store.DB, ref.String())
	switch {
	case err != nil:
		return nil, 0, err
	case !ok:
		return nil, 0, fmt.Errorf("--resume %s: no such run", ref)
	case info.Kind != spec.Kind:
		return nil, 0, fmt.Errorf("--resume %s: run %d is a %s scan, not %s", ref, info.ID, info.Kind, spec.Kind)
	}
	shards := info.Shards
	if shards == 0 && len(info.Sweeps) > 0 {
		shards = info.Sweeps[0].Shards
	}
	shard := f.shard.i
	switch {
	case c.given("shard") && shards > 0 && f.shard.n != shards:
		return nil, 0, fmt.Errorf("--resume %s: the run has %d shards, not %d", ref, shards, f.shard.n)
	case c.given("shard"):
	case len(info.Sweeps) > 1:
		return nil, 0, fmt.Errorf("--resume %s: the run holds %d shards; name one with --shard i/%d", ref, len(info.Sweeps), shards)
	case len(info.Sweeps) == 1:
		shard = info.Sweeps[0].Shard
	}
	if shards > 0 {
		spec.Shards = shards
	}
	if info.Shards > 0 {
		if err := info.Check(spec); err != nil {
			return nil, 0, fmt.Errorf("--resume %s: %w", ref, err)
		}
	} else if len(info.Sweeps) > 0 && spec.Targets != "" && spec.Targets != info.Sweeps[0].Targets {
		return nil, 0, fmt.Errorf("--resume %s: the run swept %s, not %s", ref, info.Sweeps[0].Targets, spec.Targets)
	} else if len(info.Sweeps) == 0 && spec.Targets == "" && spec.Kind != "domains" {
		return nil, 0, fmt.Errorf("--resume %s: the run stored no targets; give --targets", ref)
	}
	run, err := scanner.ResumeRun(ctx, store.DB, info.ID, jw)
	return run, shard, err
}

// label names a run for a command line: its name, or its ID.
func label(run *scanner.Run) string {
	if n := run.Spec().Name; n != "" {
		return n
	}
	return strconv.FormatInt(run.ID, 10)
}

// openJSONLines opens where JSON lines go: path ('-': out), appended when
// resuming, so that the file holds the process's part of the run once.
// A new shard's file is emptied by truncate, once its run is open: a
// refused command leaves the file as it was.
func openJSONLines(path string, resuming bool, out io.Writer) (w io.Writer, truncate func() error, closeFile func(), err error) {
	none := func() error { return nil }
	switch path {
	case "":
		return nil, none, func() {}, nil
	case "-":
		return out, none, func() {}, nil
	}
	mode := os.O_WRONLY | os.O_CREATE
	if resuming {
		mode |= os.O_APPEND
	}
	fh, err := os.OpenFile(path, mode, 0o644)
	if err != nil {
		return nil, nil, nil, err
	}
	if !resuming {
		none = func() error { return fh.Truncate(0) }
	}
	return fh, none, func() { fh.Close() }, nil
}
