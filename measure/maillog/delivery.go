package maillog

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/tlsinfo"
)

// Level is how far a delivery's TLS session was verified: the first
// word of Postfix's "… TLS connection established" line (the peer
// certificate verification levels of Postfix's TLS_README), Sendmail's
// verify= mapped onto it, and DANE when the tls= field says the dane
// level was in force.
type Level string

// TLS verification levels, weakest first.
const (
	LevelNone      Level = "none"      // plaintext
	LevelAnonymous Level = "anonymous" // TLS without a certificate checked (anonymous cipher, or Sendmail verify=NO)
	LevelUntrusted Level = "untrusted" // a certificate that did not verify
	LevelTrusted   Level = "trusted"   // a certificate that chains to a trusted CA, name not checked
	LevelVerified  Level = "verified"  // trusted and matching the policy's names (verify, secure)
	LevelDANE      Level = "dane"      // authenticated by DNSSEC TLSA records (RFC 7672)
)

// Status is what one delivery attempt to one recipient came to. Only
// StatusSent is a delivery in the paper's sense (Section 4: messages
// delivered, and of those the share over TLS); a bounce is final but
// nothing was delivered, a deferral is one attempt of a message that may
// be delivered later.
type Status string

// Delivery statuses: Postfix's status= words (and Sendmail's stat= and
// DSN classes, RFC 3463 section 3.1, mapped onto them).
const (
	StatusSent     Status = "sent"
	StatusDeferred Status = "deferred"
	StatusBounced  Status = "bounced"
)

// Length limits applied while parsing (RFC 5321 §4.5.3.1): a field
// beyond them makes the line broken rather than being stored.
const (
	MaxDomain  = 255 // §4.5.3.1.2
	MaxPath    = 256 // §4.5.3.1.3, with the angle brackets
	maxQueueID = 32
	maxCipher  = 64
)

// Delivery is one outbound delivery attempt to one recipient.
type Delivery struct {
	Time       time.Time
	MTA        string // postfix, sendmail
	QueueID    string
	Domain     string // recipient domain: lower case, A-labels, no trailing dot
	RelayHost  string // "" when there was no connection (Postfix relay=none)
	RelayIP    string
	RelayPort  int
	ConnUse    int // Postfix's conn_use=: the connection's Nth delivery (0: not said)
	Status     Status
	DSN        string
	Delay      float64
	TLSVersion string
	Cipher     string
	CipherBits int
	Level      Level
	Suite      tlsinfo.Suite
}

// tlsState is what a TLS line said about one connection.
type tlsState struct {
	relay   string // "host[ip]:port" (Postfix) or host (Sendmail)
	version string
	cipher  string
	bits    int
	level   Level
}

func (d *Delivery) setTLS(t tlsState) {
	d.TLSVersion, d.Cipher, d.CipherBits, d.Level = t.version, t.cipher, t.bits, t.level
	d.Suite = tlsinfo.Parse(t.cipher)
}

// splitRelay reads Postfix's "host[ip]:port" or Sendmail's "host. [ip]".
// The host name comes from the receiver's DNS: one that is not a host
// name is dropped, never stored as it is.
func splitRelay(r string) (host, ip string, port int) {
	r = strings.TrimSpace(r)
	if r == "none" {
		return "", "", 0
	}
	// The address is the last bracketed part: Sendmail writes a relay
	// without a name as "[192.0.2.1] [192.0.2.1]".
	open := strings.LastIndexByte(r, '[')
	close := strings.LastIndexByte(r, ']')
	if open < 0 || close < open {
		return relayHost(r), "", 0
	}
	host = relayHost(strings.TrimSpace(r[:open]))
	if a, err := netip.ParseAddr(strings.TrimPrefix(r[open+1:close], "IPv6:")); err == nil {
		ip = a.String()
	}
	if p, err := strconv.Atoi(strings.TrimPrefix(r[close+1:], ":")); err == nil && p > 0 && p < 1<<16 {
		port = p
	}
	return host, ip, port
}

// relayHost normalises a relay host name, or an address literal as
// Sendmail writes one, and returns "" for anything else.
func relayHost(h string) string {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		if _, err := netip.ParseAddr(strings.TrimPrefix(h[1:len(h)-1], "IPv6:")); err == nil {
			return h
		}
		return ""
	}
	d, ok := normDomain(h)
	if !ok {
		return ""
	}
	return d
}

// addrDomain returns the normalised domain of an address in RFC 5321
// external form ("local@domain", the local part possibly quoted), or
// false when there is none or it is not a domain.
func addrDomain(addr string) (string, bool) {
	if len(addr) > MaxPath {
		return "", false
	}
	at, open := auth.DomainAt(addr)
	if at < 0 || open {
		return "", false
	}
	return normDomain(addr[at+1:])
}

// normDomain brings a domain to the form identities are compared in
// (lower case, one trailing dot removed, A-labels) and checks that it is
// one: at most 255 octets, labels of 1 to 63 letters, digits, '-' or
// '_', or an address literal (RFC 5321 §4.1.3).
func normDomain(d string) (string, bool) {
	if len(d) == 0 || len(d) > MaxDomain+1 || !utf8.ValidString(d) {
		return "", false
	}
	d = strings.TrimSuffix(d, ".")
	if strings.HasPrefix(d, "[") && strings.HasSuffix(d, "]") {
		lit := d[1 : len(d)-1]
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			if a, err := netip.ParseAddr(v6); err == nil && a.Is6() {
				return "[IPv6:" + a.String() + "]", true
			}
			return "", false
		}
		if a, err := netip.ParseAddr(lit); err == nil && a.Is4() {
			return "[" + a.String() + "]", true
		}
		return "", false
	}
	for i := 0; i < len(d); i++ {
		if d[i] >= utf8.RuneSelf {
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return "", false
			}
			d = a
			break
		}
	}
	d = strings.ToLower(d)
	if len(d) == 0 || len(d) > MaxDomain {
		return "", false
	}
	for _, label := range strings.Split(d, ".") {
		if len(label) == 0 || len(label) > 63 { // RFC 1035 section 2.3.4
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return d, true
}

// validQueueID accepts Postfix's short (hex) and long queue IDs and
// Sendmail's.
func validQueueID(q string) bool {
	if len(q) < 4 || len(q) > maxQueueID {
		return false
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
