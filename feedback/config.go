package feedback

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/resolver"
)

// Config is what gathering and sending need.
type Config struct {
	OrgName      string // org_name / organization-name; default Submitter
	Submitter    string // our reporting domain
	From         string // envelope and header sender of report mail
	Contact      string // email / contact-info; default From
	ExtraContact string
	SendingIP    string // sending-mta-ip of TLS reports; "" leaves it out
	Exclude      []string

	Resolver resolver.Resolver // DNS for rua checks, _smtp._tls and TLSA
	// Sendmail is the submission command (argv); "-i -f FROM -- RCPT" is
	// appended. SMTPRelay (HOST:PORT), when set, is used instead.
	Sendmail  []string
	SMTPRelay string
	// HTTPTimeout bounds one HTTPS POST (default: config's); Dial, when set,
	// replaces the dialer that refuses non-public addresses (tests point
	// it at loopback); RootCAs, when set, replaces the system roots.
	HTTPTimeout time.Duration
	Dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	RootCAs     *x509.CertPool
	// DKIM, when set, signs every report message.
	DKIM *DKIM
	// DNSTimeout bounds each lookup (default 10 s).
	DNSTimeout time.Duration
	Log        *slog.Logger
	Now        func() time.Time
}

func (c *Config) defaults() {
	if c.OrgName == "" {
		c.OrgName = c.Submitter
	}
	if c.Contact == "" {
		c.Contact = c.From
	}
	d := config.Default().Reports
	if len(c.Sendmail) == 0 {
		c.Sendmail = strings.Fields(d.Sendmail)
	}
	config.OrDefault(&c.HTTPTimeout, d.HTTPTimeout.Duration)
	if c.DNSTimeout <= 0 {
		c.DNSTimeout = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) excluded(domain string) bool {
	for _, e := range c.Exclude {
		if strings.EqualFold(strings.TrimSuffix(e, "."), domain) {
			return true
		}
	}
	return false
}

// Day is the UTC day [Begin, End) a report covers (RFC 8460 4.1; RFC 7489
// reports default to the same 24 hours).
type Day struct{ Begin, End time.Time }

// DayOf returns the UTC day holding t.
func DayOf(t time.Time) Day {
	b := time.Date(t.UTC().Year(), t.UTC().Month(), t.UTC().Day(), 0, 0, 0, 0, time.UTC)
	return Day{Begin: b, End: b.AddDate(0, 0, 1)}
}

// ParseDay reads YYYY-MM-DD as a UTC day.
func ParseDay(s string) (Day, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return Day{}, err
	}
	return DayOf(t), nil
}
