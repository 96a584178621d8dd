package feedback

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
	"github.com/snowrain/snowrain/tlsrpt"
)

// TLSReport is one TLS report to send: a recipient domain's sessions of
// one day.
type TLSReport struct {
	Domain string
	RUA    []string // from the domain's _smtp._tls record
	Report *tlsrpt.Report
}

// session is one SMTP session to a recipient domain, from the deliveries
// the log follower stored.
type session struct {
	domain, key        string
	at                 int64
	relayHost, relayIP string
	level              maillog.Level
	status             maillog.Status
	result             tlsrpt.ResultType
	reason             string
}

// TLSReports gathers the TLS reports of day: one per recipient domain
// that publishes a TLSRPTv1 record, counting each SMTP session the MTA
// log showed under the policy the policy engine applied then.
func TLSReports(ctx context.Context, st *measure.Store, cfg Config, day Day) ([]*TLSReport, error) {
	cfg.defaults()
	sessions, err := loadSessions(ctx, st, day)
	if err != nil {
		return nil, err
	}
	byDomain := map[string][]*session{}
	var domains []string
	for _, s := range sessions {
		if _, ok := byDomain[s.domain]; !ok {
			domains = append(domains, s.domain)
		}
		byDomain[s.domain] = append(byDomain[s.domain], s)
	}
	sort.Strings(domains)
	var out []*TLSReport
	for _, d := range domains {
		if cfg.excluded(d) {
			continue
		}
		rec, err := cfg.lookupTLSRPT(ctx, d)
		if err != nil {
			if !errors.Is(err, tlsrpt.ErrNotTLSRPT) && !resolver.IsNotFound(err) {
				cfg.Log.Warn("feedback: _smtp._tls lookup", "domain", d, "err", err)
			}
			continue
		}
		pol, err := loadPolicies(ctx, st, d, day)
		if err != nil {
			return nil, err
		}
		rep := &tlsrpt.Report{OrganizationName: cfg.OrgName, ContactInfo: cfg.Contact,
			ReportID:  fmt.Sprintf("tls.%d.%s@%s", day.Begin.Unix(), d, cfg.Submitter),
			DateRange: tlsrpt.DateRange{Start: day.Begin, End: day.End.Add(-time.Second)}}
		rep.Policies = cfg.policyRuns(ctx, d, byDomain[d], pol)
		var rua []string
		for _, u := range rec.RUA {
			rua = append(rua, u.String())
		}
		out = append(out, &TLSReport{Domain: d, RUA: rua, Report: rep})
	}
	return out, nil
}

// lookupTLSRPT reads the domain's TLS-RPT record at _smtp._tls.domain
// (RFC 8460 section 3).
func (c *Config) lookupTLSRPT(ctx context.Context, domain string) (*tlsrpt.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, c.DNSTimeout)
	defer cancel()
	txts, err := c.Resolver.LookupTXT(ctx, "_smtp._tls."+domain)
	if err != nil {
		return nil, err
	}
	return tlsrpt.FindRecord(txts)
}

func loadSessions(ctx context.Context, st *measure.Store, day Day) ([]*session, error) {
	stored, err := st.TLSSessions(ctx, day.Begin, day.End)
	if err != nil {
		return nil, fmt.Errorf("feedback: %w", err)
	}
	out := make([]*session, len(stored))
	for i, ts := range stored {
		out[i] = &session{domain: ts.Domain, key: ts.Node + " " + ts.Session, at: ts.At.Unix(), relayHost: ts.RelayHost,
			relayIP: ts.RelayIP, level: ts.Level, status: ts.Status, result: tlsrpt.ResultType(ts.Result), reason: ts.Reason}
	}
	return out, nil
}

// decision is one recorded answer of the policy engine.
type decision struct {
	at     int64
	source policy.Source
	error  string
}

// policies is what the store knows of a domain's policies on a day.
type policies struct {
	decisions []decision
	sts       *stsPolicy // the cached MTA-STS policy, if any
}

type stsPolicy struct {
	mode policy.STSMode
	text string
	mx   []string
}

func loadPolicies(ctx context.Context, st *measure.Store, domain string, day Day) (*policies, error) {
	p := &policies{}
	// Decisions from an hour before the day: a cached decision made then
	// may be what the first deliveries used.
	ds, err := policy.Decisions(ctx, st, domain, day.Begin.Add(-time.Hour), day.End)
	if err != nil {
		return nil, fmt.Errorf("feedback: %w", err)
	}
	for _, d := range ds {
		p.decisions = append(p.decisions, decision{at: d.At.Unix(), source: policy.Source(d.Source), error: d.Error})
	}
	c, ok, err := policy.LoadCachedSTS(ctx, st, domain)
	if err != nil {
		return nil, fmt.Errorf("feedback: %w", err)
	}
	if ok {
		p.sts = &stsPolicy{mode: c.Mode, text: c.Text, mx: c.MX}
	}
	return p, nil
}

// decisionAt is the decision a session at t most likely used: the last
// one recorded up to a few seconds after it (the engine records in
// batches; log times are whole seconds), else the first one after.
func (p *policies) decisionAt(t int64) (decision, bool) {
	var best decision
	found := false
	for _, d := range p.decisions {
		if d.at <= t+5 {
			best, found = d, true
		} else if !found {
			return d, true
		}
	}
	return best, found
}

// applied is the policy a session was under, as TLS reports name it.
type applied struct {
	kind   tlsrpt.PolicyType
	mx     string            // tlsa: the MX host the records belong to
	failed tlsrpt.ResultType // a policy failure (fetch, syntax) that makes every session fail
	// testing: the mx patterns of an MTA-STS policy in testing mode,
	// space-separated (Postfix was not asked to check them: the session's
	// TLS level was its own); applied is a map key, so no slice.
	testing string
}

// policyFor reads the engine's decision: SourceDANE is a TLSA policy;
// SourceMTASTS an enforced MTA-STS policy; a fetch or syntax error while
// looking for one is an MTA-STS policy failure (RFC 8460 4.3.2.3); any
// other answer with a cached MTA-STS policy in testing mode is that
// policy (testing is reported, not enforced: RFC 8461 5); else none.
func (p *policies) policyFor(s *session) applied {
	d, ok := p.decisionAt(s.at)
	if ok {
		switch d.source {
		case policy.SourceDANE:
			return applied{kind: tlsrpt.PolicyTLSA, mx: s.relayHost}
		case policy.SourceMTASTS:
			return applied{kind: tlsrpt.PolicySTS}
		case policy.SourceOverride, policy.SourceLearned, policy.SourceNone, policy.SourceInbound,
			policy.SourceConfig, policy.SourceImported:
			// Postfix's own levels: an MTA-STS policy in testing mode may
			// still apply (below).
		case policy.SourceError:
			switch class, _, _ := strings.Cut(d.error, ":"); class {
			case "sts_fetch":
				return applied{kind: tlsrpt.PolicySTS, failed: tlsrpt.ResultSTSPolicyFetchError}
			case "sts_syntax", "sts_too_large", "sts_record":
				return applied{kind: tlsrpt.PolicySTS, failed: tlsrpt.ResultSTSPolicyInvalid}
			}
		}
	}
	if p.sts != nil && p.sts.mode == policy.STSTesting {
		return applied{kind: tlsrpt.PolicySTS, testing: strings.Join(p.sts.mx, " ")}
	}
	if p.sts != nil && !ok && p.sts.mode == policy.STSEnforce {
		return applied{kind: tlsrpt.PolicySTS}
	}
	return applied{kind: tlsrpt.PolicyNoPolicyFound}
}

// outcome is a session's result under its policy; "" is success.
//
// Under a policy (MTA-STS, DANE) a session that failed says why in its
// log lines; one that delivered in plaintext did not get STARTTLS; one
// that delivered over TLS whose certificate did not verify (Postfix's
// "Untrusted"/"Anonymous" at an opportunistic level, MTA-STS testing
// mode) is certificate-not-trusted. With no policy, only failures that
// stopped the session count: a certificate nobody asked to verify is no
// failure, plaintext is (RFC 8460 counts "successfully negotiated
// TLS-enabled connections").
func outcome(s *session, a applied) tlsrpt.ResultType {
	if a.failed != "" {
		return a.failed
	}
	if a.kind == tlsrpt.PolicyNoPolicyFound {
		switch {
		case s.result == "" && s.level == maillog.LevelNone:
			return tlsrpt.ResultSTARTTLSNotSupported
		case s.result != "" && (s.status != maillog.StatusSent || !isCertificate(s.result)):
			return s.result
		}
		return ""
	}
	switch {
	case s.result != "":
		return s.result
	case s.level == maillog.LevelNone:
		return tlsrpt.ResultSTARTTLSNotSupported
	case s.level == maillog.LevelUntrusted || s.level == maillog.LevelAnonymous:
		return tlsrpt.ResultCertificateNotTrusted
	case a.testing != "" && !matchesAnyMX(strings.Fields(a.testing), s.relayHost):
		// Under testing, Postfix delivered at its own level and checked
		// no name; the policy still applies (RFC 8461 5: failures are
		// reported, not enforced). An MX the policy does not list is
		// what enforcing would have refused (4.1), as a certificate not
		// matching the policy's names (RFC 8460 4.3.2.1).
		return tlsrpt.ResultCertificateHostMismatch
	}
	return ""
}

// matchesAnyMX reports whether the relay host that took a delivery is
// one the MTA-STS policy lists (RFC 8461 4.1), compared canonically.
func matchesAnyMX(patterns []string, relayHost string) bool {
	host, ok := policy.CanonicalDomain(relayHost)
	if !ok {
		return false
	}
	for _, p := range patterns {
		if pat, ok := policy.CanonicalMXPattern(p); ok && policy.MatchesMX(pat, host) {
			return true
		}
	}
	return false
}

func isCertificate(r tlsrpt.ResultType) bool {
	switch r {
	case tlsrpt.ResultCertificateExpired, tlsrpt.ResultCertificateHostMismatch, tlsrpt.ResultCertificateNotTrusted:
		return true
	}
	return false
}

// policyRuns counts a domain's sessions per applied policy.
func (c *Config) policyRuns(ctx context.Context, domain string, sessions []*session, p *policies) []tlsrpt.PolicyRun {
	type failKey struct {
		r                tlsrpt.ResultType
		host, ip, reason string
	}
	type run struct {
		a      applied
		sum    tlsrpt.Summary
		fails  map[failKey]int64
		forder []failKey
	}
	runs := map[applied]*run{}
	var order []applied
	for _, s := range sessions {
		a := p.policyFor(s)
		key := applied{kind: a.kind, mx: a.mx}
		r := runs[key]
		if r == nil {
			r = &run{a: key, fails: map[failKey]int64{}}
			runs[key] = r
			order = append(order, key)
		}
		res := outcome(s, a)
		if res == "" {
			r.sum.Successful++
			continue
		}
		r.sum.Failed++
		reason := s.reason
		if a.failed != "" {
			reason = ""
		}
		k := failKey{res, s.relayHost, s.relayIP, reason}
		if _, ok := r.fails[k]; !ok {
			r.forder = append(r.forder, k)
		}
		r.fails[k]++
	}
	var out []tlsrpt.PolicyRun
	for _, key := range order {
		r := runs[key]
		pr := tlsrpt.PolicyRun{Policy: tlsrpt.Policy{Type: key.kind, Domain: domain}, Summary: r.sum}
		switch key.kind {
		case tlsrpt.PolicySTS:
			if p.sts != nil {
				pr.Policy.String = policyLines(p.sts.text)
				pr.Policy.MXHost = p.sts.mx
			}
		case tlsrpt.PolicyTLSA:
			pr.Policy.MXHost = []string{key.mx}
			pr.Policy.String = c.tlsaStrings(ctx, key.mx)
		}
		for _, k := range r.forder {
			pr.FailureDetails = append(pr.FailureDetails, tlsrpt.FailureDetail{ResultType: k.r,
				SendingMTAIP: c.SendingIP, ReceivingMXHostname: k.host, ReceivingIP: k.ip,
				FailedSessionCount: r.fails[k], FailureReasonCode: k.reason})
		}
		out = append(out, pr)
	}
	return out
}

// policyLines is an MTA-STS policy as RFC 8460 4.4 wants it: one string
// per line, blank lines and line ends dropped.
func policyLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(strings.TrimRight(l, "\r")); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// tlsaStrings are the TLSA records of an MX host for port 25, in
// presentation form ("3 1 1 …"), as the report's policy-string.
func (c *Config) tlsaStrings(ctx context.Context, host string) []string {
	if host == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.DNSTimeout)
	defer cancel()
	ans, err := c.Resolver.Query(ctx, "_25._tcp."+host, dns.TypeTLSA)
	if err != nil {
		return nil
	}
	var out []string
	for _, rr := range ans.Records {
		if t, ok := rr.(*dns.TLSA); ok {
			out = append(out, fmt.Sprintf("%d %d %d %s", t.Usage, t.Selector, t.MatchingType, t.Certificate))
		}
	}
	return out
}
