// Package testnet gives tests network endpoints that no other program can
// hold, so that `make test` runs beside a contributor's live mail server
// and beside other test runs (rule 2 of the house: tests bind only ports
// they picked, or use a network namespace they made).
//
// Two tools, for two needs:
//
//   - Pick binds one port, picked at random below the kernel's ephemeral
//     range, on every address of a set at once, and returns the bound
//     sockets: for servers a scanner or an MTA must find on one port at
//     many addresses (a sweep's --port, Postfix's smtp_tcp_port, the
//     MTA-STS port). Addresses of a sweep's range that must answer
//     "closed" can be reserved too: bound, never listening.
//   - NewNS makes a network namespace of the test's own, loopback up,
//     torn down when the test ends. Inside it the test may use default
//     ports: DNS on port 53 for a real Postfix, whose libc resolver asks
//     no other port, and SMTP on port 25. The test creates sockets inside
//     it with Listen, ListenPacket and Dial, and starts programs inside it
//     with Do; unix sockets (a milter, a socketmap) work across network
//     namespaces as they are.
//
// The namespace design, chosen for having no moving parts: the namespace
// is held by a file descriptor of the test process (no name under
// /run/netns to clean up after a killed test, no veth, no routes). A
// goroutine locked to its OS thread moves the thread into the namespace
// (setns), creates the sockets or forks the program there, and moves the
// thread back before unlocking it. A socket keeps the namespace it was
// created in for its whole life, so it is then served from any goroutine;
// a forked child keeps the namespace of the thread that forked it. Nothing
// binds a port in the machine's own namespace except picked ports.
package testnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Request names the sockets Pick binds on one port.
type Request struct {
	TCP []string // addresses to listen on with TCP
	UDP []string // addresses to bind for UDP
	// Closed is a prefix, e.g. a sweep's target range: on its addresses
	// not in TCP or UDP the port is reserved but closed (TCP bound without
	// listening, so connections are refused; UDP bound and connected to
	// itself, so datagrams draw "port unreachable"). No other program can
	// open the port there while the test runs.
	Closed string
}

// Ports are the sockets bound on one picked port, in the order of the
// Request's addresses.
type Ports struct {
	Port int
	TCP  []net.Listener
	UDP  []net.PacketConn

	reserved []int // file descriptors of the closed reservations
}

// Addr returns "ip:port" for ip on the picked port.
func (p *Ports) Addr(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(p.Port)) }

// Close closes every socket; closing twice is harmless.
func (p *Ports) Close() {
	for _, l := range p.TCP {
		l.Close()
	}
	for _, c := range p.UDP {
		c.Close()
	}
	for _, fd := range p.reserved {
		syscall.Close(fd)
	}
	p.reserved = nil // a descriptor closed twice may be another's by then
}

// Pick binds r on one port free on all its addresses and closes the
// sockets when the test ends (closing a listener a server already closed
// is harmless).
func Pick(t testing.TB, r Request) *Ports {
	t.Helper()
	p, err := Listen(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TCP picks one port and listens on it at every address.
func TCP(t testing.TB, addrs ...string) *Ports {
	t.Helper()
	return Pick(t, Request{TCP: addrs})
}

// FreePort returns a port free for TCP on every address now, for a daemon
// that binds it itself (Postfix's smtpd, Sendmail). Picked below the
// ephemeral range, it cannot be taken by the ":0" listeners and client
// sockets of concurrent tests between this check and the daemon's bind.
func FreePort(t testing.TB, addrs ...string) int {
	t.Helper()
	p, err := Listen(Request{TCP: addrs})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	return p.Port
}

// attempts bounds the retries: each one fails only when another program
// holds the port on one of the addresses.
const attempts = 500

// Listen is Pick without a test: the caller closes the Ports.
func Listen(r Request) (*Ports, error) {
	closed, err := closedAddrs(r)
	if err != nil {
		return nil, err
	}
	lo, hi := portRange()
	var last error
	for i := 0; i < attempts; i++ {
		p := &Ports{Port: lo + rand.IntN(hi-lo)}
		err := p.bind(r, closed)
		if err == nil {
			return p, nil
		}
		p.Close()
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("testnet: %w", err)
		}
		last = err
	}
	return nil, fmt.Errorf("testnet: no port free on every address after %d tries: %w", attempts, last)
}

func (p *Ports) bind(r Request, closed []netip.Addr) error {
	for _, a := range r.TCP {
		l, err := net.Listen("tcp", p.Addr(a))
		if err != nil {
			return err
		}
		p.TCP = append(p.TCP, l)
	}
	for _, a := range r.UDP {
		c, err := net.ListenPacket("udp", p.Addr(a))
		if err != nil {
			return err
		}
		p.UDP = append(p.UDP, c)
	}
	for _, a := range closed {
		for _, typ := range []int{syscall.SOCK_STREAM, syscall.SOCK_DGRAM} {
			fd, err := reserve(a, p.Port, typ)
			if err != nil {
				return err
			}
			p.reserved = append(p.reserved, fd)
		}
	}
	return nil
}

// closedAddrs lists the addresses of r.Closed not opened by r.
func closedAddrs(r Request) ([]netip.Addr, error) {
	if r.Closed == "" {
		return nil, nil
	}
	pfx, err := netip.ParsePrefix(r.Closed)
	if err != nil {
		return nil, fmt.Errorf("testnet: closed range: %w", err)
	}
	if pfx.Bits() < pfx.Addr().BitLen()-12 {
		return nil, fmt.Errorf("testnet: closed range %s: more than 4096 addresses", pfx)
	}
	open := map[netip.Addr]bool{}
	for _, a := range append(append([]string(nil), r.TCP...), r.UDP...) {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
		open[ip] = true
	}
	var out []netip.Addr
	for a := pfx.Masked().Addr(); pfx.Contains(a); a = a.Next() {
		if !open[a] {
			out = append(out, a)
		}
	}
	return out, nil
}

// reserve binds a socket of typ to ip:port without SO_REUSEADDR, so that
// nobody else can bind it, and without accepting anything: a TCP socket
// that never listens refuses connections (RST), and a UDP socket
// connected to its own address matches no datagram from a prober, which
// the kernel answers with ICMP port unreachable, as for a closed port.
func reserve(ip netip.Addr, port, typ int) (int, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ip.Is4() {
		sa = &syscall.SockaddrInet4{Port: port, Addr: ip.As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: port, Addr: ip.As16()}
	}
	fd, err := syscall.Socket(family, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("reserve %s: %w", net.JoinHostPort(ip.String(), strconv.Itoa(port)), err)
	}
	if typ == syscall.SOCK_DGRAM {
		if err := syscall.Connect(fd, sa); err != nil {
			syscall.Close(fd)
			return -1, os.NewSyscallError("connect", err)
		}
	}
	return fd, nil
}

// portRange is where ports are picked: from 10000 up to the start of the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), where no ":0"
// listener or outgoing connection takes a port behind our back.
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lo+1000 {
				hi = n
			}
		}
	}
	return lo, hi
}
