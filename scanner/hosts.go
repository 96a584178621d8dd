package scanner

import (
	"context"
	"net/netip"
)

// smtpPort is where mail servers listen: "the SMTP port (specified by
// IANA as port 25)", RFC 5321 section 4.5.4.2.
const smtpPort = 25

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
	if o.Rate == 0 {
		o.Rate = 1000
	}
	o.Dialer = o.Grabber.Dialer
	e := &Engine[*HostResult]{SweepOptions: o.SweepOptions, Module: &HostProbe{Grabber: o.Grabber, Port: o.Port}}
	if o.OnResult != nil {
		e.OnResult = func(_ Target, _ Status, r *HostResult) { o.OnResult(r) }
	}
	return e.Sweep(ctx, t)
}

// HostProbe is the port-25 sweep's module (Tables 9–12): STARTTLS sent
// whatever EHLO advertised, the reply classified.
type HostProbe struct {
	// Grabber talks SMTP, through its Dialer: the sweep's.
	Grabber *Grabber
	Port    int // default 25
}

// Scan grabs t's address; a closed port is absent.
func (p *HostProbe) Scan(ctx context.Context, _ *Dialer, t Target) (Status, *HostResult, error) {
	port := p.Port
	if port == 0 {
		port = smtpPort
	}
	r := p.Grabber.HostGrab(ctx, t.IP, port)
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	if r.ErrorClass == ErrClassConnect {
		return StatusAbsent, &r, nil
	}
	return StatusFound, &r, nil
}
