package auth

import (
	"context"
	"errors"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"

	"github.com/snowrain/snowrain/resolver"
)

// SPFStatus is the result of one SPF check: check_host()'s result (RFC
// 7208 section 2.6), as the spf method of Authentication-Results writes it
// (RFC 8601 section 2.7.2).
type SPFStatus string

// SPF results, RFC 7208 sections 2.6.1 to 2.6.7.
const (
	SPFNone      SPFStatus = "none"      // 2.6.1: no record, or no domain to check
	SPFNeutral   SPFStatus = "neutral"   // 2.6.2: "?": no assertion
	SPFPass      SPFStatus = "pass"      // 2.6.3: the client is authorized
	SPFFail      SPFStatus = "fail"      // 2.6.4: "-": explicitly not authorized
	SPFSoftFail  SPFStatus = "softfail"  // 2.6.5: "~": probably not authorized
	SPFTempError SPFStatus = "temperror" // 2.6.6: a transient (DNS) error
	SPFPermError SPFStatus = "permerror" // 2.6.7: the record could not be interpreted
)

// SPFClass is the Table 21 class ("SPF Errors for Incoming Gmail
// Traffic") of a temperror or permerror; "" for every other result.
type SPFClass string

// SPF error classes of Table 21.
const (
	SPFClassDNSTimeout    SPFClass = "dns_timeout"    // a temperror because DNS did not answer in time
	SPFClassTempError     SPFClass = "temperror"      // any other temperror (SERVFAIL, …)
	SPFClassPermError     SPFClass = "permerror"      // a permerror of evaluation: lookup limits, loops, bad names
	SPFClassInvalidRecord SPFClass = "invalid_record" // a permerror because the record does not parse
)

// SPFIdentity is the identity an SPF check authorizes (RFC 7208 section
// 2.3 and 2.4).
type SPFIdentity string

// SPF identities.
const (
	SPFMailFrom SPFIdentity = "mailfrom" // MAIL FROM, or postmaster@HELO for the null sender
	SPFHelo     SPFIdentity = "helo"     // the HELO/EHLO name
)

// DNS lookup limits of one check_host() evaluation (RFC 7208 section
// 4.6.4): at most 10 terms that cause DNS queries (include, a, mx, ptr,
// exists, redirect), and at most 2 that return no answer ("void lookups");
// past either the result is permerror. blitiri's defaults are the same;
// they are passed explicitly so that the limit is ours.
const (
	maxSPFLookups     = 10
	maxSPFVoidLookups = 2
)

// SPFResult is the outcome of one SPF check.
type SPFResult struct {
	Identity   SPFIdentity
	Domain     string // the domain checked
	Result     SPFStatus
	ErrorClass SPFClass // for temperror/permerror: its Table 21 class
	Err        error
}

// SPFChecker runs SPF checks through a Resolver.
type SPFChecker struct {
	Resolver resolver.Resolver
}

// CheckMailFrom checks the MAIL FROM identity; for the null sender, RFC 7208
// section 2.4 makes it postmaster@HELO. Only the null sender falls back to
// HELO: a non-null sender without a domain ("user@", "user") has result none
// (RFC 7208 section 4.3), or DMARC would align on a HELO name for it.
func (c *SPFChecker) CheckMailFrom(ctx context.Context, ip net.IP, helo, sender string) SPFResult {
	sender = strings.Trim(sender, "<> ") // as domainOf does, so spf checks the domain we report
	if sender == "" {
		return c.check(ctx, SPFMailFrom, ip, helo, "postmaster", helo)
	}
	i := strings.LastIndexByte(sender, '@')
	if i < 0 {
		return SPFResult{Identity: SPFMailFrom, Result: SPFNone}
	}
	return c.check(ctx, SPFMailFrom, ip, helo, sender[:i], sender[i+1:])
}

// CheckHelo checks the HELO identity (RFC 7208 section 2.3).
func (c *SPFChecker) CheckHelo(ctx context.Context, ip net.IP, helo string) SPFResult {
	return c.check(ctx, SPFHelo, ip, helo, "postmaster", helo)
}

// check runs check_host() for local@domain. The domain is normalised
// first (case, trailing dot, A-labels), so the record of an
// internationalised MAIL FROM domain is found and the result aligns with
// the A-label From domain; a domain that is malformed or not multi-label
// is "none" without a lookup (RFC 7208 4.3).
func (c *SPFChecker) check(ctx context.Context, identity SPFIdentity, ip net.IP, helo, local, domain string) SPFResult {
	d, ok := NormalizeDomain(domain)
	r := SPFResult{Identity: identity, Domain: d, Result: SPFNone}
	if d == "" || net.ParseIP(strings.Trim(d, "[]")) != nil || !ok || !spfDomainValid(d) {
		return r
	}
	// blitiri splits the sender at its first "@": one inside a quoted
	// local part must not make it check another domain than ours.
	local = strings.ReplaceAll(local, "@", "%40")
	res, err := spf.CheckHostWithSender(ip, helo, local+"@"+d,
		spf.WithContext(ctx), spf.WithResolver(c.Resolver),
		spf.OverrideLookupLimit(maxSPFLookups), spf.OverrideVoidLookupLimit(maxSPFVoidLookups))
	r.Result = SPFStatus(res) // blitiri's results are RFC 7208's words
	if res == spf.TempError || res == spf.PermError {
		r.Err = err
		r.ErrorClass = classifySPF(res, err)
	}
	return r
}

// spfDomainValid is RFC 7208 4.3's test of the <domain> check_host() is
// called with: a multi-label name, no empty label, no label over 63
// octets, at most 253 octets.
func spfDomainValid(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// classifySPF maps a temperror/permerror to its Table 21 class.
func classifySPF(res spf.Result, err error) SPFClass {
	if resolver.IsInvalidName(err) {
		// A name that cannot exist is never transient (RFC 7208 4.3,
		// 5): whatever made blitiri stop on it is the record's fault.
		return SPFClassPermError
	}
	if res == spf.TempError {
		if resolver.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
			return SPFClassDNSTimeout
		}
		return SPFClassTempError
	}
	for _, syntax := range []error{spf.ErrUnknownField, spf.ErrInvalidIP, spf.ErrInvalidMask,
		spf.ErrInvalidMacro, spf.ErrInvalidDomain, spf.ErrMultipleRecords} {
		if errors.Is(err, syntax) {
			return SPFClassInvalidRecord
		}
	}
	return SPFClassPermError
}

// domainOf returns the lower-cased domain of an address, or "" for the null
// sender and addresses without one.
func domainOf(addr string) string {
	addr = strings.Trim(addr, "<> ")
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	d, _ := NormalizeDomain(addr[i+1:])
	return d
}
