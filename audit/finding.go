// Package audit checks the local MTA the way the paper checked MTAs
// (Durumeric et al., IMC 2015, §3.3 and Table 5): does it initiate
// STARTTLS when delivering, does it fall back to cleartext, does it offer
// STARTTLS to senders, which protocols and ciphers it allows, what its
// certificate is worth, whether DANE is on, and what the domains it
// receives mail for publish (SPF, DMARC, MTA-STS, TLS-RPT, TLSA).
//
// It reads the effective configuration, never a guess of it: Postfix
// through postconf (main.cf and master.cf overrides, defaults included),
// Sendmail through its .cf, and the OpenSSL cipher lists through
// `openssl ciphers`. Each finding says why it matters (the paper or an
// RFC) and the line that changes it.
package audit

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/snowrain/snowrain/report"
)

// Status is how a finding judges what the configuration does.
type Status string

// Finding statuses.
const (
	StatusOK   Status = "ok"   // as the paper or the RFC recommends
	StatusWarn Status = "warn" // works, but weaker than it could be
	StatusFail Status = "fail" // unsafe, broken, or mail goes in cleartext
	StatusInfo Status = "info" // a fact worth knowing, no judgement
)

// Finding is one check of the audit.
type Finding struct {
	ID     string `json:"id"`    // stable key, e.g. "outbound.starttls"
	Title  string `json:"title"` // the question it answers
	Status Status `json:"status"`
	// Value is the answer, in words: "yes, opportunistic".
	Value string `json:"value"`
	// Setting is where the answer comes from: "main.cf: smtp_tls_security_level = may",
	// "master.cf smtp/unix: -o …", "Postfix default: …".
	Setting string `json:"setting,omitempty"`
	// Reason cites the paper or the RFC that says why it matters.
	Reason string `json:"reason"`
	// Fix is the line that changes it (a postconf command, an .mc line,
	// a DNS record); empty when nothing needs changing.
	Fix string `json:"fix,omitempty"`
}

// Section is a group of findings: the outbound client, one inbound
// listener, the certificate, one received domain.
type Section struct {
	Name     string    `json:"name"`
	Findings []Finding `json:"findings"`
}

// Report is the whole audit.
type Report struct {
	MTA        string    `json:"mta"`                   // postfix, sendmail
	Version    string    `json:"version"`               // mail_version, DZ
	Config     string    `json:"config"`                // config directory or .cf
	TLSLibrary string    `json:"tls_library,omitempty"` // OpenSSL version and security level
	Sections   []Section `json:"sections"`
	// Domains are the domains the MTA receives mail for, as its
	// configuration lists them (expanded), with where each is listed.
	Domains []Domain `json:"domains,omitempty"`
	// Notes say what the audit could not check.
	Notes []string `json:"notes,omitempty"`
}

// Domain is one domain the MTA receives mail for.
type Domain struct {
	Name   string `json:"name"`
	Source string `json:"source"` // mydestination, virtual_mailbox_domains, …
}

// Counts returns how many findings have each status.
func (r *Report) Counts() map[Status]int {
	n := map[Status]int{}
	for _, s := range r.Sections {
		for _, f := range s.Findings {
			n[f.Status]++
		}
	}
	return n
}

// Find returns the finding with id in the named section ("" searches all).
func (r *Report) Find(section, id string) (Finding, bool) {
	for _, s := range r.Sections {
		if section != "" && s.Name != section {
			continue
		}
		for _, f := range s.Findings {
			if f.ID == id {
				return f, true
			}
		}
	}
	return Finding{}, false
}

// Formats Write renders.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Write renders r as text or JSON. Values read from DNS or files are
// escaped for the format (report's encoders): a TXT record can carry
// terminal controls.
func Write(w io.Writer, format string, r *Report) error {
	switch format {
	case FormatJSON:
		return report.Write(w, report.FormatJSON, &report.Document{Title: "snowrain audit", JSON: r})
	case FormatText, "":
		var b bytes.Buffer
		writeText(&b, r)
		_, err := w.Write(b.Bytes())
		return err
	}
	return fmt.Errorf("audit: format %q: want text or json", format)
}

var marks = map[Status]string{StatusOK: "[ok]  ", StatusWarn: "[WARN]", StatusFail: "[FAIL]", StatusInfo: "[info]"}

func writeText(b *bytes.Buffer, r *Report) {
	c := report.CleanText
	fmt.Fprintf(b, "snowrain audit: %s, %s\n", c(r.Version), c(r.Config))
	if r.TLSLibrary != "" {
		fmt.Fprintf(b, "TLS library: %s\n", c(r.TLSLibrary))
	}
	n := r.Counts()
	fmt.Fprintf(b, "%d failing, %d warnings, %d ok, %d for information\n", n[StatusFail], n[StatusWarn], n[StatusOK], n[StatusInfo])
	for _, s := range r.Sections {
		fmt.Fprintf(b, "\n%s\n%s\n", c(s.Name), strings.Repeat("-", len([]rune(c(s.Name)))))
		for _, f := range s.Findings {
			fmt.Fprintf(b, "%s %s: %s\n", marks[f.Status], c(f.Title), c(f.Value))
			if f.Setting != "" {
				fmt.Fprintf(b, "       Set by: %s\n", c(f.Setting))
			}
			fmt.Fprintf(b, "       Why:    %s\n", c(f.Reason))
			if f.Fix != "" {
				fmt.Fprintf(b, "       Change: %s\n", c(f.Fix))
			}
		}
	}
	for _, note := range r.Notes {
		fmt.Fprintf(b, "\nNote: %s\n", c(note))
	}
}

// judge records what a finding found: its status and the answer in
// words, why it matters (the paper or an RFC), and the fix, "" when
// nothing needs changing.
func (f *Finding) judge(status Status, value, reason, fix string) {
	f.Status, f.Value, f.Reason, f.Fix = status, value, reason, fix
}
