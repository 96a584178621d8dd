package scanner

import (
	"context"
	"net/netip"
)

// HostOptions shape a port-25 sweep.
type HostOptions struct {
	SweepOptions
	Grabber  *Grabber
	Port     int
	OnResult func(*HostResult) // every address tried, closed ports included
}

// Targets is a set of CIDRs addressed by one index space, so a
// permutation can walk them without listing addresses.
type Targets struct {
	prefixes []netip.Prefix
	sizes    []uint64
	total    uint64
}

// NewTargets indexes IPv4 prefixes.
func NewTargets(prefixes []netip.Prefix) *Targets {
	t := &Targets{}
	for _, p := range prefixes {
		p = p.Masked()
		if !p.Addr().Is4() {
			continue
		}
		n := uint64(1) << (32 - p.Bits())
		t.prefixes, t.sizes = append(t.prefixes, p), append(t.sizes, n)
		t.total += n
	}
	return t
}

// Len is the number of addresses.
func (t *Targets) Len() uint64 { return t.total }

// At returns address i.
func (t *Targets) At(i uint64) netip.Addr {
	for k, n := range t.sizes {
		if i < n {
			b := t.prefixes[k].Addr().As4()
			v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
			v += uint32(i)
			return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		}
		i -= n
	}
	return netip.Addr{}
}

// SweepHosts walks this shard of targets in a random order, rate-limited,
// and grabs every address the blocklist allows.
func SweepHosts(ctx context.Context, o HostOptions, t *Targets) error {
	if o.Port == 0 {
		o.Port = 25
	}
	if o.Rate == 0 {
		o.Rate = 1000
	}
	return walk(ctx, t, o.SweepOptions, o.Grabber.Dialer.Blocked, func(ctx context.Context, ip netip.Addr) bool {
		r := o.Grabber.HostGrab(ctx, ip, o.Port)
		if ctx.Err() != nil {
			return false
		}
		if o.OnResult != nil {
			o.OnResult(&r)
		}
		return true
	})
}
