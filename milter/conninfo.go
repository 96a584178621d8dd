package milter

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/snowrain/snowrain/tlsinfo"
)

// ConnInfo is what the MTA's macros say about one SMTP connection. Postfix
// and Sendmail send the same names: {tls_version}, {cipher},
// {cipher_bits}, {cert_subject}, {cert_issuer}, {verify}, {auth_authen},
// {daemon_name}, j, v, _ and {client_addr}.
type ConnInfo struct {
	ClientIP   string
	ClientPTR  string
	Daemon     string
	MTAName    string // j
	MTAVersion string // v
	TLSVersion string
	Cipher     string
	CipherBits int
	Suite      tlsinfo.Suite
	CertSubj   string
	CertIssuer string
	Verify     string // OK, NO, FAIL, NONE … (Sendmail); derived for Postfix
	AuthUser   string
	// Local: the MTA's connect event named no client port. Postfix sends
	// port 0 (client "localhost", 127.0.0.1) for mail submitted without
	// SMTP, through non_smtpd_milters: sendmail(1), pickup, the report
	// mail; a TCP client always has a port.
	Local bool
}

// MacroGetter is the part of go-milter's Modifier that reads macros.
type MacroGetter interface {
	Get(name string) string
}

// Update refreshes the fields the macros carry at this stage; empty
// macros never erase what an earlier stage said.
func (ci *ConnInfo) Update(m MacroGetter) {
	set := func(dst *string, name string) {
		if v := clean(m.Get(name)); v != "" {
			*dst = v
		}
	}
	set(&ci.Daemon, "{daemon_name}")
	set(&ci.MTAName, "j")
	set(&ci.MTAVersion, "v")
	if ip := parseIP(m.Get("{client_addr}")); ip != "" {
		ci.ClientIP = ip
	}
	if ci.ClientPTR == "" {
		ci.ClientPTR = ptrFromUnderscore(m.Get("_"))
	}
	if v := tlsinfo.NormalizeVersion(clean(m.Get("{tls_version}"))); v != "" {
		ci.TLSVersion = v
	}
	// The macro is seen again at every later stage: parsed when it changes.
	if c := clean(m.Get("{cipher}")); c != "" && c != ci.Cipher {
		ci.Cipher = c
		ci.Suite = tlsinfo.Parse(c)
	}
	if b, err := strconv.Atoi(strings.TrimSpace(m.Get("{cipher_bits}"))); err == nil && b >= 0 && b < 1<<16 {
		ci.CipherBits = b
	}
	set(&ci.CertSubj, "{cert_subject}")
	set(&ci.CertIssuer, "{cert_issuer}")
	set(&ci.Verify, "{verify}")
	set(&ci.AuthUser, "{auth_authen}")
	if ci.Verify == "" && ci.CertSubj != "" {
		ci.Verify = "OK" // Postfix passes the subject only for verified certificates
	}
}

// TLSSummary renders the TLS state for the Authentication-Results comment.
func (ci *ConnInfo) TLSSummary() string {
	if ci.TLSVersion == "" {
		return ""
	}
	s := ci.TLSVersion + " " + ci.Cipher
	if ci.CipherBits > 0 {
		s += " " + strconv.Itoa(ci.CipherBits) + "bits"
	}
	return s
}

// parseIP accepts "1.2.3.4", "[1.2.3.4]", "IPv6:2001:db8::1".
func parseIP(s string) string {
	s = strings.TrimPrefix(strings.Trim(strings.TrimSpace(s), "[]"), "IPv6:")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	return a.Unmap().String()
}

// ptrFromUnderscore reads the client name from the "_" macro, which both
// MTAs render as "name [addr]" (Sendmail may append " (may be forged)").
func ptrFromUnderscore(s string) string {
	s = strings.TrimSpace(s)
	name, _, ok := strings.Cut(s, " [")
	if !ok || name == "unknown" || strings.HasPrefix(name, "[") {
		return ""
	}
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name = name[i+1:]
	}
	return clean(name)
}

// clean bounds and sanitises untrusted macro text before it is stored:
// valid UTF-8, no control characters, at most 255 bytes cut on a rune
// boundary.
func clean(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) <= 255 {
		return s
	}
	i := 255
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
