package report

import (
	"fmt"
	"html/template"
	"time"

	"github.com/snowrain/snowrain/scanner"
)

// Document is one report in a format-neutral form: its heading, what it
// covers, and its tables and charts. Every report command builds one and
// Write renders it, so each format's layout and escaping exist once.
type Document struct {
	// Title names the report ("snowrain report", "snowrain domain scan, run 3").
	Title string
	// Period is the time the figures cover (a scan run: its start and
	// end; zero Until while it has not finished). Compared, when set, is
	// the period the changes are measured against.
	Period   Period
	Compared *Period
	// Scope says what else the figures rest on: the sweep runs joined.
	Scope string
	Meta  Meta
	// Notices are said first: an empty period and where data is, a
	// missing or unfinished run.
	Notices []string
	Tables  []Table
	// Charts are drawn in the HTML form above the table of the same ID.
	Charts map[string]*Chart
	// JSON is the JSON form; nil: title, meta and tables.
	JSON any
}

// Meta says where, when and by what a report was made.
type Meta struct {
	Host      string
	Version   string
	Generated time.Time
}

// Chart is one SVG figure of the HTML form; NoData is said instead when
// there is nothing to draw.
type Chart struct {
	SVG    template.HTML
	NoData string
}

// charts pairs each SVG with what to say when it is empty.
func charts(svg map[string]template.HTML, noData map[string]string) map[string]*Chart {
	out := map[string]*Chart{}
	for id, s := range svg {
		out[id] = &Chart{SVG: s, NoData: noData[id]}
	}
	return out
}

// Heading is the document on one line: title and period.
func (d *Document) Heading() string {
	if p := d.Period.span(); p != "" {
		return d.Title + ", " + p
	}
	return d.Title
}

// header is the document's lines under its title, label and value.
func (d *Document) header() [][2]string {
	var h [][2]string
	period := d.Period.span()
	if period == "" {
		period = "none"
	}
	if d.Compared != nil {
		period += "; compared with " + d.Compared.span()
	}
	h = append(h, [2]string{"Period", period})
	if d.Scope != "" {
		h = append(h, [2]string{"Based on", d.Scope})
	}
	host := d.Meta.Host
	if host == "" {
		host = "unknown"
	}
	h = append(h, [2]string{"Host", host},
		[2]string{"Generated", d.Meta.Generated.UTC().Format("2006-01-02 15:04:05 UTC") + " by snowrain " + d.Meta.Version})
	return h
}

// span renders a period: whole days as dates, the last day included;
// anything else to the minute. The zone is the one the period is in.
func (p Period) span() string {
	s, u := p.Since, p.Until
	switch {
	case s.IsZero():
		return ""
	case u.IsZero():
		return fmt.Sprintf("from %s %s, not finished", s.Format("2006-01-02 15:04"), s.Format("MST"))
	case midnight(s) && midnight(u):
		last := u.Add(-time.Nanosecond)
		if last.Format("2006-01-02") == s.Format("2006-01-02") {
			return fmt.Sprintf("%s (%s)", s.Format("2006-01-02"), s.Format("MST"))
		}
		return fmt.Sprintf("%s – %s (%s)", s.Format("2006-01-02"), last.Format("2006-01-02"), s.Format("MST"))
	}
	return fmt.Sprintf("%s – %s %s", s.Format("2006-01-02 15:04"), u.Format("2006-01-02 15:04"), u.Format("MST"))
}

func midnight(t time.Time) bool {
	return t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 && t.Nanosecond() == 0
}

// jsonMeta is the "meta" object every JSON form carries.
type jsonMeta struct {
	Title         string     `json:"title"`
	Host          string     `json:"host"`
	Version       string     `json:"version"`
	Generated     time.Time  `json:"generated"`
	Since         *time.Time `json:"since,omitempty"`
	Until         *time.Time `json:"until,omitempty"`
	ComparedSince *time.Time `json:"compared_since,omitempty"`
	ComparedUntil *time.Time `json:"compared_until,omitempty"`
	Scope         string     `json:"scope,omitempty"`
	Notices       []string   `json:"notices,omitempty"`
}

func (d *Document) jsonMeta() jsonMeta {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC()
		return &t
	}
	m := jsonMeta{Title: d.Title, Host: d.Meta.Host, Version: d.Meta.Version, Generated: d.Meta.Generated.UTC(),
		Since: opt(d.Period.Since), Until: opt(d.Period.Until), Scope: d.Scope, Notices: d.Notices}
	if d.Compared != nil {
		m.ComparedSince, m.ComparedUntil = opt(d.Compared.Since), opt(d.Compared.Until)
	}
	return m
}

// Document is the weekly report as every format renders it.
func (r *Report) Document(m Meta) *Document {
	prev := r.Previous
	d := &Document{Title: "snowrain report", Period: r.Period, Compared: &prev, Meta: m,
		Notices: r.notices(), Tables: cite(r.Tables()),
		Charts: charts(r.Charts(), map[string]string{
			"figure3": "No data to draw: no inbound message and no outbound delivery in this period.",
			"table17": "No data to draw: no inbound message in this period.",
		})}
	if n := r.opts.Node; n != "" {
		d.Scope = "the mail node " + n + " recorded, of a fleet's database (the reports receivers sent are the whole fleet's)"
	}
	d.JSON = r.jsonDoc(d)
	return d
}

// empty reports whether the period holds no mail at all.
func (r *Report) empty() bool {
	c := r.Current
	return c.Inbound.Messages == 0 && c.Outbound.Messages == 0 && c.Delivery.Deliveries == 0
}

// notices says so when the period is empty, and names the latest ISO
// week that holds mail.
func (r *Report) notices() []string {
	if !r.empty() {
		return nil
	}
	n := []string{fmt.Sprintf("No mail was recorded in this period, %s: no inbound or outbound message, and no delivery read from the MTA log.",
		r.Period.span())}
	if r.Latest.IsZero() {
		return append(n, "The database holds no mail yet: is snowrain in Postfix's smtpd_milters, and is the MTA log followed (serve --maillog) or imported (snowrain ingest)?")
	}
	loc := r.opts.Loc
	if loc == nil {
		loc = time.UTC
	}
	y, w := r.Latest.In(loc).ISOWeek()
	week := fmt.Sprintf("%d-W%02d", y, w)
	p, err := ParseWeek(week, loc)
	if err != nil {
		return n
	}
	return append(n, fmt.Sprintf("The latest week with mail is %s, %s; its last hour with mail began %s. Its report: snowrain report --week %s",
		week, p.span(), r.Latest.In(loc).Format("2006-01-02 15:04 MST"), week))
}

// Document is a domain scan as every format renders it; run is the
// stored run (ID 0: none).
func (r *ScanReport) Document(m Meta, run scanner.RunInfo) *Document {
	d := runDocument("domain scan", "snowrain scan domains --input FILE (or --from-db)", m, run, r.Tables(), r.S.Domains == 0)
	d.Charts = charts(r.Charts(), map[string]string{"figure4": "No data to draw: no SPF policy with addresses in this run."})
	d.JSON = struct {
		Run      int64                    `json:"run"`
		Tables   []Table                  `json:"tables"`
		Summary  *scanner.Summary         `json:"summary"`
		Software *scanner.SoftwareSummary `json:"software,omitempty"`
		Meta     jsonMeta                 `json:"meta"`
	}{r.Run, d.Tables, r.S, r.Software, d.jsonMeta()}
	return d
}

// Document is a port-25 sweep as every format renders it.
func (r *HostReport) Document(m Meta, run scanner.RunInfo) *Document {
	return runDocument("port-25 sweep", "snowrain scan hosts --targets CIDR", m, run, r.Tables(), r.S.Probed == 0)
}

// Document is a resolver sweep as every format renders it.
func (r *ResolverReport) Document(m Meta, run scanner.RunInfo) *Document {
	return runDocument("resolver sweep", "snowrain scan resolvers --targets CIDR", m, run, r.Tables(), r.S.Resolvers == 0)
}

// runDocument is the document of a scan run of kind: titled by the run,
// covering its start to its end, saying what is wrong with it (how makes
// one), its tables cited and their emptiness explained.
func runDocument(kind, how string, m Meta, run scanner.RunInfo, tables []Table, empty bool) *Document {
	d := &Document{Title: "snowrain " + kind, Period: Period{Since: run.Started, Until: run.Finished}, Meta: m, Tables: cite(tables)}
	if run.ID != 0 {
		d.Title += fmt.Sprintf(", run %d", run.ID)
	}
	if run.Name != "" {
		d.Title += fmt.Sprintf(" (%s)", run.Name)
	}
	if run.Shards > 1 {
		d.Scope = run.ShardsLine()
	}
	d.Notices = runNotices(run, kind, how, empty)
	explainEmpty(d.Tables, run, empty)
	return d
}

// Document is the exposure join as every format renders it: the mail
// of e.Period against the two sweep runs.
func (e *Exposure) Document(m Meta, hosts, resolvers scanner.RunInfo) *Document {
	d := &Document{Title: "snowrain exposure", Period: e.Period, Meta: m, Tables: cite(e.Tables()),
		Scope: fmt.Sprintf("%s (%d stripping hosts) and %s (%d falsified-answer addresses)",
			runName("port-25 sweep", hosts), e.Stripping, runName("resolver sweep", resolvers), e.Falsify)}
	if hosts.ID == 0 {
		d.Notices = append(d.Notices, "No port-25 sweep is stored, so Table 14 is empty: snowrain scan hosts --targets CIDR makes one.")
	}
	if resolvers.ID == 0 {
		d.Notices = append(d.Notices, "No resolver sweep is stored, so Table 15 is empty: snowrain scan resolvers --targets CIDR makes one.")
	}
	var mail int64
	for _, c := range e.Countries {
		mail += c.Messages
	}
	if mail == 0 {
		d.Notices = append(d.Notices, fmt.Sprintf("No inbound mail was recorded in this period, %s.", e.Period.span()))
	}
	for i := range d.Tables {
		t := &d.Tables[i]
		switch {
		case mail == 0:
			t.NoData = "No data: no inbound mail in this period."
		case t.ID == "table14" && hosts.ID == 0:
			t.NoData = "No data: no port-25 sweep is stored."
		case t.ID == "exposed_domains" && hosts.ID == 0 && resolvers.ID == 0:
			t.NoData = "No data: no sweep is stored."
		case t.ID == "table15" && resolvers.ID == 0:
			t.NoData = "No data: no resolver sweep is stored."
		}
	}
	explainEmpty(d.Tables, scanner.RunInfo{ID: -1}, false)
	return d
}

func runName(kind string, run scanner.RunInfo) string {
	if run.ID == 0 {
		return "no " + kind
	}
	if run.Name != "" {
		return fmt.Sprintf("%s run %d (%s)", kind, run.ID, run.Name)
	}
	return fmt.Sprintf("%s run %d", kind, run.ID)
}

// runNotices says what is wrong with a scan run a report reads.
func runNotices(run scanner.RunInfo, kind, how string, empty bool) []string {
	if run.ID == 0 {
		return []string{fmt.Sprintf("No %s is stored in this database: %s makes one.", kind, how)}
	}
	var n []string
	if run.Started.IsZero() {
		n = append(n, fmt.Sprintf("There is no %s run %d in this database.", kind, run.ID))
	} else if run.Finished.IsZero() && run.Shards > 1 {
		n = append(n, fmt.Sprintf("Run %d has not finished (%s): the figures cover what its shards stored; --resume %s --shard i/%d continues shard i on any machine.",
			run.ID, run.ShardsLine(), run.Label(), run.Shards))
	} else if run.Finished.IsZero() {
		n = append(n, fmt.Sprintf("Run %d has not finished (interrupted, or still running): the figures cover what it stored; --resume %s continues it.",
			run.ID, run.Label()))
	}
	if empty && !run.Started.IsZero() {
		n = append(n, fmt.Sprintf("Run %d stored no results.", run.ID))
	}
	return n
}

// noneFound says why a scan table without rows is empty when the run
// holds results: nothing matched.
var noneFound = map[string]string{
	"scan_table4":     "None: no domain with MX records.",
	"scan_table16":    "None: the input list ranks no domain.",
	"table12":         "None: no AS where every SMTP server strips STARTTLS.",
	"table7":          "None: no resolver falsified an answer for a provider.",
	"table14":         "None: no inbound mail came from a STARTTLS-stripping address.",
	"table15":         "None: no inbound mail came from an address a falsified answer points to.",
	"exposed_domains": "None: no peer domain's mail came from those addresses.",
}

// explainEmpty gives the scan tables their no-data notes: every table of
// a run without results (or of no run) says so instead of showing zeros;
// otherwise an empty table says that nothing matched.
func explainEmpty(tables []Table, run scanner.RunInfo, empty bool) {
	for i := range tables {
		t := &tables[i]
		switch {
		case run.ID == 0:
			t.Rows, t.Note, t.NoData = nil, "", "No data: no run is stored."
		case empty:
			t.Rows, t.Note, t.NoData = nil, "", fmt.Sprintf("No data: run %d stored no results.", run.ID)
		case len(t.Rows) == 0 && t.NoData == "":
			t.NoData = noneFound[t.ID]
		}
	}
}
