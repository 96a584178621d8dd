package policy

import (
	"context"
	"strings"
	"testing"
)

func TestCanonicalDomain(t *testing.T) {
	for in, want := range map[string]string{
		"bank.example":                        "bank.example",
		"BANK.Example":                        "bank.example",
		"bank.example.":                       "bank.example",
		" bank.example ":                      "bank.example",
		"bücher.example":                      "xn--bcher-kva.example",
		"BÜCHER.example.":                     "xn--bcher-kva.example",
		"XN--BCHER-KVA.example":               "xn--bcher-kva.example",
		"bank．example":                        "bank.example", // full-width full stop (UTS #46 maps it)
		"bank.example。":                       "bank.example", // ideographic full stop as the root dot
		"_dmarc.bank.example":                 "_dmarc.bank.example",
		"bank.example..":                      "",
		"bank..example":                       "",
		".bank.example":                       "",
		"":                                    "",
		".":                                   "",
		"[192.0.2.1]":                         "",
		"[IPv6:2001:db8::1]":                  "",
		"bank.example:25":                     "",
		"bank example":                        "",
		"bank.example\x00":                    "",
		"-bank.example":                       "",
		strings.Repeat("a", 64) + ".example":  "",
		strings.Repeat("a.", 127) + "example": "",
		"a@bank.example":                      "",
	} {
		got, ok := CanonicalDomain(in)
		if got != want || ok != (want != "") {
			t.Errorf("CanonicalDomain(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

// TestSenderDomain: the domain an envelope address is about, whatever the
// spelling an attacker picks.
func TestSenderDomain(t *testing.T) {
	for in, want := range map[string]string{
		"a@bank.example":                            "bank.example",
		"<a@bank.example>":                          "bank.example",
		"a@BANK.EXAMPLE.":                           "bank.example",
		"a@bank.example..":                          "bank.example",
		"a@bank.example. ":                          "bank.example",
		`"x@evil.example"@bank.example`:             "bank.example",
		`"a@bank.example"@evil.example`:             "evil.example",
		`"a\"@bank.example"@evil.example`:           "evil.example",
		`"a@bank.example`:                           "bank.example", // unterminated quote: the last @
		"@relay.example,@r2.example:a@bank.example": "bank.example",
		"<@relay.example:a@bank.example>":           "bank.example",
		"a@b@bank.example":                          "bank.example",
		"a@xn--bcher-kva.example":                   "xn--bcher-kva.example",
		"a@bücher.example":                          "xn--bcher-kva.example",
		"a@[192.0.2.1]":                             "",
		"a@[bank.example]":                          "",
		`"a@bank.example"`:                          "",
		"":                                          "",
		"<>":                                        "",
		"postmaster":                                "",
		"@relay.example":                            "",
	} {
		got, ok := SenderDomain(in)
		if got != want || ok != (want != "") {
			t.Errorf("SenderDomain(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

func FuzzSenderDomain(f *testing.F) {
	for _, s := range []string{"a@bank.example", `"x@y"@bank.example.`, "@a,@b:u@d", "a@[1.2.3.4]", "a@bücher.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := SenderDomain(s)
		if !ok {
			return
		}
		if again, ok := CanonicalDomain(d); !ok || again != d {
			t.Fatalf("SenderDomain(%q) = %q, not canonical (%q)", s, d, again)
		}
	})
}

// TestInboundIdentity: require_tls applies to every spelling of the
// domain; the sender cannot choose one that skips it.
func TestInboundIdentity(t *testing.T) {
	p := &Inbound{RequireTLS: []string{"BANK.example.", ".gov.example", "bücher.example"}}
	for sender, want := range map[string]string{
		"a@bank.example":                "DEFER_IF_PERMIT",
		"a@BANK.EXAMPLE":                "DEFER_IF_PERMIT",
		"a@bank.example.":               "DEFER_IF_PERMIT",
		"a@bank.example..":              "DEFER_IF_PERMIT",
		"<a@bank.example>":              "DEFER_IF_PERMIT",
		`"x@evil.example"@bank.example`: "DEFER_IF_PERMIT",
		"@relay.example:a@bank.example": "DEFER_IF_PERMIT",
		"a@mail.GOV.example.":           "DEFER_IF_PERMIT",
		"a@xn--bcher-kva.example":       "DEFER_IF_PERMIT",
		"a@BÜCHER.example":              "DEFER_IF_PERMIT",
		"a@gov.example":                 "DUNNO",
		`"a@bank.example"@evil.example`: "DUNNO",
		"a@notbank.example":             "DUNNO",
		"a@[192.0.2.1]":                 "DUNNO",
		"":                              "DUNNO",
	} {
		got := p.Check(context.Background(), map[string]string{"sender": sender})
		if !strings.HasPrefix(got, want) {
			t.Errorf("sender %q → %q, want %s", sender, got, want)
		}
	}
}

// TestEngineIdentity: overrides, imports, socketmap keys and forget
// compare canonical names.
func TestEngineIdentity(t *testing.T) {
	w := newWorld(t)
	e := w.engine(Config{CacheTTL: -1, Overrides: map[string]string{"BANK.example.": "verify",
		".Corp.Example": "encrypt", "bücher.example": "secure"}})
	if err := e.Import(context.Background(), []Entry{{Domain: "ÜBER.example", Policy: "encrypt"}}, "test"); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"bank.example":          "verify",
		"Bank.Example.":         "verify",
		"mail.corp.example.":    "encrypt",
		"xn--bcher-kva.example": "secure",
		"Bücher.example":        "secure",
		"xn--ber-goa.example":   "encrypt",
		"über.example.":         "encrypt",
		"bank.example..":        "",
		"[bank.example]":        "",
		"notbank.example":       "",
	} {
		if d := e.Decide(context.Background(), key); d.Answer != want {
			t.Errorf("Decide(%q) = %q, want %q\n%s", key, d.Answer, want, strings.Join(d.Steps, "\n"))
		}
	}
	if err := e.Forget(context.Background(), "ÜBER.Example."); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(context.Background(), "xn--ber-goa.example"); d.Answer != "" {
		t.Errorf("after forget: %q", d.Answer)
	}
	if err := e.Forget(context.Background(), "[192.0.2.1]"); err == nil {
		t.Error("forget of a literal accepted")
	}
}
