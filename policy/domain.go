package policy

import (
	"strings"

	"golang.org/x/net/idna"

	"github.com/snowrain/snowrain/auth"
)

// CanonicalDomain returns name in the one form policy compares domains
// in: lower case, A-labels (IDNA2008 with UTS #46 mapping, RFC 5891
// section 5), without the one trailing dot of an absolute name. It
// reports false for what is not a domain name: domain literals
// ("[192.0.2.1]"), empty labels, labels over 63 octets, names over 253,
// or characters outside letters, digits, hyphen and underscore.
//
// Every table policy keeps (overrides, imports, requirements, learned
// and forgotten domains) and every key it is asked about go through it,
// so that "BANK.example.", "bank.example" and a U-label spelling all
// reach the same entry: the sender of a message must not be able to pick
// the spelling that skips enforcement.
func CanonicalDomain(name string) (string, bool) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 1024 {
		return "", false
	}
	if !isASCII(name) {
		a, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", false
		}
		name = a
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if !validName(name, true) {
		return "", false
	}
	return name, true
}

// CanonicalPattern is CanonicalDomain for table keys that may start
// with a dot: ".example.com" stands for every domain below example.com.
func CanonicalPattern(key string) (string, bool) {
	key = strings.TrimSpace(key)
	if rest, ok := strings.CutPrefix(key, "."); ok {
		d, ok := CanonicalDomain(rest)
		return "." + d, ok
	}
	return CanonicalDomain(key)
}

// unicodeForm is the U-label spelling of a canonical domain, or "" when
// it has none: the milter and the log parser store domains as they come,
// and an SMTPUTF8 peer sends U-labels.
func unicodeForm(domain string) string {
	if !strings.Contains(domain, "xn--") {
		return ""
	}
	u, err := idna.Lookup.ToUnicode(domain)
	if err != nil || u == domain {
		return ""
	}
	return u
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// validName checks a lower-case name label by label: 1 to 63 octets of
// letters, digits and hyphens (RFC 1035 section 2.3.1, with RFC 1123's
// leading digit), not starting or ending with a hyphen; underscore too
// when underscore is set (service labels, and domains are identities
// here, not host names). At most 253 octets.
func validName(name string, underscore bool) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || underscore && c == '_') {
				return false
			}
		}
	}
	return true
}

// IsHostname reports whether s is a host name as Postfix policy
// attributes may carry it: lower-case LDH labels (RFC 1035), no trailing
// dot.
func IsHostname(s string) bool { return validName(s, false) }

// IsHostPattern reports whether s is a host name or a ".domain" pattern
// (every host below domain) in LDH syntax.
func IsHostPattern(s string) bool {
	if rest, ok := strings.CutPrefix(s, "."); ok {
		return validName(rest, false)
	}
	return validName(s, false)
}

// SenderDomain returns the canonical domain of an envelope address as
// Postfix's policy delegation ("sender=") or a milter's MAIL FROM gives
// it: angle brackets, a source route ("@a,@b:user@domain", RFC 5321
// section 4.1.2) and a quoted local part that may itself contain "@" are
// all handled; the domain is what follows the "@" that ends the local
// part. ok is false for the null sender, an address without a domain, a
// domain literal, or a domain that is not a name.
//
// A domain that fails CanonicalDomain only because of extra trailing
// dots ("bank.example..") is read without them: those spellings must
// not escape a requirement on bank.example.
func SenderDomain(addr string) (string, bool) {
	addr = strings.TrimSpace(addr)
	if strings.HasPrefix(addr, "<") {
		addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	}
	if strings.HasPrefix(addr, "@") {
		i := strings.IndexByte(addr, ':')
		if i < 0 {
			return "", false
		}
		addr = addr[i+1:]
	}
	at := localPartEnd(addr)
	if at < 0 {
		return "", false
	}
	domain := addr[at+1:]
	if strings.HasPrefix(domain, "[") {
		return "", false
	}
	if d, ok := CanonicalDomain(domain); ok {
		return d, true
	}
	return CanonicalDomain(strings.TrimRight(domain, ". \t") + ".")
}

// localPartEnd returns the index of the "@" after addr's local part,
// skipping quoted strings and quoted pairs (RFC 5321 section 4.1.2), or
// -1. An unterminated quote falls back to the last "@": a malformed
// address still has the domain a mail system would route on.
func localPartEnd(addr string) int {
	if at, open := auth.DomainAt(addr); at >= 0 || open {
		return strings.LastIndexByte(addr, '@')
	}
	return -1
}

// matchesKey reports whether domain (canonical) is key or, for a
// ".parent" key, below it.
func matchesKey(domain, key string) bool {
	if strings.HasPrefix(key, ".") {
		return strings.HasSuffix(domain, key)
	}
	return domain == key
}

// parentKeys are domain's ".parent" keys, nearest first.
func parentKeys(domain string) []string {
	var keys []string
	for p := domain; ; {
		i := strings.IndexByte(p, '.')
		if i < 0 {
			return keys
		}
		p = p[i+1:]
		keys = append(keys, "."+p)
	}
}
