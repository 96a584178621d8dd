package resolver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/snowrain/snowrain/internal/dnstest"
)

func newTestClient(t *testing.T, addr string, cacheSize int) *Client {
	t.Helper()
	c, err := New(Config{Servers: []string{addr}, Timeout: 300 * time.Millisecond, CacheSize: cacheSize})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLookupClasses(t *testing.T) {
	big := strings.Repeat("x", 250)
	var bigTXT []string
	for i := 0; i < 20; i++ {
		bigTXT = append(bigTXT, `big.example. TXT "`+big+`"`)
	}
	srv := dnstest.Start(t, `
ok.example.      TXT "v=spf1 -all"
ok.example.      MX 20 mx2.ok.example.
ok.example.      MX 10 mx1.ok.example.
mx1.ok.example.  A 192.0.2.1
mx1.ok.example.  AAAA 2001:db8::1
a.b.example.     A 192.0.2.2
1.2.0.192.in-addr.arpa. PTR mx1.ok.example.
`+strings.Join(bigTXT, "\n"))
	srv.ServFail("broken.example")
	c := newTestClient(t, srv.Addr, 0)
	ctx := context.Background()

	txt, err := c.LookupTXT(ctx, "OK.example")
	if err != nil || len(txt) != 1 || txt[0] != "v=spf1 -all" {
		t.Errorf("TXT = %v, %v", txt, err)
	}
	mx, err := c.LookupMX(ctx, "ok.example")
	if err != nil || len(mx) != 2 || mx[0].Host != "mx1.ok.example." {
		t.Errorf("MX = %v, %v", mx, err)
	}
	ips, err := c.LookupIPAddr(ctx, "mx1.ok.example")
	if err != nil || len(ips) != 2 {
		t.Errorf("IP = %v, %v", ips, err)
	}
	names, err := c.LookupAddr(ctx, "192.0.2.1")
	if err != nil || len(names) != 1 {
		t.Errorf("PTR = %v, %v", names, err)
	}
	long, err := c.LookupTXT(ctx, "big.example")
	if err != nil || len(long) != 20 {
		t.Errorf("truncated TXT over TCP: %d records, %v", len(long), err)
	}

	cases := []struct {
		name               string
		notFound, temp, to bool
	}{
		{"nx.example", true, false, false},
		{"ok.example", false, false, false},    // has TXT
		{"mx1.ok.example", true, false, false}, // NODATA for TXT
		{"b.example", true, false, false},      // empty non-terminal
		{"x.broken.example", false, true, false},
	}
	for _, tc := range cases {
		_, err := c.LookupTXT(ctx, tc.name)
		if IsNotFound(err) != tc.notFound || IsTemporary(err) != tc.temp || IsTimeout(err) != tc.to {
			t.Errorf("%s: err %v: notfound=%v temp=%v timeout=%v", tc.name, err,
				IsNotFound(err), IsTemporary(err), IsTimeout(err))
		}
	}

	srv.SetDrop(true)
	_, err = c.LookupTXT(ctx, "ok.example")
	if !IsTimeout(err) || !IsTemporary(err) {
		t.Errorf("dropped query: %v, want timeout", err)
	}
}

func TestCache(t *testing.T) {
	srv := dnstest.Start(t, "c.example. 1 TXT \"one\"\nlong.example. 300 TXT \"two\"")
	c := newTestClient(t, srv.Addr, 2)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.LookupTXT(ctx, "long.example"); err != nil {
			t.Fatal(err)
		}
		c.LookupTXT(ctx, "nx.example")
	}
	if q := srv.Queries(); q != 2 {
		t.Errorf("queries = %d, want 2 (answers and NXDOMAIN cached)", q)
	}
	c.LookupTXT(ctx, "c.example")
	c.LookupTXT(ctx, "third.example")
	if n := c.cache.Len(); n != 2 {
		t.Errorf("cache holds %d, want bound 2", n)
	}
	before := srv.Queries()
	time.Sleep(1100 * time.Millisecond)
	c.LookupTXT(ctx, "c.example")
	if srv.Queries() == before {
		t.Errorf("expired TTL served from cache")
	}
}

// TestInvalidName: a name that cannot exist is answered at once, without a
// query, as not found and ErrInvalidName, never as a temporary failure.
func TestInvalidName(t *testing.T) {
	srv := dnstest.Start(t, "x.example. TXT \"v=spf1 -all\"")
	c := newTestClient(t, srv.Addr, 10)
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 253 characters
	cases := []struct {
		name    string
		invalid bool
	}{
		{"a..b.example", true},
		{".example", true},
		{"..", true},
		{strings.Repeat("a", 64) + ".example", true},
		{label63 + ".example", false},
		{name253, false},
		{name253 + ".", false},
		{name253 + "c", true},
		{"x" + name253, true},
		{"x.example", false},
		{"X.Example.", false},
	}
	for _, tc := range cases {
		before := srv.Queries()
		_, err := c.Query(context.Background(), tc.name, dns.TypeTXT)
		if IsInvalidName(err) != tc.invalid {
			t.Errorf("%q (%d): err %v, invalid=%v", tc.name, len(tc.name), err, tc.invalid)
		}
		if !tc.invalid {
			continue
		}
		if !IsNotFound(err) || IsTemporary(err) || IsTimeout(err) {
			t.Errorf("%q: %v: notfound=%v temp=%v", tc.name, err, IsNotFound(err), IsTemporary(err))
		}
		if srv.Queries() != before {
			t.Errorf("%q was sent to the server", tc.name)
		}
		for _, f := range []func() error{
			func() error { _, err := c.LookupTXT(context.Background(), tc.name); return err },
			func() error { _, err := c.LookupMX(context.Background(), tc.name); return err },
			func() error { _, err := c.LookupIPAddr(context.Background(), tc.name); return err },
		} {
			if err := f(); !IsNotFound(err) || !IsInvalidName(err) || IsTemporary(err) {
				t.Errorf("%q: lookup error %v", tc.name, err)
			}
		}
	}
}

// TestTXTBytes: TXT strings reach callers as the bytes published, not in
// miekg/dns's escaped presentation form.
func TestTXTBytes(t *testing.T) {
	srv := dnstest.Start(t, "")
	raw := "v=spf1 \"q\" \\ \x80\xef\xbb\xbf\x0d end"
	srv.AddRR(&dns.TXT{Hdr: dns.RR_Header{Name: "raw.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
		Txt: []string{strings.ReplaceAll(raw[:10], `\`, `\\`), strings.ReplaceAll(raw[10:], `\`, `\\`)}})
	c := newTestClient(t, srv.Addr, 0)
	txt, err := c.LookupTXT(context.Background(), "raw.example")
	if err != nil || len(txt) != 1 || txt[0] != raw {
		t.Errorf("TXT = %q, %v; want %q", txt, err, raw)
	}
}

// TestTXTCachedDecoded: a cached TXT answer gives the same bytes as the
// first lookup (decoded once, when received), and a caller that changes
// the slice it got does not change what the next caller gets.
func TestTXTCachedDecoded(t *testing.T) {
	srv := dnstest.Start(t, "")
	srv.AddRR(&dns.TXT{Hdr: dns.RR_Header{Name: "two.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
		Txt: []string{`v=DKIM1; p=\"x\"`, " \\237"}})
	c := newTestClient(t, srv.Addr, 10)
	want := "v=DKIM1; p=\"x\" \xed" // \DDD is decimal
	for i := 0; i < 3; i++ {
		txt, err := c.LookupTXT(context.Background(), "two.example")
		if err != nil || len(txt) != 1 || txt[0] != want {
			t.Fatalf("lookup %d: %q, %v; want %q", i, txt, err, want)
		}
		txt[0] = "changed by the caller"
	}
	if n := srv.Queries(); n != 1 {
		t.Errorf("%d queries reached the server, want 1 (the rest from the cache)", n)
	}
}
