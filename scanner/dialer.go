package scanner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/policy"
)

// ErrBlocked is returned for a dial whose final address is blocklisted.
var ErrBlocked = errors.New("scanner: address is blocklisted")

// Dialer opens every connection a scan makes to its targets: SMTP grabs,
// MTA-STS policy fetches over HTTPS and DNS queries to probed resolvers.
// The blocklist is checked on the address the socket is about to connect
// to, after any name resolution, so no path (a hostname, an AAAA record,
// an IPv4-mapped IPv6 address, a zone) reaches a blocked network.
//
// A nil *Dialer refuses the DefaultBlocklist; a Dialer with a nil
// Blocklist refuses nothing (tests on loopback).
type Dialer struct {
	Blocklist *Blocklist
	Timeout   time.Duration // connect timeout; 0: the context's deadline only
	LocalAddr net.Addr      // source address; nil: the kernel's choice
}

// defaultDialer is what a nil *Dialer stands for.
var defaultDialer = func() *Dialer {
	b, err := ParseBlocklist(strings.NewReader(DefaultBlocklist))
	if err != nil {
		panic(err)
	}
	return &Dialer{Blocklist: b}
}()

func (d *Dialer) orDefault() *Dialer {
	if d == nil {
		return defaultDialer
	}
	return d
}

// Net returns a net.Dialer doing the same check, for libraries that take
// one (miekg/dns's Client.Dialer).
func (d *Dialer) Net() *net.Dialer {
	d = d.orDefault()
	// No TCP keep-alive: a grab lasts seconds at most, and Go's default
	// costs four setsockopt calls per connection (issue 15).
	return &net.Dialer{Timeout: d.Timeout, LocalAddr: d.LocalAddr, ControlContext: d.control, KeepAlive: -1}
}

// DialContext connects to addr on network ("tcp", "udp", …).
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.Net().DialContext(ctx, network, addr)
}

// Blocked reports whether a would be refused: the sweeps skip such
// targets without a socket (and without counting them as tried).
func (d *Dialer) Blocked(a netip.Addr) bool {
	return d.orDefault().Blocklist.Blocked(a)
}

// control runs after the socket exists and before connect(2), with the
// numeric address being connected to.
func (d *Dialer) control(_ context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Not a numeric address: nothing to check it against, so refuse.
		return fmt.Errorf("%w: unparsable %s address %q", ErrBlocked, network, address)
	}
	if d.Blocklist.Blocked(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrBlocked, ap.Addr())
	}
	return nil
}

// stsThrough returns a copy of f whose policy fetches dial through d, the
// sweep's one dialer, so a policy host on a blocked address gets no
// request.
func stsThrough(f *policy.STSFetcher, d *Dialer) *policy.STSFetcher {
	if f == nil {
		return nil
	}
	c := *f
	c.Dial = d.DialContext
	return &c
}

// dialer is the sweep's one dialer: the grabber's.
func (o *Options) dialer() *Dialer {
	if o.Grabber == nil {
		return nil
	}
	return o.Grabber.Dialer
}
