package auth

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/resolver"
)

const spfZone = `
pass.example.     TXT "v=spf1 ip4:192.0.2.0/24 -all"
fail.example.     TXT "v=spf1 ip4:198.51.100.1 -all"
soft.example.     TXT "v=spf1 ~all"
neutral.example.  TXT "v=spf1 ?all"
none.example.     A 192.0.2.1
loop.example.     TXT "v=spf1 include:loop2.example -all"
loop2.example.    TXT "v=spf1 include:loop.example -all"
badip.example.    TXT "v=spf1 ip4:300.0.0.1 -all"
unknown.example.  TXT "v=spf1 frobnicate:x -all"
two.example.      TXT "v=spf1 -all"
two.example.      TXT "v=spf1 +all"
redir.example.    TXT "v=spf1 redirect=pass.example"
mx.example.       TXT "v=spf1 mx -all"
mx.example.       MX 10 mail.mx.example.
mail.mx.example.  A 192.0.2.7
helo.example.     TXT "v=spf1 ip4:192.0.2.9 -all"
temp.example.     TXT "v=spf1 include:broken.example -all"
`

func TestSPF(t *testing.T) {
	srv := dnstest.Start(t, spfZone)
	srv.ServFail("broken.example")
	srv.ServFail("servfail.example")
	c := &SPFChecker{Resolver: testResolver(t, srv)}
	cases := []struct {
		ip, helo, sender, result, class string
	}{
		{"192.0.2.1", "h.example", "a@pass.example", "pass", ""},
		{"192.0.2.1", "h.example", "a@fail.example", "fail", ""},
		{"192.0.2.1", "h.example", "a@soft.example", "softfail", ""},
		{"192.0.2.1", "h.example", "a@neutral.example", "neutral", ""},
		{"192.0.2.1", "h.example", "a@none.example", "none", ""},
		{"192.0.2.1", "h.example", "a@nxdomain.example", "none", ""},
		{"192.0.2.1", "h.example", "a@loop.example", "permerror", SPFPermError},
		{"192.0.2.1", "h.example", "a@badip.example", "permerror", SPFInvalidRecord},
		{"192.0.2.1", "h.example", "a@unknown.example", "permerror", SPFInvalidRecord},
		{"192.0.2.1", "h.example", "a@two.example", "permerror", SPFInvalidRecord},
		{"192.0.2.1", "h.example", "a@redir.example", "pass", ""},
		{"192.0.2.7", "h.example", "a@mx.example", "pass", ""},
		{"192.0.2.1", "h.example", "a@servfail.example", "temperror", SPFTempError},
		{"192.0.2.1", "h.example", "a@temp.example", "temperror", SPFTempError},
		{"192.0.2.9", "helo.example", "", "pass", ""}, // null sender: HELO identity
		{"192.0.2.1", "[192.0.2.1]", "", "none", ""},  // address literal HELO
	}
	for _, tc := range cases {
		r := c.CheckMailFrom(context.Background(), net.ParseIP(tc.ip), tc.helo, tc.sender)
		if r.Result != tc.result || r.ErrorClass != tc.class {
			t.Errorf("%s from %s: %s/%s (%v), want %s/%s", tc.sender, tc.ip, r.Result, r.ErrorClass, r.Err, tc.result, tc.class)
		}
	}
	h := c.CheckHelo(context.Background(), net.ParseIP("192.0.2.9"), "helo.example")
	if h.Result != "pass" || h.Identity != "helo" {
		t.Errorf("HELO check %+v", h)
	}
}

func TestSPFTimeout(t *testing.T) {
	srv := dnstest.Start(t, spfZone)
	srv.SetDrop(true)
	r, _ := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 100 * time.Millisecond})
	c := &SPFChecker{Resolver: r}
	res := c.CheckMailFrom(context.Background(), net.ParseIP("192.0.2.1"), "h.example", "a@pass.example")
	if res.Result != "temperror" || res.ErrorClass != SPFDNSTimeout {
		t.Errorf("dropped DNS: %s/%s, want temperror/dns_timeout", res.Result, res.ErrorClass)
	}
}
