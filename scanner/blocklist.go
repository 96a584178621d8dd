package scanner

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Blocklist holds the networks no packet of a scan may reach. It is
// checked on the final address of every dial.
type Blocklist struct {
	prefixes []netip.Prefix
}

// DefaultBlocklist is IANA's special-purpose ranges, as ZMap ships them,
// and their IPv6 counterparts (IPv4-mapped addresses are judged by the
// IPv4 address they carry).
const DefaultBlocklist = `
0.0.0.0/8           # "this" network
10.0.0.0/8          # private
100.64.0.0/10       # shared address space
127.0.0.0/8         # loopback
169.254.0.0/16      # link local
172.16.0.0/12       # private
192.0.0.0/24        # IETF protocol assignments
192.0.2.0/24        # TEST-NET-1
192.88.99.0/24      # 6to4 relay anycast
192.168.0.0/16      # private
198.18.0.0/15       # benchmarking
198.51.100.0/24     # TEST-NET-2
203.0.113.0/24      # TEST-NET-3
224.0.0.0/4         # multicast
240.0.0.0/4         # reserved
255.255.255.255/32  # broadcast
::/96               # unspecified, loopback and IPv4-compatible
64:ff9b::/96        # NAT64: would reach IPv4 through a local translator
64:ff9b:1::/48      # local-use NAT64
100::/64            # discard-only
2001::/23           # IETF protocol assignments (Teredo included)
2001:db8::/32       # documentation
fc00::/7            # unique local
fe80::/10           # link local
ff00::/8            # multicast
`

// ParseBlocklist reads CIDRs (or single addresses), one per line, with
// "#" comments.
func ParseBlocklist(r io.Reader) (*Blocklist, error) {
	b := &Blocklist{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !strings.Contains(line, "/") {
			a, err := netip.ParseAddr(line)
			if err != nil {
				return nil, fmt.Errorf("scanner: blocklist line %d: %w", n, err)
			}
			line = netip.PrefixFrom(a, a.BitLen()).String()
		}
		p, err := netip.ParsePrefix(line)
		if err != nil {
			return nil, fmt.Errorf("scanner: blocklist line %d: %w", n, err)
		}
		b.prefixes = append(b.prefixes, p.Masked())
	}
	return b, sc.Err()
}

// Blocked reports whether a is in a blocked network. IPv4-mapped IPv6
// addresses are judged as the IPv4 address they carry, and a zone is
// ignored (netip.Prefix.Contains never matches a zoned address).
func (b *Blocklist) Blocked(a netip.Addr) bool {
	if b == nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range b.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
