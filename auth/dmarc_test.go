package auth

import (
	"bufio"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/resolver"
)

const dmarcZone = `
_dmarc.reject.example.        TXT "v=DMARC1; p=reject"
_dmarc.quar.example.          TXT "v=DMARC1; p=quarantine; sp=reject"
_dmarc.none.example.          TXT "v=DMARC1; p=none; rua=mailto:d@none.example"
_dmarc.strict.example.        TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
_dmarc.sspf.example.          TXT "v=DMARC1; p=reject; aspf=s"
_dmarc.np.example.            TXT "v=DMARC1; p=quarantine; sp=none; np=reject"
exists.np.example.            A 192.0.2.1
mailonly.np.example.          MX 10 mx.np.example.
txtonly.np.example.           TXT "not an address record"
_dmarc.spnone.example.        TXT "v=DMARC1; p=reject; sp=none"
_dmarc.nonp.example.          TXT "v=DMARC1; p=reject; sp=quarantine"
_dmarc.pct.example.           TXT "v=DMARC1; p=quarantine; pct=0"
_dmarc.pctr.example.          TXT "v=DMARC1; p=reject; pct=0"
_dmarc.pct50.example.         TXT "v=DMARC1; p=reject; pct=50"
_dmarc.pct100.example.        TXT "v=DMARC1; p=reject; pct=100"
_dmarc.pctnone.example.       TXT "v=DMARC1; p=none; pct=0"
_dmarc.multi.example.         TXT "v=DMARC1; p=reject"
_dmarc.multi.example.         TXT "v=DMARC1; p=none"
_dmarc.multiorg.example.      TXT "v=DMARC1; p=reject"
_dmarc.sub.multiorg.example.  TXT "v=DMARC1; p=none"
_dmarc.sub.multiorg.example.  TXT "v=DMARC1; p=quarantine"
_dmarc.mixed.example.         TXT "v=spf1 -all"
_dmarc.mixed.example.         TXT "v=DMARC1; p=quarantine"
_dmarc.spaced.example.        TXT "v = DMARC1 ; p = reject"
_dmarc.v10.example.           TXT "v=DMARC10; p=reject"
_dmarc.invalid.example.       TXT "v=DMARC1; p=bogus"
_dmarc.badnp.example.         TXT "v=DMARC1; p=none; np=bogus"
_dmarc.badpct.example.        TXT "v=DMARC1; p=reject; pct=101"
_dmarc.other.example.         TXT "v=spf1 -all"
_dmarc.orgok.example.         TXT "v=DMARC1; p=reject"
_dmarc.example.co.uk.         TXT "v=DMARC1; p=quarantine"
sub.reject.example.           A 192.0.2.1
_dmarc.ruaonly.example.       TXT "v=DMARC1; rua=mailto:d@ruaonly.example"
_dmarc.badprua.example.       TXT "v=DMARC1; p=bogus; sp=reject; rua=mailto:d@badprua.example!10m"
_dmarc.badsprua.example.      TXT "v=DMARC1; p=reject; sp=bogus; rua=https://r.example/dmarc"
_dmarc.badsp.example.         TXT "v=DMARC1; p=reject; sp=bogus"
_dmarc.norua.example.         TXT "v=DMARC1; sp=reject; adkim=s"
_dmarc.badrua.example.        TXT "v=DMARC1; rua=not a uri"
_dmarc.upper.example.         TXT "V=DMARC1; P=Reject; SP=None; ADKIM=S; PCT=100"
_dmarc.lowerv.example.        TXT "v=dmarc1; p=reject"
`

// mailFrom builds the MAIL FROM result a caller hands to DMARC.
func mailFrom(domain string, result SPFStatus) SPFResult {
	return SPFResult{Identity: "mailfrom", Domain: domain, Result: result}
}

func TestDMARC(t *testing.T) {
	srv := dnstest.Start(t, dmarcZone)
	srv.ServFail("_dmarc.temp.example")
	srv.ServFail("_dmarc.sub.orgok.example")
	srv.ServFail("_dmarc.orgtemp.example")
	var sampled []int
	c := &DMARCChecker{Resolver: testResolver(t, srv), Sample: func(pct int) bool {
		sampled = append(sampled, pct)
		return false
	}}
	cases := []struct {
		name                    string
		in                      DMARCInput
		result                  DMARCStatus
		policy, dis             DMARCPolicy
		at                      string // RecordDomain
		spfAligned, dkimAligned bool
	}{
		// Pass by one method alone.
		{"pass by spf only", DMARCInput{FromDomain: "reject.example", SPF: mailFrom("reject.example", "pass")},
			"pass", "reject", "none", "reject.example", true, false},
		{"pass by dkim only", DMARCInput{FromDomain: "reject.example", SPF: mailFrom("reject.example", "fail"), DKIMDomains: []string{"reject.example"}},
			"pass", "reject", "none", "reject.example", false, true},
		{"pass by both", DMARCInput{FromDomain: "reject.example", SPF: mailFrom("reject.example", "pass"), DKIMDomains: []string{"reject.example"}},
			"pass", "reject", "none", "reject.example", true, true},
		{"spf pass other domain", DMARCInput{FromDomain: "reject.example", SPF: mailFrom("x.example", "pass")},
			"fail", "reject", "reject", "reject.example", false, false},
		{"spf softfail aligned", DMARCInput{FromDomain: "reject.example", SPF: mailFrom("reject.example", "softfail")},
			"fail", "reject", "reject", "reject.example", false, false},
		{"dkim other domain", DMARCInput{FromDomain: "reject.example", DKIMDomains: []string{"evil.example"}},
			"fail", "reject", "reject", "reject.example", false, false},
		{"dkim second domain aligns", DMARCInput{FromDomain: "reject.example", DKIMDomains: []string{"esp.example", "mail.reject.example"}},
			"pass", "reject", "none", "reject.example", false, true},
		// Relaxed (default) against strict alignment with subdomains.
		{"relaxed spf subdomain", DMARCInput{FromDomain: "reject.example", SPF: mailFrom("bounce.reject.example", "pass")},
			"pass", "reject", "none", "reject.example", true, false},
		{"relaxed dkim parent", DMARCInput{FromDomain: "news.reject.example", DKIMDomains: []string{"reject.example"}},
			"pass", "reject", "none", "reject.example", false, true},
		{"aspf=s subdomain", DMARCInput{FromDomain: "strict.example", SPF: mailFrom("mail.strict.example", "pass")},
			"fail", "reject", "reject", "strict.example", false, false},
		{"aspf=s exact", DMARCInput{FromDomain: "strict.example", SPF: mailFrom("STRICT.example.", "pass")},
			"pass", "reject", "none", "strict.example", true, false},
		{"adkim=s exact", DMARCInput{FromDomain: "strict.example", DKIMDomains: []string{"strict.example"}},
			"pass", "reject", "none", "strict.example", false, true},
		{"adkim=s parent", DMARCInput{FromDomain: "a.strict.example", DKIMDomains: []string{"strict.example"}},
			"fail", "reject", "reject", "strict.example", false, false},
		{"aspf=s but adkim relaxed", DMARCInput{FromDomain: "sspf.example", SPF: mailFrom("m.sspf.example", "pass"), DKIMDomains: []string{"k.sspf.example"}},
			"pass", "reject", "none", "sspf.example", false, true},
		// Organizational-domain fallback: sp= for subdomains.
		{"org fallback sp", DMARCInput{FromDomain: "sub.quar.example"}, "fail", "reject", "reject", "quar.example", false, false},
		{"org domain itself p", DMARCInput{FromDomain: "quar.example"}, "fail", "quarantine", "quarantine", "quar.example", false, false},
		{"org fallback no sp", DMARCInput{FromDomain: "sub.reject.example"}, "fail", "reject", "reject", "reject.example", false, false},
		{"org fallback deep", DMARCInput{FromDomain: "a.b.c.reject.example"}, "fail", "reject", "reject", "reject.example", false, false},
		{"org fallback sp=none", DMARCInput{FromDomain: "x.spnone.example"}, "fail", "none", "none", "spnone.example", false, false},
		{"org fallback pass", DMARCInput{FromDomain: "sub.quar.example", SPF: mailFrom("quar.example", "pass")},
			"pass", "reject", "none", "quar.example", true, false},
		{"multi-label suffix", DMARCInput{FromDomain: "mail.example.co.uk"}, "fail", "quarantine", "quarantine", "example.co.uk", false, false},
		// np= (RFC 9091) for subdomains that do not exist.
		{"np existing sub", DMARCInput{FromDomain: "exists.np.example"}, "fail", "none", "none", "np.example", false, false},
		{"np sub with MX only", DMARCInput{FromDomain: "mailonly.np.example"}, "fail", "none", "none", "np.example", false, false},
		{"np nxdomain sub", DMARCInput{FromDomain: "ghost.np.example"}, "fail", "reject", "reject", "np.example", false, false},
		{"np nodata sub", DMARCInput{FromDomain: "txtonly.np.example"}, "fail", "reject", "reject", "np.example", false, false},
		{"np org itself", DMARCInput{FromDomain: "np.example"}, "fail", "quarantine", "quarantine", "np.example", false, false},
		{"no np: sp for nxdomain sub", DMARCInput{FromDomain: "ghost.nonp.example"}, "fail", "quarantine", "quarantine", "nonp.example", false, false},
		// pct= with a Sample that never samples: the next weaker policy.
		{"pct=0 quarantine", DMARCInput{FromDomain: "pct.example"}, "fail", "quarantine", "none", "pct.example", false, false},
		{"pct=0 reject", DMARCInput{FromDomain: "pctr.example"}, "fail", "reject", "quarantine", "pctr.example", false, false},
		{"pct=0 p=none", DMARCInput{FromDomain: "pctnone.example"}, "fail", "none", "none", "pctnone.example", false, false},
		{"pct=100", DMARCInput{FromDomain: "pct100.example"}, "fail", "reject", "reject", "pct100.example", false, false},
		{"pct=0 pass", DMARCInput{FromDomain: "pctr.example", SPF: mailFrom("pctr.example", "pass")}, "pass", "reject", "none", "pctr.example", true, false},
		{"p=none", DMARCInput{FromDomain: "none.example"}, "fail", "none", "none", "none.example", false, false},
		// No policy.
		{"no record", DMARCInput{FromDomain: "nothing.example", SPF: mailFrom("nothing.example", "pass")}, "none", "absent", "none", "", false, false},
		{"no record sub", DMARCInput{FromDomain: "a.nothing.example"}, "none", "absent", "none", "", false, false},
		{"not a dmarc record", DMARCInput{FromDomain: "other.example"}, "none", "absent", "none", "", false, false},
		{"v=DMARC10 is not DMARC1", DMARCInput{FromDomain: "v10.example"}, "none", "absent", "none", "", false, false},
		{"two records", DMARCInput{FromDomain: "multi.example"}, "none", "absent", "none", "", false, false},
		{"two records at sub: no fallback", DMARCInput{FromDomain: "sub.multiorg.example"}, "none", "absent", "none", "", false, false},
		{"two records at org", DMARCInput{FromDomain: "x.multi.example"}, "none", "absent", "none", "", false, false},
		{"one DMARC record among others", DMARCInput{FromDomain: "mixed.example"}, "fail", "quarantine", "quarantine", "mixed.example", false, false},
		{"spaces around =", DMARCInput{FromDomain: "spaced.example"}, "fail", "reject", "reject", "spaced.example", false, false},
		{"public suffix From", DMARCInput{FromDomain: "co.uk"}, "none", "absent", "none", "", false, false},
		// Errors.
		// RFC 7489 6.6.3: no valid p= (or a bad sp=) is p=none with a
		// valid rua=, else no DMARC processing at all.
		{"invalid p", DMARCInput{FromDomain: "invalid.example"}, "none", "absent", "none", "", false, false},
		{"rua only", DMARCInput{FromDomain: "ruaonly.example"}, "fail", "none", "none", "ruaonly.example", false, false},
		{"rua only, subdomain", DMARCInput{FromDomain: "x.ruaonly.example"}, "fail", "none", "none", "ruaonly.example", false, false},
		{"bad p with rua", DMARCInput{FromDomain: "badprua.example"}, "fail", "none", "none", "badprua.example", false, false},
		{"bad p with rua, sp= ignored", DMARCInput{FromDomain: "x.badprua.example"}, "fail", "none", "none", "badprua.example", false, false},
		{"bad sp with rua", DMARCInput{FromDomain: "badsprua.example"}, "fail", "none", "none", "badsprua.example", false, false},
		{"bad sp without rua", DMARCInput{FromDomain: "badsp.example"}, "none", "absent", "none", "", false, false},
		{"no p, no rua", DMARCInput{FromDomain: "norua.example"}, "none", "absent", "none", "", false, false},
		{"no p, bad rua", DMARCInput{FromDomain: "badrua.example"}, "none", "absent", "none", "", false, false},
		// Tag names, keywords and the DMARC1 literal are case-insensitive.
		{"upper-case tags", DMARCInput{FromDomain: "upper.example"}, "fail", "reject", "reject", "upper.example", false, false},
		{"upper-case tags, sp", DMARCInput{FromDomain: "x.upper.example"}, "fail", "none", "none", "upper.example", false, false},
		{"upper-case tags, adkim=S", DMARCInput{FromDomain: "upper.example", DKIMDomains: []string{"x.upper.example"}}, "fail", "reject", "reject", "upper.example", false, false},
		{"v=dmarc1 is a record", DMARCInput{FromDomain: "lowerv.example"}, "fail", "reject", "reject", "lowerv.example", false, false},
		{"invalid np", DMARCInput{FromDomain: "badnp.example"}, "permerror", "absent", "none", "", false, false},
		{"pct out of range", DMARCInput{FromDomain: "badpct.example"}, "permerror", "absent", "none", "", false, false},
		{"invalid at org", DMARCInput{FromDomain: "sub.invalid.example"}, "none", "absent", "none", "", false, false},
		{"invalid pct at org", DMARCInput{FromDomain: "sub.badpct.example"}, "permerror", "absent", "none", "", false, false},
		{"servfail", DMARCInput{FromDomain: "temp.example", SPF: mailFrom("temp.example", "pass")}, "temperror", "absent", "none", "", false, false},
		{"servfail at sub: no fallback", DMARCInput{FromDomain: "sub.orgok.example"}, "temperror", "absent", "none", "", false, false},
		{"servfail at org", DMARCInput{FromDomain: "x.orgtemp.example"}, "temperror", "absent", "none", "", false, false},
		{"no From", DMARCInput{FromClass: FromNone}, "permerror", "absent", "none", "", false, false},
		{"two From", DMARCInput{FromClass: FromMultiple, SPF: mailFrom("reject.example", "pass")}, "permerror", "absent", "none", "", false, false},
		{"invalid From", DMARCInput{FromClass: FromInvalid}, "permerror", "absent", "none", "", false, false},
		{"From class wins over domain", DMARCInput{FromDomain: "reject.example", FromClass: FromMultiple}, "permerror", "absent", "none", "", false, false},
		{"empty From domain", DMARCInput{}, "permerror", "absent", "none", "", false, false},
		// CVE-2019-20790: DMARC takes the MAIL FROM identity. A HELO pass
		// for reject.example does not help a@other.example.
		{"mailfrom result of another domain", DMARCInput{FromDomain: "reject.example",
			SPF: SPFResult{Identity: "mailfrom", Domain: "other.example", Result: "pass"}}, "fail", "reject", "reject", "reject.example", false, false},
		{"helo result handed in by mistake", DMARCInput{FromDomain: "reject.example",
			SPF: SPFResult{Identity: "helo", Domain: "reject.example", Result: "pass"}}, "fail", "reject", "reject", "reject.example", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Check(context.Background(), tc.in)
			if r.Result != tc.result || r.Policy != tc.policy || r.Disposition != tc.dis {
				t.Errorf("%s/%s/%s (%v), want %s/%s/%s", r.Result, r.Policy, r.Disposition, r.Err, tc.result, tc.policy, tc.dis)
			}
			if r.RecordDomain != tc.at || r.SPFAligned != tc.spfAligned || r.DKIMAligned != tc.dkimAligned {
				t.Errorf("record at %q, spf aligned %v, dkim aligned %v; want %q %v %v",
					r.RecordDomain, r.SPFAligned, r.DKIMAligned, tc.at, tc.spfAligned, tc.dkimAligned)
			}
			if r.FromDomain != tc.in.FromDomain {
				t.Errorf("FromDomain %q", r.FromDomain)
			}
			switch r.Result {
			case "pass", "fail":
				if r.Err != nil {
					t.Errorf("%s with error %v", r.Result, r.Err)
				}
			case "temperror", "permerror":
				if r.Err == nil && tc.in.FromClass == "" && tc.in.FromDomain != "" {
					t.Errorf("%s without an error", r.Result)
				}
			}
		})
	}
	// Sample is asked only when pct is below 100 and the policy can be
	// downgraded.
	want := []int{0, 0}
	if len(sampled) != len(want) || sampled[0] != 0 || sampled[1] != 0 {
		t.Errorf("Sample called with %v, want %v", sampled, want)
	}
}

func TestDMARCSample(t *testing.T) {
	srv := dnstest.Start(t, dmarcZone)
	r := testResolver(t, srv)
	for _, tc := range []struct {
		domain  string
		sampled bool
		dis     DMARCPolicy
	}{
		{"pct50.example", true, "reject"},
		{"pct50.example", false, "quarantine"},
		{"pct.example", true, "quarantine"},
	} {
		var got int
		c := &DMARCChecker{Resolver: r, Sample: func(pct int) bool { got = pct; return tc.sampled }}
		res := c.Check(context.Background(), DMARCInput{FromDomain: tc.domain})
		if res.Disposition != tc.dis {
			t.Errorf("%s sampled=%v: disposition %s, want %s", tc.domain, tc.sampled, res.Disposition, tc.dis)
		}
		if tc.domain == "pct50.example" && got != 50 {
			t.Errorf("Sample got pct %d", got)
		}
	}
	// The default Sample: pct=0 never applies the policy, pct=100 always.
	c := &DMARCChecker{Resolver: r}
	for i := 0; i < 20; i++ {
		if d := c.Check(context.Background(), DMARCInput{FromDomain: "pctr.example"}).Disposition; d != "quarantine" {
			t.Fatalf("pct=0 random: %s", d)
		}
		if d := c.Check(context.Background(), DMARCInput{FromDomain: "pct100.example"}).Disposition; d != "reject" {
			t.Fatalf("pct=100 random: %s", d)
		}
	}
}

// TestDMARCWithSPFChecker runs the real SPF checks into DMARC: the null
// sender's HELO identity counts, a HELO check for a non-null sender does
// not.
func TestDMARCWithSPFChecker(t *testing.T) {
	srv := dnstest.Start(t, dmarcZone+`
reject.example.       TXT "v=spf1 ip4:192.0.2.10 -all"
mail.reject.example.  TXT "v=spf1 ip4:192.0.2.10 -all"
other.example.        TXT "v=spf1 -all"
`)
	r := testResolver(t, srv)
	s := &SPFChecker{Resolver: r}
	d := &DMARCChecker{Resolver: r, Sample: func(int) bool { return true }}
	ip := net.ParseIP("192.0.2.10")
	ctx := context.Background()

	// Null sender: MAIL FROM is postmaster@HELO, which aligns.
	null := s.CheckMailFrom(ctx, ip, "mail.reject.example", "")
	if res := d.Check(ctx, DMARCInput{FromDomain: "reject.example", SPF: null}); res.Result != "pass" || !res.SPFAligned {
		t.Errorf("null sender, HELO mail.reject.example: %+v (spf %+v)", res, null)
	}

	// Non-null sender from another domain, with a HELO name that passes.
	mf := s.CheckMailFrom(ctx, ip, "mail.reject.example", "bounce@other.example")
	helo := s.CheckHelo(ctx, ip, "mail.reject.example")
	if mf.Result != "fail" || helo.Result != "pass" {
		t.Fatalf("setup: mailfrom %+v helo %+v", mf, helo)
	}
	if res := d.Check(ctx, DMARCInput{FromDomain: "reject.example", SPF: mf}); res.Result != "fail" || res.Disposition != "reject" {
		t.Errorf("MAIL FROM other.example: %+v", res)
	}
	// Handing the HELO result in by mistake must not pass either.
	if res := d.Check(ctx, DMARCInput{FromDomain: "reject.example", SPF: helo}); res.Result != "fail" {
		t.Errorf("HELO result for a non-null sender aligned: %+v", res)
	}

	// A sender without a domain is not the null sender.
	nodomain := s.CheckMailFrom(ctx, ip, "mail.reject.example", "user@")
	if res := d.Check(ctx, DMARCInput{FromDomain: "reject.example", SPF: nodomain}); res.Result != "fail" {
		t.Errorf("MAIL FROM user@ aligned on HELO: %+v (spf %+v)", res, nodomain)
	}
}

// TestDMARCTimeout: a DMARC lookup that never answers is a temperror.
func TestDMARCTimeout(t *testing.T) {
	srv := dnstest.Start(t, dmarcZone)
	srv.SetDrop(true)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res := (&DMARCChecker{Resolver: r}).Check(context.Background(), DMARCInput{FromDomain: "reject.example"})
	if res.Result != "temperror" || res.Policy != "absent" {
		t.Errorf("dropped DNS: %+v", res)
	}
}

func TestParseDMARC(t *testing.T) {
	cases := []struct {
		in, np string
		ok     bool
	}{
		{"v=DMARC1; p=reject", "", true},
		{"v=DMARC1;p=none", "", true},
		{" v = DMARC1 ; p = quarantine ", "", true},
		{"v=DMARC1; p=none; np=reject", "reject", true},
		{"v=DMARC1; p=none; np = Quarantine", "quarantine", true},
		{"v=DMARC1; p=none; np=bogus", "", false},
		{"v=DMARC1; p=none; np=", "", false},
		{"p=reject; v=DMARC1", "", false}, // v= must come first
		{"v=DMARC10; p=reject", "", false},
		{"v=DMARC1", "", false},
		{"v=DMARC1; p=", "", false},
		{"v=DMARC1; rua=mailto:a@b.example", "", true},
		{"v=DMARC1; p=; rua=mailto:a@b.example", "", true},
		{"v=DMARC1; rua=nonsense", "", false},
		{"V=DMARC1; P=REJECT; NP=Reject", "reject", true},
		{"v=dmarc1; p=reject", "", true},
		{"v=DMARC1; P=reject; RUA=mailto:a@b.example; Fo=1", "", true},
		{"v=DMARC1; p=reject; pct=-1", "", false},
		{"v=DMARC1; p=reject; pct=101", "", false},
		{"v=DMARC1; p=reject; pct=0", "", true},
		{"v=DMARC1; p=reject; adkim=x", "", false},
		{"v=DMARC1; p=reject; garbage", "", false},
		{"", "", false},
	}
	for _, c := range cases {
		rec, err := ParseDMARC(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseDMARC(%q) error %v, want ok %v", c.in, err, c.ok)
			continue
		}
		if err == nil && string(rec.NP) != c.np {
			t.Errorf("ParseDMARC(%q).NP = %q, want %q", c.in, rec.NP, c.np)
		}
	}
}

// TestAlignmentTable reads testdata/dmarc/alignment.txt.
func TestAlignmentTable(t *testing.T) {
	f, err := os.Open("testdata/dmarc/alignment.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 4 || (fields[2] != "r" && fields[2] != "s") || (fields[3] != "pass" && fields[3] != "fail") {
			t.Fatalf("alignment.txt:%d: bad line %q", line, text)
		}
		dash := func(s string) string {
			if s == "-" {
				return ""
			}
			return s
		}
		from, id := dash(fields[0]), dash(fields[1])
		var mode dmarc.AlignmentMode = dmarc.AlignmentRelaxed
		if fields[2] == "s" {
			mode = dmarc.AlignmentStrict
		}
		if got := aligned(id, from, mode); got != (fields[3] == "pass") {
			t.Errorf("alignment.txt:%d: aligned(%q, %q, %s) = %v, want %s", line, id, from, mode, got, fields[3])
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 30 {
		t.Errorf("only %d alignment cases", n)
	}
}

func TestOrgDomain(t *testing.T) {
	cases := map[string]string{
		"example.com":           "example.com",
		"a.b.example.com":       "example.com",
		"MAIL.Example.COM.":     "example.com",
		"example.co.uk":         "example.co.uk",
		"x.example.co.uk":       "example.co.uk",
		"co.uk":                 "co.uk",
		"com":                   "com",
		"alice.github.io":       "alice.github.io",
		"www.alice.github.io":   "alice.github.io",
		"a.b.example.test":      "example.test",
		"":                      "",
		"a..b":                  "a..b",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
	}
	for in, want := range cases {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
