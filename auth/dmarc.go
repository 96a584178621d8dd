package auth

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/resolver"
)

// From header classes for messages DMARC cannot evaluate.
const (
	FromNone     = "no_from"
	FromMultiple = "multiple_from"
	FromInvalid  = "invalid_from"
)

// DMARC published-policy classes of Table 18.
const (
	PolicyReject     = "reject"
	PolicyQuarantine = "quarantine"
	PolicyNone       = "none"
	PolicyAbsent     = "absent"
)

// DMARCInput is what the evaluation needs from the rest of the message.
type DMARCInput struct {
	FromDomain  string    // RFC5322.From domain ("" when FromClass says why)
	FromClass   string    // "" or one of the From* classes
	SPF         SPFResult // the MAIL FROM check (HELO for the null sender)
	DKIMDomains []string  // d= of every passing signature
}

// DMARCResult is the DMARC evaluation of one message.
type DMARCResult struct {
	FromDomain   string
	Result       string // pass, fail, none, temperror, permerror
	Policy       string // published policy that applied: reject, quarantine, none, absent
	Disposition  string // after pct: none, quarantine, reject
	RecordDomain string // where the record was found
	SPFAligned   bool
	DKIMAligned  bool
	Err          error
}

// DMARCChecker evaluates DMARC (RFC 7489) through a Resolver.
type DMARCChecker struct {
	Resolver resolver.Resolver
	// Sample decides whether a pct= below 100 applies to this message;
	// nil means random.
	Sample func(pct int) bool
}

// Check evaluates DMARC for one message.
func (c *DMARCChecker) Check(ctx context.Context, in DMARCInput) DMARCResult {
	r := DMARCResult{FromDomain: in.FromDomain, Policy: PolicyAbsent, Disposition: PolicyNone}
	if in.FromClass != "" || in.FromDomain == "" {
		r.Result = "permerror"
		return r
	}
	rec, at, err := c.lookup(ctx, in.FromDomain)
	switch {
	case resolver.IsTemporary(err):
		r.Result, r.Err = "temperror", err
		return r
	case errors.Is(err, errMultipleRecords):
		r.Result, r.Err = "none", err // RFC 7489 6.6.3 step 5
		return r
	case err != nil:
		r.Result, r.Err = "permerror", err
		return r
	case rec == nil:
		r.Result = "none"
		return r
	}
	r.RecordDomain = at
	r.Policy = c.policyFor(ctx, rec, in.FromDomain, at)
	// A HELO check never counts, even if a caller hands one in: only the
	// MAIL FROM identity (postmaster@HELO for the null sender) does.
	r.SPFAligned = in.SPF.Result == "pass" && in.SPF.Identity != "helo" && aligned(in.SPF.Domain, in.FromDomain, rec.SPFAlignment)
	for _, d := range in.DKIMDomains {
		if aligned(d, in.FromDomain, rec.DKIMAlignment) {
			r.DKIMAligned = true
		}
	}
	if r.SPFAligned || r.DKIMAligned {
		r.Result = "pass"
		return r
	}
	r.Result = "fail"
	r.Disposition = c.disposition(r.Policy, rec.Percent)
	return r
}

// lookup finds the record at the domain, then at its organizational domain.
// Only an empty set of records at the domain sends it on: more than one
// ends policy discovery (RFC 7489 6.6.3).
func (c *DMARCChecker) lookup(ctx context.Context, domain string) (*DMARCRecord, string, error) {
	rec, err := c.fetch(ctx, domain)
	if rec != nil || (err != nil && !resolver.IsNotFound(err)) {
		return rec, domain, err
	}
	org := OrgDomain(domain)
	if org == domain {
		return nil, "", nil
	}
	rec, err = c.fetch(ctx, org)
	if resolver.IsNotFound(err) {
		err = nil
	}
	return rec, org, err
}

// errInvalidRecord marks a _dmarc TXT record that does not parse.
var errInvalidRecord = errors.New("dmarc: invalid record")

// errMultipleRecords marks a _dmarc name with more than one DMARC record.
var errMultipleRecords = errors.New("dmarc: multiple records")

func (c *DMARCChecker) fetch(ctx context.Context, domain string) (*DMARCRecord, error) {
	txts, err := c.Resolver.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, t := range txts {
		if isDMARC1(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, errMultipleRecords
	}
	rec, err := ParseDMARC(found[0])
	if err != nil {
		return nil, errors.Join(errInvalidRecord, err)
	}
	return rec, nil
}

// isDMARC1 reports whether a TXT record starts with the tag v=DMARC1
// (RFC 7489 6.4: dmarc-version = "v" *WSP "=" *WSP "DMARC1"), so that
// "v = DMARC1" counts and "v=DMARC10" does not.
func isDMARC1(txt string) bool {
	first, _, _ := strings.Cut(txt, ";")
	k, v, _ := strings.Cut(first, "=")
	return strings.TrimSpace(k) == "v" && strings.TrimSpace(v) == "DMARC1"
}

// ParseDMARC parses a DMARC record, requiring the tags go-msgauth leaves
// lenient: v=DMARC1 first and a valid p=.
func ParseDMARC(txt string) (*DMARCRecord, error) {
	if !isDMARC1(txt) {
		return nil, errors.New("dmarc: record does not start with v=DMARC1")
	}
	rec, err := dmarc.Parse(txt)
	if err != nil {
		return nil, err
	}
	if rec.Percent != nil && (*rec.Percent < 0 || *rec.Percent > 100) {
		return nil, errors.New("dmarc: pct out of range")
	}
	r := &DMARCRecord{Record: rec}
	for _, spec := range strings.Split(txt, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(spec), "=")
		if strings.TrimSpace(k) == "np" {
			switch v = strings.ToLower(strings.TrimSpace(v)); v {
			case PolicyNone, PolicyQuarantine, PolicyReject:
				r.NP = v
			default:
				return nil, errors.New("dmarc: invalid np= policy")
			}
		}
	}
	return r, nil
}

func (c *DMARCChecker) policyFor(ctx context.Context, rec *DMARCRecord, from, at string) string {
	p := string(rec.Policy)
	if from != at {
		if np := npTag(rec); np != "" && c.nonExistent(ctx, from) {
			return np
		}
		if rec.SubdomainPolicy != "" {
			p = string(rec.SubdomainPolicy)
		}
	}
	if p == "" {
		return PolicyNone
	}
	return p
}

// npTag returns RFC 9091's np= (policy for non-existent subdomains), which
// go-msgauth v0.7.0 does not parse.
func npTag(rec *DMARCRecord) string { return rec.NP }

// DMARCRecord is a parsed DMARC record plus the tags go-msgauth skips.
type DMARCRecord struct {
	*dmarc.Record
	NP string // np=, RFC 9091
}

// nonExistent reports whether domain is NXDOMAIN (RFC 9091 section 2.1).
func (c *DMARCChecker) nonExistent(ctx context.Context, domain string) bool {
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX} {
		if _, err := c.Resolver.Query(ctx, domain, t); !resolver.IsNotFound(err) {
			return false
		}
	}
	return true
}

func (c *DMARCChecker) disposition(policy string, pct *int) string {
	if policy != PolicyReject && policy != PolicyQuarantine {
		return PolicyNone
	}
	if pct == nil || *pct >= 100 {
		return policy
	}
	sample := c.Sample
	if sample == nil {
		sample = func(p int) bool { return rand.IntN(100) < p }
	}
	if sample(*pct) {
		return policy
	}
	// RFC 7489 6.6.4: a message not sampled gets the next weaker policy.
	if policy == PolicyReject {
		return PolicyQuarantine
	}
	return PolicyNone
}

// aligned reports identifier alignment (RFC 7489 3.1): strict needs equal
// domains, relaxed equal organizational domains.
func aligned(id, from string, mode dmarc.AlignmentMode) bool {
	if mode == dmarc.AlignmentStrict {
		return SameDomain(id, from)
	}
	id, okID := NormalizeDomain(id)
	from, okFrom := NormalizeDomain(from)
	if !okID || !okFrom || id == "" || from == "" {
		return false
	}
	return OrgDomain(id) == OrgDomain(from)
}
