package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/geoip"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
	"github.com/snowrain/snowrain/scanner"
)

// sweepFlags are shared by `scan hosts` and `scan resolvers`.
type sweepFlags struct {
	fs                        *flag.FlagSet
	targets, db, block, jsonl *string
	asnDB, geoip              *string
	shard                     *shard
	seed                      *uint64
	rate                      *float64
	workers, port             *int
	resume                    *int64
	progress                  *bool
	timeout                   *time.Duration
}

// newSweepFlags registers the flags both sweeps take; defaultPort is the
// kind's port.
func newSweepFlags(fs *flag.FlagSet, defaultPort int) *sweepFlags {
	return &sweepFlags{fs: fs,
		targets:  stringFlag(fs, "targets", "", "addresses to sweep: `CIDRS`, comma separated, or a file of CIDRs, one per line", checkTargets),
		db:       dbFlag(fs),
		block:    inputFlag(fs, "blocklist", "CIDRs never to contact, in `FILE` (default: IANA special-purpose ranges)"),
		jsonl:    fs.String("jsonl", "", "write every result as a JSON line to `FILE` (- for standard output)"),
		shard:    shardFlag(fs, "this machine's shard `i/n` of the permutation"),
		asnDB:    fs.String("asn-db", "", "`PATH` of an MMDB AS database (GeoLite2-ASN)"),
		geoip:    fs.String("geoip", "", "`PATH` of an MMDB country database (GeoLite2-Country, DB-IP)"),
		seed:     fs.Uint64("seed", 0, "permutation seed, the same on every shard (default: a random one)"),
		rate:     rateFlag(fs, "rate", 1000, 0.001, "targets per second"),
		workers:  intFlag(fs, "concurrency", 512, 1, 1<<20, "targets in flight"),
		port:     portFlag(fs, "port", defaultPort, false, "port to probe"),
		resume:   intFlag[int64](fs, "resume", 0, 0, noLimit, "continue run `ID` from its checkpoint, with its targets and seed (--shard i/n: that shard, e.g. another machine's)"),
		progress: fs.Bool("progress", false, "show progress on standard error (default: when it is a terminal)"),
		timeout:  durationFlag(fs, "timeout", 10*time.Second, "per target"),
	}
}

// checkTargets takes a readable file or CIDRs and addresses.
func checkTargets(spec string) error {
	if fi, err := os.Stat(spec); err == nil && !fi.IsDir() {
		return nil
	}
	_, err := parseSpec(spec)
	return err
}

func (f *sweepFlags) parseTargets() (*scanner.Targets, error) {
	spec := *f.targets
	if data, err := os.ReadFile(spec); err == nil {
		spec = string(data)
	}
	t, err := parseSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("--targets: %w", err)
	}
	return t, nil
}

// parseSpec reads CIDRs or addresses separated by commas, spaces or lines.
func parseSpec(spec string) (*scanner.Targets, error) {
	var prefixes []netip.Prefix
	for _, s := range strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		if s, _, _ = strings.Cut(s, "#"); strings.TrimSpace(s) == "" {
			continue
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, err2 := netip.ParseAddr(strings.TrimSpace(s))
			if err2 != nil {
				return nil, fmt.Errorf("%q is neither a CIDR prefix nor an address, nor a file", s)
			}
			p = netip.PrefixFrom(a, 32)
		}
		prefixes = append(prefixes, p)
	}
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("nothing to scan")
	}
	return scanner.NewTargets(prefixes), nil
}

// open sets up the store, run, output and geo databases.
func (f *sweepFlags) open(ctx context.Context, kind string, out io.Writer) (*scanner.Run, *geoip.DB, func(), error) {
	store, err := measure.Open(ctx, *f.db)
	if err != nil {
		return nil, nil, nil, err
	}
	run, closeRun, err := openRun(ctx, store, kind, *f.targets+" shard "+f.shard.String(), *f.resume, *f.jsonl, out)
	if err != nil {
		store.Close()
		return nil, nil, nil, err
	}
	geo, err := geoip.Open(*f.asnDB, *f.geoip)
	if err != nil {
		closeRun()
		store.Close()
		return nil, nil, nil, err
	}
	return run, geo, func() { geo.Close(); closeRun(); store.Close() }, nil
}

// openRun opens the run a sweep writes: a new one of kind over input, or
// run resume, which must be of kind. JSON lines go to path ('-': out),
// appended when resuming, so the file holds the whole run once.
func openRun(ctx context.Context, store *measure.Store, kind, input string, resume int64, path string, out io.Writer) (*scanner.Run, func(), error) {
	var jw io.Writer
	closeJSON := func() {}
	switch path {
	case "":
	case "-":
		jw = out
	default:
		mode := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if resume != 0 {
			mode = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		fh, err := os.OpenFile(path, mode, 0o644)
		if err != nil {
			return nil, nil, err
		}
		jw, closeJSON = fh, func() { fh.Close() }
	}
	run, err := newOrResumedRun(ctx, store, kind, input, resume, jw)
	if err != nil {
		closeJSON()
		return nil, nil, err
	}
	return run, closeJSON, nil
}

func newOrResumedRun(ctx context.Context, store *measure.Store, kind, input string, resume int64, jw io.Writer) (*scanner.Run, error) {
	if resume == 0 {
		return scanner.NewRun(ctx, store.DB, kind, input, jw)
	}
	info, ok, err := scanner.LoadRun(ctx, store.DB, resume)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("--resume %d: no such run", resume)
	case info.Kind != kind:
		return nil, fmt.Errorf("--resume %d: run %d is a %s scan, not %s", resume, resume, info.Kind, kind)
	}
	return scanner.ResumeRun(ctx, store.DB, resume, jw)
}

// sweep is what the address sweeps set up before they start.
type sweep struct {
	targets *scanner.Targets
	opts    scanner.SweepOptions // permutation, rate, dialer
	ctx     context.Context
	run     *scanner.Run // resume point, checkpoints, results
	geo     *geoip.DB
	dialer  *scanner.Dialer // every connection of the sweep
	close   func()
}

// setup opens the run the parsed flags describe; close undoes it. A
// resumed run continues its stored permutation from its checkpoint.
func (f *sweepFlags) setup(c *call, kind string) (*sweep, error) {
	if *f.resume == 0 && *f.targets == "" {
		return nil, usagef("nothing to sweep: give --targets CIDR,… or FILE (or --resume ID)")
	}
	if !c.given("progress") {
		*f.progress = isTerminal(os.Stderr)
	}
	if !c.given("seed") {
		*f.seed = rand.Uint64()
	}
	out := c.stdout
	s := &sweep{}
	block, err := loadBlocklist(*f.block)
	if err != nil {
		return nil, err
	}
	s.dialer = &scanner.Dialer{Blocklist: block}
	if *f.resume == 0 || *f.targets != "" {
		if s.targets, err = f.parseTargets(); err != nil {
			return nil, err
		}
	}
	shard, shards := f.shard.i, f.shard.n
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	run, geo, closeAll, err := f.open(ctx, kind, out)
	if err != nil {
		stop()
		return nil, err
	}
	s.ctx, s.run, s.geo = ctx, run, geo
	s.close = func() { closeAll(); stop() }
	st, err := f.sweepState(run, s.targets, shard, shards)
	if err == nil {
		s.targets, err = parseSpec(st.Targets)
	}
	if err == nil {
		st, err = run.StartSweep(ctx, st)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	s.opts = scanner.SweepOptions{Seed: st.Seed, Shard: st.Shard, Shards: st.Shards, Workers: *f.workers,
		Rate: rate.Limit(*f.rate), Dialer: s.dialer}
	return s, nil
}

// sweepState picks the shard to sweep. A new run takes the flags; a
// resumed one keeps its targets, seed and shard count, and continues the
// shard named by --shard (a new one when another machine swept the
// others) or, without --shard, the one shard it holds.
func (f *sweepFlags) sweepState(run *scanner.Run, targets *scanner.Targets, shard, shards int) (scanner.SweepState, error) {
	stored := run.Sweeps()
	if len(stored) == 0 {
		if *f.resume != 0 && targets == nil {
			return scanner.SweepState{}, fmt.Errorf("--resume %d: the run stored no targets; give --targets", run.ID)
		}
		return scanner.SweepState{Targets: targets.String(), Seed: *f.seed, Shard: shard, Shards: shards}, nil
	}
	base := stored[0]
	if targets != nil && targets.String() != base.Targets {
		return base, fmt.Errorf("--resume %d: the run swept %s, not %s", run.ID, base.Targets, targets)
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case set["shard"] && shards != base.Shards:
		return base, fmt.Errorf("--resume %d: the run has %d shards, not %d", run.ID, base.Shards, shards)
	case set["shard"]:
		base.Shard = shard
	case len(stored) > 1:
		return base, fmt.Errorf("--resume %d: the run holds %d shards; name one with --shard", run.ID, len(stored))
	}
	return base, nil
}

// sweepInto runs e over src into run (the engine skips what the run holds,
// continues its checkpoint and stores what it finds), with the progress
// line on standard error, then says how the run of kind ended.
func sweepInto[R scanner.Result](ctx context.Context, e *scanner.Engine[R], src scanner.Source, run *scanner.Run,
	kind string, progress bool) error {
	noun := "addresses"
	if kind == "domains" {
		noun = "domains"
	}
	e.Run = run
	if progress {
		e.Progress = &scanner.Progress{W: os.Stderr, Noun: noun}
	}
	var n atomic.Int64
	on := e.OnResult
	e.OnResult = func(t scanner.Target, st scanner.Status, r R) {
		if on != nil {
			on(t, st, r)
		}
		n.Add(1)
	}
	if err := e.Sweep(ctx, src); err != nil { // what it found is stored, up to its checkpoint
		fmt.Fprintf(os.Stderr, "scan stopped; resume with: snowrain scan %s --resume %d …\n", kind, run.ID)
		return err
	}
	if err := run.Finish(); err != nil {
		return err
	}
	report := kind
	if kind == "domains" {
		report = "scan"
	}
	fmt.Fprintf(os.Stderr, "%s run %d: %d %s probed; tables: snowrain report %s --run %d\n", kind, run.ID, n.Load(), noun, report, run.ID)
	return nil
}

// scanHostsFlags is `snowrain scan hosts`: STARTTLS stripping on port 25.
func scanHostsFlags(fs *flag.FlagSet) runFunc {
	f := newSweepFlags(fs, 25)
	ehlo := fs.String("ehlo", "", "EHLO `NAME`: a host explaining the scan")
	return func(c *call) error {
		scanner.EnableLegacyCrypto()
		sw, err := f.setup(c, "hosts")
		if err != nil {
			return err
		}
		defer sw.close()
		g := &scanner.Grabber{EHLOName: *ehlo, Timeout: *f.timeout, Dialer: sw.dialer}
		e := &scanner.Engine[*scanner.HostResult]{SweepOptions: sw.opts, Module: &scanner.HostProbe{Grabber: g, Port: *f.port},
			OnResult: func(_ scanner.Target, st scanner.Status, h *scanner.HostResult) {
				if st == scanner.StatusFound { // closed ports: counted by the checkpoint, not stored
					h.ASN, h.Organization, h.Country = sw.geo.Lookup(h.IP)
				}
			}}
		return sweepInto(sw.ctx, e, sw.targets, sw.run, "hosts", *f.progress)
	}
}

// scanResolversFlags is `snowrain scan resolvers`: falsified MX answers.
func scanResolversFlags(fs *flag.FlagSet) runFunc {
	f := newSweepFlags(fs, 53)
	providers := stringFlag(fs, "providers", strings.Join(scanner.DefaultProviders, ","), "provider `DOMAINS` to ask about, comma separated", checkDomains)
	trusted := stringFlag(fs, "dns", "", "trusted recursive resolver `HOST:PORT` for the ground truth (default: /etc/resolv.conf)", config.CheckDNS)
	perTarget := rateFlag(fs, "per-target-rate", 20, 0.001, "queries per second to one resolver")
	return func(c *call) error {
		scanner.EnableLegacyCrypto()
		sw, err := f.setup(c, "resolvers")
		if err != nil {
			return err
		}
		defer sw.close()
		var servers []string
		if *trusted != "" {
			servers = []string{*trusted}
		}
		res, err := resolver.New(resolver.Config{Servers: servers, Timeout: 3 * time.Second})
		if err != nil {
			return err
		}
		truth, err := scanner.GroundTruth(sw.ctx, res, strings.Split(*providers, ","))
		if err != nil {
			return fmt.Errorf("ground truth: %w", err)
		}
		p := &scanner.ResolverProber{Port: *f.port, Timeout: *f.timeout, Dialer: sw.dialer, Truth: truth,
			PerTarget: rate.Limit(*perTarget)}
		e := &scanner.Engine[*scanner.ResolverResult]{SweepOptions: sw.opts, Module: p} // silent addresses: absent, not stored
		return sweepInto(sw.ctx, e, sw.targets, sw.run, "resolvers", *f.progress)
	}
}

// checkDomains takes domain names separated by commas.
func checkDomains(s string) error {
	for _, d := range strings.Split(s, ",") {
		if _, ok := policy.CanonicalDomain(strings.TrimSpace(d)); !ok {
			return fmt.Errorf("%q is not a domain name", d)
		}
	}
	return nil
}
