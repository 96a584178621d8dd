package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"mime/quotedprintable"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/report"
	"github.com/snowrain/snowrain/scanner"
)

func runReport(args []string, out io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "scan":
			return runScanReport(args[1:], out)
		case "hosts", "resolvers":
			return runSweepReport(args[0], args[1:], out)
		case "exposure":
			return runExposureReport(args[1:], out)
		}
	}
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	dbPath := fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path")
	since := fs.String("since", "", "start: RFC 3339 time, YYYY-MM-DD, or an age like 24h or 7d (default: last full ISO week)")
	until := fs.String("until", "", "end (exclusive), same forms; default now when --since is given")
	week := fs.String("week", "", "ISO week, e.g. 2026-W47")
	format := fs.String("format", "text", "text, md, json, csv or html")
	output := fs.String("o", "", "output file (csv: directory); default standard output")
	geoip := fs.String("geoip", "", "MMDB country database (GeoLite2-Country, DB-IP) for the country table")
	mailTo := fs.String("mail-to", "", "send the report (text and HTML) to this address through the local MTA")
	sendmail := fs.String("sendmail", "/usr/sbin/sendmail -t -i", "command that takes a message on standard input")
	tz := fs.String("tz", "Local", "time zone of days and weeks")
	confPath := fs.String("config", config.DefaultPath, "configuration whose [providers] names Table 6's providers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	providers, err := reportProviders(fs, *confPath)
	if err != nil {
		return err
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fmt.Errorf("--tz: %w", err)
	}
	period, err := choosePeriod(*since, *until, *week, time.Now(), loc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	store, err := measure.OpenReadOnly(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	r, err := report.Build(ctx, store, report.Options{Period: period, Loc: loc, GeoIP: *geoip, Providers: providers})
	if err != nil {
		return err
	}
	doc := r.Document(reportMeta())
	if *mailTo != "" {
		return mailReport(doc, *mailTo, *sendmail)
	}
	return writeDocument(out, *format, *output, doc)
}

// reportProviders reads the configuration's [providers] for Table 6. The
// default file is optional, and a report run by a user who cannot read
// it still comes out (with the built-in names); a --config given is
// required.
func reportProviders(fs *flag.FlagSet, path string) (map[string]string, error) {
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	c := config.Default()
	if err := c.Load(path, explicit); err != nil {
		if explicit {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "snowrain: %v; Table 6 uses the built-in provider names\n", err)
	}
	return c.Providers, nil
}

// reportMeta is what every report's heading says about its making.
func reportMeta() report.Meta {
	host, _ := os.Hostname() // "" is shown as unknown
	return report.Meta{Host: host, Version: version, Generated: time.Now()}
}

// writeDocument renders doc in format to -o FILE (csv: -o DIRECTORY) or
// to out: the one writer of every report command.
func writeDocument(out io.Writer, format, output string, doc *report.Document) error {
	switch format {
	case report.FormatText, report.FormatMarkdown, report.FormatJSON, report.FormatCSV, report.FormatHTML:
	default:
		return fmt.Errorf("--format %q: want text, md, json, csv or html", format)
	}
	if format == report.FormatCSV {
		if output == "" {
			return fmt.Errorf("--format csv needs -o DIRECTORY")
		}
		return report.WriteCSV(output, doc)
	}
	var b bytes.Buffer
	if err := report.Write(&b, format, doc); err != nil {
		return err
	}
	if output == "" {
		_, err := out.Write(b.Bytes())
		return err
	}
	return os.WriteFile(output, b.Bytes(), 0o644)
}

func choosePeriod(since, until, week string, now time.Time, loc *time.Location) (report.Period, error) {
	switch {
	case week != "":
		return report.ParseWeek(week, loc)
	case since == "":
		return report.LastFullWeek(now, loc), nil
	}
	from, err := parseWhen(since, now, loc)
	if err != nil {
		return report.Period{}, fmt.Errorf("--since: %w", err)
	}
	to := now.Add(time.Second)
	if until != "" {
		if to, err = parseWhen(until, now, loc); err != nil {
			return report.Period{}, fmt.Errorf("--until: %w", err)
		}
	}
	if !to.After(from) {
		return report.Period{}, fmt.Errorf("--until must be after --since")
	}
	return report.Period{Since: from, Until: to}, nil
}

// parseWhen reads an absolute time or an age before now.
func parseWhen(s string, now time.Time, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, loc); err == nil {
		return t, nil
	}
	d, err := parseAge(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a time nor an age", s)
	}
	return now.Add(-d), nil
}

// parseAge extends time.ParseDuration with a day unit: "400d".
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(days, "%d", &n); err != nil || n < 0 {
			return 0, fmt.Errorf("bad age %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// mailReport sends a multipart/alternative message (text and HTML).
func mailReport(doc *report.Document, to, command string) error {
	var text, html bytes.Buffer
	if err := report.Write(&text, report.FormatText, doc); err != nil {
		return err
	}
	if err := report.Write(&html, report.FormatHTML, doc); err != nil {
		return err
	}
	var b [12]byte
	rand.Read(b[:])
	boundary := "snowrain-" + hex.EncodeToString(b[:])
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "To: %s\r\nSubject: snowrain report %s\r\nDate: %s\r\nMIME-Version: 1.0\r\n",
		to, doc.Period.Since.Format("2006-01-02"), time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&msg, "Auto-Submitted: auto-generated\r\nContent-Type: multipart/alternative; boundary=%q\r\n\r\n", boundary)
	for _, part := range []struct {
		kind string
		body []byte
	}{{"text/plain", text.Bytes()}, {"text/html", html.Bytes()}} {
		fmt.Fprintf(&msg, "--%s\r\nContent-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", boundary, part.kind)
		qp := quotedprintable.NewWriter(&msg)
		qp.Write(part.body)
		qp.Close()
		msg.WriteString("\r\n")
	}
	fmt.Fprintf(&msg, "--%s--\r\n", boundary)
	argv := strings.Fields(command)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = &msg
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", command, err, out)
	}
	return nil
}

// findRun is run id of kind, or the latest one when id is 0; ID 0 in the
// result means no such run is stored (the report then says so).
func findRun(ctx context.Context, store *measure.Store, kind string, id int64) (scanner.RunInfo, error) {
	if id == 0 {
		run, _, err := scanner.LatestRun(ctx, store.DB, kind)
		return run, err
	}
	run, ok, err := scanner.LoadRun(ctx, store.DB, id)
	if err != nil {
		return run, err
	}
	if !ok {
		return run, fmt.Errorf("--run %d: no such run in the database", id)
	}
	if run.Kind != kind {
		return run, fmt.Errorf("--run %d is a %s run, not %s", id, run.Kind, kind)
	}
	return run, nil
}
