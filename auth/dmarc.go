package auth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/resolver"
)

// FromClass says why a message's From header fields cannot be evaluated
// by DMARC, which needs exactly one field with one domain (RFC 7489
// section 6.6.1); "" when they can.
type FromClass string

// From header classes for messages DMARC cannot evaluate.
const (
	FromNone     FromClass = "no_from"       // no From field (RFC 5322 section 3.6 requires one)
	FromMultiple FromClass = "multiple_from" // several fields, or mailboxes of several domains
	FromInvalid  FromClass = "invalid_from"  // a field that is not a valid mailbox list
)

// DMARCPolicy is a DMARC policy: the Table 18 class ("DMARC Policies") of
// what a domain publishes, p= (or sp=, np=) of RFC 7489 section 6.3, and
// the disposition applied after pct= (section 6.6.4).
type DMARCPolicy string

// DMARC published-policy classes of Table 18. A disposition is one of
// the first three.
const (
	PolicyReject     DMARCPolicy = "reject"
	PolicyQuarantine DMARCPolicy = "quarantine"
	PolicyNone       DMARCPolicy = "none"
	PolicyAbsent     DMARCPolicy = "absent" // no record applies (none, several, or no policy and no rua=)
)

// DMARCStatus is the result of a DMARC evaluation, as the dmarc method
// of Authentication-Results writes it (RFC 7489 section 11.2).
type DMARCStatus string

// DMARC results, RFC 7489 section 11.2.
const (
	DMARCNone      DMARCStatus = "none"      // no policy published: no DMARC processing (6.6.3)
	DMARCPass      DMARCStatus = "pass"      // an aligned SPF or DKIM pass
	DMARCFail      DMARCStatus = "fail"      // a policy applies and nothing aligned passed
	DMARCTempError DMARCStatus = "temperror" // the policy could not be fetched for now
	DMARCPermError DMARCStatus = "permerror" // the record or the From header cannot be used
)

// DMARCInput is what the evaluation needs from the rest of the message.
type DMARCInput struct {
	FromDomain  string    // RFC5322.From domain ("" when FromClass says why)
	FromClass   FromClass // "" or why DMARC cannot evaluate the From fields
	SPF         SPFResult // the MAIL FROM check (HELO for the null sender)
	DKIMDomains []string  // d= of every passing signature
}

// DMARCResult is the DMARC evaluation of one message.
type DMARCResult struct {
	FromDomain   string
	Result       DMARCStatus
	Policy       DMARCPolicy // published policy that applied: reject, quarantine, none, absent
	Disposition  DMARCPolicy // after pct: none, quarantine, reject
	RecordDomain string      // where the record was found
	Record       string      // that record's Text: the policy published (RFC 7489 7.2)
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
		r.Result = DMARCPermError
		return r
	}
	rec, at, err := LookupDMARC(ctx, c.Resolver, in.FromDomain)
	switch {
	case resolver.IsTemporary(err):
		r.Result, r.Err = DMARCTempError, err
		return r
	case errors.Is(err, ErrDMARCMultiple), errors.Is(err, ErrDMARCNoPolicy):
		r.Result, r.Err = DMARCNone, err // RFC 7489 6.6.3: no DMARC processing
		return r
	case err != nil:
		r.Result, r.Err = DMARCPermError, err
		return r
	case rec == nil:
		r.Result = DMARCNone
		return r
	}
	r.RecordDomain, r.Record = at, rec.Text
	r.Policy = c.policyFor(ctx, rec, in.FromDomain, at)
	// A HELO check never counts, even if a caller hands one in: only the
	// MAIL FROM identity (postmaster@HELO for the null sender) does.
	r.SPFAligned = in.SPF.Result == SPFPass && in.SPF.Identity != SPFHelo && aligned(in.SPF.Domain, in.FromDomain, rec.SPFAlignment)
	for _, d := range in.DKIMDomains {
		if aligned(d, in.FromDomain, rec.DKIMAlignment) {
			r.DKIMAligned = true
		}
	}
	if r.SPFAligned || r.DKIMAligned {
		r.Result = DMARCPass
		return r
	}
	r.Result = DMARCFail
	r.Disposition = c.disposition(r.Policy, rec.Percent)
	return r
}

// LookupDMARC is the one DMARC policy discovery (RFC 7489 6.6.3) of
// snowrain, used by the milter's DMARCChecker and the scanner's Table 18
// alike: the record at domain, else at its organizational domain. It
// returns the record and the domain it was found at; (nil, "", nil) when
// none is published. Only an empty set of DMARC records at domain sends
// it on: ErrDMARCMultiple (several records) and ErrDMARCNoPolicy (a record
// without a valid p= and without a valid rua=) end discovery with no
// DMARC processing; ErrDMARCInvalid is a record that does not parse
// (permerror); resolver errors are returned as they are (temperror when
// resolver.IsTemporary).
func LookupDMARC(ctx context.Context, r resolver.Resolver, domain string) (*DMARCRecord, string, error) {
	domain, ok := NormalizeDomain(domain)
	if !ok || domain == "" {
		return nil, "", fmt.Errorf("%w: domain %q", ErrDMARCInvalid, domain)
	}
	rec, err := fetchDMARC(ctx, r, domain)
	if rec != nil || (err != nil && !resolver.IsNotFound(err)) {
		return rec, domain, err
	}
	org := OrgDomain(domain)
	if org == domain {
		return nil, "", nil
	}
	rec, err = fetchDMARC(ctx, r, org)
	if resolver.IsNotFound(err) {
		err = nil
	}
	if rec == nil && err == nil {
		return nil, "", nil
	}
	return rec, org, err
}

// Errors of LookupDMARC and ParseDMARC.
var (
	// ErrDMARCInvalid marks a DMARC record that does not parse.
	ErrDMARCInvalid = errors.New("dmarc: invalid record")
	// ErrDMARCMultiple marks a _dmarc name with more than one DMARC record.
	ErrDMARCMultiple = errors.New("dmarc: multiple records")
	// ErrDMARCNoPolicy marks a record with no valid p= (or an invalid sp=)
	// and no valid rua=: RFC 7489 6.6.3 applies no DMARC processing.
	ErrDMARCNoPolicy = errors.New("dmarc: record without a valid p= or rua=")
)

// fetchDMARC reads the DMARC record at _dmarc.domain (RFC 7489 section
// 6.1).
func fetchDMARC(ctx context.Context, r resolver.Resolver, domain string) (*DMARCRecord, error) {
	txts, err := r.LookupTXT(ctx, "_dmarc."+domain)
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
		return ParseDMARC(found[0])
	default:
		return nil, ErrDMARCMultiple
	}
}

// isDMARC1 reports whether a TXT record starts with the tag v=DMARC1.
// RFC 7489 6.4 spells the value as code points, but receivers (OpenDMARC
// among them) accept "v=dmarc1", and a receiver that enforces must not
// let the spelling of the version decide whether a policy applies: the
// tag name and the literal compare case-insensitively. "v = DMARC1"
// counts, "v=DMARC10" does not.
func isDMARC1(txt string) bool {
	first, _, _ := strings.Cut(txt, ";")
	k, v, _ := strings.Cut(first, "=")
	return strings.EqualFold(strings.TrimSpace(k), "v") && strings.EqualFold(strings.TrimSpace(v), "DMARC1")
}

// ParseDMARC parses a DMARC record (RFC 7489 6.3, 6.4): v=DMARC1 first,
// tag names and the keyword values of p, sp, np, adkim and aspf
// case-insensitive (ABNF strings). A record without a valid p=, or with an
// invalid sp=, is read as p=none when its rua= holds a valid URI, and is
// ErrDMARCNoPolicy otherwise (RFC 7489 6.6.3). Other syntax errors are
// ErrDMARCInvalid.
func ParseDMARC(txt string) (*DMARCRecord, error) {
	if !isDMARC1(txt) {
		return nil, fmt.Errorf("%w: does not start with v=DMARC1", ErrDMARCInvalid)
	}
	var tags []string // names in record order, v first
	vals := map[string]string{}
	for _, spec := range strings.Split(txt, ";") {
		if strings.TrimSpace(spec) == "" {
			continue
		}
		k, v, ok := strings.Cut(spec, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: malformed tag %.40q", ErrDMARCInvalid, spec)
		}
		switch k {
		case "p", "sp", "np", "adkim", "aspf":
			v = strings.ToLower(v)
		}
		if _, dup := vals[k]; !dup {
			tags = append(tags, k)
		}
		vals[k] = v
	}
	validPolicy := func(p string) bool {
		switch DMARCPolicy(p) {
		case PolicyNone, PolicyQuarantine, PolicyReject:
			return true
		}
		return false
	}
	sp, hasSP := vals["sp"]
	if !validPolicy(vals["p"]) || (hasSP && !validPolicy(sp)) {
		if !validURIList(vals["rua"]) {
			return nil, ErrDMARCNoPolicy
		}
		// "act as if a record containing a valid v tag and p=none was
		// retrieved": the rest of the record still counts, sp= does not.
		if _, ok := vals["p"]; !ok {
			tags = append(tags, "p")
		}
		vals["p"] = string(PolicyNone)
		delete(vals, "sp")
	}
	var canon strings.Builder
	for _, k := range tags {
		if v, ok := vals[k]; ok {
			if k == "v" {
				v = "DMARC1"
			}
			canon.WriteString(k + "=" + v + ";")
		}
	}
	rec, err := dmarc.Parse(canon.String())
	if err != nil {
		return nil, errors.Join(ErrDMARCInvalid, err)
	}
	r := &DMARCRecord{Record: rec, Text: canon.String()}
	if np, ok := vals["np"]; ok {
		if !validPolicy(np) {
			return nil, fmt.Errorf("%w: invalid np= policy", ErrDMARCInvalid)
		}
		r.NP = DMARCPolicy(np)
	}
	return r, nil
}

// validURIList reports whether a rua= value holds at least one
// syntactically valid reporting URI (RFC 7489 6.4 dmarc-uri: an absolute
// URI, optionally followed by "!" and a size).
func validURIList(list string) bool {
	for _, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		if i := strings.LastIndexByte(u, '!'); i >= 0 {
			u = u[:i]
		}
		p, err := url.Parse(u)
		if err == nil && p.Scheme != "" && (p.Opaque != "" || p.Host != "" || p.Path != "") {
			return true
		}
	}
	return false
}

// PolicyInvalid is the Table 18 class of a published record that does not
// parse (the milter's DMARC permerror).
const PolicyInvalid DMARCPolicy = "invalid"

// Published returns the Table 18 class of the DMARC policy that applies to
// mail from domain, exactly as Check would put it in DMARCResult.Policy
// (sp= and np= below the organizational domain included), with the record
// and the domain it was found at. A record that does not parse is
// PolicyInvalid; err is set only for a lookup that failed (temperror).
func (c *DMARCChecker) Published(ctx context.Context, domain string) (class DMARCPolicy, rec *DMARCRecord, at string, err error) {
	rec, at, err = LookupDMARC(ctx, c.Resolver, domain)
	switch {
	case resolver.IsTemporary(err):
		return PolicyAbsent, nil, "", err
	case errors.Is(err, ErrDMARCMultiple), errors.Is(err, ErrDMARCNoPolicy), err == nil && rec == nil:
		return PolicyAbsent, nil, "", nil
	case err != nil:
		return PolicyInvalid, nil, "", nil
	}
	return c.policyFor(ctx, rec, domain, at), rec, at, nil
}

func (c *DMARCChecker) policyFor(ctx context.Context, rec *DMARCRecord, from, at string) DMARCPolicy {
	p := DMARCPolicy(rec.Policy)
	if !SameDomain(from, at) {
		if np := npTag(rec); np != "" && c.nonExistent(ctx, from) {
			return np
		}
		if rec.SubdomainPolicy != "" {
			p = DMARCPolicy(rec.SubdomainPolicy)
		}
	}
	if p == "" {
		return PolicyNone
	}
	return p
}

// npTag returns RFC 9091's np= (policy for non-existent subdomains), which
// go-msgauth v0.7.0 does not parse.
func npTag(rec *DMARCRecord) DMARCPolicy { return rec.NP }

// DMARCRecord is a parsed DMARC record plus the tags go-msgauth skips.
type DMARCRecord struct {
	*dmarc.Record
	NP DMARCPolicy // np=, RFC 9091
	// Text is the record as read: its tags in record order, "k=v;" each,
	// keywords lower-cased, p=none where 6.6.3 made it so. Aggregate
	// reports carry it as the policy published (RFC 7489 7.2).
	Text string
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

// disposition applies pct=, the percentage of failing messages the policy
// applies to: 0 to 100, and 100 when absent (RFC 7489 section 6.3).
func (c *DMARCChecker) disposition(policy DMARCPolicy, pct *int) DMARCPolicy {
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
