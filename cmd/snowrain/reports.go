package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/feedback"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/report"
)

// reportsSendFlags is `snowrain reports send`: the configuration's
// [reports] section, and the options below as flags.
func reportsSendFlags(fs *flag.FlagSet) runFunc {
	cf := bindConfig(fs, "db", "dns", "dns-timeout", "authserv-id", "log-level", "log-format", "log-target")
	dryRun := outDirFlag(fs, "dry-run", "write the documents and messages into `DIR`; send nothing")
	period := checkedVar(fs, "period", feedback.Day{}, "UTC `DAY` YYYY-MM-DD (default: yesterday)",
		func(s string) (feedback.Day, error) {
			d, err := feedback.ParseDay(s)
			if err != nil {
				return d, errors.New("want a UTC day YYYY-MM-DD, e.g. 2026-11-16")
			}
			return d, nil
		}, func(d feedback.Day) string {
			if d.Begin.IsZero() {
				return ""
			}
			return d.Begin.Format("2006-01-02")
		})
	kinds := checkedVar(fs, "kind", []string{feedback.KindDMARC, feedback.KindTLSRPT}, "report `KINDS`, comma separated: dmarc, tlsrpt",
		func(s string) ([]string, error) {
			var ks []string
			for _, k := range strings.Split(s, ",") {
				if k = strings.TrimSpace(k); k != feedback.KindDMARC && k != feedback.KindTLSRPT {
					return nil, fmt.Errorf("%q: want dmarc or tlsrpt", k)
				}
				if !slices.Contains(ks, k) {
					ks = append(ks, k)
				}
			}
			return ks, nil
		}, func(ks []string) string { return strings.Join(ks, ",") })
	format := enumFlag(fs, "format", "text", "output `FORMAT`: text or json", "text", "json")
	return func(c *call) error {
		day := *period
		switch now := time.Now(); {
		case !c.given("period"):
			day = feedback.DayOf(now.AddDate(0, 0, -1))
		case *dryRun == "" && now.Before(day.End):
			// Each report is sent once: one of a day not over would
			// stand for the whole day.
			return usagef("--period %s has not ended (UTC): want an earlier day, or --dry-run DIR", day.Begin.Format("2006-01-02"))
		}
		cfg, err := cf.load(c)
		if err != nil {
			return err
		}
		return sendReports(c.stdout, cfg, *dryRun, day, *kinds, *format)
	}
}

// sendReports sends (or with dryRun writes) the reports of day: those of
// kinds the configuration enables (a dry run: every one of kinds).
func sendReports(out io.Writer, cfg config.Config, dryRun string, day feedback.Day, kinds []string, format string) error {
	var ks []string
	for _, k := range kinds {
		if k == feedback.KindDMARC && (cfg.Reports.DMARC || dryRun != "") || k == feedback.KindTLSRPT && (cfg.Reports.TLSRPT || dryRun != "") {
			ks = append(ks, k)
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
	store, res, err := openWithResolver(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer store.Close()
	s := &feedback.Sender{Store: store, DryRun: dryRun, Config: feedback.Config{
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
	if format == "json" {
		if werr := report.WriteJSON(out, struct {
			Day        string              `json:"day"`
			Deliveries []feedback.Delivery `json:"deliveries"`
		}{day.Begin.Format("2006-01-02"), ds}); werr != nil {
			return werr
		}
	} else {
		tw := newTextTable(out, "KIND", "DOMAIN", "DESTINATION", "STATUS", "BYTES", "DETAIL")
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

// ingestReportsFlags is `snowrain ingest-reports PATH…`.
func ingestReportsFlags(fs *flag.FlagSet) runFunc {
	dbPath := dbFlag(fs)
	format := enumFlag(fs, "format", "text", "output `FORMAT`: text or json", "text", "json")
	return func(c *call) error {
		// Every path first: a mistyped one neither creates the database
		// nor stops the ingest half way.
		for _, p := range c.args {
			if _, err := os.Stat(p); err != nil {
				return usagef("%q: %v", p, errors.Unwrap(err))
			}
		}
		return ingestReports(c.stdout, *dbPath, *format, c.args)
	}
}

// ingestReports reads the reports in paths (Maildirs, mboxes, .eml,
// report files) into the database.
func ingestReports(out io.Writer, dbPath, format string, paths []string) error {
	ctx := context.Background()
	store, err := measure.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	in := &feedback.Ingester{Store: store}
	res, err := in.Ingest(ctx, paths...)
	counts := map[string]int{}
	for _, r := range res {
		counts[r.Status]++
	}
	if format == "json" {
		if werr := report.WriteJSON(out, struct {
			Results []feedback.Ingested `json:"results"`
			Counts  map[string]int      `json:"counts"`
		}{res, counts}); werr != nil {
			return werr
		}
	} else {
		tw := newTextTable(out, "STATUS", "KIND", "REPORTER", "DOMAIN", "REPORT-ID", "SOURCE", "DETAIL")
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

// newTextTable starts the text output of a command: aligned columns
// under a header line; write rows to it tab-separated and Flush it.
func newTextTable(out io.Writer, columns ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(columns, "\t"))
	return tw
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
