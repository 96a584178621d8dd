package scanner

import (
	"context"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/resolver"
)

const spfTree = `
simple.example.   TXT "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 -all"
inc.example.      TXT "v=spf1 include:simple.example include:six.example ~all"
six.example.      TXT "v=spf1 ip6:2001:db8::/32 a mx ?all"
six.example.      A 192.0.2.50
six.example.      MX 10 mx.six.example.
mx.six.example.   A 192.0.2.51
redir.example.    TXT "v=spf1 redirect=simple.example"
voided.example.   TXT "v=spf1 redirect=simple.example -all"
loop1.example.    TXT "v=spf1 include:loop2.example -all"
loop2.example.    TXT "v=spf1 include:loop1.example -all"
chain0.example.   TXT "v=spf1 include:chain1.example -all"
chain1.example.   TXT "v=spf1 include:chain2.example include:chain2.example include:chain2.example -all"
chain2.example.   TXT "v=spf1 a:x.example a:x.example a:x.example a:x.example -all"
bad.example.      TXT "v=spf1 frob:x -all"
two.example.      TXT "v=spf1 -all"
two.example.      TXT "v=spf1 +all"
wide.example.     TXT "v=spf1 ip4:10.0.0.0/8 a/24 +all"
wide.example.     A 192.0.2.9
incnone.example.  TXT "v=spf1 ip4:192.0.2.1 include:nospf.example -all"
nospf.example.    TXT "not spf"
redirnone.example. TXT "v=spf1 redirect=nxdomain.example"
macro.example.    TXT "v=spf1 include:%{d}.spf.example ip4:192.0.2.0/28 -all"
`

func TestSPFWalk(t *testing.T) {
	srv := dnstest.Start(t, spfTree)
	res, _ := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: time.Second, CacheSize: 100})
	w := &SPFWalker{Resolver: res}
	cases := []struct {
		domain, all, addrs string
		class              SPFClass
		lookups            int
	}{
		{"simple.example", "-", "257", "", 0},
		{"inc.example", "~", "259", "", 4},
		{"redir.example", "redirect", "257", "", 1},
		{"voided.example", "-", "0", "", 0},
		{"loop1.example", "-", "0", "loop", 2},
		{"chain0.example", "-", "0", "lookup_limit", 11},
		{"bad.example", "-", "0", "syntax", 0},
		{"two.example", "", "0", "multiple_records", 0},
		{"none.example", "", "0", "none", 0},
		{"wide.example", "+", "16777472", "", 1},
		{"incnone.example", "-", "1", "include_none", 1},
		{"redirnone.example", "redirect", "0", "include_none", 1},
		{"macro.example", "-", "16", "", 1},
	}
	for _, c := range cases {
		s := w.Walk(context.Background(), c.domain)
		if s.All != c.all || s.Addrs4 != c.addrs || s.ErrorClass != c.class || s.Lookups != c.lookups {
			t.Errorf("%s: all %q addrs %s class %q lookups %d (%v), want %q %s %q %d",
				c.domain, s.All, s.Addrs4, s.ErrorClass, s.Lookups, s.Err, c.all, c.addrs, c.class, c.lookups)
		}
	}
	s := w.Walk(context.Background(), "inc.example")
	if s.TopTypes["include"] != 2 || s.Types["ip4"] != 2 || s.Types["ip6"] != 1 || s.Types["mx"] != 1 || s.Types["a"] != 1 {
		t.Errorf("types top %v all %v", s.TopTypes, s.Types)
	}
}

func FuzzSPFWalkRecord(f *testing.F) {
	for _, r := range []string{"v=spf1 ip4:192.0.2.0/24 -all", "v=spf1 include:x.example redirect=y.example",
		"v=spf1 a/33 mx/-1 ip4:1.2.3.4/0 ip6:::/0 ?all", "v=spf1 exists:%{i}.x ptr -all"} {
		f.Add(r)
	}
	srv := dnstest.Start(f, "")
	res, _ := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 100 * time.Millisecond, CacheSize: 100})
	w := &SPFWalker{Resolver: res}
	f.Fuzz(func(t *testing.T, rec string) {
		if len(rec) > 500 {
			return
		}
		s := w.WalkRecord(context.Background(), "fuzz.example", "v=spf1 "+rec)
		if s.Addresses.Sign() < 0 || s.Lookups > 11 {
			t.Fatalf("%q: %+v", rec, s)
		}
	})
}
