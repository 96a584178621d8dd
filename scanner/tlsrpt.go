package scanner

import (
	"context"
	"strings"

	"github.com/snowrain/snowrain/resolver"
)

// TLSRPTStatus is the state of a domain's TLS-RPT record (RFC 8460 §3).
type TLSRPTStatus string

// TLS-RPT record states (RFC 8460 §3).
const (
	TLSRPTValid    TLSRPTStatus = "valid"    // one record with a usable rua
	TLSRPTAbsent   TLSRPTStatus = "absent"   // no record
	TLSRPTInvalid  TLSRPTStatus = "invalid"  // a v=TLSRPTv1 record without a usable rua
	TLSRPTMultiple TLSRPTStatus = "multiple" // more than one v=TLSRPTv1 record: none applies
	TLSRPTError    TLSRPTStatus = "error"    // the lookup failed (SERVFAIL, timeout)
)

// TLSRPT is a domain's SMTP TLS Reporting policy: where senders report
// the TLS sessions they tried (RFC 8460).
type TLSRPT struct {
	Status TLSRPTStatus `json:"status"`
	RUA    []string     `json:"rua,omitempty"`
	Error  string       `json:"error,omitempty"`
}

// tlsRPTOf looks up _smtp._tls.domain.
func tlsRPTOf(ctx context.Context, res resolver.Resolver, domain string) *TLSRPT {
	txts, err := res.LookupTXT(ctx, "_smtp._tls."+domain)
	if resolver.IsNotFound(err) {
		return &TLSRPT{Status: TLSRPTAbsent}
	}
	if err != nil {
		return &TLSRPT{Status: TLSRPTError, Error: err.Error()}
	}
	return ParseTLSRPT(txts)
}

// ParseTLSRPT judges the TXT strings at _smtp._tls.DOMAIN: exactly one
// must begin "v=TLSRPTv1" (§3: records that do not are ignored; several
// are an error), with a rua= of comma-separated mailto: or https: URIs.
func ParseTLSRPT(txts []string) *TLSRPT {
	var recs []string
	for _, t := range txts {
		if f, _, _ := strings.Cut(t, ";"); strings.TrimSpace(f) == "v=TLSRPTv1" {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return &TLSRPT{Status: TLSRPTAbsent}
	case 1:
	default:
		return &TLSRPT{Status: TLSRPTMultiple, Error: "several v=TLSRPTv1 records"}
	}
	out := &TLSRPT{Status: TLSRPTInvalid, Error: "no rua"}
	for _, field := range strings.Split(recs[0], ";")[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok || strings.TrimSpace(k) != "rua" {
			continue
		}
		for _, uri := range strings.Split(v, ",") {
			uri = strings.TrimSpace(uri)
			l := strings.ToLower(uri)
			if strings.HasPrefix(l, "mailto:") && strings.Contains(uri, "@") || strings.HasPrefix(l, "https://") && len(uri) > 8 {
				out.RUA = append(out.RUA, uri)
				continue
			}
			out.Error = "rua URI " + uri + " is neither mailto: nor https:"
			return out
		}
	}
	if len(out.RUA) > 0 {
		out.Status, out.Error = TLSRPTValid, ""
	}
	return out
}
