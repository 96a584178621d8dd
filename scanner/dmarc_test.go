package scanner

import (
	"context"
	"testing"
	"time"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/resolver"
)

// TestDMARCAgreesWithMilter: Table 18 of a domain scan and the milter's
// DMARC evaluation of mail from that domain classify tricky records alike,
// since both go through auth.LookupDMARC. A record the milter calls
// permerror is "invalid" in the scan.
func TestDMARCAgreesWithMilter(t *testing.T) {
	srv := dnstest.Start(t, `
_dmarc.several.example.   TXT "v=DMARC1; p=none"
_dmarc.several.example.   TXT "v=DMARC1; p=reject"
_dmarc.nop.example.       TXT "v=DMARC1; sp=reject; adkim=s"
_dmarc.ruaonly.example.   TXT "v=DMARC1; rua=mailto:agg@ruaonly.example"
_dmarc.badp.example.      TXT "v=DMARC1; p=block; rua=mailto:agg@badp.example"
_dmarc.upper.example.     TXT "V=DMARC1; P=Quarantine; SP=Reject"
_dmarc.mixed.example.     TXT "v=spf1 -all"
_dmarc.mixed.example.     TXT "v=DMARC1;p=reject"
_dmarc.lowerv.example.    TXT "v=dmarc1; p=reject"
_dmarc.orgsp.example.     TXT "v=DMARC1; p=none; sp=reject"
sub.orgsp.example.        A 192.0.2.1
_dmarc.invalid.example.   TXT "v=DMARC1; p=reject; pct=200"
_dmarc.spaced.example.    TXT "v = DMARC1 ; p = reject"
`)
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		domain       string
		scan         auth.DMARCPolicy
		milterResult auth.DMARCStatus
	}{
		{"several.example", "absent", "none"},       // RFC 7489 6.6.3: several records, no policy
		{"nop.example", "absent", "none"},           // no p=, no rua=: no record
		{"ruaonly.example", "none", "fail"},         // no p=, valid rua=: p=none
		{"badp.example", "none", "fail"},            // invalid p=, valid rua=: p=none
		{"upper.example", "quarantine", "fail"},     // tag names case-insensitive
		{"sub.upper.example", "reject", "fail"},     // … SP= too
		{"mixed.example", "reject", "fail"},         // a non-DMARC TXT beside it
		{"lowerv.example", "reject", "fail"},        // the DMARC1 literal is case-insensitive
		{"sub.orgsp.example", "reject", "fail"},     // sp= of the organizational domain
		{"orgsp.example", "none", "fail"},           // p= at the organizational domain
		{"invalid.example", "invalid", "permerror"}, // pct out of range
		{"spaced.example", "reject", "fail"},
		{"nothing.example", "absent", "none"},
	}
	checker := &auth.DMARCChecker{Resolver: res}
	for _, tc := range cases {
		t.Run(tc.domain, func(t *testing.T) {
			scan := dmarcOf(context.Background(), res, tc.domain)
			m := checker.Check(context.Background(), auth.DMARCInput{FromDomain: tc.domain,
				SPF: auth.SPFResult{Identity: "mailfrom", Domain: "other.example", Result: "pass"}})
			if scan.Policy != tc.scan || m.Result != tc.milterResult {
				t.Errorf("scan %s, milter %s/%s; want %s, %s", scan.Policy, m.Result, m.Policy, tc.scan, tc.milterResult)
			}
			want := scan.Policy
			if want == auth.PolicyInvalid {
				want = auth.PolicyAbsent // the milter's Table 18 has no invalid row
			}
			if m.Policy != want {
				t.Errorf("Table 18 disagrees: scan %s, milter %s", scan.Policy, m.Policy)
			}
		})
	}
}
