package report

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/resolver"
	"github.com/snowrain/snowrain/scanner"
)

// spfZone holds SPF policies allowing 1, 16, 17, 256 and 512 IPv4
// addresses, none at all, and one including a name without SPF.
const spfZone = `
one.example.     TXT "v=spf1 ip4:192.0.2.1 -all"
sixteen.example. TXT "v=spf1 ip4:192.0.2.0/28 ~all"
incnone.example. TXT "v=spf1 ip4:192.0.2.0/24 include:nospf.example -all"
nospf.example.   TXT "google-site-verification=x"
wide.example.    TXT "v=spf1 ip4:192.0.2.0/23 ?all"
v6only.example.  TXT "v=spf1 ip6:2001:db8::/32 -all"
seventeen.example. TXT "v=spf1 ip4:192.0.2.0/28 ip4:192.0.2.16 -all"
`

// rows maps a table's first column to its row.
func rows(t Table) map[string][]string {
	out := map[string][]string{}
	for _, r := range t.Rows {
		out[r[0]] = r
	}
	return out
}

func tableByID(tables []Table, id string) Table {
	for _, t := range tables {
		if t.ID == id {
			return t
		}
	}
	return Table{}
}

// TestScanReportSPF walks real SPF trees, stores the domains as a sweep
// does, and checks Table 19 and Figure 4 row by row: an include of a name
// without SPF keeps its domain (a permerror, RFC 7208 section 5.2), and
// exact powers of two fall in their own bucket.
func TestScanReportSPF(t *testing.T) {
	srv := dnstest.Start(t, spfZone)
	res, _ := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: time.Second})
	w := &scanner.SPFWalker{Resolver: res}
	store, err := measure.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	run, _ := scanner.NewRun(context.Background(), store.DB, "domains", "test", nil)
	for _, d := range []string{"one.example", "sixteen.example", "incnone.example", "wide.example", "v6only.example",
		"seventeen.example", "nothing.example"} {
		run.SaveDomain(&scanner.DomainResult{Type: "domain", Domain: d, Status: "no_mx", SPF: w.Walk(context.Background(), d),
			MTASTS: &scanner.MTASTS{Mode: "absent"}})
	}
	run.SaveDomain(&scanner.DomainResult{Type: "domain", Domain: "sts.example", Status: "no_mx",
		MX: []scanner.MX{{Host: "mx.sts.example"}}, MTASTS: &scanner.MTASTS{Mode: "blocked"}, SPF: w.Walk(context.Background(), "sts.example")})
	run.Finish()
	s, err := scanner.Summarize(context.Background(), store.DB, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	tables := (&ScanReport{Run: run.ID, S: s}).Tables()

	t19 := rows(tableByID(tables, "scan_table19"))
	for label, want := range map[string]string{
		"Hard fail (-all)": "4", // one, incnone, v6only, seventeen
		"Soft fail (~all)": "1",
		"Neutral (?all)":   "1",
		"Error: include or redirect of a name without SPF": "1",
	} {
		if r := t19[label]; len(r) < 2 || r[1] != want {
			t.Errorf("table 19 %q: %v, want %s", label, r, want)
		}
	}
	if n := tableByID(tables, "scan_table19").Note; !strings.HasPrefix(n, "6 domains publish SPF; 2 do not.") {
		t.Errorf("table 19 note %q", n) // nothing.example and sts.example publish none
	}

	// Cumulative: no address (v6only), ≤1 (+one), ≤16 (+sixteen), ≤256
	// (+incnone's 256 counted before the include, +seventeen), ≤4096 (+wide).
	f4 := rows(tableByID(tables, "figure4"))
	for label, want := range map[string]string{
		"no IPv4 address":           "1",
		"1 address (/32)":           "2",
		"2 addresses (/31)":         "2",
		"16 addresses (/28)":        "3",
		"256 addresses (/24)":       "5",
		"4096 addresses (/20)":      "6",
		"4294967296 addresses (/0)": "6",
	} {
		if r := f4[label]; len(r) < 2 || r[1] != want {
			t.Errorf("figure 4 %q: %v, want %s", label, r, want)
		}
	}
	ad := rows(tableByID(tables, "scan_adoption"))
	if r := ad["MTA-STS policy host blocklisted (not fetched)"]; len(r) < 2 || r[1] != "1" {
		t.Errorf("adoption: %v", r)
	}
	if r := ad["MTA-STS broken (record or policy)"]; len(r) < 2 || r[1] != "0" {
		t.Errorf("adoption: a blocked policy host counted as broken: %v", r)
	}
}
