// Package dmarcrpt holds DMARC aggregate reports (RFC 7489 section 7.2,
// Appendix C): the XML document's types, its encoding as the RFC's schema
// wants it, and a bounded parser for the reports receivers send.
package dmarcrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Disposition is a DMARC policy action (Appendix C DispositionType).
type Disposition string

// Dispositions.
const (
	DispositionNone       Disposition = "none"
	DispositionQuarantine Disposition = "quarantine"
	DispositionReject     Disposition = "reject"
)

// Result is a DMARC-aligned result (Appendix C DMARCResultType).
type Result string

// DMARC-aligned results.
const (
	Pass Result = "pass"
	Fail Result = "fail"
)

// Reasons a disposition differs from the policy (Appendix C
// PolicyOverrideType).
const (
	ReasonForwarded        = "forwarded"
	ReasonSampledOut       = "sampled_out"
	ReasonTrustedForwarder = "trusted_forwarder"
	ReasonMailingList      = "mailing_list"
	ReasonLocalPolicy      = "local_policy"
	ReasonOther            = "other"
)

// Feedback is one aggregate report (the schema's root element).
type Feedback struct {
	XMLName  xml.Name        `xml:"feedback"`
	Version  string          `xml:"version,omitempty"`
	Metadata ReportMetadata  `xml:"report_metadata"`
	Policy   PolicyPublished `xml:"policy_published"`
	Records  []Record        `xml:"record"`
}

// ReportMetadata says who reports on which period.
type ReportMetadata struct {
	OrgName          string    `xml:"org_name"`
	Email            string    `xml:"email"`
	ExtraContactInfo string    `xml:"extra_contact_info,omitempty"`
	ReportID         string    `xml:"report_id"`
	DateRange        DateRange `xml:"date_range"`
	Errors           []string  `xml:"error,omitempty"`
}

// DateRange is the period in seconds since the epoch, UTC.
type DateRange struct {
	Begin int64 `xml:"begin"`
	End   int64 `xml:"end"`
}

// PolicyPublished is the DMARC record the receiver found.
type PolicyPublished struct {
	Domain string      `xml:"domain"`
	ADKIM  string      `xml:"adkim,omitempty"`
	ASPF   string      `xml:"aspf,omitempty"`
	P      Disposition `xml:"p"`
	SP     Disposition `xml:"sp"`
	Pct    int         `xml:"pct"`
	Fo     string      `xml:"fo"`
	// NP (RFC 9091) is read from reports that carry it (DMARCbis); RFC
	// 7489's schema has no place for it, so ours leave it empty.
	NP Disposition `xml:"np,omitempty"`
}

// Record is one row of counts with the identifiers and results it groups.
type Record struct {
	Row         Row         `xml:"row"`
	Identifiers Identifiers `xml:"identifiers"`
	AuthResults AuthResults `xml:"auth_results"`
}

// Row is a source address, a message count and what DMARC made of them.
type Row struct {
	SourceIP        string          `xml:"source_ip"`
	Count           int64           `xml:"count"`
	PolicyEvaluated PolicyEvaluated `xml:"policy_evaluated"`
}

// PolicyEvaluated is the disposition applied and the aligned results.
type PolicyEvaluated struct {
	Disposition Disposition `xml:"disposition"`
	DKIM        Result      `xml:"dkim"`
	SPF         Result      `xml:"spf"`
	Reasons     []Reason    `xml:"reason,omitempty"`
}

// Reason explains a disposition other than the policy's.
type Reason struct {
	Type    string `xml:"type"`
	Comment string `xml:"comment,omitempty"`
}

// Identifiers are the domains of the messages counted.
type Identifiers struct {
	EnvelopeTo   string `xml:"envelope_to,omitempty"`
	EnvelopeFrom string `xml:"envelope_from"`
	HeaderFrom   string `xml:"header_from"`
}

// AuthResults are the DKIM and SPF results, not interpreted for DMARC.
type AuthResults struct {
	DKIM []DKIMResult `xml:"dkim"`
	SPF  []SPFResult  `xml:"spf"`
}

// DKIMResult is one signature's result (RFC 8601 words).
type DKIMResult struct {
	Domain      string `xml:"domain"`
	Selector    string `xml:"selector,omitempty"`
	Result      string `xml:"result"`
	HumanResult string `xml:"human_result,omitempty"`
}

// SPFResult is one SPF check; scope is mfrom or helo.
type SPFResult struct {
	Domain string `xml:"domain"`
	Scope  string `xml:"scope,omitempty"`
	Result string `xml:"result"`
}

// Marshal writes f as an XML document.
func (f *Feedback) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	b.WriteString("\n")
	return b.Bytes(), nil
}

// Gzip compresses a document: the .xml.gz attachment of RFC 7489
// 7.2.1.1, and the application/tlsrpt+gzip form of RFC 8460 5.3.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// SourceIP writes an address as Appendix C's IPAddress pattern accepts
// it: dotted IPv4, and IPv6 with all eight groups (the pattern has no
// "::"). IPv4-mapped addresses are written as IPv4.
func SourceIP(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String(), true
	}
	return a.StringExpanded(), true
}

// Filename is the attachment's name (RFC 7489 7.2.1.1):
// receiver!policy-domain!begin!end[!unique-id].xml[.gz].
func Filename(receiver, policyDomain string, begin, end time.Time, unique string, gz bool) string {
	return BaseName(receiver, policyDomain, begin, end, unique) + extension(".xml", gz)
}

// BaseName is a report file's name without its extension (RFC 7489
// 7.2.1.1): receiver!policy-domain!begin!end[!unique-id], times in
// seconds since the epoch. TLS reports use the same (RFC 8460 5.3).
func BaseName(receiver, policyDomain string, begin, end time.Time, unique string) string {
	name := receiver + "!" + policyDomain + "!" + fmt.Sprint(begin.Unix()) + "!" + fmt.Sprint(end.Unix())
	if unique != "" {
		name += "!" + unique
	}
	return name
}

func extension(ext string, gz bool) string {
	if gz {
		return ext + ".gz"
	}
	return ext
}

// Subject is the report message's subject (RFC 7489 7.2.1.1):
// "Report Domain: D Submitter: S Report-ID: <id>"; the ID is written as
// the msg-id the ABNF asks for.
func Subject(domain, submitter, reportID string) string {
	id := reportID
	if !strings.HasPrefix(id, "<") {
		id = "<" + id + ">"
	}
	return "Report Domain: " + domain + " Submitter: " + submitter + " Report-ID: " + id
}
