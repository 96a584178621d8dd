package auth

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
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

// maxPropValue caps a pvalue at the length of a DNS name: d=, s= and a=
// come from the message and, folded there, could push our header past
// RFC 5322's 998-byte line limit.
const maxPropValue = 255

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
	return s[:min(len(s), maxPropValue)] // ASCII only by now
}

// AuthServID returns the authserv-id of an Authentication-Results value:
// the first token or quoted-string (RFC 8601 2.2: a MIME value), comments
// and folding skipped. A forger may quote our id, so it is unquoted here.
func AuthServID(value string) string {
	s := skipCFWS(value)
	if strings.HasPrefix(s, `"`) {
		return unquote(s)
	}
	end := strings.IndexAny(s, " \t\r\n;(")
	if end < 0 {
		end = len(s)
	}
	return s[:end]
}

// unquote returns the content of the quoted-string s starts with, quoted
// pairs resolved and folding removed; "" when it never ends.
func unquote(s string) string {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String()
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '\r', '\n':
		default:
			b.WriteByte(c)
		}
	}
	return ""
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
	addrs, err := p.ParseList(unfold(values[0]))
	if err != nil || len(addrs) == 0 {
		return "", FromInvalid
	}
	for _, a := range addrs {
		d := domainOf(a.Address)
		if strings.IndexFunc(d, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0 {
			// RFC 6532 lets From carry U-labels; _dmarc lookups and
			// DKIM d= use A-labels, so compare in that form.
			if d, err = idna.Lookup.ToASCII(d); err != nil {
				return "", FromInvalid
			}
		}
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

// unfold undoes header folding (RFC 5322 2.2.3), which net/mail does not:
// a line break (CRLF, or the bare LF MTAs hand milters) followed by white
// space goes. Without it every folded From header was invalid_from, which
// left DMARC unenforced.
func unfold(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "\n")
	return strings.NewReplacer("\n ", " ", "\n\t", "\t").Replace(v)
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
