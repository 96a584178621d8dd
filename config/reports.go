package config

import (
	"fmt"
	"net/mail"
	"net/netip"
	"strings"
)

// Reports is the sending of DMARC aggregate reports (RFC 7489 7.2) and
// SMTP TLS reports (RFC 8460) by `snowrain reports send`.
type Reports struct {
	DMARC  bool `toml:"dmarc"`  // send aggregate reports for inbound mail
	TLSRPT bool `toml:"tlsrpt"` // send TLS reports for outbound deliveries
	// OrgName is org_name / organization-name; default: Submitter.
	OrgName string `toml:"org_name"`
	// Submitter is our reporting domain: Submitter:, TLS-Report-Submitter:
	// and the first part of file names; default: authserv_id.
	Submitter string `toml:"submitter"`
	// From is the envelope and header sender of report mail, and the
	// contact (email / contact-info) unless Contact is set.
	From         string `toml:"from"`
	Contact      string `toml:"contact"`
	ExtraContact string `toml:"extra_contact"` // extra_contact_info, e.g. a URL
	// SendingIP is the sending-mta-ip of TLS reports (our MTA's public
	// address; Postfix does not log it); empty: left out.
	SendingIP string `toml:"sending_ip"`
	// Sendmail is the local MTA's submission command; "-i -f FROM --
	// RCPT" is appended. Ignored when SMTPRelay is set.
	Sendmail string `toml:"sendmail"`
	// SMTPRelay, HOST:PORT, sends report mail by SMTP to that relay instead.
	SMTPRelay string `toml:"smtp_relay"`
	// HTTPTimeout bounds one HTTPS POST of a TLS report.
	HTTPTimeout Duration `toml:"http_timeout"`
	// Exclude lists domains never reported on.
	Exclude []string `toml:"exclude"`
	// DKIMKey (a PEM private key, RSA or Ed25519), DKIMSelector and
	// DKIMDomain sign report mail; leave empty when the MTA signs.
	DKIMKey      string `toml:"dkim_key"`
	DKIMSelector string `toml:"dkim_selector"`
	DKIMDomain   string `toml:"dkim_domain"`
}

func defaultReports() Reports {
	return Reports{DMARC: true, TLSRPT: true, Sendmail: "/usr/sbin/sendmail", HTTPTimeout: Duration{30e9}}
}

func (r *Reports) validate() error {
	if r.From != "" {
		if _, err := mail.ParseAddress(r.From); err != nil || strings.ContainsAny(r.From, "<>\r\n ") {
			return fmt.Errorf("config: reports.from %q: want a bare address", r.From)
		}
	}
	if r.Contact != "" && strings.ContainsAny(r.Contact, "\r\n") {
		return fmt.Errorf("config: reports.contact: no line breaks")
	}
	if r.SendingIP != "" {
		if _, err := netip.ParseAddr(r.SendingIP); err != nil {
			return fmt.Errorf("config: reports.sending_ip: %w", err)
		}
	}
	if r.DKIMKey != "" && (r.DKIMSelector == "" || r.DKIMDomain == "") {
		return fmt.Errorf("config: reports.dkim_key needs dkim_selector and dkim_domain")
	}
	if r.SMTPRelay == "" && strings.TrimSpace(r.Sendmail) == "" {
		return fmt.Errorf("config: reports: set sendmail or smtp_relay")
	}
	return nil
}
