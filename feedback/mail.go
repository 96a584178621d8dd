package feedback

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/dmarcrpt"
	"github.com/snowrain/snowrain/tlsrpt"
)

// Attachment is a report file in a message.
type Attachment struct {
	Name, Type string
	Data       []byte
}

// letter is a report message before it is addressed.
type letter struct {
	subject     string
	headers     [][2]string // more header fields, e.g. TLS-Report-Domain
	contentType string      // multipart/mixed or multipart/report; report-type="tlsrpt"
	text        string
	attachment  *Attachment
}

// compose writes the message to one recipient; every value written into
// a header was checked (safeHeader) or is ours.
func (c *Config) compose(l *letter, to string, date time.Time) ([]byte, error) {
	for _, v := range append([]string{l.subject, to, c.From}, flatten(l.headers)...) {
		if !safeHeader(v) {
			return nil, fmt.Errorf("feedback: unsafe header value %.60q", v)
		}
	}
	sum := sha256.Sum256([]byte(l.subject + to))
	boundary := "snowrain-report-" + hex.EncodeToString(sum[:12])
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n", c.From, to, l.subject, date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%d@%s>\r\n", hex.EncodeToString(sum[:8]), date.Unix(), c.Submitter)
	for _, h := range l.headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	fmt.Fprintf(&b, "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: %s; boundary=\"%s\"\r\n\r\n", l.contentType, boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n%s\r\n", boundary,
		strings.ReplaceAll(l.text, "\n", "\r\n"))
	if a := l.attachment; a != nil {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: %s\r\n\r\n",
			boundary, a.Type, mime.FormatMediaType("attachment", map[string]string{"filename": a.Name}))
		enc := base64.StdEncoding.EncodeToString(a.Data)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	if c.DKIM != nil {
		return c.DKIM.sign(b.Bytes())
	}
	return b.Bytes(), nil
}

func flatten(hs [][2]string) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h[1])
	}
	return out
}

// safeHeader refuses what could end a header field or start another:
// values come from DNS and from the store, which peers fill.
func safeHeader(v string) bool {
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r > 0x7e {
			return false
		}
	}
	return len(v) < 900
}

// validDomain is a host name fit for headers and file names, at most 253
// octets (RFC 1035 section 2.3.4, without the final dot).
func validDomain(d string) bool {
	_, ok := dns.IsDomainName(d)
	return ok && d != "" && !strings.ContainsAny(d, " \t\r\n\"\\!/<>@;,") && len(d) <= 253
}

// mailAddress parses a mailto: URI's address: one plain addr-spec whose
// domain is a host name, nothing an MTA's command line or a header could
// take for something else.
func mailAddress(opaque string) (string, bool) {
	addr, _, _ := strings.Cut(opaque, "?") // no hfields (RFC 6068) in reports
	addr, err := url.PathUnescape(addr)
	if err != nil || addr == "" || strings.HasPrefix(addr, "-") || strings.ContainsAny(addr, " \t\r\n<>(),;:\"\\") {
		return "", false
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr {
		return "", false
	}
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || !validDomain(addr[i+1:]) {
		return "", false
	}
	return addr, true
}

// dmarcLetter is an aggregate report message (RFC 7489 7.2.1.1).
func (c *Config) dmarcLetter(r *DMARCReport, day Day, gz []byte) *letter {
	id := r.Feedback.Metadata.ReportID
	return &letter{
		subject:     subjectDMARC(r.Domain, c.Submitter, id),
		contentType: "multipart/mixed",
		text: fmt.Sprintf("This is a DMARC aggregate report (RFC 7489) for %s from %s,\ncovering %s to %s UTC.\n",
			r.Domain, c.Submitter, day.Begin.Format(time.DateTime), day.End.Format(time.DateTime)),
		attachment: &Attachment{Name: dmarcFilename(c.Submitter, r.Domain, day), Type: "application/gzip", Data: gz},
	}
}

func subjectDMARC(domain, submitter, id string) string {
	return "Report Domain: " + domain + " Submitter: " + submitter + " Report-ID: <" + id + ">"
}

// tooBigLetter tells a destination that a report exceeded its size limit
// (RFC 7489 7.2.2).
func (c *Config) tooBigLetter(r *DMARCReport, size, limit int64) *letter {
	return &letter{
		subject:     subjectDMARC(r.Domain, c.Submitter, r.Feedback.Metadata.ReportID),
		contentType: "multipart/mixed",
		text: fmt.Sprintf("A DMARC aggregate report for %s from %s is available but was not sent:\n"+
			"its message has %d bytes, more than the limit of %d bytes in your rua= URI.\n", r.Domain, c.Submitter, size, limit),
	}
}

// tlsLetter is a TLS report message (RFC 8460 5.3).
func (c *Config) tlsLetter(r *TLSReport, day Day, gz []byte) *letter {
	return &letter{
		subject: "Report Domain: " + r.Domain + " Submitter: " + c.Submitter + " Report-ID: <" + r.Report.ReportID + ">",
		headers: [][2]string{{"TLS-Report-Domain", r.Domain}, {"TLS-Report-Submitter", c.Submitter}},
		// RFC 8460 5.3: multipart/report with report-type "tlsrpt".
		contentType: `multipart/report; report-type="tlsrpt"`,
		text: fmt.Sprintf("This is an aggregate TLS report (RFC 8460) for %s from %s,\ncovering %s to %s UTC.\n",
			r.Domain, c.Submitter, day.Begin.Format(time.DateTime), day.End.Format(time.DateTime)),
		attachment: &Attachment{Name: tlsFilename(c.Submitter, r.Domain, day), Type: "application/tlsrpt+gzip", Data: gz},
	}
}

func dmarcFilename(submitter, domain string, day Day) string {
	return dmarcrpt.Filename(submitter, domain, day.Begin, day.End.Add(-time.Second), "", true)
}

func tlsFilename(submitter, domain string, day Day) string {
	return tlsrpt.Filename(submitter, domain, day.Begin, day.End.Add(-time.Second), "", true)
}
