package main

// Every report subcommand: `report` (the mail of a period), `report scan`,
// `report hosts`, `report resolvers` and `report exposure`. Each builds a
// report.Document and writes it through outputFlags.write.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"mime/quotedprintable"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/geoip"
	"github.com/snowrain/snowrain/internal/atomicfile"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/report"
	"github.com/snowrain/snowrain/scanner"
)

// reportFlags is `snowrain report`: the mail of a period.
func reportFlags(fs *flag.FlagSet) runFunc {
	dbPath := dbFlag(fs)
	period := bindPeriod(fs, "mail")
	out := bindOutput(fs)
	geoipPath := fs.String("geoip", "", "`PATH` of an MMDB country database (GeoLite2-Country, DB-IP) for the country table")
	mailTo := stringFlag(fs, "mail-to", "", "mail the report (text and HTML) to `ADDRESS` through the local MTA", checkAddress)
	sendmail := stringFlag(fs, "sendmail", "/usr/sbin/sendmail -t -i", "`COMMAND` that takes the message of --mail-to on standard input",
		func(s string) error {
			if strings.TrimSpace(s) == "" {
				return errors.New("want a command")
			}
			return nil
		})
	confPath := fs.String("config", config.DefaultPath, "configuration `FILE` whose [providers] names Table 6's providers")
	node := stringFlag(fs, "node", "", "narrow every section to the mail one `NODE` of a fleet recorded (default: every node, summed)",
		func(s string) error {
			if strings.TrimSpace(s) == "" {
				return errors.New("want a node name, as its serve's node = says")
			}
			return nil
		})
	return func(c *call) error {
		if *mailTo != "" && c.given("o") {
			return usagef("--mail-to and -o: give one (the mail carries text and HTML)")
		}
		p, err := period.period(time.Now())
		if err != nil {
			return err
		}
		providers, err := reportProviders(*confPath, c.given("config"))
		if err != nil {
			return err
		}
		build := func(ctx context.Context, store *measure.Store) (*report.Document, string, error) {
			r, err := report.Build(ctx, store, report.Options{Period: p, Loc: period.loc(), GeoIP: *geoipPath, Providers: providers,
				Node: *node})
			if err != nil {
				return nil, "", err
			}
			return r.Document(reportMeta()), "snowrain-report-" + periodName(p), nil
		}
		if *mailTo != "" {
			doc, _, err := buildDocument(*dbPath, build)
			if err != nil {
				return err
			}
			return mailReport(doc, *mailTo, *sendmail)
		}
		return writeReport(c, *dbPath, out, build)
	}
}

// reportProviders reads the configuration's [providers] for Table 6. The
// default file is optional, and a report run by a user who cannot read
// it still comes out (with the built-in names); a --config given is
// required.
func reportProviders(path string, explicit bool) (map[string]string, error) {
	c := config.Default()
	if err := c.Load(path, explicit); err != nil {
		if explicit {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "snowrain: %v; Table 6 uses the built-in provider names\n", err)
	}
	return c.Providers, nil
}

// buildFunc builds a report's document from the database and names the
// file it goes to in a directory.
type buildFunc func(context.Context, *measure.Store) (doc *report.Document, name string, err error)

// buildDocument runs build on the database, opened read-only.
func buildDocument(dbPath string, build buildFunc) (*report.Document, string, error) {
	ctx := context.Background()
	store, err := measure.OpenReadOnly(ctx, dbPath)
	if err != nil {
		return nil, "", err
	}
	defer store.Close()
	return build(ctx, store)
}

// writeReport is every report subcommand once its flags are parsed:
// the document build makes, written as the output flags say.
func writeReport(c *call, dbPath string, out *outputFlags, build buildFunc) error {
	if err := out.check(); err != nil {
		return err
	}
	doc, name, err := buildDocument(dbPath, build)
	if err != nil {
		return err
	}
	return out.write(c, doc, name)
}

// reportScanFlags is `snowrain report scan`: a domain scan run.
func reportScanFlags(fs *flag.FlagSet) runFunc {
	return runReportFlags(fs, "scan", "domains", "domain scan",
		func(ctx context.Context, store *measure.Store, run scanner.RunInfo) (*report.Document, error) {
			s, err := scanner.Summarize(ctx, store.DB, run.ID)
			if err != nil {
				return nil, err
			}
			r := &report.ScanReport{Run: run.ID, S: s}
			if r.Software, err = scanner.SummarizeSoftware(ctx, store.DB, run.ID, "domains"); err != nil {
				return nil, err
			}
			return r.Document(reportMeta(), run), nil
		})
}

// reportHostsFlags is `snowrain report hosts`: a port-25 sweep.
func reportHostsFlags(fs *flag.FlagSet) runFunc {
	domainsRun := runFlag(fs, "domains-run", "join domain scan run `ID|NAME` for Table 11's domain column")
	return runReportFlags(fs, "hosts", "hosts", "port-25 sweep",
		func(ctx context.Context, store *measure.Store, run scanner.RunInfo) (*report.Document, error) {
			s, err := scanner.SummarizeHosts(ctx, store.DB, run.ID)
			if err != nil {
				return nil, err
			}
			hr := &report.HostReport{Run: run.ID, S: s, Domains: -1}
			if hr.Software, err = scanner.SummarizeSoftware(ctx, store.DB, run.ID, "hosts"); err != nil {
				return nil, err
			}
			if !domainsRun.zero() {
				if hr.Domains, hr.Cisco, err = domainsBehind(ctx, store, run.ID, *domainsRun); err != nil {
					return nil, err
				}
			}
			return hr.Document(reportMeta(), run), nil
		})
}

// domainsBehind counts the domains of a domain scan whose MX addresses
// a port-25 sweep found stripping STARTTLS, and those behind Cisco-style
// boxes.
func domainsBehind(ctx context.Context, store *measure.Store, hostsRun int64, domainsRef runRef) (strip, cisco int64, err error) {
	domains, err := findRun(ctx, store, "domains-run", "domains", domainsRef)
	if err != nil {
		return 0, 0, err
	}
	domainsRun := domains.ID
	ips, err := scanner.StrippingIPs(ctx, store.DB, hostsRun)
	if err != nil {
		return 0, 0, err
	}
	ciscoIPs, err := scanner.CiscoIPs(ctx, store.DB, hostsRun)
	if err != nil {
		return 0, 0, err
	}
	if strip, err = scanner.DomainsBehind(ctx, store.DB, domainsRun, ips); err != nil {
		return 0, 0, err
	}
	cisco, err = scanner.DomainsBehind(ctx, store.DB, domainsRun, ciscoIPs)
	return strip, cisco, err
}

// reportResolversFlags is `snowrain report resolvers`: a resolver sweep.
func reportResolversFlags(fs *flag.FlagSet) runFunc {
	return runReportFlags(fs, "resolvers", "resolvers", "resolver sweep",
		func(ctx context.Context, store *measure.Store, run scanner.RunInfo) (*report.Document, error) {
			_, s, err := scanner.FalsifiedIPs(ctx, store.DB, run.ID)
			if err != nil {
				return nil, err
			}
			return (&report.ResolverReport{Run: run.ID, S: s}).Document(reportMeta(), run), nil
		})
}

// runReportFlags are the flags and run of a report on one scan run of
// kind (what names it): --db, --run and the output; doc builds the
// document of the run found (ID 0: none stored), written to a file
// named for the subcommand name and the run.
func runReportFlags(fs *flag.FlagSet, name, kind, what string,
	doc func(context.Context, *measure.Store, scanner.RunInfo) (*report.Document, error)) runFunc {
	dbPath := dbFlag(fs)
	id := runFlag(fs, "run", what+" run `ID|NAME` (default: the latest)")
	out := bindOutput(fs)
	return func(c *call) error {
		return writeReport(c, *dbPath, out, func(ctx context.Context, store *measure.Store) (*report.Document, string, error) {
			run, err := findRun(ctx, store, "run", kind, *id)
			if err != nil {
				return nil, "", err
			}
			d, err := doc(ctx, store, run)
			return d, runFileName(name, run), err
		})
	}
}

// reportExposureFlags is `snowrain report exposure`: the mail of a
// period joined with the two sweeps.
func reportExposureFlags(fs *flag.FlagSet) runFunc {
	dbPath := dbFlag(fs)
	hostsRun := runFlag(fs, "hosts-run", "port-25 sweep run `ID|NAME` (default: the latest)")
	resolversRun := runFlag(fs, "resolvers-run", "resolver sweep run `ID|NAME` (default: the latest)")
	geoipPath := fs.String("geoip", "", "`PATH` of an MMDB country database (GeoLite2-Country, DB-IP)")
	period := bindPeriod(fs, "mail to join")
	out := bindOutput(fs)
	return func(c *call) error {
		p, err := period.period(time.Now())
		if err != nil {
			return err
		}
		return writeReport(c, *dbPath, out, func(ctx context.Context, store *measure.Store) (*report.Document, string, error) {
			hosts, err := findRun(ctx, store, "hosts-run", "hosts", *hostsRun)
			if err != nil {
				return nil, "", err
			}
			resolvers, err := findRun(ctx, store, "resolvers-run", "resolvers", *resolversRun)
			if err != nil {
				return nil, "", err
			}
			stripping, err := scanner.StrippingIPs(ctx, store.DB, hosts.ID)
			if err != nil {
				return nil, "", err
			}
			falsified, _, err := scanner.FalsifiedIPs(ctx, store.DB, resolvers.ID)
			if err != nil {
				return nil, "", err
			}
			geo, err := geoip.Open("", *geoipPath)
			if err != nil {
				return nil, "", fmt.Errorf("--geoip: %w", err)
			}
			defer geo.Close()
			e, err := report.BuildExposure(ctx, store, p, stripping, falsified, geo)
			if err != nil {
				return nil, "", err
			}
			return e.Document(reportMeta(), hosts, resolvers), "snowrain-exposure-" + periodName(p), nil
		})
	}
}

// reportMeta is what every report's heading says about its making.
func reportMeta() report.Meta {
	host, _ := os.Hostname() // "" is shown as unknown
	return report.Meta{Host: host, Version: version, Generated: time.Now()}
}

// periodFlags are --since, --until, --week and --tz.
type periodFlags struct {
	since, until, week *string
	tz                 **time.Location
}

// bindPeriod registers the period flags; what names what the period
// selects.
func bindPeriod(fs *flag.FlagSet, what string) *periodFlags {
	return &periodFlags{
		since: stringFlag(fs, "since", "", "start of the "+what+": `TIME` is an RFC 3339 time, a date YYYY-MM-DD or an age such as 7d or 24h (default: the last full ISO week)", checkWhen),
		until: stringFlag(fs, "until", "", "end of the period (exclusive): `TIME` as for --since (default: now)", checkWhen),
		week:  stringFlag(fs, "week", "", "the ISO `WEEK` YYYY-Www, e.g. 2026-W47, instead of --since and --until", checkWeek),
		tz: checkedVar(fs, "tz", time.Local, "time `ZONE` of dates and weeks, e.g. Europe/Berlin or UTC",
			func(s string) (*time.Location, error) {
				loc, err := time.LoadLocation(s)
				if err != nil || s == "" {
					return nil, errors.New("want a time zone name such as UTC or Europe/Berlin")
				}
				return loc, nil
			}, (*time.Location).String),
	}
}

func (p *periodFlags) loc() *time.Location { return *p.tz }

// period is the period the flags name at now; forms were checked when
// the flags were parsed, so what is left is how they go together.
func (p *periodFlags) period(now time.Time) (report.Period, error) {
	loc := p.loc()
	switch {
	case *p.week != "" && (*p.since != "" || *p.until != ""):
		return report.Period{}, usagef("--week and --since/--until: give a week or a start and end, not both")
	case *p.until != "" && *p.since == "":
		return report.Period{}, usagef("--until %s needs --since: the start of the period", *p.until)
	case *p.week != "":
		pr, err := report.ParseWeek(*p.week, loc)
		if err != nil {
			return pr, usagef("--week %q: %v", *p.week, err)
		}
		return pr, nil
	case *p.since == "":
		return report.LastFullWeek(now, loc), nil
	}
	from, _ := parseWhen(*p.since, now, loc)
	if *p.until == "" {
		if from.After(now) {
			return report.Period{}, usagef("--since %s is in the future: want a start before now", *p.since)
		}
		return report.Period{Since: from, Until: now.Add(time.Second)}, nil
	}
	to, _ := parseWhen(*p.until, now, loc)
	if !to.After(from) {
		return report.Period{}, usagef("--until %s is not after --since %s: want an end later than the start", *p.until, *p.since)
	}
	return report.Period{Since: from, Until: to}, nil
}

// whenForms is what --since and --until take.
const whenForms = "want an RFC 3339 time (2026-11-16T08:00:00Z), a date (2026-11-16) or an age (7d, 24h)"

func checkWhen(s string) error {
	_, err := parseWhen(s, time.Now(), time.UTC)
	return err
}

// checkWeek takes YYYY-Www with a week the year has.
func checkWeek(s string) error {
	y, w, ok := strings.Cut(strings.ToUpper(s), "-W")
	year, err1 := strconv.Atoi(y)
	week, err2 := strconv.Atoi(w)
	if !ok || len(y) != 4 || len(w) != 2 || err1 != nil || err2 != nil {
		return errors.New("want an ISO week YYYY-Www, e.g. 2026-W47")
	}
	// December 28th is always in the year's last week.
	if _, last := time.Date(year, 12, 28, 0, 0, 0, 0, time.UTC).ISOWeek(); week < 1 || week > last {
		return fmt.Errorf("%d has weeks W01 to W%02d", year, last)
	}
	return nil
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
		return time.Time{}, errors.New(whenForms)
	}
	return now.Add(-d), nil
}

// parseAge extends time.ParseDuration with a day unit: "400d". Ages are
// not negative.
func parseAge(s string) (time.Duration, error) {
	bad := errors.New("want an age: days such as 400d, or a duration such as 72h")
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 1e6 {
			return 0, bad
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, bad
	}
	return d, nil
}

// periodName names a period in file names: an ISO week (2026-W47), days
// (2026-11-16 or 2026-11-16_2026-11-22, the last day included), else
// minutes.
func periodName(p report.Period) string {
	s, u := p.Since, p.Until
	midnight := func(t time.Time) bool {
		return t.Equal(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location()))
	}
	switch {
	case midnight(s) && midnight(u) && s.Weekday() == time.Monday && u.Equal(s.AddDate(0, 0, 7)):
		y, w := s.ISOWeek()
		return fmt.Sprintf("%d-W%02d", y, w)
	case midnight(s) && midnight(u) && u.Equal(s.AddDate(0, 0, 1)):
		return s.Format("2006-01-02")
	case midnight(s) && midnight(u):
		return s.Format("2006-01-02") + "_" + u.AddDate(0, 0, -1).Format("2006-01-02")
	}
	return s.Format("20060102T1504") + "_" + u.Format("20060102T1504")
}

// runFileName names a scan report's file by its run.
func runFileName(kind string, run scanner.RunInfo) string {
	if run.ID == 0 {
		return "snowrain-" + kind + "-norun"
	}
	return fmt.Sprintf("snowrain-%s-run%d", kind, run.ID)
}

// outputFlags are --format and -o.
type outputFlags struct{ format, path *string }

func bindOutput(fs *flag.FlagSet) *outputFlags {
	return &outputFlags{
		format: enumFlag(fs, "format", report.FormatText, "output `FORMAT`: text, md, json, csv or html",
			report.FormatText, report.FormatMarkdown, report.FormatJSON, report.FormatCSV, report.FormatHTML),
		path: fs.String("o", "", "write to `PATH`, not standard output: a file (replaced whole), or a directory (PATH/, or one that exists) "+
			"that gets a file named for the report and period; csv: the directory that gets one file per table"),
	}
}

// check is the flags' combination: CSV is one file per table.
func (o *outputFlags) check() error {
	if *o.format == report.FormatCSV && *o.path == "" {
		return usagef("--format csv writes one file per table: give -o DIR/")
	}
	return nil
}

// formatExt is the file name extension of each format.
var formatExt = map[string]string{report.FormatText: ".txt", report.FormatMarkdown: ".md",
	report.FormatJSON: ".json", report.FormatHTML: ".html"}

// write renders doc to standard output or to -o: a file replaced whole,
// or in a directory a file called name plus the format's extension, whose
// path is then printed; CSV into the directory -o names.
func (o *outputFlags) write(c *call, doc *report.Document, name string) error {
	path := *o.path
	if *o.format == report.FormatCSV {
		return report.WriteCSV(path, doc)
	}
	var b bytes.Buffer
	if err := report.Write(&b, *o.format, doc); err != nil {
		return err
	}
	return writeOutput(c, path, b.Bytes(), name+formatExt[*o.format])
}

// writeOutput writes data to standard output (path empty), to the file
// path, replaced whole, or, when path is a directory (PATH/, or one that
// exists), to the file name in it, whose path it then prints: -o of
// every command that writes a document.
func writeOutput(c *call, path string, data []byte, name string) error {
	if path == "" {
		_, err := c.stdout.Write(data)
		return err
	}
	inDir := strings.HasSuffix(path, "/")
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		inDir = true
	}
	if inDir {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("-o: %w", err)
		}
		path = filepath.Join(path, name)
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	if inDir {
		fmt.Fprintln(c.stdout, path)
	}
	return nil
}

// checkAddress refuses what would break the To: header of the report
// mail: control characters.
func checkAddress(s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return errors.New("want a mail address, without control characters")
		}
	}
	return nil
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
