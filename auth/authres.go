package auth

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// Results is everything one Authentication-Results header reports.
type Results struct {
	AuthServID string
	TLS        string // "TLSv1.3 TLS_AES_256_GCM_SHA384 256" or "" for plaintext
	SPF        SPFResult
	Helo       SPFResult
	DKIM       []Signature
	DMARC      DMARCResult
}

// FormatAuthResults renders the value of an Authentication-Results header
// (RFC 8601). The TLS state goes into a comment after the authserv-id, since
// no registered method carries it.
func FormatAuthResults(r Results) string {
	var b strings.Builder
	b.WriteString(r.AuthServID)
	if r.TLS != "" {
		fmt.Fprintf(&b, " (tls=%s)", commentSafe(r.TLS))
	} else {
		b.WriteString(" (tls=none)")
	}
	n := 0
	add := func(format string, a ...any) {
		b.WriteString(";\r\n\t")
		fmt.Fprintf(&b, format, a...)
		n++
	}
	if r.SPF.Result != "" {
		add("spf=%s%s smtp.mailfrom=%s", r.SPF.Result, reason(r.SPF.ErrorClass), propValue(r.SPF.Domain))
	}
	if r.Helo.Result != "" && r.Helo.Domain != "" {
		add("spf=%s%s smtp.helo=%s", r.Helo.Result, reason(r.Helo.ErrorClass), propValue(r.Helo.Domain))
	}
	for _, s := range r.DKIM {
		why := s.Class
		if s.Detail != "" {
			why = strings.TrimPrefix(why+" "+s.Detail, " ")
		}
		add("dkim=%s%s header.d=%s header.s=%s header.a=%s", s.Result, reason(why),
			propValue(s.Domain), propValue(s.Selector), propValue(s.Algorithm))
	}
	if r.DMARC.Result != "" {
		add("dmarc=%s (p=%s dis=%s) header.from=%s", r.DMARC.Result, r.DMARC.Policy,
			r.DMARC.Disposition, propValue(r.DMARC.FromDomain))
	}
	if n == 0 {
		b.WriteString("; none")
	}
	return b.String()
}

func reason(class string) string {
	if class == "" {
		return ""
	}
	return " (" + commentSafe(class) + ")"
}

// commentSafe keeps untrusted text from closing our comment.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '(' || r == ')' || r == '\\' || r == ';':
			return '_'
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, s)
}

// propValue renders a pvalue, substituting "unknown" for empty ones and
// dropping characters that would break the header's syntax.
func propValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r == ';' || r == '(' || r == ')' || r == '"' || r == '\\' || r >= 0x7f {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "unknown"
	}
	return s
}

// AuthServID returns the authserv-id of an Authentication-Results value:
// the first token, comments and folding skipped.
func AuthServID(value string) string {
	s := skipCFWS(value)
	end := strings.IndexAny(s, " \t\r\n;(")
	if end < 0 {
		end = len(s)
	}
	return s[:end]
}

func skipCFWS(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
}

// IsOurs reports whether an Authentication-Results value claims our
// authserv-id, so that a forged copy from outside can be removed.
func IsOurs(value, authServID string) bool {
	return strings.EqualFold(AuthServID(value), authServID)
}

// wordDecoder decodes RFC 2047 words, passing unknown charsets through
// instead of failing the whole From header.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) {
	return r, nil
}}

// FromDomain extracts the RFC5322.From domain from the From header values
// of a message, with a From* class when there is not exactly one.
func FromDomain(values []string) (domain, class string) {
	if len(values) == 0 {
		return "", FromNone
	}
	if len(values) > 1 {
		return "", FromMultiple
	}
	p := mail.AddressParser{WordDecoder: wordDecoder}
	addrs, err := p.ParseList(values[0])
	if err != nil || len(addrs) == 0 {
		return "", FromInvalid
	}
	for _, a := range addrs {
		d := domainOf(a.Address)
		if d == "" {
			return "", FromInvalid
		}
		if domain != "" && d != domain {
			return "", FromMultiple
		}
		domain = d
	}
	return domain, ""
}

// Authentication classes of Table 17.
const (
	AuthDKIMAndSPF = "dkim_and_spf"
	AuthDKIMOnly   = "dkim_only"
	AuthSPFOnly    = "spf_only"
	AuthNone       = "none"
)

// AuthClass returns the Table 17 class: which of a passing DKIM signature
// and an SPF pass the message has.
func AuthClass(dkimVerdict, spfResult string) string {
	d, s := dkimVerdict == "pass", spfResult == "pass"
	switch {
	case d && s:
		return AuthDKIMAndSPF
	case d:
		return AuthDKIMOnly
	case s:
		return AuthSPFOnly
	}
	return AuthNone
}
