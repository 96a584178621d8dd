// Package milter is snowrain's mail filter: attached to Postfix or
// Sendmail, it records every connection's TLS state and every message's
// SPF, DKIM and DMARC verdicts, and writes Authentication-Results.
package milter

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/measure"
)

// Config is the reloadable behaviour of the filter.
type Config struct {
	AuthServID        string
	SubmissionDaemons []string       // daemon names whose mail is outbound
	InternalNets      []netip.Prefix // client networks whose mail is outbound
	DNSBudget         time.Duration  // all DNS of one message
	MaxSignatures     int            // DKIM signatures verified per message
	StoreLocalparts   bool
	CheckHelo         bool

	MaxHeaderBytes int // header bytes per message kept for DKIM and From

	// Enforcement, off by default: the filter only observes.
	EnforceDMARC     bool
	EnforceDomains   []string // when set, enforce only for these From domains
	QuarantineAction string   // QuarantineHeader (default) or QuarantineHold
	// InvalidFrom is what enforcement does with a message DMARC cannot
	// evaluate because its From is missing, repeated, names several
	// domains or does not parse (RFC 7489 6.6.1 leaves it to the
	// receiver): reject (default), quarantine or accept. The domains
	// that can be read from it are evaluated all the same.
	InvalidFrom measure.Action

	// Limits of the milter connection, applied when the server is
	// created (NewServer), not on reload.
	MaxPacket   int           // largest packet read, in bytes
	ReadTimeout time.Duration // from the first byte of a packet to its last
	IdleTimeout time.Duration // wait for the next packet
}

// Default limits. Postfix sends body chunks of at most 65,535 bytes and
// header fields of at most header_size_limit (100 KB); Sendmail 8.14+ may
// negotiate 1 MB chunks (1,048,575 bytes plus the command byte): a packet of
// 1 MiB fits both, and five connections declaring 128 MiB cost 5 MiB. The
// idle timeout outlasts a slow client's DATA, during which the milter
// connection is silent (Postfix smtpd_timeout and Sendmail
// Timeout.datablock are per read, so an upload may take long); libmilter
// uses 2 h.
const (
	DefaultMaxPacket      = 1 << 20
	DefaultReadTimeout    = 30 * time.Second
	DefaultIdleTimeout    = time.Hour
	DefaultMaxHeaderBytes = 1 << 20
)

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.AuthServID == "" {
		c.AuthServID = "localhost"
	}
	if c.DNSBudget <= 0 {
		c.DNSBudget = 5 * time.Second
	}
	if c.MaxSignatures <= 0 {
		c.MaxSignatures = 8
	}
	if c.QuarantineAction == "" {
		c.QuarantineAction = "header"
	}
	if c.InvalidFrom == "" {
		c.InvalidFrom = "reject"
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxPacket <= 0 {
		c.MaxPacket = DefaultMaxPacket
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
}

// How a quarantined message is quarantined.
const (
	QuarantineHeader = "header" // accepted with an X-Snowrain-Quarantine header
	QuarantineHold   = "hold"   // put on the MTA's hold queue (SMFIR_QUARANTINE)
)

// direction is the direction of a connection's mail (outbound).
func (c *Config) direction(ci *ConnInfo) measure.Direction {
	if c.outbound(ci) {
		return measure.Outbound
	}
	return measure.Inbound
}

// outbound decides the direction of a connection. Inbound is mail from an
// SMTP client on the Internet side; local submission (no client port:
// Postfix's non-SMTP mail), SASL-authenticated clients, submission
// daemons and internal networks are outbound. None of these is a branch a
// remote client can choose.
func (c *Config) outbound(ci *ConnInfo) bool {
	if ci.Local || ci.AuthUser != "" || slices.Contains(c.SubmissionDaemons, ci.Daemon) {
		return true
	}
	ip, err := netip.ParseAddr(ci.ClientIP)
	if err != nil {
		return false
	}
	for _, n := range c.InternalNets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// enforces reports whether enforcement covers a From domain; domains
// compare normalised (case, one trailing dot, A-labels).
func (c *Config) enforces(fromDomain string) bool {
	if !c.EnforceDMARC {
		return false
	}
	if len(c.EnforceDomains) == 0 {
		return true
	}
	from, _ := auth.NormalizeDomain(fromDomain)
	for _, d := range c.EnforceDomains {
		if n, ok := auth.NormalizeDomain(strings.TrimSpace(d)); ok && n == from {
			return true
		}
	}
	return false
}
