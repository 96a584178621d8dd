package policy

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPolicySyntax marks a TLS policy outside the grammar snowrain hands
// to Postfix.
var ErrPolicySyntax = errors.New("policy: invalid TLS policy")

// MaxAnswer bounds a socketmap answer. Postfix's own limit
// (socketmap max_reply) is 100000 bytes; staying well under it leaves
// room for the netstring framing and keeps one answer cheap.
const MaxAnswer = 8000

// Level is a Postfix TLS security level: the first word of a policy in
// smtp_tls_policy_maps and the value of smtp_tls_security_level
// (postconf(5); TLS_README "TLS policy table").
type Level string

// The security levels of smtp_tls_policy_maps, weakest first.
const (
	LevelNone        Level = "none"        // no TLS
	LevelMay         Level = "may"         // opportunistic: TLS if offered, unauthenticated, plaintext fallback
	LevelEncrypt     Level = "encrypt"     // mandatory TLS, certificate not checked
	LevelDANE        Level = "dane"        // DANE when TLSA records are DNSSEC-validated (RFC 7672), else may
	LevelDANEOnly    Level = "dane-only"   // mandatory DANE
	LevelFingerprint Level = "fingerprint" // certificate or key pinned by fingerprint
	LevelVerify      Level = "verify"      // mandatory TLS, trusted certificate matching the MX name
	LevelSecure      Level = "secure"      // mandatory TLS, trusted certificate matching the next-hop domain
)

// Levels are the security levels of smtp_tls_policy_maps.
var Levels = map[Level]bool{LevelNone: true, LevelMay: true, LevelEncrypt: true, LevelDANE: true,
	LevelDANEOnly: true, LevelFingerprint: true, LevelVerify: true, LevelSecure: true}

// TLSPolicy is one Postfix TLS policy: a security level and the
// attributes snowrain is willing to pass. It is the only way an answer
// reaches Postfix: String re-encodes validated fields, so nothing read
// from the store, an import or a remote MTA-STS policy can add an
// attribute of its own choosing ("ciphers=null", "exclude=ALL", …).
type TLSPolicy struct {
	Level      Level
	Match      []string // match=: host names, ".domain" patterns, hostname/nexthop/dot-nexthop; fingerprints for "fingerprint"
	ServerName string   // servername=
	Protocols  []string // protocols=, e.g. ">=TLSv1.2"
	Ciphers    string   // ciphers=: medium or high
}

// ParseTLSPolicy reads "LEVEL [name=value …]" strictly: a known level,
// each attribute at most once, each value in its own grammar (which
// excludes the commas and white space Postfix splits attributes on). Attributes
// that weaken TLS below Postfix's defaults (ciphers other than medium or
// high, exclude=) or name files (tafile=) are refused.
func ParseTLSPolicy(s string) (TLSPolicy, error) {
	var p TLSPolicy
	if len(s) > MaxAnswer {
		return p, fmt.Errorf("%w: %d bytes", ErrPolicySyntax, len(s))
	}
	fields := strings.Fields(s)
	if len(fields) == 0 || !Levels[Level(fields[0])] {
		return p, fmt.Errorf("%w: level %q", ErrPolicySyntax, firstField(s))
	}
	p.Level = Level(fields[0])
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		if err := p.setAttr(f, seen); err != nil {
			return TLSPolicy{}, err
		}
	}
	return p, nil
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

func (p *TLSPolicy) setAttr(f string, seen map[string]bool) error {
	name, value, ok := strings.Cut(f, "=")
	if !ok || value == "" {
		return fmt.Errorf("%w: attribute %q", ErrPolicySyntax, f)
	}
	if seen[name] {
		return fmt.Errorf("%w: %s= given twice", ErrPolicySyntax, name)
	}
	seen[name] = true
	switch name {
	case "match":
		if p.Level != LevelFingerprint {
			value = strings.ToLower(value)
		}
		return p.setMatch(value)
	case "servername":
		value = strings.ToLower(value)
		if value != "hostname" && value != "nexthop" && !IsHostname(value) {
			return fmt.Errorf("%w: servername=%q", ErrPolicySyntax, value)
		}
		p.ServerName = value
	case "protocols":
		for _, proto := range strings.Split(value, ":") {
			if !validProtocol(proto) {
				return fmt.Errorf("%w: protocols=%q", ErrPolicySyntax, value)
			}
			p.Protocols = append(p.Protocols, proto)
		}
	case "ciphers":
		if value != "medium" && value != "high" {
			return fmt.Errorf("%w: ciphers=%q (medium or high only)", ErrPolicySyntax, value)
		}
		p.Ciphers = value
	default:
		return fmt.Errorf("%w: attribute %q not allowed", ErrPolicySyntax, name)
	}
	return nil
}

func (p *TLSPolicy) setMatch(value string) error {
	switch p.Level {
	case LevelFingerprint:
		// Fingerprints are "|"-separated: they contain colons.
		for _, fp := range strings.Split(value, "|") {
			if !validFingerprint(fp) {
				return fmt.Errorf("%w: fingerprint %q", ErrPolicySyntax, fp)
			}
			p.Match = append(p.Match, fp)
		}
	case LevelVerify, LevelSecure:
		for _, m := range strings.Split(value, ":") {
			if m != "hostname" && m != "nexthop" && m != "dot-nexthop" && !IsHostPattern(m) {
				return fmt.Errorf("%w: match %q", ErrPolicySyntax, m)
			}
			p.Match = append(p.Match, m)
		}
	default:
		return fmt.Errorf("%w: match= with level %s", ErrPolicySyntax, p.Level)
	}
	return nil
}

func validProtocol(s string) bool {
	for _, prefix := range []string{">=", "<=", "!"} {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			s = rest
			break
		}
	}
	switch s {
	case "SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3":
		return true
	}
	return false
}

// validFingerprint is hex octets separated by colons (or not at all), as
// Postfix prints them.
func validFingerprint(s string) bool {
	hex := strings.ReplaceAll(s, ":", "")
	if len(hex) < 32 || len(hex) > 128 || len(hex)%2 != 0 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// String encodes the policy as Postfix reads it.
func (p TLSPolicy) String() string {
	var b strings.Builder
	b.WriteString(string(p.Level))
	if len(p.Match) > 0 {
		sep := ":"
		if p.Level == LevelFingerprint {
			sep = "|"
		}
		b.WriteString(" match=" + strings.Join(p.Match, sep))
	}
	if p.ServerName != "" {
		b.WriteString(" servername=" + p.ServerName)
	}
	if len(p.Protocols) > 0 {
		b.WriteString(" protocols=" + strings.Join(p.Protocols, ":"))
	}
	if p.Ciphers != "" {
		b.WriteString(" ciphers=" + p.Ciphers)
	}
	return b.String()
}

// encodeAnswer turns a decided policy into the text after "OK ". A
// policy outside the grammar (a tampered store, a bug) keeps its level
// and loses the attributes that fail: what remains is never weaker than
// the level with Postfix's defaults. ok is false when not even the level
// is valid.
func encodeAnswer(s string) (answer string, clean bool, ok bool) {
	p, err := ParseTLSPolicy(s)
	if err == nil {
		return p.String(), true, true
	}
	fields := strings.Fields(s)
	if len(fields) == 0 || !Levels[Level(fields[0])] {
		return "", false, false
	}
	p = TLSPolicy{Level: Level(fields[0])}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		q := p
		if q.setAttr(f, seen) == nil && len(q.String()) <= MaxAnswer {
			p = q
		}
	}
	return p.String(), false, true
}
