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
	var dmarc string
	if r.DMARC.Result != "" {
		dmarc = fmt.Sprintf("dmarc=%s (p=%s dis=%s) header.from=%s", r.DMARC.Result, commentSafe(string(r.DMARC.Policy)),
			commentSafe(string(r.DMARC.Disposition)), propValue(r.DMARC.FromDomain))
	}
	// Signatures are listed while they fit; the rest, and those beyond the
	// verification cap, are summed up in one result, so the value stays
	// within the milter protocol's 64 KB (RFC 8601 allows a result without
	// properties).
	omitted := 0
	for _, s := range r.DKIM {
		if s.Omitted > 0 {
			omitted += s.Omitted
			continue
		}
		why := string(s.Class)
		if s.Detail != "" {
			why = strings.TrimPrefix(why+" "+s.Detail, " ")
		}
		entry := fmt.Sprintf("dkim=%s%s header.d=%s header.s=%s header.a=%s", commentSafe(string(s.Result)), reason(why),
			propValue(s.Domain), propValue(s.Selector), propValue(s.Algorithm))
		if omitted > 0 || b.Len()+len(entry)+len(dmarc)+maxSummary > MaxAuthResults {
			omitted++
			continue
		}
		add("%s", entry)
	}
	if omitted > 0 {
		add("dkim=policy (%s, %d more signatures not listed)", DKIMOverLimit, omitted)
	}
	if dmarc != "" {
		add("%s", dmarc)
	}
	if n == 0 {
		b.WriteString("; none")
	}
	return b.String()
}

// MaxAuthResults bounds the value FormatAuthResults returns, in bytes: a
// milter header modification carries at most 65,535.
const MaxAuthResults = 16 << 10

// maxSummary is room for the summary result and its separator.
const maxSummary = 100

func reason[C ~string](class C) string {
	if class == "" {
		return ""
	}
	return " (" + commentSafe(string(class)) + ")"
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

// maxPropValue caps a pvalue at the length of a DNS name (255 octets,
// RFC 1035 section 2.3.4): d=, s= and a= come from the message and,
// folded there, could push our header past the 998-byte line limit of
// RFC 5322 section 2.1.1.
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
// authserv-id, so that a forged copy from outside can be removed. The ids
// compare as host names would: case, one trailing dot and U-labels against
// A-labels do not tell them apart.
func IsOurs(value, authServID string) bool {
	return normalizeID(AuthServID(value)) == normalizeID(authServID)
}

func normalizeID(id string) string {
	id = strings.TrimSuffix(id, ".")
	if !isASCII(id) {
		if a, err := idna.Lookup.ToASCII(id); err == nil {
			id = a
		}
	}
	return strings.ToLower(id)
}

// wordDecoder decodes RFC 2047 words, passing unknown charsets through
// instead of failing the whole From header.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) {
	return r, nil
}}

// FromDomain extracts the RFC5322.From domain from the From header values
// of a message, with a From* class when there is not exactly one.
func FromDomain(values []string) (domain string, class FromClass) {
	domains, class := FromDomains(values)
	if class != "" {
		return "", class
	}
	return domains[0], ""
}

// FromDomains reads the From header values of a message. class is "" when
// there is exactly one field whose mailboxes share one domain, the case
// DMARC evaluates (RFC 7489 6.6.1); otherwise it says why not (FromNone,
// FromMultiple, FromInvalid). domains holds every distinct domain the
// fields name, normalised (NormalizeDomain), even when class is set: a
// receiver that enforces evaluates each of them, since a mail reader shows
// the recipient one of them. A field that does not parse is searched for
// "@domain" in its raw and its RFC 2047-decoded text.
func FromDomains(values []string) (domains []string, class FromClass) {
	if len(values) == 0 {
		return nil, FromNone
	}
	if len(values) > 1 {
		class = FromMultiple
	}
	seen := map[string]bool{}
	add := func(d string) bool {
		d, ok := fromDomain(d)
		if ok && !seen[d] {
			seen[d] = true
			domains = append(domains, d)
		}
		return ok
	}
	for _, v := range values {
		if !fromField(unfold(v), add) && class == "" {
			class = FromInvalid
		}
	}
	switch {
	case class != "":
	case len(domains) > 1:
		class = FromMultiple
	case len(domains) == 0:
		class = FromInvalid
	}
	return domains, class
}

// fromField hands add every domain of one From field and reports whether
// the field is a valid mailbox list whose domains all are.
func fromField(v string, add func(string) bool) bool {
	p := mail.AddressParser{WordDecoder: wordDecoder}
	addrs, err := p.ParseList(v)
	ok := err == nil && len(addrs) > 0
	for _, a := range addrs {
		ok = add(domainOf(a.Address)) && ok
	}
	if ok {
		return true
	}
	scanDomains(v, add)
	if d, err := wordDecoder.DecodeHeader(v); err == nil && d != v {
		scanDomains(d, add)
	}
	return false
}

// scanDomains hands add the text after each "@" that looks like a domain.
func scanDomains(v string, add func(string) bool) {
	for i := strings.IndexByte(v, '@'); i >= 0; i = strings.IndexByte(v, '@') {
		v = strings.TrimLeft(v[i+1:], " \t\r\n")
		end := strings.IndexFunc(v, func(r rune) bool {
			return r < utf8.RuneSelf && !(r == '.' || r == '-' || r == '_' || isAlnum(byte(r)))
		})
		if end < 0 {
			end = len(v)
		}
		add(v[:end])
	}
}

func isAlnum(c byte) bool { return isAlpha(c) || (c >= '0' && c <= '9') }

// maxFromDomain is the longest From domain whose _dmarc name is a valid
// DNS name (253 octets without the final dot, RFC 1035 section 2.3.4).
const maxFromDomain = 253 - len("_dmarc.")

// fromDomain normalises a From domain. One too long for its _dmarc name
// stands for its organizational domain, so that a long name under a
// protected domain cannot escape its policy.
func fromDomain(d string) (string, bool) {
	d, ok := NormalizeDomain(d)
	if !ok {
		return "", false
	}
	if len(d) > maxFromDomain {
		if d = OrgDomain(d); len(d) > maxFromDomain {
			return "", false
		}
	}
	return d, true
}

// unfold undoes header folding (RFC 5322 2.2.3), which net/mail does not:
// a line break (CRLF, or the bare LF MTAs hand milters) followed by white
// space goes. Without it every folded From header was invalid_from, which
// left DMARC unenforced.
func unfold(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "\n")
	return strings.NewReplacer("\n ", " ", "\n\t", "\t").Replace(v)
}

// AuthMethods is the Table 17 class ("Gmail Incoming Mail
// Authentication") of a message: which of DKIM and SPF authenticated it.
type AuthMethods string

// Authentication classes of Table 17.
const (
	AuthDKIMAndSPF AuthMethods = "dkim_and_spf"
	AuthDKIMOnly   AuthMethods = "dkim_only"
	AuthSPFOnly    AuthMethods = "spf_only"
	AuthNone       AuthMethods = "none"
)

// AuthClass returns the Table 17 class: which of a passing DKIM signature
// and an SPF pass the message has.
func AuthClass(dkimVerdict DKIMStatus, spfResult SPFStatus) AuthMethods {
	d, s := dkimVerdict == DKIMPass, spfResult == SPFPass
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
