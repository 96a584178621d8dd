package auth

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/resolver"
)

// spfZone holds one domain per SPF outcome. Client addresses are in
// 192.0.2.0/24 and 127.0.0.0/8.
var spfZone = `
pass.example.       TXT "v=spf1 ip4:192.0.2.0/24 -all"
fail.example.       TXT "v=spf1 ip4:198.51.100.1 -all"
soft.example.       TXT "v=spf1 ip4:198.51.100.1 ~all"
neutral.example.    TXT "v=spf1 ?all"
none.example.       A 192.0.2.1
none.example.       TXT "google-site-verification=abc"
loop.example.       TXT "v=spf1 include:loop2.example -all"
loop2.example.      TXT "v=spf1 include:loop.example -all"
badip.example.      TXT "v=spf1 ip4:300.0.0.1 -all"
badmask.example.    TXT "v=spf1 ip4:192.0.2.0/33 -all"
unknown.example.    TXT "v=spf1 frobnicate:x -all"
modifier.example.   TXT "v=spf1 ip4:192.0.2.1 future=ignored -all"
two.example.        TXT "v=spf1 -all"
two.example.        TXT "v=spf1 +all"
redir.example.      TXT "v=spf1 redirect=pass.example"
mx.example.         TXT "v=spf1 mx -all"
mx.example.         MX 10 mail.mx.example.
mail.mx.example.    A 192.0.2.7
helo.example.       TXT "v=spf1 ip4:192.0.2.9 -all"
temp.example.       TXT "v=spf1 include:broken.example -all"
macro.example.      TXT "v=spf1 exists:%{i}._spf.macro.example -all"
192.0.2.1._spf.macro.example. A 127.0.0.2
loopback.example.   TXT "v=spf1 ip4:127.0.0.0/8 -all"
xn--bcher-kva.example. TXT "v=spf1 ip4:192.0.2.0/24 -all"
incbad.example.     TXT "v=spf1 include:a..b.example -all"
abad.example.       TXT "v=spf1 a:x..y.example ip4:192.0.2.1 -all"
` + manyLookups()

// manyLookups makes many.example need 11 DNS lookups, one over RFC 7208's
// limit of 10; every target exists so the void-lookup limit stays out of it.
func manyLookups() string {
	var b strings.Builder
	var mech []string
	for i := 1; i <= 11; i++ {
		fmt.Fprintf(&b, "a%d.many.example. A 198.51.100.%d\n", i, i)
		mech = append(mech, fmt.Sprintf("a:a%d.many.example", i))
	}
	fmt.Fprintf(&b, "many.example. TXT \"v=spf1 %s ip4:192.0.2.0/24 -all\"\n", strings.Join(mech, " "))
	// Ten lookups are allowed.
	fmt.Fprintf(&b, "ten.example. TXT \"v=spf1 %s ip4:192.0.2.0/24 -all\"\n", strings.Join(mech[:10], " "))
	return b.String()
}

func TestSPF(t *testing.T) {
	srv := dnstest.Start(t, spfZone)
	srv.ServFail("broken.example")
	srv.ServFail("servfail.example")
	c := &SPFChecker{Resolver: testResolver(t, srv)}
	cases := []struct {
		name, ip, helo, sender string
		result                 SPFStatus
		class                  SPFClass
		domain                 string
	}{
		{"pass", "192.0.2.1", "h.example", "a@pass.example", "pass", "", "pass.example"},
		{"domain case", "192.0.2.1", "h.example", "a@PASS.Example.", "pass", "", "pass.example"},
		{"angle brackets", "192.0.2.1", "h.example", "<a@pass.example>", "pass", "", "pass.example"},
		{"fail", "192.0.2.1", "h.example", "a@fail.example", "fail", "", "fail.example"},
		{"softfail", "192.0.2.1", "h.example", "a@soft.example", "softfail", "", "soft.example"},
		{"neutral", "192.0.2.1", "h.example", "a@neutral.example", "neutral", "", "neutral.example"},
		{"no spf record", "192.0.2.1", "h.example", "a@none.example", "none", "", "none.example"},
		{"nxdomain", "192.0.2.1", "h.example", "a@nxdomain.example", "none", "", "nxdomain.example"},
		{"include loop", "192.0.2.1", "h.example", "a@loop.example", "permerror", SPFClassPermError, "loop.example"},
		{"11 lookups", "192.0.2.1", "h.example", "a@many.example", "permerror", SPFClassPermError, "many.example"},
		{"10 lookups", "192.0.2.1", "h.example", "a@ten.example", "pass", "", "ten.example"},
		{"bad ip4", "192.0.2.1", "h.example", "a@badip.example", "permerror", SPFClassInvalidRecord, "badip.example"},
		{"bad mask", "192.0.2.1", "h.example", "a@badmask.example", "permerror", SPFClassInvalidRecord, "badmask.example"},
		{"unknown mechanism", "192.0.2.1", "h.example", "a@unknown.example", "permerror", SPFClassInvalidRecord, "unknown.example"},
		{"unknown modifier ignored", "192.0.2.1", "h.example", "a@modifier.example", "pass", "", "modifier.example"},
		{"two records", "192.0.2.1", "h.example", "a@two.example", "permerror", SPFClassInvalidRecord, "two.example"},
		{"redirect", "192.0.2.1", "h.example", "a@redir.example", "pass", "", "redir.example"},
		{"mx", "192.0.2.7", "h.example", "a@mx.example", "pass", "", "mx.example"},
		{"mx other ip", "192.0.2.8", "h.example", "a@mx.example", "fail", "", "mx.example"},
		{"exists macro", "192.0.2.1", "h.example", "a@macro.example", "pass", "", "macro.example"},
		{"exists macro miss", "192.0.2.2", "h.example", "a@macro.example", "fail", "", "macro.example"},
		{"loopback client", "127.0.0.1", "h.example", "a@loopback.example", "pass", "", "loopback.example"},
		{"servfail", "192.0.2.1", "h.example", "a@servfail.example", "temperror", SPFClassTempError, "servfail.example"},
		{"servfail in include", "192.0.2.1", "h.example", "a@temp.example", "temperror", SPFClassTempError, "temp.example"},
		// The null sender: RFC 7208 2.4 checks postmaster@HELO.
		{"null sender", "192.0.2.9", "helo.example", "", "pass", "", "helo.example"},
		{"null sender <>", "192.0.2.9", "Helo.Example", "<>", "pass", "", "helo.example"},
		{"null sender fail", "192.0.2.1", "helo.example", "<>", "fail", "", "helo.example"},
		{"null sender literal HELO", "192.0.2.1", "[192.0.2.1]", "", "none", "", "[192.0.2.1]"},
		{"null sender no HELO", "192.0.2.1", "", "", "none", "", ""},
		// A non-null sender without a domain is not the null sender: it
		// must not be checked (and reported) as the HELO name.
		{"sender without domain", "192.0.2.9", "helo.example", "user@", "none", "", ""},
		{"sender without @", "192.0.2.9", "helo.example", "postmaster", "none", "", ""},
		{"literal domain", "192.0.2.1", "h.example", "a@[192.0.2.1]", "none", "", "[192.0.2.1]"},
		// RFC 6531 MAIL FROM: checked, and reported, in A-labels.
		{"U-label domain", "192.0.2.1", "h.example", "a@Bücher.example", "pass", "", "xn--bcher-kva.example"},
		{"U-label domain fail", "198.51.100.7", "h.example", "a@bücher.example.", "fail", "", "xn--bcher-kva.example"},
		{"quoted @ in local part", "198.51.100.7", "h.example", `"x@pass.example"@fail.example`, "fail", "", "fail.example"},
		// RFC 7208 4.3: a malformed domain is none, not an error.
		{"empty label", "192.0.2.1", "h.example", "a@a..example", "none", "", "a..example"},
		{"leading dot", "192.0.2.1", "h.example", "a@.example", "none", "", ".example"},
		{"label over 63", "192.0.2.1", "h.example", "a@" + strings.Repeat("x", 64) + ".example", "none", "", strings.Repeat("x", 64) + ".example"},
		{"name over 253", "192.0.2.1", "h.example", "a@" + strings.Repeat("abcdefgh.", 28) + "example", "none", "", strings.Repeat("abcdefgh.", 28) + "example"},
		{"single label", "192.0.2.1", "h.example", "a@localhost", "none", "", "localhost"},
		{"bad IDN", "192.0.2.1", "h.example", "a@\u00ad\u200d.example", "none", "", "\u00ad\u200d.example"},
		// A malformed name inside a record is the record's problem, never
		// a transient one.
		{"include of malformed name", "192.0.2.1", "h.example", "a@incbad.example", "permerror", SPFClassPermError, "incbad.example"},
		{"a: of malformed name", "192.0.2.1", "h.example", "a@abad.example", "pass", "", "abad.example"},
		{"a: of malformed name, no match", "192.0.2.2", "h.example", "a@abad.example", "fail", "", "abad.example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.CheckMailFrom(context.Background(), net.ParseIP(tc.ip), tc.helo, tc.sender)
			if r.Result != tc.result || r.ErrorClass != tc.class || r.Domain != tc.domain || r.Identity != "mailfrom" {
				t.Errorf("%q from %s: %s %s/%s (%v), want mailfrom %s %s/%s",
					tc.sender, tc.ip, r.Identity, r.Domain, r.Result, r.Err, tc.domain, tc.result, tc.class)
			}
			if (r.Result == "temperror" || r.Result == "permerror") != (r.Err != nil) {
				t.Errorf("%s with error %v", r.Result, r.Err)
			}
		})
	}
}

func TestSPFHelo(t *testing.T) {
	srv := dnstest.Start(t, spfZone)
	srv.ServFail("broken.example")
	c := &SPFChecker{Resolver: testResolver(t, srv)}
	cases := []struct {
		ip, helo string
		result   SPFStatus
		class    SPFClass
		domain   string
	}{
		{"192.0.2.9", "helo.example", "pass", "", "helo.example"},
		{"192.0.2.9", "HELO.example", "pass", "", "helo.example"},
		{"192.0.2.1", "helo.example", "fail", "", "helo.example"},
		{"192.0.2.1", "nohost.example", "none", "", "nohost.example"},
		{"192.0.2.1", "[192.0.2.1]", "none", "", "[192.0.2.1]"},
		{"192.0.2.1", "x.broken.example", "temperror", SPFClassTempError, "x.broken.example"},
	}
	for _, tc := range cases {
		r := c.CheckHelo(context.Background(), net.ParseIP(tc.ip), tc.helo)
		if r.Identity != "helo" || r.Result != tc.result || r.ErrorClass != tc.class || r.Domain != tc.domain {
			t.Errorf("HELO %s from %s: %+v, want %s %s/%s", tc.helo, tc.ip, r, tc.domain, tc.result, tc.class)
		}
	}
}

// TestSPFTimeout: a server that never answers is a dns_timeout, whether the
// resolver's own timeout or the message's DNS budget runs out first.
func TestSPFTimeout(t *testing.T) {
	srv := dnstest.Start(t, spfZone)
	srv.SetDrop(true)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := &SPFChecker{Resolver: r}
	res := c.CheckMailFrom(context.Background(), net.ParseIP("192.0.2.1"), "h.example", "a@pass.example")
	if res.Result != "temperror" || res.ErrorClass != SPFClassDNSTimeout {
		t.Errorf("dropped DNS: %s/%s (%v), want temperror/dns_timeout", res.Result, res.ErrorClass, res.Err)
	}

	slow, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	res = (&SPFChecker{Resolver: slow}).CheckMailFrom(ctx, net.ParseIP("192.0.2.1"), "h.example", "a@pass.example")
	if res.Result != "temperror" || res.ErrorClass != SPFClassDNSTimeout {
		t.Errorf("budget exhausted: %s/%s (%v), want temperror/dns_timeout", res.Result, res.ErrorClass, res.Err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("check outlived its context by %v", d)
	}

	// A slow server inside the timeout is fine.
	srv.SetDrop(false)
	srv.SetDelay(50 * time.Millisecond)
	res = (&SPFChecker{Resolver: slow}).CheckMailFrom(context.Background(), net.ParseIP("192.0.2.1"), "h.example", "a@pass.example")
	if res.Result != "pass" {
		t.Errorf("slow DNS: %s (%v)", res.Result, res.Err)
	}
}

func TestDomainOf(t *testing.T) {
	cases := map[string]string{
		"a@Example.ORG":              "example.org",
		"<a@example.org.>":           "example.org",
		`"x@y"@example.org`:          "example.org",
		"":                           "",
		"<>":                         "",
		"postmaster":                 "",
		"user@":                      "",
		" <a@b.example> ":            "b.example",
		"a@[192.0.2.1]":              "[192.0.2.1]",
		"a@sub.domain.example.co.uk": "sub.domain.example.co.uk",
	}
	for in, want := range cases {
		if got := domainOf(in); got != want {
			t.Errorf("domainOf(%q) = %q, want %q", in, got, want)
		}
	}
}
