package resolver

import (
	"context"
	"net"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// LookupTXT returns the TXT records of name, each one's strings joined,
// as the bytes on the wire.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ans, err := c.Query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	if ans.txt != nil { // decoded once when it was received, then cached with it
		return slices.Clone(ans.txt), nil
	}
	return decodeTXT(ans.Records), nil
}

// decodeTXT returns the TXT records among rrs, each one's strings joined
// and unescaped.
func decodeTXT(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		t, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		var b strings.Builder
		for _, s := range t.Txt {
			unescapeTXT(&b, s)
		}
		out = append(out, b.String())
	}
	return out
}

// unescapeTXT undoes miekg/dns's presentation escapes in a TXT string
// (\" and \\ for quote and backslash, \DDD for bytes outside printable
// ASCII), so that a record holding `"` or a raw byte reaches SPF, DKIM and
// DMARC parsers as published, not as zone-file text.
func unescapeTXT(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		if i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
			b.WriteByte(byte(int(s[i]-'0')*100 + int(s[i+1]-'0')*10 + int(s[i+2]-'0')))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// LookupMX returns the MX records of name sorted by preference.
func (c *Client) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	ans, err := c.Query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*net.MX
	for _, rr := range ans.Records {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host. It fails only
// when both lookups fail, with the more telling error.
func (c *Client) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IPAddr{{IP: ip}}, nil
	}
	var out []net.IPAddr
	a, errA := c.Query(ctx, host, dns.TypeA)
	if errA == nil {
		for _, rr := range a.Records {
			out = append(out, net.IPAddr{IP: rr.(*dns.A).A})
		}
	}
	aaaa, errAAAA := c.Query(ctx, host, dns.TypeAAAA)
	if errAAAA == nil {
		for _, rr := range aaaa.Records {
			out = append(out, net.IPAddr{IP: rr.(*dns.AAAA).AAAA})
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if isTemporary(errA) {
		return nil, errA
	}
	if isTemporary(errAAAA) {
		return nil, errAAAA
	}
	return nil, errA
}

// LookupAddr returns the PTR names of addr.
func (c *Client) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "invalid address", Name: addr}
	}
	ans, err := c.Query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range ans.Records {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}
