package auth

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/snowrain/snowrain/internal/dnstest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestFormatAuthResultsGolden(t *testing.T) {
	r := Results{AuthServID: "mx.example.net", TLS: "TLSv1.3 TLS_AES_256_GCM_SHA384 256bits",
		SPF:  SPFResult{Result: "pass", Domain: "example.org"},
		Helo: SPFResult{Result: "none", Domain: "mail.example.org"},
		DKIM: []Signature{{Domain: "example.org", Selector: "s1", Algorithm: "rsa-sha256", Result: "pass"},
			{Domain: "evil;x(", Selector: "a b", Algorithm: "rsa-sha1", Result: "permerror", Class: "unsupported_algorithm", Detail: "sha1"}},
		DMARC: DMARCResult{Result: "pass", Policy: "reject", Disposition: "none", FromDomain: "example.org"}}
	got := FormatAuthResults(r)
	path := "testdata/authres/full.golden"
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if empty := FormatAuthResults(Results{AuthServID: "mx"}); empty != "mx (tls=none); none" {
		t.Errorf("no results: %q", empty)
	}
}

func TestAuthServID(t *testing.T) {
	cases := map[string]string{
		"mx.example.net; spf=pass":                   "mx.example.net",
		" (comment) mx.example.net 1; dkim=pass":     "mx.example.net",
		"(nested (comment)) MX.Example.NET;":         "MX.Example.NET",
		"\r\n\tmx.example.net\r\n\t(tls=none); none": "mx.example.net",
		"(unterminated":                              "",
		"":                                           "",
	}
	for in, want := range cases {
		if got := AuthServID(in); got != want {
			t.Errorf("AuthServID(%q) = %q, want %q", in, got, want)
		}
	}
	if !IsOurs(" (x) MX.EXAMPLE.NET; spf=pass", "mx.example.net") || IsOurs("other; spf=pass", "mx.example.net") {
		t.Error("IsOurs")
	}
}

func TestFromDomain(t *testing.T) {
	cases := []struct {
		values        []string
		domain, class string
	}{
		{nil, "", FromNone},
		{[]string{"Alice <alice@Example.ORG>"}, "example.org", ""},
		{[]string{"a@x.example", "b@y.example"}, "", FromMultiple},
		{[]string{"a@x.example, b@y.example"}, "", FromMultiple},
		{[]string{"a@x.example, b@x.example"}, "x.example", ""},
		{[]string{"=?utf-8?q?J=C3=B6rg?= <j@example.de>"}, "example.de", ""},
		{[]string{"=?x-unknown?B?////?= <j@example.de>"}, "example.de", ""},
		{[]string{"not an address"}, "", FromInvalid},
		{[]string{"undisclosed-recipients:;"}, "", FromInvalid},
	}
	for _, c := range cases {
		d, cl := FromDomain(c.values)
		if d != c.domain || cl != c.class {
			t.Errorf("FromDomain(%q) = %q %q, want %q %q", c.values, d, cl, c.domain, c.class)
		}
	}
}

func TestAuthClass(t *testing.T) {
	for _, c := range [][3]string{{"pass", "pass", AuthDKIMAndSPF}, {"pass", "fail", AuthDKIMOnly},
		{"fail", "pass", AuthSPFOnly}, {"none", "softfail", AuthNone}} {
		if got := AuthClass(c[0], c[1]); got != c[2] {
			t.Errorf("AuthClass(%s, %s) = %s", c[0], c[1], got)
		}
	}
}

func FuzzAuthServID(f *testing.F) {
	f.Add("mx.example.net", "example.org", "s1")
	f.Add("(a)b", "x;y", "(")
	f.Fuzz(func(t *testing.T, id, domain, selector string) {
		_ = AuthServID(id)
		if strings.ContainsAny(id, " \t\r\n;()\\") || id == "" {
			return
		}
		v := FormatAuthResults(Results{AuthServID: id, SPF: SPFResult{Result: "pass", Domain: domain},
			DKIM: []Signature{{Domain: domain, Selector: selector, Result: "fail", Class: domain}}})
		if got := AuthServID(v); got != id {
			t.Fatalf("authserv-id %q read back as %q from %q", id, got, v)
		}
	})
}

func FuzzFormatAuthResults(f *testing.F) {
	f.Add("example.org", "s1", "rsa-sha256", "TLSv1.2 X", "body_hash")
	f.Add("a\r\nInjected: yes", ")(", ";", "(", "\\")
	f.Fuzz(func(t *testing.T, domain, selector, alg, tlsState, class string) {
		v := FormatAuthResults(Results{AuthServID: "mx", TLS: tlsState,
			SPF:   SPFResult{Result: "permerror", Domain: domain, ErrorClass: class},
			DKIM:  []Signature{{Domain: domain, Selector: selector, Algorithm: alg, Result: "fail", Class: class, Detail: class}},
			DMARC: DMARCResult{Result: "fail", Policy: "reject", Disposition: "none", FromDomain: domain}})
		if strings.Contains(strings.ReplaceAll(v, "\r\n\t", ""), "\n") || strings.Contains(strings.ReplaceAll(v, "\r\n\t", ""), "\r") {
			t.Fatalf("line break injected: %q", v)
		}
		depth := 0
		for _, r := range v {
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
	})
}

func FuzzFromDomain(f *testing.F) {
	f.Add("Alice <alice@example.org>")
	f.Add("=?utf-8?b?////?= <a@b>, c@d")
	f.Fuzz(func(t *testing.T, v string) {
		d, class := FromDomain([]string{v})
		if (d == "") == (class == "") {
			t.Fatalf("domain %q class %q", d, class)
		}
	})
}

func FuzzParseSignatureTags(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; d=example.org; s=s1; b=abc; bh=def; h=From")
	f.Add("a=; a=; =x; ;;; v")
	f.Fuzz(func(t *testing.T, v string) {
		tags, _ := ParseSignatureTags(v)
		if tags.Domain != strings.ToLower(tags.Domain) {
			t.Fatal("domain not lower-cased")
		}
	})
}

// FuzzDKIMVerify streams arbitrary messages through the verifier: no panic,
// no hang, one verdict per DKIM-Signature header given.
func FuzzDKIMVerify(f *testing.F) {
	msgs, _ := os.ReadDir("testdata/dkim")
	for _, m := range msgs {
		if strings.HasSuffix(m.Name(), ".msg") {
			b, _ := os.ReadFile("testdata/dkim/" + m.Name())
			f.Add(b)
		}
	}
	srv := dnstest.Start(f, "")
	r := testResolver(f, srv)
	f.Fuzz(func(t *testing.T, msg []byte) {
		v := NewDKIMVerifier(context.Background(), r, 4)
		v.Write(msg)
		sigs := []string{"v=1; d=x", "garbage"}
		if got := v.Close(sigs); len(got) != len(sigs) {
			t.Fatalf("%d verdicts for %d signatures", len(got), len(sigs))
		}
	})
}
