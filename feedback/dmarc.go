package feedback

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/dmarcrpt"
	"github.com/snowrain/snowrain/measure"
)

// DMARCReport is one aggregate report to send: the policy domain's
// messages of one day.
type DMARCReport struct {
	Domain   string             // where the DMARC record was found (policy_published)
	Record   string             // that record, as the milter stored it
	Feedback *dmarcrpt.Feedback // the document
	RUA      []string           // the record's rua= URIs, as published
}

// DMARCReports gathers the aggregate reports of day from the store: one
// per policy domain with a rua=, of the inbound messages whose DMARC
// result was pass or fail, one record per source IP, disposition, aligned
// results, identifiers and DKIM/SPF results (RFC 7489 7.2.1.1).
func DMARCReports(ctx context.Context, st *measure.Store, cfg Config, day Day) ([]*DMARCReport, error) {
	cfg.defaults()
	type domainAcc struct {
		latest  int64
		record  string
		records map[string]*dmarcrpt.Record
		order   []string
	}
	by := map[string]*domainAcc{}
	err := st.EachDMARCMessage(ctx, day.Begin, day.End, func(sm *measure.Message) error {
		m := messageOf(sm)
		acc := by[m.recordDomain]
		if acc == nil {
			acc = &domainAcc{records: map[string]*dmarcrpt.Record{}}
			by[m.recordDomain] = acc
		}
		if m.at >= acc.latest {
			acc.latest, acc.record = m.at, m.published
		}
		rec, ok := m.record()
		if !ok {
			return nil
		}
		key := recordKey(rec)
		if have := acc.records[key]; have != nil {
			have.Row.Count++
			return nil
		}
		acc.records[key] = rec
		acc.order = append(acc.order, key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("feedback: dmarc: %w", err)
	}
	domains := make([]string, 0, len(by))
	for d := range by {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	var out []*DMARCReport
	for _, d := range domains {
		acc := by[d]
		tags := recordTags(acc.record)
		if tags["rua"] == "" || cfg.excluded(d) || len(acc.order) == 0 {
			continue
		}
		f := &dmarcrpt.Feedback{Version: "1.0",
			Metadata: dmarcrpt.ReportMetadata{OrgName: cfg.OrgName, Email: cfg.Contact, ExtraContactInfo: cfg.ExtraContact,
				ReportID:  ReportID(day, d, cfg.Submitter),
				DateRange: dmarcrpt.DateRange{Begin: day.Begin.Unix(), End: day.End.Unix() - 1}},
			Policy: policyPublished(d, tags)}
		for _, k := range acc.order {
			f.Records = append(f.Records, *acc.records[k])
		}
		var rua []string
		for _, u := range strings.Split(tags["rua"], ",") {
			if u = strings.TrimSpace(u); u != "" {
				rua = append(rua, u)
			}
		}
		out = append(out, &DMARCReport{Domain: d, Record: acc.record, Feedback: f, RUA: rua})
	}
	return out, nil
}

// ReportID is the report's ID: stable for a period, domain and submitter,
// so a report sent again is recognised as the same one, and shaped as the
// msg-id the subject's ABNF wants (RFC 7489 7.2.1.1).
func ReportID(day Day, domain, submitter string) string {
	return fmt.Sprintf("%d.%s@%s", day.Begin.Unix(), domain, submitter)
}

// message is one stored message with its signatures.
type message struct {
	at                             int64
	clientIP, mailFrom, headerFrom string
	spfResult                      auth.SPFStatus
	spfDomain                      string
	policy, disposition            auth.DMARCPolicy
	result                         auth.DMARCStatus
	action                         measure.Action
	recordDomain, published        string
	spfAligned, dkimAligned        bool
	sigs                           []dmarcrpt.DKIMResult
}

// messageOf is the stored message as a report needs it.
func messageOf(m *measure.Message) *message {
	out := &message{at: m.Received.Unix(), clientIP: m.ClientIP, mailFrom: m.MailFromDomain, headerFrom: m.FromDomain,
		spfResult: m.SPFResult, spfDomain: m.SPFDomain, policy: m.DMARCPolicy, disposition: m.DMARCDisposition,
		result: m.DMARCResult, action: m.Action, recordDomain: m.DMARCRecord, published: m.DMARCPublished,
		spfAligned: m.SPFAligned, dkimAligned: m.DKIMAligned}
	for _, s := range m.Signatures {
		out.sigs = append(out.sigs, dmarcrpt.DKIMResult{Domain: s.Domain, Selector: s.Selector,
			Result: dkimResult(string(s.Result)), HumanResult: string(s.Class)})
	}
	return out
}

// record is the message as an aggregate report row of count 1.
func (m *message) record() (*dmarcrpt.Record, bool) {
	ip, ok := dmarcrpt.SourceIP(m.clientIP)
	if !ok {
		return nil, false // the schema has no place for a record without an address
	}
	pe := dmarcrpt.PolicyEvaluated{Disposition: appliedDisposition(m.action), DKIM: passFail(m.dkimAligned), SPF: passFail(m.spfAligned)}
	if m.result == auth.DMARCFail {
		// Why what we did differs from what the policy asked for (Appendix
		// C PolicyOverrideType): pct= sampled the message out, or snowrain
		// does not enforce (the default: monitoring only).
		if m.disposition != "" && m.policy != "" && m.disposition != m.policy {
			pe.Reasons = append(pe.Reasons, dmarcrpt.Reason{Type: dmarcrpt.ReasonSampledOut})
		}
		if want := dmarcrpt.Disposition(m.disposition); want != "" && want != pe.Disposition {
			pe.Reasons = append(pe.Reasons, dmarcrpt.Reason{Type: dmarcrpt.ReasonLocalPolicy, Comment: "policy not enforced by this receiver"})
		}
	}
	spf := m.spfResult
	if spf == "" {
		spf = auth.SPFNone
	}
	spfDomain := m.spfDomain
	if spfDomain == "" {
		spfDomain = m.mailFrom
	}
	return &dmarcrpt.Record{
		Row:         dmarcrpt.Row{SourceIP: ip, Count: 1, PolicyEvaluated: pe},
		Identifiers: dmarcrpt.Identifiers{EnvelopeFrom: m.mailFrom, HeaderFrom: m.headerFrom},
		AuthResults: dmarcrpt.AuthResults{DKIM: m.sigs,
			SPF: []dmarcrpt.SPFResult{{Domain: spfDomain, Scope: "mfrom", Result: string(spf)}}},
	}, true
}

// dispositions are the dispositions applied (Appendix C) of the milter's
// actions; any other action accepted the message.
var dispositions = map[measure.Action]dmarcrpt.Disposition{measure.ActionReject: dmarcrpt.DispositionReject,
	measure.ActionQuarantine: dmarcrpt.DispositionQuarantine, measure.ActionAccept: dmarcrpt.DispositionNone}

func appliedDisposition(action measure.Action) dmarcrpt.Disposition {
	if d, ok := dispositions[action]; ok {
		return d
	}
	return dmarcrpt.DispositionNone
}

func passFail(ok bool) dmarcrpt.Result {
	if ok {
		return dmarcrpt.Pass
	}
	return dmarcrpt.Fail
}

// dkimResult keeps the RFC 8601 results Appendix C's DKIMResultType has.
func dkimResult(r string) string {
	switch auth.DKIMStatus(r) {
	case auth.DKIMNone, auth.DKIMPass, auth.DKIMFail, auth.DKIMPolicy, auth.DKIMNeutral, auth.DKIMTempError, auth.DKIMPermError:
		return r
	}
	return string(auth.DKIMPermError)
}

func recordKey(r *dmarcrpt.Record) string {
	var b strings.Builder
	pe := r.Row.PolicyEvaluated
	fmt.Fprintf(&b, "%s|%s|%s|%s|%s|%s", r.Row.SourceIP, pe.Disposition, pe.DKIM, pe.SPF,
		r.Identifiers.EnvelopeFrom, r.Identifiers.HeaderFrom)
	for _, rs := range pe.Reasons {
		b.WriteString("|r:" + rs.Type)
	}
	for _, d := range r.AuthResults.DKIM {
		fmt.Fprintf(&b, "|d:%s/%s/%s/%s", d.Domain, d.Selector, d.Result, d.HumanResult)
	}
	for _, s := range r.AuthResults.SPF {
		fmt.Fprintf(&b, "|s:%s/%s/%s", s.Domain, s.Scope, s.Result)
	}
	return b.String()
}

// recordTags reads a DMARC record's tags (the text auth.ParseDMARC made:
// names lower-case, keyword values lower-case).
func recordTags(text string) map[string]string {
	out := map[string]string{}
	for _, spec := range strings.Split(text, ";") {
		k, v, ok := strings.Cut(spec, "=")
		if ok {
			out[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return out
}

// policyPublished fills in the defaults RFC 7489 6.3 gives absent tags,
// so the report says what applied.
func policyPublished(domain string, tags map[string]string) dmarcrpt.PolicyPublished {
	p := dmarcrpt.PolicyPublished{Domain: domain, ADKIM: "r", ASPF: "r", P: dmarcrpt.DispositionNone, Pct: 100, Fo: "0"}
	if v := tags["adkim"]; v == "s" {
		p.ADKIM = v
	}
	if v := tags["aspf"]; v == "s" {
		p.ASPF = v
	}
	if v := dmarcrpt.Disposition(tags["p"]); validDisposition(v) {
		p.P = v
	}
	p.SP = p.P
	if v := dmarcrpt.Disposition(tags["sp"]); validDisposition(v) {
		p.SP = v
	}
	if n, err := strconv.Atoi(tags["pct"]); err == nil && n >= 0 && n <= 100 {
		p.Pct = n
	}
	if v := tags["fo"]; v != "" {
		p.Fo = v
	}
	return p
}

func validDisposition(d dmarcrpt.Disposition) bool {
	return d == dmarcrpt.DispositionNone || d == dmarcrpt.DispositionQuarantine || d == dmarcrpt.DispositionReject
}

// orgDomainOf is the organizational domain, for the external destination
// check of RFC 7489 7.1.
func orgDomainOf(d string) string {
	n, ok := auth.NormalizeDomain(d)
	if !ok {
		return strings.ToLower(d)
	}
	return auth.OrgDomain(n)
}
