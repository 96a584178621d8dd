package main

import (
	"net"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/testnet"
)

// dialFrom connects to addr from the address src inside ns, as a client
// on that address would: a namespace's loopback holds all of
// 127.0.0.0/8, so a test names its peers by loopback address there.
func dialFrom(t *testing.T, ns *testnet.NS, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = d.Dial("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("%s → %s: %v", src, addr, err)
	}
	return c
}
