package auth

import (
	"context"
	"testing"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/snowrain/snowrain/internal/dnstest"
)

const dmarcZone = `
_dmarc.reject.example.      TXT "v=DMARC1; p=reject"
_dmarc.quar.example.        TXT "v=DMARC1; p=quarantine; sp=reject"
_dmarc.none.example.        TXT "v=DMARC1; p=none; rua=mailto:d@none.example"
_dmarc.strict.example.      TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
_dmarc.np.example.          TXT "v=DMARC1; p=quarantine; sp=none; np=reject"
exists.np.example.          A 192.0.2.1
_dmarc.pct.example.         TXT "v=DMARC1; p=quarantine; pct=0"
_dmarc.multi.example.       TXT "v=DMARC1; p=reject"
_dmarc.multi.example.       TXT "v=DMARC1; p=none"
_dmarc.invalid.example.     TXT "v=DMARC1; p=bogus"
_dmarc.other.example.       TXT "v=spf1 -all"
sub.reject.example.         A 192.0.2.1
`

func TestDMARC(t *testing.T) {
	srv := dnstest.Start(t, dmarcZone)
	srv.ServFail("_dmarc.temp.example")
	c := &DMARCChecker{Resolver: testResolver(t, srv), Sample: func(int) bool { return false }}
	spf := func(domain, result string) SPFResult {
		return SPFResult{Identity: "mailfrom", Domain: domain, Result: result}
	}
	cases := []struct {
		name                string
		in                  DMARCInput
		result, policy, dis string
	}{
		{"spf aligned", DMARCInput{FromDomain: "reject.example", SPF: spf("reject.example", "pass")}, "pass", "reject", "none"},
		{"spf relaxed sub", DMARCInput{FromDomain: "reject.example", SPF: spf("bounce.reject.example", "pass")}, "pass", "reject", "none"},
		{"spf fail not aligned", DMARCInput{FromDomain: "reject.example", SPF: spf("reject.example", "fail")}, "fail", "reject", "reject"},
		{"dkim aligned", DMARCInput{FromDomain: "reject.example", SPF: spf("x.example", "pass"), DKIMDomains: []string{"reject.example"}}, "pass", "reject", "none"},
		{"dkim other domain", DMARCInput{FromDomain: "reject.example", DKIMDomains: []string{"evil.example"}}, "fail", "reject", "reject"},
		{"strict spf sub", DMARCInput{FromDomain: "strict.example", SPF: spf("mail.strict.example", "pass")}, "fail", "reject", "reject"},
		{"strict dkim exact", DMARCInput{FromDomain: "strict.example", DKIMDomains: []string{"strict.example"}}, "pass", "reject", "none"},
		{"strict dkim parent", DMARCInput{FromDomain: "a.strict.example", DKIMDomains: []string{"strict.example"}}, "fail", "reject", "reject"},
		{"org fallback sp", DMARCInput{FromDomain: "sub.quar.example"}, "fail", "reject", "reject"},
		{"org p", DMARCInput{FromDomain: "sub.reject.example"}, "fail", "reject", "reject"},
		{"np existing sub", DMARCInput{FromDomain: "exists.np.example"}, "fail", "none", "none"},
		{"np nonexistent sub", DMARCInput{FromDomain: "ghost.np.example"}, "fail", "reject", "reject"},
		{"p=none", DMARCInput{FromDomain: "none.example"}, "fail", "none", "none"},
		{"pct=0 not sampled", DMARCInput{FromDomain: "pct.example"}, "fail", "quarantine", "none"},
		{"no record", DMARCInput{FromDomain: "nothing.example", SPF: spf("nothing.example", "pass")}, "none", "absent", "none"},
		{"not a dmarc record", DMARCInput{FromDomain: "other.example"}, "none", "absent", "none"},
		{"two records", DMARCInput{FromDomain: "multi.example"}, "none", "absent", "none"},
		{"invalid record", DMARCInput{FromDomain: "invalid.example"}, "permerror", "absent", "none"},
		{"servfail", DMARCInput{FromDomain: "temp.example"}, "temperror", "absent", "none"},
		{"no From", DMARCInput{FromClass: FromNone}, "permerror", "absent", "none"},
		{"two From", DMARCInput{FromClass: FromMultiple}, "permerror", "absent", "none"},
		// The caller passes the MAIL FROM result: a HELO pass for a
		// non-null sender must not be handed in (CVE-2019-20790).
		{"helo identity is not mailfrom", DMARCInput{FromDomain: "reject.example",
			SPF: SPFResult{Identity: "mailfrom", Domain: "other.example", Result: "pass"}}, "fail", "reject", "reject"},
	}
	for _, tc := range cases {
		r := c.Check(context.Background(), tc.in)
		if r.Result != tc.result || r.Policy != tc.policy || r.Disposition != tc.dis {
			t.Errorf("%s: %s/%s/%s (%v), want %s/%s/%s", tc.name, r.Result, r.Policy, r.Disposition, r.Err, tc.result, tc.policy, tc.dis)
		}
	}
}

func TestAlignment(t *testing.T) {
	cases := []struct {
		id, from string
		mode     dmarc.AlignmentMode
		want     bool
	}{
		{"example.com", "example.com", dmarc.AlignmentStrict, true},
		{"EXAMPLE.com.", "example.COM", dmarc.AlignmentStrict, true},
		{"mail.example.com", "example.com", dmarc.AlignmentStrict, false},
		{"mail.example.com", "example.com", dmarc.AlignmentRelaxed, true},
		{"a.example.com", "b.example.com", dmarc.AlignmentRelaxed, true},
		{"example.co.uk", "other.co.uk", dmarc.AlignmentRelaxed, false},
		{"a.example.co.uk", "example.co.uk", dmarc.AlignmentRelaxed, true},
		{"co.uk", "example.co.uk", dmarc.AlignmentRelaxed, false},
		{"", "example.com", dmarc.AlignmentRelaxed, false},
		{"example.com", "example.net", dmarc.AlignmentRelaxed, false},
	}
	for _, c := range cases {
		if got := aligned(c.id, c.from, c.mode); got != c.want {
			t.Errorf("aligned(%q, %q, %s) = %v", c.id, c.from, c.mode, got)
		}
	}
}

func FuzzParseDMARC(f *testing.F) {
	for _, s := range []string{"v=DMARC1; p=reject", "v=DMARC1; p=none; sp=quarantine; np=reject; pct=50; adkim=s",
		"v=DMARC1;p=", "v=DMARC1; p=reject; pct=200", "v=DMARC2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseDMARC(s)
		if err == nil && rec.Percent != nil && (*rec.Percent < 0 || *rec.Percent > 100) {
			t.Fatalf("pct %d accepted", *rec.Percent)
		}
	})
}

func FuzzAlignment(f *testing.F) {
	f.Add("mail.example.com", "example.com")
	f.Add("a..b", ".")
	f.Add("xn--bcher-kva.example", "BÜCHER.example")
	f.Fuzz(func(t *testing.T, id, from string) {
		if aligned(id, from, dmarc.AlignmentStrict) && !aligned(id, from, dmarc.AlignmentRelaxed) {
			t.Fatalf("strict but not relaxed: %q %q", id, from)
		}
		_ = OrgDomain(id)
	})
}
