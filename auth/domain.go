package auth

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// NormalizeDomain returns the one form in which auth compares and looks
// up identities: A-labels (RFC 5891, the IDNA2008 Lookup profile), lower
// case, without one trailing dot. ASCII names are not run through IDNA:
// its STD3 rules would refuse the underscores of _dmarc and _domainkey
// names. ok is false for what is not a host name (RFC 1035 2.3.1, with
// "_" allowed as DNS does); the name is then still returned lower-cased,
// for reports, and must not be looked up or compared.
func NormalizeDomain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if !isASCII(d) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return strings.ToLower(d), false
		}
		d = a
	}
	d = strings.ToLower(d)
	return d, validHost(d)
}

// validHost reports whether d, lower-cased ASCII, is a host name: labels
// of 1 to 63 octets, at most 253 octets in all (RFC 1035 section 2.3.4's
// 255 on the wire, without the final dot).
func validHost(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
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

// DomainAt returns the index of the "@" before the domain of an address
// in RFC 5321 external form ("local@domain"): the last one outside a
// quoted string, since a quoted local part may hold "@" and quoted pairs
// (RFC 5321 section 4.1.2); -1 when there is none. open reports a quoted
// string left unterminated, which each caller judges for itself.
func DomainAt(addr string) (at int, open bool) {
	at = -1
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c == '\\' && open:
			i++
		case c == '"':
			open = !open
		case c == '@' && !open:
			at = i
		}
	}
	return at, open
}
