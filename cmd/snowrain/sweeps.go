package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/report"
	"github.com/snowrain/snowrain/resolver"
	"github.com/snowrain/snowrain/scanner"
)

// sweepFlags are shared by `scan hosts` and `scan resolvers`.
type sweepFlags struct {
	fs                        *flag.FlagSet
	targets, db, block, jsonl *string
	shard, asnDB, geoip       *string
	seed                      *uint64
	rate                      *float64
	workers, port             *int
	resume                    *int64
	progress                  *bool
	timeout                   *time.Duration
}

func newSweepFlags(name string) *sweepFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &sweepFlags{fs: fs,
		targets:  fs.String("targets", "", "CIDRs (comma separated) or a file of CIDRs, one per line"),
		db:       fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path"),
		block:    fs.String("blocklist", "", "CIDRs never to contact (default: IANA special-purpose ranges)"),
		jsonl:    fs.String("jsonl", "", "JSON lines output file ('-' for standard output)"),
		shard:    fs.String("shard", "0/1", "this machine's shard i/n of the permutation"),
		asnDB:    fs.String("asn-db", "", "MMDB AS database (GeoLite2-ASN)"),
		geoip:    fs.String("geoip", "", "MMDB country database"),
		seed:     fs.Uint64("seed", uint64(time.Now().UnixNano()), "permutation seed (the same on every shard)"),
		rate:     fs.Float64("rate", 1000, "targets per second"),
		workers:  fs.Int("concurrency", 512, "targets in flight"),
		port:     fs.Int("port", 0, "port (default 25 for hosts, 53 for resolvers)"),
		resume:   fs.Int64("resume", 0, "continue run ID from its checkpoint, with its targets and seed (--shard i/n: that shard, e.g. another machine's)"),
		progress: fs.Bool("progress", isTerminal(os.Stderr), "show progress"),
		timeout:  fs.Duration("timeout", 10*time.Second, "per target"),
	}
}

func (f *sweepFlags) parseTargets() (*scanner.Targets, error) {
	spec := *f.targets
	if data, err := os.ReadFile(spec); err == nil {
		spec = string(data)
	}
	return f.parseSpec(spec)
}

// parseSpec reads CIDRs or addresses separated by commas, spaces or lines.
func (f *sweepFlags) parseSpec(spec string) (*scanner.Targets, error) {
	var prefixes []netip.Prefix
	for _, s := range strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		if s, _, _ = strings.Cut(s, "#"); strings.TrimSpace(s) == "" {
			continue
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, err2 := netip.ParseAddr(strings.TrimSpace(s))
			if err2 != nil {
				return nil, fmt.Errorf("--targets: %w", err)
			}
			p = netip.PrefixFrom(a, 32)
		}
		prefixes = append(prefixes, p)
	}
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("--targets: nothing to scan")
	}
	return scanner.NewTargets(prefixes), nil
}

func (f *sweepFlags) shardOf() (int, int, error) {
	var i, n int
	if _, err := fmt.Sscanf(*f.shard, "%d/%d", &i, &n); err != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("--shard %q: want i/n with 0 ≤ i < n", *f.shard)
	}
	return i, n, nil
}

// open sets up the store, run, output and geo databases.
func (f *sweepFlags) open(ctx context.Context, kind string, out io.Writer) (*scanner.Run, *scanner.Geo, func(), error) {
	store, err := measure.Open(ctx, *f.db)
	if err != nil {
		return nil, nil, nil, err
	}
	run, closeRun, err := openRun(ctx, store, kind, *f.targets+" shard "+*f.shard, *f.resume, *f.jsonl, out)
	if err != nil {
		store.Close()
		return nil, nil, nil, err
	}
	geo, err := scanner.OpenGeo(*f.asnDB, *f.geoip)
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
	geo     *scanner.Geo
	dialer  *scanner.Dialer // every connection of the sweep
	close   func()
}

// setup parses the shared flags and opens the run; close undoes it. A
// resumed run continues its stored permutation from its checkpoint.
func (f *sweepFlags) setup(args []string, kind string, out io.Writer) (*sweep, error) {
	if err := f.fs.Parse(args); err != nil {
		return nil, err
	}
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
	shard, shards, err := f.shardOf()
	if err != nil {
		return nil, err
	}
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
		s.targets, err = f.parseSpec(st.Targets)
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

// runScanHosts is `snowrain scan hosts`: STARTTLS stripping on port 25.
func runScanHosts(args []string, out io.Writer) error {
	f := newSweepFlags("scan hosts")
	ehlo := f.fs.String("ehlo", "", "EHLO name: a host explaining the scan")
	sw, err := f.setup(args, "hosts", out)
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

// runScanResolvers is `snowrain scan resolvers`: falsified MX answers.
func runScanResolvers(args []string, out io.Writer) error {
	f := newSweepFlags("scan resolvers")
	providers := f.fs.String("providers", strings.Join(scanner.DefaultProviders, ","), "provider domains to ask about")
	trusted := f.fs.String("dns", "", "trusted recursive resolver for the ground truth (default /etc/resolv.conf)")
	perTarget := f.fs.Float64("per-target-rate", 20, "queries per second to one resolver")
	sw, err := f.setup(args, "resolvers", out)
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

// runExposureReport is `snowrain report exposure`.
func runExposureReport(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("report exposure", flag.ContinueOnError)
	dbPath := fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path")
	hostsRun := fs.Int64("hosts-run", 0, "port-25 sweep run (default: latest)")
	resolversRun := fs.Int64("resolvers-run", 0, "resolver sweep run (default: latest)")
	geoip := fs.String("geoip", "", "MMDB country database")
	week := fs.String("week", "", "ISO week of mail to join (default: last full week)")
	since := fs.String("since", "", "start of mail to join")
	tz := fs.String("tz", "Local", "time zone")
	format := fs.String("format", "text", "text, md, json, csv or html")
	output := fs.String("o", "", "output file (csv: directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return err
	}
	period, err := choosePeriod(*since, "", *week, time.Now(), loc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	store, err := measure.OpenReadOnly(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	hosts, err := findRun(ctx, store, "hosts", *hostsRun)
	if err != nil {
		return err
	}
	resolvers, err := findRun(ctx, store, "resolvers", *resolversRun)
	if err != nil {
		return err
	}
	stripping, err := scanner.StrippingIPs(ctx, store.DB, hosts.ID)
	if err != nil {
		return err
	}
	falsified, _, err := scanner.FalsifiedIPs(ctx, store.DB, resolvers.ID)
	if err != nil {
		return err
	}
	geo, err := scanner.OpenGeo("", *geoip)
	if err != nil {
		return err
	}
	defer geo.Close()
	e, err := report.BuildExposure(ctx, store, period, stripping, falsified, geo)
	if err != nil {
		return err
	}
	return writeDocument(out, *format, *output, e.Document(reportMeta(), hosts, resolvers))
}

// runSweepReport is `snowrain report hosts|resolvers --run ID`.
func runSweepReport(kind string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("report "+kind, flag.ContinueOnError)
	dbPath := fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path")
	id := fs.Int64("run", 0, "run ID (default: latest)")
	format := fs.String("format", "text", "text, md, json, csv or html")
	output := fs.String("o", "", "output file (csv: directory)")
	domainsRun := fs.Int64("domains-run", 0, "hosts: join a domain scan for Table 11's domain column")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	store, err := measure.OpenReadOnly(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	run, err := findRun(ctx, store, kind, *id)
	if err != nil {
		return err
	}
	id = &run.ID
	if kind == "hosts" {
		s, err := scanner.SummarizeHosts(ctx, store.DB, *id)
		if err != nil {
			return err
		}
		hr := &report.HostReport{Run: *id, S: s, Domains: -1}
		if hr.Software, err = scanner.SummarizeSoftware(ctx, store.DB, *id, "hosts"); err != nil {
			return err
		}
		if *domainsRun != 0 {
			strip, _ := scanner.StrippingIPs(ctx, store.DB, *id)
			cisco, _ := scanner.CiscoIPs(ctx, store.DB, *id)
			hr.Domains, _ = scanner.DomainsBehind(ctx, store.DB, *domainsRun, strip)
			hr.Cisco, _ = scanner.DomainsBehind(ctx, store.DB, *domainsRun, cisco)
		}
		return writeDocument(out, *format, *output, hr.Document(reportMeta(), run))
	}
	_, s, err := scanner.FalsifiedIPs(ctx, store.DB, *id)
	if err != nil {
		return err
	}
	return writeDocument(out, *format, *output, (&report.ResolverReport{Run: *id, S: s}).Document(reportMeta(), run))
}
