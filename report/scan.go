package report

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/scanner"
)

// ScanReport renders a scanner run's summary as the paper's scan tables.
type ScanReport struct {
	Run      int64
	S        *scanner.Summary
	Top      int
	Software *scanner.SoftwareSummary // Table 5; nil: not read
}

// Heading names the run.
func (r *ScanReport) Heading() string { return fmt.Sprintf("snowrain domain scan, run %d", r.Run) }

// Charts are the SVG figures of the HTML form, by table ID.
func (r *ScanReport) Charts() map[string]template.HTML {
	return map[string]template.HTML{"figure4": r.cdf()}
}

// Tables returns Tables 1, 2, 4, 16, 19, 20, Figure 4, 18 and adoption.
func (r *ScanReport) Tables() []Table {
	return append([]Table{r.table1(), r.table2(), r.table4(), r.table16(), r.table19(), r.table20(), r.figure4(), r.table18(), r.adoption()},
		softwareTables("scan", r.Software)...)
}

func count(n, total int64) []string { return []string{fmt.Sprint(n), pctS(n, total)} }

func (r *ScanReport) table1() Table {
	s := r.S
	status := func(k scanner.DomainStatus) int64 { return s.Status[string(k)] }
	smtp := status(scanner.DomainSTARTTLS) + status(scanner.DomainNoSTARTTLS)
	return Table{ID: "scan_table1", Title: "Table 1: Domains scanned", Columns: []string{"Status", "Domains", "Share"},
		Rows: [][]string{
			append([]string{"Domains in the list"}, count(s.Domains, s.Domains)...),
			append([]string{"No MX records (nor A)"}, count(status(scanner.DomainNoMX), s.Domains)...),
			append([]string{"No resolvable MX hostnames"}, count(status(scanner.DomainNoResolvableMX), s.Domains)...),
			append([]string{"No responding SMTP servers"}, count(status(scanner.DomainNoResponse), s.Domains)...),
			append([]string{"SMTP server"}, count(smtp, s.Domains)...),
			append([]string{"SMTP server, no STARTTLS support"}, count(status(scanner.DomainNoSTARTTLS), smtp)...),
			append([]string{"SMTP server, STARTTLS handshake completed"}, count(status(scanner.DomainSTARTTLS), smtp)...),
		}, Note: "The STARTTLS rows are shares of the domains with an SMTP server."}
}

func (r *ScanReport) table16() Table {
	t := Table{ID: "scan_table16", Title: "Table 16: SPF and DMARC policies of the top-ranked domains",
		Columns: []string{"Rank", "Domain", "SPF", "DMARC"}}
	for _, d := range r.S.Top {
		t.Rows = append(t.Rows, []string{fmt.Sprint(d.Rank), d.Domain, d.SPF, d.DMARC})
	}
	return t
}

func (r *ScanReport) table2() Table {
	t := Table{ID: "scan_table2", Title: "Table 2: Certificates (domains with STARTTLS)",
		Columns: []string{"Trust", "Matches domain", "Matches MX", "Matches neither", "Total"}}
	for _, trust := range []scanner.Trust{scanner.TrustTrusted, scanner.TrustSelfSigned, scanner.TrustExpired,
		scanner.TrustUnknownIssuer, scanner.TrustOther} {
		m := r.S.Certs[string(trust)]
		domain, mx, neither := sumOf(m, scanner.CertMatchDomain), sumOf(m, scanner.CertMatchMX), sumOf(m, scanner.CertMatchNeither)
		total := domain + mx + neither
		t.Rows = append(t.Rows, []string{string(trust), fmt.Sprint(domain), fmt.Sprint(mx), fmt.Sprint(neither),
			fmt.Sprintf("%d (%s)", total, pctS(total, r.S.STARTTLS))})
	}
	return t
}

func (r *ScanReport) table4() Table {
	top := r.Top
	if top <= 0 {
		top = 10
	}
	type pv struct {
		name string
		n    int64
	}
	var list []pv
	for k, n := range r.S.Providers {
		list = append(list, pv{k, n})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].name < list[j].name
	})
	t := Table{ID: "scan_table4", Title: "Table 4: Top mail providers", Columns: []string{"Provider (MX domain)", "Domains", "Share", "STARTTLS"}}
	for i, p := range list {
		if i == top {
			break
		}
		tls := "no"
		if r.S.ProviderTLS[p.name] {
			tls = "yes"
		}
		t.Rows = append(t.Rows, []string{p.name, fmt.Sprint(p.n), pctS(p.n, r.S.WithMX), tls})
	}
	return t
}

func (r *ScanReport) table19() Table {
	s := r.S
	t := Table{ID: "scan_table19", Title: "Table 19: SPF policies (the top-level all)",
		Columns: []string{"Policy", "Domains", "Share"}}
	for _, c := range [][2]string{{"-", "Hard fail (-all)"}, {"~", "Soft fail (~all)"}, {"?", "Neutral (?all)"},
		{"+", "Pass (+all)"}, {"redirect", "Redirect"}, {"none", "No all"}} {
		t.Rows = append(t.Rows, append([]string{c[1]}, count(s.SPFAll[c[0]], s.SPFDomains)...))
	}
	// lookup_limit: more than the 10 DNS-querying terms RFC 7208 section
	// 4.6.4 allows one evaluation.
	for _, c := range []labeled[scanner.SPFClass]{{scanner.SPFLoop, "Error: loop"}, {scanner.SPFLookupLimit, "Error: over 10 lookups"},
		{scanner.SPFSyntax, "Error: invalid term"}, {scanner.SPFMultiple, "Error: several records"},
		{scanner.SPFIncludeNone, "Error: include or redirect of a name without SPF"}, {scanner.SPFDNS, "Error: DNS"}} {
		t.Rows = append(t.Rows, append([]string{c.label}, count(sumOf(s.SPFErrors, c.key), s.SPFDomains)...))
	}
	t.Note = fmt.Sprintf("%d domains publish SPF; %d do not.", s.SPFDomains, sumOf(s.SPFErrors, scanner.SPFNone))
	return t
}

func (r *ScanReport) table20() Table {
	s := r.S
	t := Table{ID: "scan_table20", Title: "Table 20: SPF mechanism types",
		Columns: []string{"Mechanism", "Top-level", "Recursive"}}
	for _, k := range []string{"ip4", "ip6", "a", "mx", "include", "redirect", "ptr", "exists", "all"} {
		t.Rows = append(t.Rows, []string{k, fmt.Sprint(s.SPFTop[k]), fmt.Sprint(s.SPFRecursive[k])})
	}
	return t
}

// figure4 is the CDF of the IPv4 space each SPF policy allows, by prefix
// size (log2 of the addresses).
func (r *ScanReport) figure4() Table {
	t := Table{ID: "figure4", Title: "Figure 4: IPv4 addresses allowed by SPF (CDF)",
		Columns: []string{"At most", "Domains", "Cumulative share"}}
	v := r.S.SPFAddresses // sorted log2 values, -1 for none
	for _, bits := range []float64{-1, 0, 1, 4, 8, 12, 16, 20, 24, 32} {
		n := sort.Search(len(v), func(i int) bool { return v[i] > bits })
		label := fmt.Sprintf("%.0f addresses (/%.0f)", math.Pow(2, bits), 32-bits)
		switch bits {
		case -1:
			label = "no IPv4 address"
		case 0:
			label = "1 address (/32)"
		}
		t.Rows = append(t.Rows, []string{label, fmt.Sprint(n), pctS(int64(n), int64(len(v)))})
	}
	return t
}

func (r *ScanReport) table18() Table {
	s := r.S
	t := Table{ID: "scan_table18", Title: "Table 18: DMARC policies (domains)", Columns: []string{"Published policy", "Domains", "Share"}}
	for _, c := range []labeled[auth.DMARCPolicy]{{auth.PolicyQuarantine, "Quarantine"}, {auth.PolicyNone, "Empty (p=none)"},
		{auth.PolicyReject, "Reject"}, {auth.PolicyAbsent, "Not published"}, {auth.PolicyInvalid, "Invalid"}} {
		t.Rows = append(t.Rows, append([]string{c.label}, count(sumOf(s.DMARC, c.key), s.Domains)...))
	}
	return t
}

func (r *ScanReport) adoption() Table {
	s := r.S
	return Table{ID: "scan_adoption", Title: "MTA-STS and DANE adoption", Columns: []string{"", "Domains", "Share"},
		Rows: [][]string{
			append([]string{"MTA-STS enforce"}, count(sumOf(s.MTASTS, policy.STSEnforce), s.WithMX)...),
			append([]string{"MTA-STS testing"}, count(sumOf(s.MTASTS, policy.STSTesting), s.WithMX)...),
			append([]string{"MTA-STS none"}, count(sumOf(s.MTASTS, policy.STSNone), s.WithMX)...),
			append([]string{"MTA-STS broken (record or policy)"}, count(sumOf(s.MTASTS, scanner.STSError), s.WithMX)...),
			append([]string{"MTA-STS policy host blocklisted (not fetched)"}, count(sumOf(s.MTASTS, scanner.STSBlocked), s.WithMX)...),
			append([]string{"DANE (DNSSEC-authenticated TLSA on an MX)"}, count(s.DANE, s.WithMX)...),
		}}
}

// cdf draws Figure 4 as an SVG step line.
func (r *ScanReport) cdf() template.HTML {
	v := r.S.SPFAddresses
	if len(v) == 0 {
		return ""
	}
	const w, h, left, bottom = 640, 240, 40, 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="figure4-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-label="SPF address CDF">`, w, h)
	x := func(bits float64) float64 { return left + bits*float64(w-left-10)/32 }
	y := func(share float64) float64 { return 10 + (1-share)*float64(h-10-bottom) }
	for _, bits := range []float64{0, 8, 16, 24, 32} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle">2^%.0f</text>`, x(bits), h-10, bits)
	}
	var pts []string
	for i, bits := range v {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(math.Max(bits, 0)), y(float64(i+1)/float64(len(v)))))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/></svg>`, strings.Join(pts, " "))
	return template.HTML(b.String())
}
