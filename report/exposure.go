package report

import (
	"context"
	"fmt"
	"sort"

	"github.com/snowrain/snowrain/geoip"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/scanner"
)

// HostReport renders a port-25 sweep (Tables 9–12).
type HostReport struct {
	Run int64
	S   *scanner.HostSummary
	// Domains, when a domain scan is joined, counts its domains whose MX
	// addresses strip (Table 11's domain column); -1 when not joined.
	Domains, Cisco int64
	Software       *scanner.SoftwareSummary // Table 5; nil: not read
}

// Tables returns Tables 9, 10, 11 and 12.
func (r *HostReport) Tables() []Table {
	s := r.S
	t9 := Table{ID: "table9", Title: "Table 9: Port-25 sweep", Columns: []string{"Result", "Hosts", "Share"},
		Rows: [][]string{
			append([]string{"Addresses probed"}, count(s.Probed, s.Probed)...),
			append([]string{"TCP port 25 open"}, count(s.Open, s.Probed)...),
			append([]string{"Responsive SMTP server"}, count(s.Responsive, s.Open)...),
			append([]string{"Successful STARTTLS handshake"}, count(s.Handshake, s.Responsive)...),
		}}
	errs := s.Classes[scanner.StripNoEcho] + s.Classes[scanner.StripEchoIntact] + s.Classes[scanner.StripEchoReplaced] +
		s.Classes[scanner.StripEchoTruncated] + s.Classes[scanner.StripEchoLowercased]
	t10 := Table{ID: "table10", Title: "Table 10: STARTTLS errors and the echoed command", Columns: []string{"Reply", "Hosts", "Share"}}
	for _, c := range []labeled[scanner.StripClass]{{scanner.StripNoEcho, "Command not echoed"}, {scanner.StripEchoIntact, "STARTTLS echoed correctly"},
		{scanner.StripEchoReplaced, "STARTTLS replaced (XXXXXXXX)"}, {scanner.StripEchoTruncated, "Command truncated"},
		{scanner.StripEchoLowercased, "Command lower-cased"}} {
		t10.Rows = append(t10.Rows, append([]string{c.label}, count(s.Classes[c.key], errs)...))
	}
	t11 := Table{ID: "table11", Title: "Table 11: Prevalence of STARTTLS stripping", Columns: []string{"Behaviour", "Hosts", "Share of responsive"},
		Rows: [][]string{
			append([]string{"Cisco-style tampering (XXXX echo or extension)"}, count(s.CiscoTampering, s.Responsive)...),
			append([]string{"Any stripping"}, count(s.Stripping, s.Responsive)...),
			append([]string{"STARTTLS hidden from EHLO, yet accepted"}, count(s.Classes[scanner.StripUnadvertised], s.Responsive)...),
		}}
	if r.Domains >= 0 {
		t11.Columns = append(t11.Columns, "Domains (joined scan)")
		t11.Rows[0] = append(t11.Rows[0], fmt.Sprint(r.Cisco))
		t11.Rows[1] = append(t11.Rows[1], fmt.Sprint(r.Domains))
		t11.Rows[2] = append(t11.Rows[2], "")
	}
	t12 := Table{ID: "table12", Title: "Table 12: ASes where every SMTP server strips STARTTLS", Columns: []string{"AS", "Organisation", "Servers"}}
	for _, a := range s.ASes {
		if a.Strips == a.Servers && a.Servers > 0 {
			t12.Rows = append(t12.Rows, []string{fmt.Sprintf("AS%d", a.ASN), a.Org, fmt.Sprint(a.Servers)})
		}
	}
	return append([]Table{t9, t10, t11, t12}, softwareTables("hosts", r.Software)...)
}

// ResolverReport renders a resolver sweep (Tables 13 and 7).
type ResolverReport struct {
	Run int64
	S   *scanner.ResolverSummary
}

// Tables returns Tables 13 and 7.
func (r *ResolverReport) Tables() []Table {
	s := r.S
	classes := []scanner.DNSClass{scanner.DNSCorrect, scanner.DNSFalseMX, scanner.DNSFalseAddress, scanner.DNSPrivate,
		scanner.DNSOwnAddress, scanner.DNSRefused, scanner.DNSServfail, scanner.DNSNoAnswer}
	t13 := Table{ID: "table13", Title: "Table 13: Open resolvers' answers for the mail providers", Columns: []string{"Answer", "Resolvers", "Share"}}
	for _, c := range classes {
		t13.Rows = append(t13.Rows, append([]string{string(c)}, count(int64(s.Classes[c]), int64(s.Resolvers))...))
	}
	var provs []string
	for p := range s.PerProvider {
		provs = append(provs, p)
	}
	sort.Strings(provs)
	t7 := Table{ID: "table7", Title: "Table 7: Falsified answers per provider", Columns: []string{"Provider", "Falsified MX", "Falsified address", "Private/own address"}}
	for _, p := range provs {
		m := s.PerProvider[p]
		t7.Rows = append(t7.Rows, []string{p, fmt.Sprint(m[scanner.DNSFalseMX]), fmt.Sprint(m[scanner.DNSFalseAddress]),
			fmt.Sprint(m[scanner.DNSPrivate] + m[scanner.DNSOwnAddress])})
	}
	return []Table{t13, t7}
}

// Exposure joins the sweeps with the milter's records: how much inbound
// mail came from stripping hosts or from addresses that falsified answers
// point to (Tables 14 and 15), by country and by peer domain.
type Exposure struct {
	Period             Period
	Countries          []ExposedCountry
	Domains            []ExposedDomain
	Stripping, Falsify int
}

// ExposedCountry is one row of Tables 14/15.
type ExposedCountry struct {
	Code                               string
	Messages, FromStripping, FromFalse int64
}

// ExposedDomain is a peer domain whose mail came from such addresses.
type ExposedDomain struct {
	Domain                             string
	Messages, FromStripping, FromFalse int64
}

// BuildExposure computes the join for period: the milter's inbound mail
// (measure) by client address, against the address sets the sweeps found
// (scanner's StrippingIPs and FalsifiedIPs).
func BuildExposure(ctx context.Context, s *measure.Store, p Period, stripping, falsified map[string]bool, geo *geoip.DB) (*Exposure, error) {
	e := &Exposure{Period: p, Stripping: len(stripping), Falsify: len(falsified)}
	j := exposureJoin{stripping, falsified}
	byCountry := map[string]*ExposedCountry{}
	err := s.EachClient(ctx, p.Since, p.Until, func(ip string, n int64) error {
		cc := geo.Country(ip)
		if cc == "" {
			cc = "??"
		}
		c := entry(byCountry, cc, func() *ExposedCountry { return &ExposedCountry{Code: cc} })
		j.add(&c.Messages, &c.FromStripping, &c.FromFalse, ip, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("report: exposure: %w", err)
	}
	e.Countries = values(byCountry)
	sort.Slice(e.Countries, func(i, j int) bool {
		a, b := e.Countries[i], e.Countries[j]
		if a.FromStripping+a.FromFalse != b.FromStripping+b.FromFalse {
			return a.FromStripping+a.FromFalse > b.FromStripping+b.FromFalse
		}
		return a.Code < b.Code
	})
	byDomain := map[string]*ExposedDomain{}
	err = s.EachClientDomain(ctx, p.Since, p.Until, func(ip, d string, n int64) error {
		if !stripping[ip] && !falsified[ip] {
			return nil
		}
		x := entry(byDomain, d, func() *ExposedDomain { return &ExposedDomain{Domain: d} })
		j.add(&x.Messages, &x.FromStripping, &x.FromFalse, ip, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("report: exposure: %w", err)
	}
	e.Domains = values(byDomain)
	sort.Slice(e.Domains, func(i, j int) bool {
		if e.Domains[i].Messages != e.Domains[j].Messages {
			return e.Domains[i].Messages > e.Domains[j].Messages
		}
		return e.Domains[i].Domain < e.Domains[j].Domain
	})
	return e, nil
}

// exposureJoin holds the address sets the sweeps found.
type exposureJoin struct{ stripping, falsified map[string]bool }

// add counts n messages from ip: all of them, and those from a stripping
// host or from an address a falsified answer pointed to.
func (j exposureJoin) add(messages, fromStripping, fromFalse *int64, ip string, n int64) {
	*messages += n
	if j.stripping[ip] {
		*fromStripping += n
	}
	if j.falsified[ip] {
		*fromFalse += n
	}
}

// entry is m's value for k, made by mk and stored the first time.
func entry[T any](m map[string]*T, k string, mk func() *T) *T {
	v, ok := m[k]
	if !ok {
		v = mk()
		m[k] = v
	}
	return v
}

// values are m's values, in no order (nil for none).
func values[T any](m map[string]*T) []T {
	var out []T
	for _, v := range m {
		out = append(out, *v)
	}
	return out
}

// Tables returns Tables 14, 15 and the affected peer domains.
func (e *Exposure) Tables() []Table {
	t14 := Table{ID: "table14", Title: "Table 14: Inbound mail from STARTTLS-stripping addresses, by country",
		Columns: []string{"Country", "Messages", "From stripping hosts", "Share"}}
	t15 := Table{ID: "table15", Title: "Table 15: Inbound mail from addresses falsified MX answers point to, by country",
		Columns: []string{"Country", "Messages", "From falsified-answer addresses", "Share"}}
	for _, c := range e.Countries {
		if c.FromStripping > 0 {
			t14.Rows = append(t14.Rows, []string{c.Code, fmt.Sprint(c.Messages), fmt.Sprint(c.FromStripping), pctS(c.FromStripping, c.Messages)})
		}
		if c.FromFalse > 0 {
			t15.Rows = append(t15.Rows, []string{c.Code, fmt.Sprint(c.Messages), fmt.Sprint(c.FromFalse), pctS(c.FromFalse, c.Messages)})
		}
	}
	td := Table{ID: "exposed_domains", Title: "Peer domains whose mail came from those addresses",
		Columns: []string{"Domain", "Messages", "From stripping hosts", "From falsified-answer addresses"}}
	for _, d := range e.Domains {
		td.Rows = append(td.Rows, []string{d.Domain, fmt.Sprint(d.Messages), fmt.Sprint(d.FromStripping), fmt.Sprint(d.FromFalse)})
	}
	return []Table{t14, t15, td}
}
