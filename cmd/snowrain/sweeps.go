package main

import (
	"context"
	"flag"
	"fmt"
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
	*runFlags
	targets, db, block *string
	asnDB, geoip       *string
	rate               *float64
	workers, port      *int
	progress           *bool
	timeout            *time.Duration
}

// newSweepFlags registers the flags both sweeps take; defaultPort is the
// kind's port.
func newSweepFlags(fs *flag.FlagSet, defaultPort int) *sweepFlags {
	return &sweepFlags{runFlags: bindRunFlags(fs),
		targets:  stringFlag(fs, "targets", "", "addresses to sweep: `CIDRS`, comma separated, or a file of CIDRs, one per line", checkTargets),
		db:       fs.String("db", config.Default().DB, "database: SQLite file `PATH`, or a postgres:// URL that shards on several machines share"),
		block:    inputFlag(fs, "blocklist", "CIDRs never to contact, in `FILE` (default: IANA special-purpose ranges; the same file on every shard)"),
		asnDB:    fs.String("asn-db", "", "`PATH` of an MMDB AS database (GeoLite2-ASN)"),
		geoip:    fs.String("geoip", "", "`PATH` of an MMDB country database (GeoLite2-Country, DB-IP)"),
		rate:     rateFlag(fs, "rate", 1000, 0.001, "targets per second (this machine)"),
		workers:  intFlag(fs, "concurrency", 512, 1, 1<<20, "targets in flight"),
		port:     portFlag(fs, "port", defaultPort, false, "port to probe"),
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

// sweep is what the address sweeps set up before they start.
type sweep struct {
	targets *scanner.Targets
	opts    scanner.SweepOptions // permutation, shard, rate, dialer
	ctx     context.Context
	run     *scanner.Run // resume point, checkpoints, results
	shard   scanner.SweepState
	geo     *geoip.DB
	dialer  *scanner.Dialer // every connection of the sweep
	close   func()
}

// setup opens the store and the run the parsed flags describe, and the
// shard this process sweeps; close undoes it. A joined or resumed run
// sweeps its stored targets with its seed, a resumed shard from its
// checkpoint.
func (f *sweepFlags) setup(c *call, kind string) (*sweep, error) {
	if err := f.check(*f.targets != "", "nothing to sweep: give --targets CIDR,… or FILE"); err != nil {
		return nil, err
	}
	if !c.given("progress") {
		*f.progress = isTerminal(os.Stderr)
	}
	block, err := loadBlocklist(*f.block)
	if err != nil {
		return nil, err
	}
	var targets string
	if *f.targets != "" {
		t, err := f.parseTargets()
		if err != nil {
			return nil, err
		}
		targets = t.String()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	s := &sweep{ctx: ctx, dialer: &scanner.Dialer{Blocklist: block}}
	var undo []func()
	s.close = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		stop()
	}
	fail := func(err error) (*sweep, error) { s.close(); return nil, err }
	store, err := measure.Open(ctx, *f.db)
	if err != nil {
		return fail(err)
	}
	store.Node = *f.node
	undo = append(undo, func() { store.Close() })
	sr, err := f.open(ctx, c, store, kind, *f.targets, targets, c.stdout)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, sr.close)
	if s.targets, err = parseSpec(sr.shard.Targets); err != nil {
		return fail(fmt.Errorf("run %d's targets: %w", sr.run.ID, err))
	}
	if s.geo, err = geoip.Open(*f.asnDB, *f.geoip); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { s.geo.Close() })
	s.run, s.shard = sr.run, sr.shard
	st := sr.shard
	s.opts = scanner.SweepOptions{Seed: st.Seed, Shard: st.Shard, Shards: st.Shards, Workers: *f.workers,
		Rate: rate.Limit(*f.rate), Dialer: s.dialer}
	return s, nil
}

// sweepInto runs e over src into run (the engine skips what the run holds,
// continues its checkpoint and stores what it finds), with the progress
// line on standard error, then says how the run of kind ended.
func sweepInto[R scanner.Result](ctx context.Context, e *scanner.Engine[R], src scanner.Source, run *scanner.Run,
	shard scanner.SweepState, kind string, progress bool) error {
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
		fmt.Fprintf(os.Stderr, "scan stopped; resume with: snowrain scan %s --resume %s%s …\n", kind, label(run), shardArg(shard))
		return err
	}
	if err := run.Finish(); err != nil {
		return err
	}
	report := kind
	if kind == "domains" {
		report = "scan"
	}
	part := ""
	if shard.Shards > 1 {
		part = fmt.Sprintf(", shard %d/%d", shard.Shard, shard.Shards)
	}
	fmt.Fprintf(os.Stderr, "%s run %d%s: %d %s probed; tables: snowrain report %s --run %s\n", kind, run.ID, part,
		n.Load(), noun, report, label(run))
	return nil
}

// shardArg is " --shard i/n" for a shard of several, else "".
func shardArg(st scanner.SweepState) string {
	if st.Shards <= 1 {
		return ""
	}
	return fmt.Sprintf(" --shard %d/%d", st.Shard, st.Shards)
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
		return sweepInto(sw.ctx, e, sw.targets, sw.run, sw.shard, "hosts", *f.progress)
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
		return sweepInto(sw.ctx, e, sw.targets, sw.run, sw.shard, "resolvers", *f.progress)
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
