package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// NS is a network namespace a test made: its own loopback (all of
// 127.0.0.0/8 and ::1, up), its own ports, no other interface. It lives as
// long as a socket or process inside it, or the test, holds it.
type NS struct {
	f *os.File // /proc/thread-self/ns/net of the thread that made it
}

// NewNS makes a network namespace that the test's end releases. It needs
// root (CAP_SYS_ADMIN).
func NewNS(t testing.TB) *NS {
	t.Helper()
	ns, err := newNS()
	if err != nil {
		t.Fatalf("testnet: network namespace (needs root): %v", err)
	}
	t.Cleanup(func() { ns.f.Close() })
	return ns
}

func newNS() (*NS, error) {
	var ns NS
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		return nil
	}, func() error {
		f, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		ns.f = f
		return loopbackUp()
	})
	if err != nil {
		if ns.f != nil {
			ns.f.Close()
		}
		return nil, err
	}
	return &ns, nil
}

// loopbackUp sets lo up in the calling thread's namespace, as `ip link set
// lo up` would; a new namespace starts with it down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// Do runs fn with its OS thread inside the namespace: sockets fn creates
// are the namespace's for good, and programs fn starts (os/exec forks
// from the calling thread) run inside it, as do their children. fn must
// not hand work to other goroutines and expect it to run inside: only
// fn's own goroutine is.
func (ns *NS) Do(fn func() error) error {
	return onThread(func() error {
		if err := unix.Setns(int(ns.f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return nil
	}, fn)
}

// Listen listens on addr ("127.0.0.1:53") inside the namespace.
func (ns *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := ns.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket binds addr inside the namespace.
func (ns *NS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// DialContext connects to addr inside the namespace. addr must be an IP
// address and port: resolving a name, or racing several addresses, would
// run on goroutines outside the namespace.
func (ns *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, fmt.Errorf("testnet: dial inside a namespace needs IP:port: %w", err)
	}
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// onThread runs enter, then fn, on a goroutine locked to its OS thread,
// and returns the thread to the network namespace it started in before
// unlocking it. When enter fails, or the thread cannot go back, the
// goroutine ends still locked, and the Go runtime ends the thread with it:
// no other goroutine ever runs in a namespace it did not ask for.
func onThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := enter(); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("testnet: back to the original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
