// Package tlsrpt holds SMTP TLS Reporting (RFC 8460): the JSON report's
// types, their encoding and a bounded parser, the result types of the
// IANA registry, and the _smtp._tls TXT record that asks for reports.
package tlsrpt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/snowrain/snowrain/dmarcrpt"
)

// ResultType is an RFC 8460 section 4.3 result type (IANA "STARTTLS
// Validation Result Types").
type ResultType string

// Negotiation failures (RFC 8460 4.3.2.1) and policy failures (4.3.2.2,
// 4.3.2.3).
const (
	ResultSTARTTLSNotSupported    ResultType = "starttls-not-supported"
	ResultCertificateHostMismatch ResultType = "certificate-host-mismatch"
	ResultCertificateExpired      ResultType = "certificate-expired"
	ResultCertificateNotTrusted   ResultType = "certificate-not-trusted"
	ResultValidationFailure       ResultType = "validation-failure"
	ResultTLSAInvalid             ResultType = "tlsa-invalid"
	ResultDNSSECInvalid           ResultType = "dnssec-invalid"
	ResultDANERequired            ResultType = "dane-required"
	ResultSTSPolicyFetchError     ResultType = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid        ResultType = "sts-policy-invalid"
	ResultSTSWebPKIInvalid        ResultType = "sts-webpki-invalid"
)

// ResultTypes lists every registered result type.
var ResultTypes = []ResultType{ResultSTARTTLSNotSupported, ResultCertificateHostMismatch,
	ResultCertificateExpired, ResultCertificateNotTrusted, ResultValidationFailure, ResultTLSAInvalid,
	ResultDNSSECInvalid, ResultDANERequired, ResultSTSPolicyFetchError, ResultSTSPolicyInvalid,
	ResultSTSWebPKIInvalid}

// PolicyType is the kind of policy a result was evaluated under (RFC 8460
// 4.4, "policy-type").
type PolicyType string

// Policy types.
const (
	PolicySTS           PolicyType = "sts"
	PolicyTLSA          PolicyType = "tlsa"
	PolicyNoPolicyFound PolicyType = "no-policy-found"
)

// Report is one TLS report (RFC 8460 4.4).
type Report struct {
	OrganizationName string      `json:"organization-name"`
	DateRange        DateRange   `json:"date-range"`
	ContactInfo      string      `json:"contact-info"`
	ReportID         string      `json:"report-id"`
	Policies         []PolicyRun `json:"policies"`
}

// DateRange is the report's period, RFC 3339 date-times in UTC.
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// MarshalJSON writes the times as RFC 3339 in UTC, seconds precision.
func (d DateRange) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	}{d.Start.UTC().Format(time.RFC3339), d.End.UTC().Format(time.RFC3339)})
}

// UnmarshalJSON reads RFC 3339 times, and also the zone-less form some
// large senders write ("2024-01-01T00:00:00").
func (d *DateRange) UnmarshalJSON(b []byte) error {
	var v struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var err1, err2 error
	d.Start, err1 = parseTime(v.Start)
	d.End, err2 = parseTime(v.End)
	return errors.Join(err1, err2)
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02T15:04:05", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("tlsrpt: date-time %.40q", s)
	}
	return t, nil
}

// PolicyRun is one policy's results (an element of "policies").
type PolicyRun struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Policy is the policy applied (RFC 8460 4.4 "policy").
type Policy struct {
	Type   PolicyType `json:"policy-type"`
	String []string   `json:"policy-string,omitempty"` // the MTA-STS policy's lines, or the TLSA records
	Domain string     `json:"policy-domain"`
	MXHost []string   `json:"mx-host,omitempty"` // RFC 8460 erratum 6241: an array
}

// Summary counts the sessions under one policy.
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failed     int64 `json:"total-failure-session-count"`
}

// FailureDetail groups failed sessions of one kind to one MX.
type FailureDetail struct {
	ResultType          ResultType `json:"result-type"`
	SendingMTAIP        string     `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string     `json:"receiving-mx-hostname,omitempty"`
	ReceivingMXHelo     string     `json:"receiving-mx-helo,omitempty"`
	ReceivingIP         string     `json:"receiving-ip,omitempty"`
	FailedSessionCount  int64      `json:"failed-session-count"`
	AdditionalInfo      string     `json:"additional-information,omitempty"`
	FailureReasonCode   string     `json:"failure-reason-code,omitempty"`
}

// Marshal encodes r as the RFC's JSON.
func (r *Report) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Filename is the RFC 8460 5.3 name of a report's file:
// sender!policy-domain!begin!end[!unique-id].json[.gz], times in seconds
// since the epoch.
func Filename(sender, policyDomain string, begin, end time.Time, unique string, gz bool) string {
	name := dmarcrpt.BaseName(sender, policyDomain, begin, end, unique) + ".json"
	if gz {
		name += ".gz"
	}
	return name
}

// Errors of Parse.
var (
	ErrTooLarge  = errors.New("tlsrpt: report too large")
	ErrMalformed = errors.New("tlsrpt: malformed report")
)

// MaxReportSize bounds a report Parse reads (uncompressed).
const MaxReportSize = 20 << 20

// Parse reads a JSON report of at most MaxReportSize bytes and checks
// what every later step relies on: a report-id, a date range, known
// policy types, counts that are not negative.
func Parse(r io.Reader) (*Report, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxReportSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(b) > MaxReportSize {
		return nil, ErrTooLarge
	}
	var rep Report
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := rep.check(); err != nil {
		return nil, err
	}
	return &rep, nil
}

func (r *Report) check() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrMalformed}, a...)...) }
	if strings.TrimSpace(r.ReportID) == "" {
		return bad("no report-id")
	}
	if r.DateRange.Start.IsZero() || r.DateRange.End.Before(r.DateRange.Start) {
		return bad("bad date-range")
	}
	for _, p := range r.Policies {
		switch p.Policy.Type {
		case PolicySTS, PolicyTLSA, PolicyNoPolicyFound:
		default:
			return bad("policy-type %.40q", p.Policy.Type)
		}
		if p.Summary.Successful < 0 || p.Summary.Failed < 0 {
			return bad("negative session count")
		}
		for _, f := range p.FailureDetails {
			if f.FailedSessionCount < 0 {
				return bad("negative failed-session-count")
			}
		}
	}
	return nil
}

// ValidIP reports whether s is an IP address as the report fields want it.
func ValidIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}
