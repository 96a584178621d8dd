package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/snowrain/snowrain/feedback"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/report"
	"github.com/snowrain/snowrain/resolver"
)

const reportsUsage = `usage: snowrain reports send [--dry-run DIR] [--period YYYY-MM-DD] [--kind dmarc,tlsrpt] [--format text|json]
  (with serve's flags: --config, --db, --dns; the [reports] section of the configuration)
Sends yesterday's (UTC) DMARC aggregate reports (RFC 7489) and SMTP TLS reports (RFC 8460).`

// runReports is `snowrain reports send …`.
func runReports(args []string, out io.Writer) error {
	if len(args) < 1 || args[0] != "send" {
		return fmt.Errorf("%s", reportsUsage)
	}
	local := flag.NewFlagSet("reports send", flag.ContinueOnError)
	dryRun := local.String("dry-run", "", "write the documents and messages into this directory; send nothing")
	period := local.String("period", "", "UTC day YYYY-MM-DD (default: yesterday)")
	kinds := local.String("kind", "dmarc,tlsrpt", "report kinds: dmarc, tlsrpt")
	format := local.String("format", "text", "text or json")
	flagArgs, rest, err := splitLocal(local, args[1:])
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%s", reportsUsage)
	}
	cfg, _, err := loadConfig("reports send", flagArgs)
	if err != nil {
		return err
	}
	day := feedback.DayOf(time.Now().AddDate(0, 0, -1))
	if *period != "" {
		if day, err = feedback.ParseDay(*period); err != nil {
			return fmt.Errorf("--period: %w", err)
		}
	}
	var ks []string
	for _, k := range strings.Split(*kinds, ",") {
		switch k = strings.TrimSpace(k); {
		case k == feedback.KindDMARC && (cfg.Reports.DMARC || *dryRun != ""), k == feedback.KindTLSRPT && (cfg.Reports.TLSRPT || *dryRun != ""):
			ks = append(ks, k)
		case k != feedback.KindDMARC && k != feedback.KindTLSRPT:
			return fmt.Errorf("--kind: unknown %q", k)
		}
	}
	rc := cfg.Reports
	if rc.Submitter == "" {
		rc.Submitter = cfg.AuthServID
	}
	if rc.From == "" {
		return fmt.Errorf("reports: set reports.from (the sender of report mail) in %s", "the configuration")
	}
	ctx := context.Background()
	store, err := measure.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	res, err := resolver.New(resolver.Config{Servers: cfg.DNS, Timeout: cfg.DNSTimeout.Duration})
	if err != nil {
		return err
	}
	s := &feedback.Sender{DB: store.DB, DryRun: *dryRun, Config: feedback.Config{
		OrgName: rc.OrgName, Submitter: rc.Submitter, From: rc.From, Contact: rc.Contact,
		ExtraContact: rc.ExtraContact, SendingIP: rc.SendingIP, Exclude: rc.Exclude, Resolver: res,
		Sendmail: strings.Fields(rc.Sendmail), SMTPRelay: rc.SMTPRelay, HTTPTimeout: rc.HTTPTimeout.Duration,
		Log: newLogging(cfg, os.Stderr).Logger}}
	if rc.DKIMKey != "" {
		key, err := feedback.LoadDKIMKey(rc.DKIMKey)
		if err != nil {
			return err
		}
		s.Config.DKIM = &feedback.DKIM{Domain: rc.DKIMDomain, Selector: rc.DKIMSelector, Signer: key}
	}
	ds, err := s.Send(ctx, day, ks...)
	if *format == "json" {
		if werr := report.WriteJSON(out, struct {
			Day        string              `json:"day"`
			Deliveries []feedback.Delivery `json:"deliveries"`
		}{day.Begin.Format("2006-01-02"), ds}); werr != nil {
			return werr
		}
	} else {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "KIND\tDOMAIN\tDESTINATION\tSTATUS\tBYTES\tDETAIL\n")
		for _, d := range ds {
			detail := d.Reason
			if d.File != "" {
				detail = strings.TrimSpace(d.File + " " + detail)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.Kind, termSafe(d.Domain), termSafe(d.Destination), d.Status, d.Bytes, termSafe(detail))
		}
		tw.Flush()
	}
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.Status == feedback.StatusFailed {
			return fmt.Errorf("some reports were not sent (they are tried again on the next run)")
		}
	}
	return nil
}

// runIngestReports is `snowrain ingest-reports PATH…`.
func runIngestReports(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ingest-reports", flag.ContinueOnError)
	dbPath := fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path")
	format := fs.String("format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: snowrain ingest-reports [--db PATH] [--format text|json] MAILDIR|MBOX|FILE.eml|REPORT.{xml,xml.gz,zip,json,json.gz}…")
	}
	ctx := context.Background()
	store, err := measure.Open(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	in := &feedback.Ingester{DB: store.DB}
	res, err := in.Ingest(ctx, fs.Args()...)
	counts := map[string]int{}
	for _, r := range res {
		counts[r.Status]++
	}
	if *format == "json" {
		if werr := report.WriteJSON(out, struct {
			Results []feedback.Ingested `json:"results"`
			Counts  map[string]int      `json:"counts"`
		}{res, counts}); werr != nil {
			return werr
		}
	} else {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "STATUS\tKIND\tREPORTER\tDOMAIN\tREPORT-ID\tSOURCE\tDETAIL\n")
		for _, r := range res {
			detail := r.Class
			if r.Error != "" {
				detail += ": " + r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Status, r.Kind, termSafe(r.Org), termSafe(r.Domain),
				termSafe(r.ReportID), termSafe(r.Source), termSafe(detail))
		}
		tw.Flush()
		fmt.Fprintf(out, "%d stored, %d duplicates, %d refused\n", counts[feedback.IngestStored],
			counts[feedback.IngestDuplicate], counts[feedback.IngestRefused])
	}
	return err
}

// splitLocal takes fs's flags out of args; the rest are serve's flags and
// positional arguments.
func splitLocal(fs *flag.FlagSet, args []string) (rest, pos []string, err error) {
	var mine []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(name, "=")
		switch {
		case !strings.HasPrefix(a, "-"):
			pos = append(pos, a)
		case fs.Lookup(name) != nil:
			mine = append(mine, a)
			if !hasValue && i+1 < len(args) {
				mine = append(mine, args[i+1])
				i++
			}
		default:
			rest = append(rest, a)
			if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && needsValue(a) {
				rest = append(rest, args[i+1])
				i++
			}
		}
	}
	return rest, pos, fs.Parse(mine)
}

// termSafe keeps terminal controls a peer put in a report out of ours.
func termSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
