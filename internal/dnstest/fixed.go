package dnstest

import (
	"fmt"
	"net"
	"testing"
)

// StartOn serves zone on a fixed address. Deprecated: tests must bind
// only picked ports or use a namespace they made (Start, ServeIn); the
// callers left are being converted, then this goes.
func StartOn(t testing.TB, addr, zone string) *Server {
	t.Helper()
	s, err := NewOn(addr, zone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// NewOn is StartOn without a testing.TB. Deprecated with StartOn.
func NewOn(addr, zone string) (*Server, error) {
	s := newServer()
	if err := s.Add(zone); err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dnstest: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dnstest: %w", err)
	}
	s.Addr = addr
	s.serve(pc, l)
	return s, nil
}
