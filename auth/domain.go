package auth

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// NormalizeDomain returns domain in the one form auth compares and looks
// up identities in: lower case, one trailing dot removed, U-labels
// converted to A-labels with the IDNA2008 Lookup profile (RFC 5891
// section 5). ok is false when a non-ASCII name cannot be converted.
// ASCII names are not run through IDNA: its STD3 rules would refuse the
// underscores of _dmarc and _domainkey names.
func NormalizeDomain(domain string) (string, bool) {
	domain = strings.TrimSuffix(domain, ".")
	if !isASCII(domain) {
		a, err := idna.Lookup.ToASCII(domain)
		if err != nil {
			return strings.ToLower(domain), false
		}
		domain = a
	}
	return strings.ToLower(domain), true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// SameDomain reports whether two identities name the same domain once
// normalised (case, one trailing dot, A-labels).
func SameDomain(a, b string) bool {
	na, oka := NormalizeDomain(a)
	nb, okb := NormalizeDomain(b)
	return oka && okb && na != "" && na == nb
}

// Registrable returns the registrable domain of domain (its public suffix
// plus one label, RFC 7489 3.2's organizational domain) in A-label form,
// or "" when there is none: domain is a public suffix, empty, malformed
// or not convertible to A-labels. The public suffix list holds A-labels,
// so U-labels are converted first (食狮.公司.cn → xn--85x722f.xn--55qx5d.cn).
func Registrable(domain string) string {
	d, ok := NormalizeDomain(domain)
	if !ok || d == "" {
		return ""
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return ""
	}
	return org
}

// OrgDomain returns the organizational domain of domain (RFC 7489 3.2) in
// A-label form, or the normalised domain itself when it has none (it is a
// public suffix), so that two names under one suffix never align.
func OrgDomain(domain string) string {
	if org := Registrable(domain); org != "" {
		return org
	}
	d, _ := NormalizeDomain(domain)
	return d
}
