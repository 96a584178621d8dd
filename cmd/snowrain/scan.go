package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
	"github.com/snowrain/snowrain/scanner"
)

// scanDomainsFlags is `snowrain scan domains`.
func scanDomainsFlags(fs *flag.FlagSet) runFunc {
	input := inputFlag(fs, "input", "Tranco CSV (rank,domain) or a list of domains, one per line, in `FILE` (- for standard input)")
	fromDB := fs.Bool("from-db", false, "scan the peer domains the milter and the MTA log recorded")
	limit := intFlag(fs, "limit", 0, 0, noLimit, "scan at most `N` domains (0: all)")
	dbPath := fs.String("db", config.Default().DB, "database: SQLite file `PATH`, or a postgres:// URL that shards on several machines share")
	dnsServers := dnsListFlag(fs, "dns", "recursive resolvers `HOST:PORT`, comma separated (default: /etc/resolv.conf)")
	workers := intFlag(fs, "concurrency", 256, 1, 1<<20, "domains in flight")
	grabbers := intFlag(fs, "grabbers", 64, 1, 1<<20, "SMTP conversations in flight")
	connRate := rateFlag(fs, "rate", 100, 0.001, "new SMTP connections per second (all servers)")
	dnsRate := rateFlag(fs, "dns-rate", 0, 0, "DNS queries per second, all names (0: unlimited)")
	blockFile := inputFlag(fs, "blocklist", "CIDRs never to contact, in `FILE` (default: IANA special-purpose ranges)")
	ehlo := fs.String("ehlo", "", "EHLO `NAME`: a host whose web page explains the scan and how to opt out")
	roots := inputFlag(fs, "roots", "PEM roots for certificate validation, in `FILE` (default: the system pool)")
	timeout := durationFlag(fs, "timeout", 20*time.Second, "whole SMTP conversation")
	port := portFlag(fs, "port", 25, false, "SMTP port (tests)")
	stsPort := portFlag(fs, "mta-sts-port", 0, true, "HTTPS port for MTA-STS fetches (tests; 0: 443)")
	dryRun := fs.Bool("dry-run", false, "DNS only: no SMTP connection")
	rf := bindRunFlags(fs)
	progress := fs.Bool("progress", false, "show progress on standard error (default: when it is a terminal)")
	return func(c *call) error {
		switch {
		case *input == "" && !*fromDB:
			return usagef("nothing to scan: give --input FILE (- for standard input) or --from-db")
		case *input != "" && *fromDB:
			return usagef("--input and --from-db: give one")
		}
		if err := rf.check(true, ""); err != nil {
			return err
		}
		if !c.given("progress") {
			*progress = isTerminal(os.Stderr)
		}
		// Only this process measures: the legacy TLS settings are for the
		// scanner's handshakes, never for serve's milter or policy service.
		scanner.EnableLegacyCrypto()
		out := c.stdout
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		store, err := measure.Open(ctx, *dbPath)
		if err != nil {
			return err
		}
		defer store.Close()
		store.Node = *rf.node
		client, err := resolver.New(resolver.Config{Servers: *dnsServers, Timeout: 3 * time.Second, CacheSize: 100000})
		if err != nil {
			return err
		}
		res := scanner.RateLimited(client, rate.Limit(*dnsRate))
		block, err := loadBlocklist(*blockFile)
		if err != nil {
			return err
		}
		dialer := &scanner.Dialer{Blocklist: block}
		g := &scanner.Grabber{EHLOName: *ehlo, Timeout: *timeout, Dialer: dialer}
		if *roots != "" {
			pem, err := os.ReadFile(*roots)
			if err != nil {
				return err
			}
			g.Roots = x509.NewCertPool()
			if !g.Roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--roots %s: no PEM certificate in it", *roots)
			}
		}
		list, err := openList(ctx, store, c.stdin, *input, *fromDB, *limit)
		if err != nil {
			return err
		}
		sr, err := rf.open(ctx, c, store, "domains", describeInput(*input, *fromDB, *limit), list.identity, out)
		if err != nil {
			return err
		}
		defer sr.close()
		run, st := sr.run, sr.shard
		o := scanner.Options{Resolver: res, Grabber: g, Port: *port, Grabbers: *grabbers,
			ConnRate: rate.Limit(*connRate), DryRun: *dryRun,
			STS: &policy.STSFetcher{Resolver: res, Roots: g.Roots, Port: *stsPort, Timeout: 10 * time.Second,
				Dial: dialer.DialContext},
			KnownGrab: run.KnownGrab, OnGrab: func(gr *scanner.Grab) { run.SaveGrab(gr) }}
		e := &scanner.Engine[*scanner.DomainResult]{Module: scanner.NewDomainProbe(o),
			SweepOptions: scanner.SweepOptions{Workers: *workers, Dialer: dialer, Seed: st.Seed, Shard: st.Shard, Shards: st.Shards}}
		return sweepInto(ctx, e, scanner.Domains(list.stream(ctx), uint64(list.total)), run, st, "domains", *progress)
	}
}

func loadBlocklist(path string) (*scanner.Blocklist, error) {
	if path == "" {
		return scanner.ParseBlocklist(strings.NewReader(scanner.DefaultBlocklist))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return scanner.ParseBlocklist(f)
}

func describeInput(input string, fromDB bool, limit int) string {
	if fromDB {
		return fmt.Sprintf("from-db limit=%d", limit)
	}
	return fmt.Sprintf("%s limit=%d", input, limit)
}

// domainList is the list a domain scan reads: its identity (a run's
// targets: every shard must read the same list) and its length, known
// before the scan for a file and --from-db.
type domainList struct {
	identity string
	total    int64
	stream   func(context.Context) <-chan scanner.Input
}

// openList reads the list once for its identity and length (cheap next to
// a scan), and streams it again for the scan. A file's identity is its
// domains' count and digest (scanner.ListIdentity); --from-db and standard
// input are named as such: the peer domains may grow between the shards'
// starts, and standard input is read once. Shards still never take the
// same domain: the shard of a domain depends on its name alone.
func openList(ctx context.Context, store *measure.Store, stdin io.Reader, path string, fromDB bool, limit int) (*domainList, error) {
	feed := func(rd io.Reader, done func()) func(context.Context) <-chan scanner.Input {
		return func(ctx context.Context) <-chan scanner.Input {
			ch := make(chan scanner.Input, 1024)
			go func() {
				defer done()
				scanner.ReadInput(ctx, rd, limit, ch)
			}()
			return ch
		}
	}
	switch {
	case fromDB:
		list, err := store.PeerDomains(ctx)
		if err != nil {
			return nil, err
		}
		n := int64(len(list))
		if limit > 0 && n > int64(limit) {
			n = int64(limit)
		}
		return &domainList{"the database's peer domains (--from-db)", n, feed(strings.NewReader(strings.Join(list, "\n")), func() {})}, nil
	case path == "-":
		return &domainList{"standard input", 0, feed(stdin, func() {})}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	id, n, err := scanner.ListIdentity(bufio.NewReader(f), limit)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("--input %s: %w", path, err)
	}
	return &domainList{id, n, feed(f, func() { f.Close() })}, nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
