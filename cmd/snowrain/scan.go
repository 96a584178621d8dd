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

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/report"
	"github.com/snowrain/snowrain/resolver"
	"github.com/snowrain/snowrain/scanner"
)

const scanUsage = `usage: snowrain scan domains --input FILE | --from-db [flags]
       snowrain scan hosts --targets CIDR,…|FILE [--shard i/n --seed N] [flags]
       snowrain scan resolvers --targets CIDR,…|FILE [--providers gmail.com,…] [flags]
(each with -h for its flags)`

func runScan(args []string, out io.Writer) error {
	// Only this process measures: the legacy TLS settings are for the
	// scanner's handshakes, never for serve's milter or policy service.
	scanner.EnableLegacyCrypto()
	if len(args) >= 1 && args[0] == "hosts" {
		return runScanHosts(args[1:], out)
	}
	if len(args) >= 1 && args[0] == "resolvers" {
		return runScanResolvers(args[1:], out)
	}
	if len(args) < 1 || args[0] != "domains" {
		return fmt.Errorf("%s", scanUsage)
	}
	fs := flag.NewFlagSet("scan domains", flag.ContinueOnError)
	input := fs.String("input", "", "Tranco CSV (rank,domain) or a list of domains, one per line")
	fromDB := fs.Bool("from-db", false, "scan the peer domains the milter and the MTA log recorded")
	limit := fs.Int("limit", 0, "scan at most N domains")
	dbPath := fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path (results and resume state)")
	dnsServers := fs.String("dns", "", "recursive resolver HOST:PORT (default /etc/resolv.conf)")
	workers := fs.Int("concurrency", 256, "domains in flight")
	grabbers := fs.Int("grabbers", 64, "SMTP conversations in flight")
	connRate := fs.Float64("rate", 100, "new SMTP connections per second (all servers)")
	dnsRate := fs.Float64("dns-rate", 0, "DNS queries per second, all names (0: unlimited)")
	blockFile := fs.String("blocklist", "", "CIDRs never to contact (default: IANA special-purpose ranges)")
	ehlo := fs.String("ehlo", "", "EHLO name: a host whose web page explains the scan and how to opt out")
	roots := fs.String("roots", "", "PEM roots for certificate validation (default: the system pool)")
	timeout := fs.Duration("timeout", 20*time.Second, "whole SMTP conversation")
	port := fs.Int("port", 25, "SMTP port (tests)")
	stsPort := fs.Int("mta-sts-port", 0, "HTTPS port for MTA-STS fetches (tests)")
	dryRun := fs.Bool("dry-run", false, "DNS only: no SMTP connection")
	resume := fs.Int64("resume", 0, "continue run ID where it stopped")
	jsonl := fs.String("jsonl", "", "write every result as a JSON line to FILE ('-' for standard output)")
	progress := fs.Bool("progress", isTerminal(os.Stderr), "show progress on standard error")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *input == "" && !*fromDB {
		return fmt.Errorf("%s", scanUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	store, err := measure.Open(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	var servers []string
	if *dnsServers != "" {
		servers = strings.Split(*dnsServers, ",")
	}
	client, err := resolver.New(resolver.Config{Servers: servers, Timeout: 3 * time.Second, CacheSize: 100000})
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
		g.Roots.AppendCertsFromPEM(pem)
	}
	run, closeRun, err := openRun(ctx, store, "domains", describeInput(*input, *fromDB, *limit), *resume, *jsonl, out)
	if err != nil {
		return err
	}
	defer closeRun()
	inputs, total, err := openInputs(ctx, store, *input, *fromDB, *limit)
	if err != nil {
		return err
	}
	o := scanner.Options{Resolver: res, Grabber: g, Port: *port, Grabbers: *grabbers,
		ConnRate: rate.Limit(*connRate), DryRun: *dryRun,
		STS: &policy.STSFetcher{Resolver: res, Roots: g.Roots, Port: *stsPort, Timeout: 10 * time.Second,
			Dial: dialer.DialContext},
		KnownGrab: run.KnownGrab, OnGrab: func(gr *scanner.Grab) { run.SaveGrab(gr) }}
	e := &scanner.Engine[*scanner.DomainResult]{Module: scanner.NewDomainProbe(o),
		SweepOptions: scanner.SweepOptions{Workers: *workers, Dialer: dialer}}
	return sweepInto(ctx, e, scanner.Domains(inputs, uint64(total)), run, "domains", *progress)
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

// openInputs streams the domains to scan; total is known for files only
// after reading, so it is counted first (cheap next to a scan).
func openInputs(ctx context.Context, store *measure.Store, path string, fromDB bool, limit int) (<-chan scanner.Input, int64, error) {
	ch := make(chan scanner.Input, 1024)
	if fromDB {
		rows, err := store.DB.QueryContext(ctx, `SELECT domain FROM hourly_peers UNION SELECT domain FROM hourly_deliveries`)
		if err != nil {
			return nil, 0, err
		}
		var list []string
		for rows.Next() {
			var d string
			rows.Scan(&d)
			if d != "(none)" {
				list = append(list, d)
			}
		}
		rows.Close()
		go scanner.ReadInput(ctx, strings.NewReader(strings.Join(list, "\n")), limit, ch)
		return ch, int64(len(list)), nil
	}
	total, err := countLines(path, limit)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	go func() {
		defer f.Close()
		scanner.ReadInput(ctx, f, limit, ch)
	}()
	return ch, total, nil
}

// countLines counts the input for the progress ETA: cheap next to a scan.
func countLines(path string, limit int) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			n++
		}
	}
	if limit > 0 && n > int64(limit) {
		n = int64(limit)
	}
	return n, sc.Err()
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// runScanReport is `snowrain report scan --run ID`.
func runScanReport(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("report scan", flag.ContinueOnError)
	dbPath := fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path")
	id := fs.Int64("run", 0, "scan run ID (default: the latest)")
	format := fs.String("format", "text", "text, md, json, csv or html")
	output := fs.String("o", "", "output file (csv: directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	store, err := measure.OpenReadOnly(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	run, err := findRun(ctx, store, "domains", *id)
	if err != nil {
		return err
	}
	s, err := scanner.Summarize(ctx, store.DB, run.ID)
	if err != nil {
		return err
	}
	r := &report.ScanReport{Run: run.ID, S: s}
	if r.Software, err = scanner.SummarizeSoftware(ctx, store.DB, run.ID, "domains"); err != nil {
		return err
	}
	return writeDocument(out, *format, *output, r.Document(reportMeta(), run))
}
