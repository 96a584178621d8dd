package auth

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/authres/*.golden")

// authresCases are rendered into testdata/authres/NAME.golden.
var authresCases = map[string]Results{
	"full": {AuthServID: "mx.example.net", TLS: "TLSv1.3 TLS_AES_256_GCM_SHA384 256bits",
		SPF:  SPFResult{Identity: "mailfrom", Result: "pass", Domain: "example.org"},
		Helo: SPFResult{Identity: "helo", Result: "none", Domain: "mail.example.org"},
		DKIM: []Signature{
			{Domain: "example.org", Selector: "s1", Algorithm: "rsa-sha256", KeyBits: 2048, Result: "pass"},
			{Domain: "example.org", Selector: "ed", Algorithm: "ed25519-sha256", KeyBits: 256, Result: "pass"}},
		DMARC: DMARCResult{Result: "pass", Policy: "reject", Disposition: "none", FromDomain: "example.org"}},
	"none": {AuthServID: "mx.example.net"},
	"failures": {AuthServID: "mx.example.net", TLS: "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 128bits",
		SPF:  SPFResult{Identity: "mailfrom", Result: "temperror", ErrorClass: SPFClassDNSTimeout, Domain: "slow.example"},
		Helo: SPFResult{Identity: "helo", Result: "fail", Domain: "helo.example"},
		DKIM: []Signature{
			{Domain: "example.org", Selector: "weak", Algorithm: "rsa-sha256", KeyBits: 512, Result: "permerror", Class: DKIMWeakKey},
			{Domain: "example.org", Selector: "s1", Algorithm: "rsa-sha256", Result: "fail", Class: DKIMOther, Detail: "header_sig"},
			{Domain: "example.org", Selector: "s1", Algorithm: "rsa-sha256", Result: "temperror", Class: DKIMOther, Detail: "dns_temp"},
			{Domain: "example.org", Selector: "s2", Algorithm: "rsa-sha256", Result: "policy", Detail: "over_limit"}},
		DMARC: DMARCResult{Result: "fail", Policy: "quarantine", Disposition: "none", FromDomain: "example.org"}},
	"null_sender": {AuthServID: "mx.example.net",
		SPF:   SPFResult{Identity: "mailfrom", Result: "pass", Domain: "mail.example.org"},
		DMARC: DMARCResult{Result: "none", Policy: "absent", Disposition: "none", FromDomain: "example.org"}},
	// Strings from the message (d=, s=, a=) and our TLS summary can hold
	// anything: none may break the header.
	"hostile": {AuthServID: "mx.example.net", TLS: "TLSv1.3 (x)\r\nX-Injected: yes; \\",
		SPF: SPFResult{Identity: "mailfrom", Result: "permerror", ErrorClass: SPFClassInvalidRecord, Domain: "a b;c(d)e\"f\\g\r\nX-Injected: yes"},
		DKIM: []Signature{
			{Domain: "evil;x(", Selector: "a b", Algorithm: "rsa-sha1", Result: "permerror", Class: DKIMUnsupportedAlg, Detail: "sha1"},
			{Domain: "", Selector: "\r\n\t", Algorithm: "ünïcode\x7f\x00", Result: "permerror", Class: DKIMOther, Detail: "syntax) (x"}},
		DMARC: DMARCResult{Result: "permerror", Policy: "absent", Disposition: "none", FromDomain: "multiple_from"}},
}

func TestFormatAuthResultsGolden(t *testing.T) {
	for name, r := range authresCases {
		t.Run(name, func(t *testing.T) {
			got := FormatAuthResults(r)
			path := filepath.Join("testdata", "authres", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
			checkAuthResValue(t, got)
			if id := AuthServID(got); id != r.AuthServID {
				t.Errorf("AuthServID of our own header = %q", id)
			}
		})
	}
	if empty := FormatAuthResults(Results{AuthServID: "mx"}); empty != "mx (tls=none); none" {
		t.Errorf("no results: %q", empty)
	}
}

// TestFormatAuthResultsLongValues: a d= folded over many lines in the
// message must not make one of our lines longer than 998 bytes.
func TestFormatAuthResultsLongValues(t *testing.T) {
	long := strings.Repeat("label.", 400) + "example"
	v := FormatAuthResults(Results{AuthServID: "mx.example.net", TLS: "TLSv1.3 TLS_AES_256_GCM_SHA384 256bits",
		SPF: SPFResult{Result: "pass", Domain: long},
		DKIM: []Signature{{Domain: long, Selector: long, Algorithm: long, Result: "permerror",
			Class: DKIMUnsupportedAlg, Detail: "key_hash"}},
		DMARC: DMARCResult{Result: "fail", Policy: "reject", Disposition: "reject", FromDomain: long}})
	checkAuthResValue(t, v)
	if !strings.Contains(v, "header.d="+long[:maxPropValue]+" ") {
		t.Errorf("long d= not cut at %d bytes: %q", maxPropValue, v)
	}
}

// checkAuthResValue checks what must hold for every header value we write:
// line breaks only as our own "\r\n\t" folding, no control characters,
// comments balanced and never nested.
func checkAuthResValue(t testing.TB, v string) {
	t.Helper()
	unfolded := strings.ReplaceAll(v, "\r\n\t", " ")
	for _, r := range unfolded {
		if r < 0x20 || r == 0x7f {
			t.Fatalf("control character %q in %q", r, v)
		}
	}
	depth := 0
	for _, r := range unfolded {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		}
		if depth < 0 || depth > 1 {
			t.Fatalf("unbalanced comment in %q", v)
		}
	}
	if depth != 0 {
		t.Fatalf("unclosed comment in %q", v)
	}
	for _, line := range strings.Split(v, "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line of %d bytes", len(line))
		}
	}
}

func TestAuthServID(t *testing.T) {
	cases := []struct{ in, want string }{
		{"mx.example.net; spf=pass", "mx.example.net"},
		{"mx.example.net 1; dkim=pass", "mx.example.net"}, // with a version
		{"mx.example.net", "mx.example.net"},
		{"mx.example.net;", "mx.example.net"},
		{"mx.example.net(comment); none", "mx.example.net"},
		{" mx.example.net ; none", "mx.example.net"},
		{" (comment) mx.example.net 1; dkim=pass", "mx.example.net"},
		{"(nested (comment)) MX.Example.NET;", "MX.Example.NET"},
		{"(a) (b)\r\n (c) mx.example.net; none", "mx.example.net"},
		{`(escaped \) paren) mx.example.net; none`, "mx.example.net"},
		{`(escaped \( paren) mx.example.net; none`, "mx.example.net"},
		{"\r\n\tmx.example.net\r\n\t(tls=none); none", "mx.example.net"},
		{"\tmx.example.net\r\n ; spf=fail", "mx.example.net"},
		// RFC 8601 2.2: the authserv-id is a MIME value, so may be quoted.
		{`"mx.example.net"; dkim=pass`, "mx.example.net"},
		{` (c) "mx.example.net" 1; dkim=pass`, "mx.example.net"},
		{`"mx.exa\mple.net"; dkim=pass`, "mx.example.net"},
		{"\"mx.example\r\n.net\"; dkim=pass", "mx.example.net"},
		{`"mx example.net"; none`, "mx example.net"},
		{`"unterminated; none`, ""},
		{`""; none`, ""},
		{"(unterminated", ""},
		{"(unterminated\\", ""},
		{"()", ""},
		{"", ""},
		{";", ""},
		{" \r\n\t ", ""},
	}
	for _, c := range cases {
		if got := AuthServID(c.in); got != c.want {
			t.Errorf("AuthServID(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestIsOurs(t *testing.T) {
	const id = "mx.example.net"
	cases := []struct {
		value string
		want  bool
	}{
		{"mx.example.net; spf=pass", true},
		{" (x) MX.EXAMPLE.NET; spf=pass", true},
		{"Mx.Example.Net 1; dkim=pass header.d=example.org", true},
		{"\r\n\t(forged)\r\n\tmx.example.net;\r\n\tdmarc=pass", true},
		{`"mx.example.net"; dkim=pass`, true},
		{`"MX.example.NET"; dkim=pass`, true},
		{"other.example.net; spf=pass", false},
		{"mx.example.net.evil; spf=pass", false},
		{"evil.mx.example.net; spf=pass", false},
		{"mx.example.ne; spf=pass", false},
		{"(mx.example.net) other; spf=pass", false},
		{"", false},
		{"(mx.example.net", false},
		// Identities compare as host names: one trailing dot, case and
		// U-labels do not make a forgery someone else's.
		{"mx.example.net.; dkim=pass", true},
		{"MX.Example.NET.; dkim=pass", true},
		{`"mx.example.net."; dkim=pass`, true},
		{"mx.example.net..; dkim=pass", false},
		{".mx.example.net; dkim=pass", false},
	}
	for _, c := range cases {
		if got := IsOurs(c.value, id); got != c.want {
			t.Errorf("IsOurs(%q) = %v, want %v", c.value, got, c.want)
		}
	}
}

func TestFromDomain(t *testing.T) {
	cases := []struct {
		name   string
		values []string
		domain string
		class  FromClass
	}{
		{"zero", nil, "", FromNone},
		{"zero, empty slice", []string{}, "", FromNone},
		{"two headers", []string{"a@x.example", "b@x.example"}, "", FromMultiple},
		{"two headers, one empty", []string{"a@x.example", ""}, "", FromMultiple},
		{"plain", []string{"alice@example.org"}, "example.org", ""},
		{"display name", []string{"Alice <alice@Example.ORG>"}, "example.org", ""},
		{"leading space", []string{" Alice <alice@example.org>"}, "example.org", ""},
		{"quoted display name", []string{`"Smith, Alice" <alice@example.org>`}, "example.org", ""},
		{"quoted local part", []string{`"a@evil.example"@example.org`}, "example.org", ""},
		{"comment", []string{"alice@example.org (Alice)"}, "example.org", ""},
		{"folded", []string{"Alice\r\n <alice@example.org>"}, "example.org", ""},
		{"folded with LF", []string{" Alice\n\t<alice@example.org>"}, "example.org", ""},
		{"folded encoded words", []string{"=?utf-8?q?J=C3=B6rg_Long?=\n =?utf-8?q?_Name?= <j@example.de>"}, "example.de", ""},
		{"folded list", []string{"a@x.example,\r\n b@y.example"}, "", FromMultiple},
		{"folded inside address", []string{"<alice@\r\n example.org>"}, "example.org", ""},
		{"bare line break", []string{"Alice\r\n<alice@example.org>"}, "", FromInvalid},
		{"two addresses", []string{"a@x.example, b@y.example"}, "", FromMultiple},
		{"two addresses, case", []string{"a@x.example, b@X.Example"}, "x.example", ""},
		{"group", []string{"Team: a@x.example, b@x.example;"}, "x.example", ""},
		{"empty group and address", []string{"G:;, a@x.example"}, "x.example", ""},
		{"encoded word utf-8", []string{"=?utf-8?q?J=C3=B6rg?= <j@example.de>"}, "example.de", ""},
		{"encoded word base64", []string{"=?UTF-8?B?SsO2cmc=?= <j@example.de>"}, "example.de", ""},
		{"encoded word latin1", []string{"=?iso-8859-1?q?J=F6rg?= <j@example.de>"}, "example.de", ""},
		{"encoded word unknown charset", []string{"=?x-unknown?B?////?= <j@example.de>"}, "example.de", ""},
		{"encoded word bad base64", []string{"=?utf-8?B?!!!?= <a@b.example>"}, "b.example", ""},
		{"encoded word looks like address", []string{"=?utf-8?b?YUBldmlsLmV4YW1wbGU=?="}, "", FromInvalid},
		{"U-label domain", []string{"a@Bücher.example"}, "xn--bcher-kva.example", ""},
		{"A-label domain", []string{"a@xn--bcher-kva.example"}, "xn--bcher-kva.example", ""},
		{"bad U-label", []string{"a@bü cher.example"}, "", FromInvalid},
		{"not an address", []string{"not an address"}, "", FromInvalid},
		{"empty", []string{""}, "", FromInvalid},
		{"null", []string{"<>"}, "", FromInvalid},
		{"no domain", []string{"alice@"}, "", FromInvalid},
		{"no @", []string{"alice"}, "", FromInvalid},
		{"two @", []string{"a@b@c.example"}, "", FromInvalid},
		{"trailing dot", []string{"a@example.org."}, "", FromInvalid},
		{"unclosed angle", []string{"<a@example.org"}, "", FromInvalid},
		{"empty group", []string{"undisclosed-recipients:;"}, "", FromInvalid},
	}
	for _, c := range cases {
		d, cl := FromDomain(c.values)
		if d != c.domain || cl != c.class {
			t.Errorf("%s: FromDomain(%q) = %q %q, want %q %q", c.name, c.values, d, cl, c.domain, c.class)
		}
	}
}

func TestAuthClass(t *testing.T) {
	cases := []struct {
		dkim DKIMStatus
		spf  SPFStatus
		want AuthMethods
	}{
		{"pass", "pass", AuthDKIMAndSPF},
		{"pass", "fail", AuthDKIMOnly},
		{"pass", "none", AuthDKIMOnly},
		{"pass", "temperror", AuthDKIMOnly},
		{"fail", "pass", AuthSPFOnly},
		{"none", "pass", AuthSPFOnly},
		{"none", "softfail", AuthNone},
		{"fail", "neutral", AuthNone},
		{"none", "none", AuthNone},
		{"", "", AuthNone},
		{"PASS", "Pass", AuthNone}, // results are lower-case by construction
	}
	for _, c := range cases {
		if got := AuthClass(c.dkim, c.spf); got != c.want {
			t.Errorf("AuthClass(%s, %s) = %s, want %s", c.dkim, c.spf, got, c.want)
		}
	}
	// With the verdict of a real signature set.
	sigs := []Signature{{Result: "permerror"}, {Result: "pass"}}
	if got := AuthClass(DKIMVerdict(sigs), "softfail"); got != AuthDKIMOnly {
		t.Errorf("one passing signature of two: %s", got)
	}
}

func TestIsOursIDN(t *testing.T) {
	if !IsOurs("mx.bücher.example; dkim=pass", "mx.xn--bcher-kva.example") {
		t.Error("U-label forgery of our A-label id not recognised")
	}
	if !IsOurs("MX.XN--BCHER-KVA.EXAMPLE.; dkim=pass", "mx.bücher.example") {
		t.Error("A-label forgery of our U-label id not recognised")
	}
}

// TestFromDomains: every domain a reader could be shown is found, whatever
// the shape of the From fields, and only a single well-formed field has no
// class.
func TestFromDomains(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." +
		strings.Repeat("d", 45) + ".bank.example" // 250 octets
	cases := []struct {
		name    string
		values  []string
		domains []string
		class   FromClass
	}{
		{"one", []string{"CEO <ceo@bank.example>"}, []string{"bank.example"}, ""},
		{"upper case", []string{"ceo@BANK.Example"}, []string{"bank.example"}, ""},
		{"two fields", []string{"a@evil.example", "ceo@bank.example"}, []string{"evil.example", "bank.example"}, FromMultiple},
		{"two fields, same domain", []string{"ceo@bank.example", "ceo@bank.example"}, []string{"bank.example"}, FromMultiple},
		{"two mailboxes", []string{"a@evil.example, ceo@bank.example"}, []string{"evil.example", "bank.example"}, FromMultiple},
		{"extra bracket", []string{"<ceo@bank.example>>"}, []string{"bank.example"}, FromInvalid},
		{"unclosed bracket", []string{"CEO <ceo@bank.example"}, []string{"bank.example"}, FromInvalid},
		{"trailing dot", []string{"ceo@bank.example."}, []string{"bank.example"}, FromInvalid},
		{"trailing dot, upper case", []string{"<ceo@BANK.EXAMPLE.>"}, []string{"bank.example"}, FromInvalid},
		{"space after @", []string{"ceo@ bank.example>"}, []string{"bank.example"}, FromInvalid},
		{"encoded address", []string{"=?utf-8?q?ceo=40bank.example?="}, []string{"bank.example"}, FromInvalid},
		{"encoded address base64", []string{"=?utf-8?b?Y2VvQGJhbmsuZXhhbXBsZQ==?="}, []string{"bank.example"}, FromInvalid},
		{"U-label, invalid field", []string{"<ceo@bänk.example>>"}, []string{"xn--bnk-qla.example"}, FromInvalid},
		{"ideographic full stop", []string{"<ceo@bank\u3002example>>"}, []string{"bank.example"}, FromInvalid},
		{"group", []string{"Bank: ceo@bank.example;"}, []string{"bank.example"}, ""},
		{"empty group", []string{"undisclosed-recipients:;"}, nil, FromInvalid},
		// net/mail takes no comment before an addr-spec: invalid, and both count.
		{"comment with address", []string{"(ceo@bank.example) a@evil.example"}, []string{"bank.example", "evil.example"}, FromInvalid},
		{"comment after address", []string{"a@evil.example (ceo@bank.example)"}, []string{"evil.example"}, ""},
		{"no domain", []string{"ceo"}, nil, FromInvalid},
		{"empty", []string{""}, nil, FromInvalid},
		{"none", nil, nil, FromNone},
		{"address literal", []string{"ceo@[192.0.2.1]"}, nil, FromInvalid},
		{"label too long", []string{"ceo@" + strings.Repeat("x", 64) + ".bank.example"}, nil, FromInvalid},
		{"too long for _dmarc: org domain", []string{"ceo@" + long}, []string{"bank.example"}, ""},
		{"double dot", []string{"<ceo@bank..example>>"}, nil, FromInvalid},
	}
	for _, c := range cases {
		d, cl := FromDomains(c.values)
		if strings.Join(d, " ") != strings.Join(c.domains, " ") || cl != c.class {
			t.Errorf("%s: FromDomains(%q) = %q %q, want %q %q", c.name, c.values, d, cl, c.domains, c.class)
		}
	}
}

func TestNormalizeDomain(t *testing.T) {
	cases := map[string]string{
		"Bank.Example.": "bank.example", "bank.example": "bank.example", "BÜCHER.example": "xn--bcher-kva.example",
		"_dmarc.x.example": "_dmarc.x.example", "bank.example..": "", ".": "", "": "", "a b.example": "",
		"x.example\x00": "", strings.Repeat("a.", 127) + "a": strings.Repeat("a.", 126) + "a" + "",
	}
	for in, want := range cases {
		if want == strings.Repeat("a.", 126)+"a" {
			want = "" // 255 octets
		}
		got, ok := NormalizeDomain(in)
		if ok != (want != "") || ok && got != want {
			t.Errorf("NormalizeDomain(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

// TestAuthResultsBounded: 1,000 signatures, each with the longest tags,
// still make a value within the limit, with every result counted.
func TestAuthResultsBounded(t *testing.T) {
	long := strings.Repeat("d", 300)
	r := Results{AuthServID: "mx.example.net", SPF: SPFResult{Result: "pass", Domain: long},
		DMARC: DMARCResult{Result: "fail", Policy: "reject", Disposition: "reject", FromDomain: long}}
	for i := 0; i < 8; i++ {
		r.DKIM = append(r.DKIM, Signature{Domain: long, Selector: long, Algorithm: long, Result: "fail", Class: DKIMBodyHash})
	}
	r.DKIM = append(r.DKIM, OverLimit(992))
	v := FormatAuthResults(r)
	checkAuthResValue(t, v)
	if !strings.Contains(v, "dkim=policy (over_limit, 992 more signatures not listed)") || strings.Count(v, "dkim=fail") != 8 {
		t.Errorf("summary wrong in %q", v)
	}
	// Without the cap in front: listed while they fit, the rest summed up.
	r.DKIM = nil
	for i := 0; i < 1000; i++ {
		r.DKIM = append(r.DKIM, Signature{Domain: long, Selector: long, Algorithm: long, Result: "fail", Class: DKIMBodyHash})
	}
	v = FormatAuthResults(r)
	checkAuthResValue(t, v)
	listed := strings.Count(v, "dkim=fail")
	if len(v) > MaxAuthResults || listed == 0 || !strings.Contains(v, fmt.Sprintf("%d more signatures not listed", 1000-listed)) {
		t.Errorf("%d bytes, %d listed: %.300q", len(v), listed, v)
	}
	if !strings.HasSuffix(v, "header.from="+long[:maxPropValue]) {
		t.Error("DMARC result dropped")
	}
}
