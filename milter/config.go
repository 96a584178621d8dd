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
	"github.com/snowrain/snowrain/config"
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

// ConfigFrom is the filter's part of the configuration c.
func ConfigFrom(c config.Config) Config {
	nets, _ := c.Networks()
	return Config{AuthServID: c.AuthServID, SubmissionDaemons: c.SubmissionDaemons,
		InternalNets: nets, DNSBudget: c.DNSBudget.Duration, MaxSignatures: c.MaxSignatures,
		StoreLocalparts: c.StoreLocalparts, CheckHelo: c.CheckHelo,
		EnforceDMARC: c.Enforce.DMARC, EnforceDomains: c.Enforce.Domains,
		QuarantineAction: c.Enforce.Quarantine, InvalidFrom: measure.Action(c.Enforce.InvalidFrom),
		MaxHeaderBytes: c.MaxHeaderBytes, MaxPacket: c.MilterMaxPacket,
		ReadTimeout: c.MilterReadTimeout.Duration, IdleTimeout: c.MilterIdleTimeout.Duration}
}

// Defaults fills the unset fields with the configuration's defaults
// (config.Default): the authserv-id is the host name, the limits those
// config.Default explains.
func (c *Config) Defaults() {
	d := ConfigFrom(config.Default())
	config.OrDefault(&c.AuthServID, d.AuthServID)
	config.OrDefault(&c.DNSBudget, d.DNSBudget)
	config.OrDefault(&c.MaxSignatures, d.MaxSignatures)
	config.OrDefault(&c.QuarantineAction, d.QuarantineAction)
	config.OrDefault(&c.InvalidFrom, d.InvalidFrom)
	config.OrDefault(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	config.OrDefault(&c.MaxPacket, d.MaxPacket)
	config.OrDefault(&c.ReadTimeout, d.ReadTimeout)
	config.OrDefault(&c.IdleTimeout, d.IdleTimeout)
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
