package report

import (
	"fmt"

	"github.com/snowrain/snowrain/scanner"
)

// softwareTables renders Table 5 for a run: software × STARTTLS offered ×
// TLS version, with the rule that classified the servers, and the rules
// themselves with their sources. id prefixes the table IDs.
func softwareTables(id string, s *scanner.SoftwareSummary) []Table {
	t := Table{ID: id + "_table5", Title: "Table 5: Mail server software",
		Columns: []string{"Software", "Servers of it", "STARTTLS offered", "TLS version", "Servers", "Share", "Rule"}}
	rules := Table{ID: id + "_table5_rules", Title: "Classification rules of Table 5",
		Note:    "Tried in this order; the first that matches names the software. Banner rules first, then the EHLO reply's structure for servers whose banner hides the name.",
		Columns: []string{"Rule", "Software", "Matches", "Source"}}
	for _, r := range scanner.SoftwareRules {
		rules.Rows = append(rules.Rows, []string{r.ID, r.Software, r.Matches, r.Source})
	}
	rules.Rows = append(rules.Rows, []string{scanner.NoRule, scanner.SoftwareUnknown, "no rule matched", ""})
	if s == nil || s.Servers == 0 {
		t.NoData = "No data: no server sent a greeting in this run."
		return []Table{t, rules}
	}
	for _, r := range s.Rows {
		tls, version := "no", r.TLSVersion
		if r.STARTTLS {
			tls = "yes"
		}
		if version == "" {
			version = "none"
		}
		t.Rows = append(t.Rows, []string{r.Software, fmt.Sprint(s.BySoftware[r.Software]), tls, version,
			fmt.Sprint(r.Servers), pctS(r.Servers, s.Servers), r.Rule})
	}
	t.Note = fmt.Sprintf("%d servers sent a greeting; each is classified by its banner and EHLO reply. Share is of those servers.", s.Servers)
	if s.BannerOnly > 0 {
		t.Note += fmt.Sprintf(" %d were stored before the EHLO reply was kept and are classified by their banner alone.", s.BannerOnly)
	}
	return []Table{t, rules}
}
