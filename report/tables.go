package report

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/tlsinfo"
)

// Table is one section of the report, format-neutral.
type Table struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Source cites the paper's table this one reproduces (paper.go).
	Source  string     `json:"source,omitempty"`
	Note    string     `json:"note,omitempty"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	// NoData says why a table without rows is empty: nothing recorded,
	// or nothing matched ("None: …"). Encoders show it instead of rows.
	NoData string `json:"no_data,omitempty"`
}

// noDataText is what an empty table says when its builder gave no reason.
const noDataText = "No data."

func (t Table) noData() string {
	if t.NoData != "" {
		return t.NoData
	}
	return noDataText
}

// Tables returns every section in reading order.
func (r *Report) Tables() []Table {
	t := []Table{r.summary(), r.figure3(), r.table3(), r.table17(), r.table8(), r.dkimResults(), r.table18(), r.table21(),
		r.peerDomains(), r.table6(), r.fullTLS(), r.plaintext(), r.downgrades(), r.detected()}
	t = append(t, r.receiverTables()...)
	if r.opts.GeoIP != "" {
		t = append(t, r.countryTable())
	}
	return t
}

func share(n, total int64) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

func pctS(n, total int64) string {
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", share(n, total))
}

func change(n, total, pn, ptotal int64) string {
	if total == 0 || ptotal == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.2f", share(n, total)-share(pn, ptotal))
}

// labeled is one row of a table of classes: the class, and the words
// the report shows for it.
type labeled[K ~string] struct {
	key   K
	label string
}

// sumOf adds the counts of keys in m, a map of counts by class read from
// the store.
func sumOf[K ~string](m map[string]int64, keys ...K) int64 {
	var n int64
	for _, k := range keys {
		n += m[string(k)]
	}
	return n
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func (r *Report) summary() Table {
	c, p := r.Current, r.Prior
	row := func(name string, n, total, pn, ptotal int64, gmail string) []string {
		return []string{name, pctS(n, total), pctS(pn, ptotal), change(n, total, pn, ptotal), gmail}
	}
	count := func(name string, n, pn int64) []string {
		return []string{name, fmt.Sprint(n), fmt.Sprint(pn), fmt.Sprintf("%+d", n-pn), ""}
	}
	authed := func(k measure.Counts) int64 {
		return sumOf(k.Auth, auth.AuthDKIMAndSPF, auth.AuthDKIMOnly, auth.AuthSPFOnly)
	}
	dmarc := func(k measure.Counts) int64 {
		return sumOf(k.DMARCPolicy, auth.PolicyReject, auth.PolicyQuarantine, auth.PolicyNone)
	}
	return Table{ID: "summary", Title: "Summary",
		Note: "The Gmail column quotes Durumeric et al., IMC 2015, at the section given (there, inbound TLS counts connections; here, messages), " +
			"so this server can be placed next to Gmail's in 2015.",
		Columns: []string{"Measure", "This period", "Previous", "Change", gmailColumn},
		Rows: [][]string{
			count("Inbound messages", c.Inbound.Messages, p.Inbound.Messages),
			row("Inbound over TLS", c.Inbound.TLSMessages, c.Inbound.Messages, p.Inbound.TLSMessages, p.Inbound.Messages, gmailInboundTLS),
			row("Inbound TLS with forward secrecy", c.Inbound.ForwardSecret, c.Inbound.TLSMessages, p.Inbound.ForwardSecret, p.Inbound.TLSMessages,
				gmailForwardSecret),
			count("Outbound deliveries", c.Delivery.Deliveries, p.Delivery.Deliveries),
			row("Outbound over TLS", c.Delivery.TLSDeliveries, c.Delivery.Deliveries, p.Delivery.TLSDeliveries, p.Delivery.Deliveries, gmailOutboundTLS),
			count("Outbound delivery attempts", c.Delivery.Attempts, p.Delivery.Attempts),
			count("Outbound attempts deferred", c.Delivery.Deferred, p.Delivery.Deferred),
			count("Outbound recipients bounced", c.Delivery.Bounced, p.Delivery.Bounced),
			row("DKIM-signed messages failing", dkimNotPass(c.Inbound), dkimSigned(c.Inbound),
				dkimNotPass(p.Inbound), dkimSigned(p.Inbound), gmailDKIMFail),
			row("Inbound authenticated (DKIM or SPF)", authed(c.Inbound), c.Inbound.Messages, authed(p.Inbound), p.Inbound.Messages,
				gmailAuthenticated),
			row("Inbound from domains publishing DMARC", dmarc(c.Inbound), c.Inbound.Messages, dmarc(p.Inbound), p.Inbound.Messages,
				gmailDMARCPublished),
			count("Messages rejected by snowrain", c.Inbound.Rejected, p.Inbound.Rejected),
		}}
}

func (r *Report) figure3() Table {
	t := Table{ID: "figure3", Title: "Figure 3: TLS share per day",
		Note:    "Inbound: messages recorded by the milter. Outbound: deliveries read from the MTA log.",
		Columns: []string{"Date", "Day", "Inbound", "Inbound TLS", "Outbound", "Outbound TLS"}}
	var wd, we [2][]float64
	for _, d := range r.Days {
		t.Rows = append(t.Rows, []string{d.Date.Format("2006-01-02"), d.Date.Format("Mon"), fmt.Sprint(d.InMessages),
			pctS(d.InTLS, d.InMessages), fmt.Sprint(d.OutDeliveries), pctS(d.OutTLS, d.OutDeliveries)})
		avg := &wd
		if d.Weekend() {
			avg = &we
		}
		if d.InMessages > 0 {
			avg[0] = append(avg[0], share(d.InTLS, d.InMessages))
		}
		if d.OutDeliveries > 0 {
			avg[1] = append(avg[1], share(d.OutTLS, d.OutDeliveries))
		}
	}
	t.Rows = append(t.Rows, []string{"Weekday average", "", "", mean(wd[0]), "", mean(wd[1])},
		[]string{"Weekend average", "", "", mean(we[0]), "", mean(we[1])})
	if len(wd[0])+len(wd[1])+len(we[0])+len(we[1]) == 0 {
		t.Rows, t.NoData = nil, "No data: no inbound message and no outbound delivery in this period."
	}
	return t
}

func mean(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return fmt.Sprintf("%.2f%%", s/float64(len(v)))
}

// table3 groups inbound TLS messages by version / key exchange / cipher /
// MAC, the paper's columns, from the MTAs' suite names.
func (r *Report) table3() Table {
	type key struct{ v, kx, c, mac string }
	group := func(by map[string]int64) map[key]int64 {
		out := map[key]int64{}
		for k, n := range by {
			v, name, _ := strings.Cut(k, " ")
			s := tlsinfo.Parse(name)
			out[key{v, s.KeyExchange, s.Cipher, s.MAC}] += n
		}
		return out
	}
	cur, prev := group(r.Current.Inbound.ByCipher), group(r.Prior.Inbound.ByCipher)
	total, ptotal := r.Current.Inbound.TLSMessages, r.Prior.Inbound.TLSMessages
	keys := make([]key, 0, len(cur))
	for k := range cur {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if cur[keys[i]] != cur[keys[j]] {
			return cur[keys[i]] > cur[keys[j]]
		}
		return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j])
	})
	t := Table{ID: "table3", Title: "Table 3: TLS cipher suites of inbound mail",
		Note: fmt.Sprintf("%s of TLS messages used forward-secret key exchange.",
			pctS(r.Current.Inbound.ForwardSecret, total)),
		Columns: []string{"TLS version", "Key exchange", "Cipher", "MAC", "Messages", "Share", "Previous", "Change", "Gmail, 30 April 2015"}}
	for _, k := range keys {
		gmail, ok := gmailTable3[[4]string{k.v, k.kx, k.c, k.mac}]
		if !ok {
			gmail = "-"
		}
		t.Rows = append(t.Rows, []string{k.v, k.kx, k.c, k.mac, fmt.Sprint(cur[k]), pctS(cur[k], total),
			pctS(prev[k], ptotal), change(cur[k], total, prev[k], ptotal), gmail})
	}
	switch {
	case r.Current.Inbound.Messages == 0:
		t.Note, t.NoData = "", "No data: no inbound message in this period."
	case total == 0:
		t.Note, t.NoData = "", "None: no inbound message used TLS in this period."
	}
	return t
}

// classTable renders fixed classes of a count map, share of total, with
// the paper's Gmail share of each class beside them. With nothing to
// count in either period it has no rows and says why (empty), unless
// empty is "": then the zero rows are the result.
func classTable[K ~string](id, title, note string, classes []labeled[K], cur, prev map[string]int64, total, ptotal int64,
	gmail map[K]string, empty string) Table {
	t := Table{ID: id, Title: title, Note: note, Columns: []string{"Class", "Count", "Share", "Previous", "Change", gmailColumn}}
	if total == 0 && ptotal == 0 && empty != "" {
		t.Note, t.NoData = "", empty
		return t
	}
	for _, c := range classes {
		k := string(c.key)
		t.Rows = append(t.Rows, []string{c.label, fmt.Sprint(cur[k]), pctS(cur[k], total),
			pctS(prev[k], ptotal), change(cur[k], total, prev[k], ptotal), gmailFigure(gmail, c.key)})
	}
	return t
}

// noInbound is the no-data reason of the tables of inbound messages.
const noInbound = "No data: no inbound message in this period or the previous one."

// messageTable is a class table of inbound messages by one of their
// verdicts (counts picks its map), as shares of all inbound messages.
func messageTable[K ~string](r *Report, id, title, note string, classes []labeled[K], gmail map[K]string,
	counts func(measure.Counts) map[string]int64) Table {
	c, p := r.Current.Inbound, r.Prior.Inbound
	return classTable(id, title, note, classes, counts(c), counts(p), c.Messages, p.Messages, gmail, noInbound)
}

// The rows of Tables 17, 18 and 21, in the paper's order.
var (
	table17Classes = []labeled[auth.AuthMethods]{{auth.AuthDKIMAndSPF, "DKIM & SPF"}, {auth.AuthDKIMOnly, "DKIM only"},
		{auth.AuthSPFOnly, "SPF only"}, {auth.AuthNone, "No authentication"}}
	table18Classes = []labeled[auth.DMARCPolicy]{{auth.PolicyQuarantine, "Quarantine"}, {auth.PolicyNone, "Empty (p=none)"},
		{auth.PolicyReject, "Reject"}, {auth.PolicyAbsent, "Not published"}}
	table21Classes = []labeled[auth.SPFClass]{{auth.SPFClassDNSTimeout, "DNS timeout"}, {auth.SPFClassTempError, "Temporary error"},
		{auth.SPFClassPermError, "Permanent error"}, {auth.SPFClassInvalidRecord, "Invalid record"}}
)

func (r *Report) table17() Table {
	return messageTable(r, "table17", "Table 17: Authentication of inbound mail", "", table17Classes, gmailTable17,
		func(c measure.Counts) map[string]int64 { return c.Auth })
}

func (r *Report) table8() Table {
	c, p := r.Current.Inbound, r.Prior.Inbound
	t := classTable("table8", "Table 8: DKIM failures",
		"Share of failing signatures; the first row is the share of DKIM-signed messages that failed.",
		[]labeled[auth.DKIMClass]{{auth.DKIMWeakKey, "Weak key (< 1024 bits)"}, {auth.DKIMRevoked, "Key revoked"},
			{auth.DKIMUnsupportedAlg, "Algorithm not supported"}, {auth.DKIMExpired, "Signature expired"},
			{auth.DKIMBodyHash, "Body hash mismatch"}, {auth.DKIMVersion, "Protocol version incorrect"},
			{auth.DKIMDuplicateTags, "Duplicated tags"}, {auth.DKIMOther, "Other error"}},
		c.DKIMFailClass, p.DKIMFailClass, sum(c.DKIMFailClass), sum(p.DKIMFailClass), gmailTable8, "")
	signed, psigned := dkimSigned(c), dkimSigned(p)
	if signed == 0 && psigned == 0 {
		t.Note, t.Rows, t.NoData = "", nil, "No data: no DKIM-signed inbound message in this period or the previous one."
		return t
	}
	failing, pfailing := dkimNotPass(c), dkimNotPass(p)
	overall := []string{"Overall failure rate", fmt.Sprint(failing), pctS(failing, signed),
		pctS(pfailing, psigned), change(failing, signed, pfailing, psigned), gmailTable8Overall}
	t.Rows = append([][]string{overall}, t.Rows...)
	return t
}

// dkimSigned counts the messages with at least one DKIM signature: every
// verdict but none.
func dkimSigned(c measure.Counts) int64 {
	return sum(c.DKIM) - c.DKIM[string(auth.DKIMNone)] - c.DKIM[""]
}

// dkimNotPass counts signed messages without a passing signature, whatever
// the RFC 8601 result: fail, permerror, temperror, neutral or policy.
func dkimNotPass(c measure.Counts) int64 { return dkimSigned(c) - c.DKIM[string(auth.DKIMPass)] }

// dkimResults counts signatures and messages by RFC 8601 result, the words
// of the Authentication-Results header: a signature whose key lookup
// failed is temperror here as there, not "fail".
func (r *Report) dkimResults() Table {
	c, p := r.Current.Inbound, r.Prior.Inbound
	t := Table{ID: "dkim_results", Title: "DKIM results (RFC 8601, as in Authentication-Results)",
		Note:    "Signatures by their dkim= result; messages by the best result of their signatures.",
		Columns: []string{"Result", "Signatures", "Share", "Messages", "Share", "Previous (messages)", "Change"}}
	sigs, psigned := sum(c.DKIMResults), dkimSigned(p)
	if sigs == 0 && dkimSigned(c) == 0 && psigned == 0 {
		t.Note, t.NoData = "", "No data: no DKIM-signed inbound message in this period or the previous one."
		return t
	}
	for _, status := range []auth.DKIMStatus{auth.DKIMPass, auth.DKIMFail, auth.DKIMNeutral, auth.DKIMPolicy,
		auth.DKIMPermError, auth.DKIMTempError} {
		res := string(status)
		t.Rows = append(t.Rows, []string{res, fmt.Sprint(c.DKIMResults[res]), pctS(c.DKIMResults[res], sigs),
			fmt.Sprint(c.DKIM[res]), pctS(c.DKIM[res], dkimSigned(c)), pctS(p.DKIM[res], psigned),
			change(c.DKIM[res], dkimSigned(c), p.DKIM[res], psigned)})
	}
	return t
}

func (r *Report) table18() Table {
	return messageTable(r, "table18", "Table 18: DMARC policies of inbound mail", "", table18Classes, gmailTable18,
		func(c measure.Counts) map[string]int64 { return c.DMARCPolicy })
}

func (r *Report) table21() Table {
	return messageTable(r, "table21", "Table 21: SPF errors of inbound mail", "Share of all inbound messages.",
		table21Classes, gmailTable21, func(c measure.Counts) map[string]int64 { return c.SPFErrorClass })
}

func (r *Report) peerDomains() Table {
	t := Table{ID: "domains", Title: "Peer domains: TLS coverage",
		Note:    fmt.Sprintf("The %d busiest domains; change in TLS share against the previous period, in points.", r.opts.Top),
		Columns: []string{"Domain", "Inbound", "Inbound TLS", "Change", "Outbound", "Outbound TLS", "Change"}}
	for i, d := range r.Domains {
		if i == r.opts.Top {
			break
		}
		t.Rows = append(t.Rows, []string{d.Name, fmt.Sprint(d.In), pctS(d.InTLS, d.In), change(d.InTLS, d.In, d.PrevInTLS, d.PrevIn),
			fmt.Sprint(d.Out), pctS(d.OutTLS, d.Out), change(d.OutTLS, d.Out, d.PrevOutTLS, d.PrevOut)})
	}
	if len(t.Rows) == 0 {
		t.NoData = noDomains
	}
	return t
}

// noDomains is the no-data reason of the per-domain tables.
const noDomains = "No data: no peer domain in this period or the previous one."

func (r *Report) fullTLS() Table {
	t := Table{ID: "full_tls", Title: "Domains at 100% TLS", Columns: []string{"Domain", "Inbound", "Outbound"}}
	var judged int64
	for _, d := range r.Domains {
		if d.In+d.Out < r.opts.MinMessages {
			continue
		}
		judged++
		if d.InTLS == d.In && d.OutTLS == d.Out {
			t.Rows = append(t.Rows, []string{d.Name, fmt.Sprint(d.In), fmt.Sprint(d.Out)})
		}
	}
	t.Note = fmt.Sprintf("%d of %d peer domains with at least %d messages (%s) exchanged all of them over TLS.",
		len(t.Rows), judged, r.opts.MinMessages, pctS(int64(len(t.Rows)), judged))
	switch {
	case judged == 0:
		t.Note, t.NoData = "", fmt.Sprintf("No data: no peer domain with at least %d messages in this period.", r.opts.MinMessages)
	case len(t.Rows) == 0:
		t.NoData = fmt.Sprintf("None: each of the %d peer domains with at least %d messages used plaintext at least once.",
			judged, r.opts.MinMessages)
	}
	return t
}

func (r *Report) plaintext() Table {
	list := append([]Domain(nil), r.Domains...)
	plain := func(d Domain) int64 { return d.In - d.InTLS + d.Out - d.OutTLS }
	sort.SliceStable(list, func(i, j int) bool { return plain(list[i]) > plain(list[j]) })
	t := Table{ID: "plaintext", Title: "Top domains still in plaintext",
		Columns: []string{"Domain", "Plaintext inbound", "Plaintext outbound"}}
	for i, d := range list {
		if i == r.opts.Top || plain(d) == 0 {
			break
		}
		t.Rows = append(t.Rows, []string{d.Name, fmt.Sprint(d.In - d.InTLS), fmt.Sprint(d.Out - d.OutTLS)})
	}
	if len(t.Rows) == 0 {
		t.NoData = "None: every message and delivery of this period used TLS."
		if len(r.Domains) == 0 {
			t.NoData = noDomains
		}
	}
	return t
}

// downgrades lists domains whose TLS share fell by DowngradeDrop points
// or more: possible STARTTLS stripping, or a peer that lost its TLS.
func (r *Report) downgrades() Table {
	t := Table{ID: "downgrades", Title: "Downgrade candidates",
		Note:    fmt.Sprintf("TLS share dropped by %.0f points or more against the previous period.", r.opts.DowngradeDrop),
		Columns: []string{"Domain", "Direction", "Previous TLS", "TLS", "Drop"}}
	for _, d := range r.Domains {
		for _, dir := range []struct {
			name             string
			n, tls, pn, ptls int64
		}{{string(measure.Inbound), d.In, d.InTLS, d.PrevIn, d.PrevInTLS},
			{string(measure.Outbound), d.Out, d.OutTLS, d.PrevOut, d.PrevOutTLS}} {
			if dir.n < r.opts.MinMessages || dir.pn < r.opts.MinMessages {
				continue
			}
			drop := share(dir.ptls, dir.pn) - share(dir.tls, dir.n)
			if drop >= r.opts.DowngradeDrop {
				t.Rows = append(t.Rows, []string{d.Name, dir.name, pctS(dir.ptls, dir.pn), pctS(dir.tls, dir.n), fmt.Sprintf("%.2f", drop)})
			}
		}
	}
	if len(t.Rows) == 0 {
		t.NoData = fmt.Sprintf("None: no peer domain with at least %d messages in both periods lost %.0f points of TLS share.",
			r.opts.MinMessages, r.opts.DowngradeDrop)
	}
	return t
}

func (r *Report) countryTable() Table {
	t := Table{ID: "countries", Title: "Inbound mail by country of the sending address",
		Columns: []string{"Country", "Messages", "Share", "TLS", "Change"}}
	for _, c := range r.Countries {
		p := r.CountriesPrior[c.Code]
		t.Rows = append(t.Rows, []string{c.Code, fmt.Sprint(c.Messages), pctS(c.Messages, r.Current.Inbound.Messages),
			pctS(c.TLS, c.Messages), change(c.TLS, c.Messages, p.TLS, p.Messages)})
	}
	if len(t.Rows) == 0 {
		t.NoData = "No data: no inbound message in this period."
	}
	return t
}

// detected lists the downgrades seen as they happened: a peer that used
// TLS in most of its last ten connections, then plaintext.
func (r *Report) detected() Table {
	t := Table{ID: "detected_downgrades", Title: "Downgrades detected as they happened",
		Note:    "A peer used TLS in at least downgrade_n of its last downgrade_m connections (default 5 of 10), then plaintext.",
		Columns: []string{"Peer", "Kind", "Direction", "Times", "Last seen"}}
	for _, d := range r.Downgrades {
		t.Rows = append(t.Rows, []string{d.Peer, d.Kind, d.Direction, fmt.Sprint(d.Times), d.Last.Format(time.RFC3339)})
	}
	if len(t.Rows) == 0 {
		t.NoData = "None: no downgrade was detected in this period."
	}
	return t
}
