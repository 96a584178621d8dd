// Package milter is snowrain's mail filter: attached to Postfix or
// Sendmail, it records every connection's TLS state and every message's
// SPF, DKIM and DMARC verdicts, and writes Authentication-Results.
package milter

import (
	"net/netip"
	"slices"
	"strings"
	"time"
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

	// Enforcement, off by default: the filter only observes.
	EnforceDMARC     bool
	EnforceDomains   []string // when set, enforce only for these From domains
	QuarantineAction string   // "header" (default) or "hold"
}

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

func (c *Config) enforces(fromDomain string) bool {
	if !c.EnforceDMARC {
		return false
	}
	if len(c.EnforceDomains) == 0 {
		return true
	}
	for _, d := range c.EnforceDomains {
		if strings.EqualFold(d, fromDomain) {
			return true
		}
	}
	return false
}
