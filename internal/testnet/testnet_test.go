package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPickSamePort binds one port on several addresses for TCP and UDP,
// and a second pick over the same addresses gets another port.
func TestPickSamePort(t *testing.T) {
	addrs := []string{"127.71.0.1", "127.71.0.2", "127.71.0.3"}
	p := Pick(t, Request{TCP: addrs, UDP: addrs})
	lo, hi := portRange()
	if p.Port < lo || p.Port >= hi {
		t.Errorf("port %d outside [%d, %d)", p.Port, lo, hi)
	}
	for i, l := range p.TCP {
		if got := l.Addr().String(); got != p.Addr(addrs[i]) {
			t.Errorf("TCP %d on %s, want %s", i, got, p.Addr(addrs[i]))
		}
		if got := p.UDP[i].LocalAddr().String(); got != p.Addr(addrs[i]) {
			t.Errorf("UDP %d on %s, want %s", i, got, p.Addr(addrs[i]))
		}
	}
	q := Pick(t, Request{TCP: addrs})
	if q.Port == p.Port {
		t.Errorf("second pick got the taken port %d", p.Port)
	}
	if _, err := net.Listen("tcp", p.Addr(addrs[1])); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listen on a picked address: %v, want address in use", err)
	}
}

// TestPickClosed: the reserved addresses of a range refuse TCP
// connections and answer UDP with port unreachable, and nobody can open
// the port there.
func TestPickClosed(t *testing.T) {
	p := Pick(t, Request{TCP: []string{"127.71.1.1"}, Closed: "127.71.1.0/30"})
	if len(p.reserved) != 3*2 {
		t.Fatalf("%d reservations, want 6 (3 addresses, TCP and UDP)", len(p.reserved))
	}
	c, err := net.Dial("tcp", p.Addr("127.71.1.1"))
	if err != nil {
		t.Fatalf("open address: %v", err)
	}
	c.Close()
	for _, ip := range []string{"127.71.1.0", "127.71.1.2", "127.71.1.3"} {
		if _, err := net.Dial("tcp", p.Addr(ip)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("TCP to reserved %s: %v, want refused", ip, err)
		}
		if _, err := net.Listen("tcp", p.Addr(ip)); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("listen on reserved %s: %v, want address in use", ip, err)
		}
		if _, err := net.ListenPacket("udp", p.Addr(ip)); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("UDP bind on reserved %s: %v, want address in use", ip, err)
		}
		u, err := net.Dial("udp", p.Addr(ip))
		if err != nil {
			t.Fatal(err)
		}
		u.Write([]byte("x"))
		// The ICMP error arrives before any read could: no deadline
		// decides the outcome (this one only stops a broken kernel).
		u.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := u.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to reserved %s: %v, want refused", ip, err)
		}
		u.Close()
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t, "127.0.0.1", "127.71.2.1")
	for _, ip := range []string{"127.0.0.1", "127.71.2.1"} {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("free port %d not free on %s: %v", port, ip, err)
		}
		l.Close()
	}
}

// TestNamespace serves port 53 inside a namespace: reachable there, not
// from the machine's namespace, and a program started with Do sees only
// the namespace's loopback.
func TestNamespace(t *testing.T) {
	ns := NewNS(t)
	l, err := ns.Listen("tcp", "127.53.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "inside\n")
			c.Close()
		}
	}()
	c, err := ns.DialContext(context.Background(), "tcp", "127.53.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "inside\n" {
		t.Errorf("read %q inside the namespace", b)
	}
	// The machine's 127.53.0.1:53 is not ours: whatever answers there (a
	// refusal, most likely), it is not the server above.
	if c, err := net.Dial("tcp", "127.53.0.1:53"); err == nil {
		b, _ := io.ReadAll(io.LimitReader(c, 100))
		c.Close()
		if string(b) == "inside\n" {
			t.Error("the namespace's server answered in the machine's namespace")
		}
	}
	// A second namespace is another loopback: port 53 is free there.
	l2, err := NewNS(t).Listen("tcp", "127.53.0.1:53")
	if err != nil {
		t.Errorf("port 53 in a second namespace: %v", err)
	} else {
		l2.Close()
	}
	if _, err := ns.DialContext(context.Background(), "tcp", "localhost:53"); err == nil {
		t.Error("dial by name inside a namespace allowed")
	}
}

// TestNamespaceExec: a program started inside Do runs in the namespace,
// and the thread that started it is back in the machine's afterwards.
func TestNamespaceExec(t *testing.T) {
	ns := NewNS(t)
	fi, err := ns.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	want := fi.Sys().(*syscall.Stat_t).Ino
	inode := func() uint64 {
		out, err := exec.Command("stat", "-L", "-c", "%i", "/proc/self/ns/net").Output()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
		return n
	}
	var inside uint64
	ns.Do(func() error { inside = inode(); return nil })
	if inside != want {
		t.Errorf("program in namespace %d, want %d", inside, want)
	}
	for i := 0; i < 4; i++ {
		if got := inode(); got == want {
			t.Fatal("a program started outside Do ran in the namespace")
		}
	}
}
