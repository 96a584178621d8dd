package report

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/scanner"
)

// TestEmptyPeriodNamesData reports a week without mail over the generated
// store: it says so, names week 47 as the latest with mail, and every
// table and chart says why it is empty instead of showing zeros.
func TestEmptyPeriodNamesData(t *testing.T) {
	s := generate(t)
	week50, err := ParseWeek("2026-W50", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), s, Options{Period: week50})
	if err != nil {
		t.Fatal(err)
	}
	d := r.Document(testMeta)
	if len(d.Notices) != 2 || !strings.Contains(d.Notices[0], "No mail was recorded in this period, 2026-12-07 – 2026-12-13 (UTC)") ||
		!strings.Contains(d.Notices[1], "The latest week with mail is 2026-W47, 2026-11-16 – 2026-11-22 (UTC)") ||
		!strings.HasSuffix(d.Notices[1], "snowrain report --week 2026-W47") {
		t.Errorf("notices %q", d.Notices)
	}
	for _, tb := range d.Tables {
		if tb.ID == "summary" {
			continue // zeros and dashes, under the notice
		}
		if len(tb.Rows) != 0 || !strings.HasPrefix(tb.NoData, "No data") && !strings.HasPrefix(tb.NoData, "None") {
			t.Errorf("%s: %d rows, no-data note %q", tb.ID, len(tb.Rows), tb.NoData)
		}
	}
	page := string(render(t, FormatHTML, d))
	if strings.Contains(page, "figure3-chart") || strings.Count(page, `<p class="nodata">`) < len(d.Tables)-1 {
		t.Errorf("empty charts or tables without a note:\n%s", page)
	}
	text := string(render(t, FormatText, d))
	if !strings.Contains(text, "No data: no inbound message and no outbound delivery in this period.") {
		t.Errorf("text:\n%s", text)
	}
}

// TestEmptyStore: a store without mail says so and how to get some.
func TestEmptyStore(t *testing.T) {
	s := generate(t)
	if _, err := s.DB.Exec(`DELETE FROM hourly_messages; DELETE FROM hourly_deliveries`); err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), s, Options{Period: week47})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Document(testMeta).Notices; len(n) != 2 || !strings.HasPrefix(n[1], "The database holds no mail yet") {
		t.Errorf("notices %q", n)
	}
}

func TestPeriodSpan(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	day := func(d int, loc *time.Location) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, loc) }
	for _, c := range []struct {
		p    Period
		want string
	}{
		{week47, "2026-11-16 – 2026-11-22 (UTC)"},
		{Period{day(16, berlin), day(23, berlin)}, "2026-11-16 – 2026-11-22 (CET)"},
		{Period{day(16, time.UTC), day(17, time.UTC)}, "2026-11-16 (UTC)"},
		{Period{day(16, time.UTC).Add(90 * time.Minute), day(16, time.UTC).Add(150 * time.Minute)}, "2026-11-16 01:30 – 2026-11-16 02:30 UTC"},
		{Period{Since: day(16, time.UTC).Add(time.Hour)}, "from 2026-11-16 01:00 UTC, not finished"},
		{Period{}, ""},
	} {
		if got := c.p.span(); got != c.want {
			t.Errorf("%v: %q, want %q", c.p, got, c.want)
		}
	}
}

// TestEveryPaperTableCited: each table named after one of the paper's
// carries its citation in every report kind.
func TestEveryPaperTableCited(t *testing.T) {
	tables := buildGenerated(t).Document(testMeta).Tables
	tables = append(tables, (&ScanReport{S: &scanner.Summary{}}).Tables()...)
	tables = append(tables, (&HostReport{S: &scanner.HostSummary{}, Domains: -1}).Tables()...)
	tables = append(tables, (&ResolverReport{S: &scanner.ResolverSummary{}}).Tables()...)
	tables = append(tables, (&Exposure{}).Tables()...)
	for _, tb := range cite(tables) {
		paperTable := strings.HasPrefix(tb.Title, "Table ") || strings.HasPrefix(tb.Title, "Figure ")
		if paperTable && !strings.Contains(tb.Source, " of Durumeric et al., IMC 2015, §") {
			t.Errorf("%s (%s) cites %q", tb.ID, tb.Title, tb.Source)
		}
		if ref := strings.SplitN(tb.Title, ":", 2)[0]; paperTable && !strings.HasPrefix(tb.Source, ref+" of ") {
			t.Errorf("%s is titled %q but cites %q", tb.ID, ref, tb.Source)
		}
	}
}
