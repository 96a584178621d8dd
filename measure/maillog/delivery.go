package maillog

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/snowrain/snowrain/tlsinfo"
)

// TLS verification levels, weakest first.
const (
	LevelNone      = "none"
	LevelAnonymous = "anonymous"
	LevelUntrusted = "untrusted"
	LevelTrusted   = "trusted"
	LevelVerified  = "verified"
	LevelDANE      = "dane"
)

// Delivery is one outbound delivery attempt to one recipient.
type Delivery struct {
	Time       time.Time
	MTA        string // postfix, sendmail
	QueueID    string
	Domain     string // recipient domain
	RelayHost  string
	RelayIP    string
	RelayPort  int
	Status     string // sent, deferred, bounced
	DSN        string
	Delay      float64
	TLSVersion string
	Cipher     string
	CipherBits int
	Level      string // one of the Level* constants
	Suite      tlsinfo.Suite
}

// tlsState is what a TLS line said about one connection.
type tlsState struct {
	relay   string // "host[ip]:port" (Postfix) or host (Sendmail)
	version string
	cipher  string
	bits    int
	level   string
}

func (d *Delivery) setTLS(t tlsState) {
	d.TLSVersion, d.Cipher, d.CipherBits, d.Level = t.version, t.cipher, t.bits, t.level
	d.Suite = tlsinfo.Parse(t.cipher)
}

// fields splits "k=v, k=v (comment), k=v" at top-level commas.
func fields(s string) map[string]string {
	out := map[string]string{}
	depth := 0
	start := 0
	flush := func(end int) {
		kv := strings.TrimSpace(s[start:end])
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				flush(i)
				start = i + 1
			}
		}
	}
	flush(len(s))
	return out
}

// splitRelay reads Postfix's "host[ip]:port" or Sendmail's "host. [ip]".
func splitRelay(r string) (host, ip string, port int) {
	r = strings.TrimSpace(r)
	// The address is the last bracketed part: Sendmail writes a relay
	// without a name as "[192.0.2.1] [192.0.2.1]".
	open := strings.LastIndexByte(r, '[')
	close := strings.LastIndexByte(r, ']')
	if open < 0 || close < open {
		return strings.TrimSuffix(r, "."), "", 0
	}
	host = strings.TrimSuffix(strings.TrimSpace(r[:open]), ".")
	ip = strings.TrimPrefix(r[open+1:close], "IPv6:")
	if net.ParseIP(ip) == nil {
		ip = ""
	}
	if p, err := strconv.Atoi(strings.TrimPrefix(r[close+1:], ":")); err == nil {
		port = p
	}
	return host, ip, port
}

func recipientDomain(to string) string {
	to = strings.Trim(strings.TrimSpace(to), "<>")
	if i := strings.LastIndexByte(to, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSuffix(to[i+1:], "."))
	}
	return ""
}
