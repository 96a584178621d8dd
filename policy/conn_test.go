package policy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// counter collects the classes a server counts.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(class string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[class]++
}

func (c *counter) get(class string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[class]
}

// listeners starts the two policy listeners with short timeouts.
func listeners(t *testing.T, idle time.Duration, wrap func(net.Listener) net.Listener) (inbound, socketmap string, in, sm *counter) {
	t.Helper()
	dir := t.TempDir()
	in, sm = &counter{}, &counter{}
	inbound, socketmap = filepath.Join(dir, "in.sock"), filepath.Join(dir, "sm.sock")
	l1, err := net.Listen("unix", inbound)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("unix", socketmap)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		l1, l2 = wrap(l1), wrap(l2)
	}
	p := &Inbound{RequireTLS: []string{"bank.example"}, IdleTimeout: idle,
		ReadTimeout: 300 * time.Millisecond, MaxConns: 20, Classes: in.add}
	s := &SocketmapServer{Engine: NewEngine(Config{Overrides: map[string]string{"bank.example": "verify"}}, nil, nil, nil, nil),
		IdleTimeout: idle, ReadTimeout: 300 * time.Millisecond, MaxConns: 20, Classes: sm.add}
	go p.Serve(l1)
	go s.Serve(l2)
	t.Cleanup(func() { l1.Close(); l2.Close(); p.Close(); s.Close() })
	return inbound, socketmap, in, sm
}

func dial(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer waits (up to a minute, as a safety net) for the server
// to close c.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	_, err := io.Copy(io.Discard, c)
	return err == nil || errors.Is(err, syscall.ECONNRESET)
}

func inboundWorks(t *testing.T, path string) {
	t.Helper()
	c := dial(t, path)
	c.Write([]byte("request=smtpd_access_policy\nsender=a@bank.example\n\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "action=DEFER_IF_PERMIT") {
		t.Errorf("inbound no longer answers: %q %v", line, err)
	}
}

func socketmapWorks(t *testing.T, path string) {
	t.Helper()
	c := dial(t, path)
	c.Write([]byte(FormatNetstring("tls bank.example")))
	if got, err := ReadNetstring(bufio.NewReader(c), 1000); got != "OK verify" {
		t.Errorf("socketmap no longer answers: %q %v", got, err)
	}
}

// TestListenerLimits sends each hostile client class to both listeners:
// the limits hold while reading, the offending connection alone closes,
// it is counted, and the listener keeps answering.
func TestListenerLimits(t *testing.T) {
	inbound, socketmap, in, sm := listeners(t, 300*time.Millisecond, nil)

	t.Run("endless line", func(t *testing.T) {
		c := dial(t, inbound)
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		sent := 0
		for sent < 256<<20 {
			c.SetWriteDeadline(time.Now().Add(time.Minute))
			n, err := c.Write(chunk)
			sent += n
			if err != nil {
				break
			}
		}
		// The server stops at 64 KiB; what got further sat in socket buffers.
		if sent >= 256<<20 {
			t.Errorf("the server took all of a 256 MiB line")
		}
		if !closedByServer(t, c) || in.get("malformed") != 1 {
			t.Errorf("endless line: malformed %d", in.get("malformed"))
		}
		t.Logf("sent %d KiB before the server closed", sent>>10)
	})
	t.Run("huge netstring", func(t *testing.T) {
		for _, bad := range []string{"4294967295:", "99999999999:", "10001:"} {
			c := dial(t, socketmap)
			c.Write([]byte(bad))
			if got, _ := ReadNetstring(bufio.NewReader(c), 1000); got != "PERM request too long" {
				t.Errorf("%q → %q", bad, got)
			}
		}
		if sm.get("too_long") != 3 {
			t.Errorf("too_long %d", sm.get("too_long"))
		}
	})
	t.Run("slow", func(t *testing.T) {
		for _, c := range []struct {
			path, start string
			count       *counter
		}{{inbound, "request=smtpd_access_policy\nsender=a@b", in}, {socketmap, "20:tls bank", sm}} {
			conn := dial(t, c.path)
			// A byte at a time, each well within the idle timeout, but the
			// request never ends: the read timeout closes it.
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					if _, err := conn.Write([]byte{c.start[i%len(c.start)]}); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			if !closedByServer(t, conn) {
				t.Errorf("%s: slow client not closed", c.path)
			}
			<-done
			if c.count.get("read_timeout") != 1 {
				t.Errorf("%s: read_timeout %d", c.path, c.count.get("read_timeout"))
			}
		}
	})
	t.Run("idle", func(t *testing.T) {
		for _, path := range []string{inbound, socketmap} {
			if !closedByServer(t, dial(t, path)) {
				t.Errorf("%s: idle connection not closed", path)
			}
		}
	})
	t.Run("too many", func(t *testing.T) {
		// With a long idle timeout: 20 connections held open, the 21st
		// is closed at once and counted.
		_, socketmap, _, sm := listeners(t, time.Minute, nil)
		for i := 0; i < 20; i++ {
			socketmapWorks(t, socketmap)
		}
		if !closedByServer(t, dial(t, socketmap)) || sm.get("too_many_connections") != 1 {
			t.Errorf("connection over the limit: too_many_connections %d", sm.get("too_many_connections"))
		}
	})
	inboundWorks(t, inbound)
	socketmapWorks(t, socketmap)
}

// panicListener's connections panic when they read "PANIC", as a bug in
// a handler would; acceptErrs makes Accept fail with EMFILE that many
// times first.
type panicListener struct {
	net.Listener
	mu         sync.Mutex
	acceptErrs int
}

func (l *panicListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.acceptErrs > 0 {
		l.acceptErrs--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: syscall.EMFILE}
	}
	l.mu.Unlock()
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return panicConn{c}, nil
}

type panicConn struct{ net.Conn }

func (c panicConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if bytes.Contains(b[:n], []byte("PANIC")) {
		panic("handler bug")
	}
	return n, err
}

// TestListenerRecover: a panic in one connection closes that connection
// only and is counted; accept errors (EMFILE) are counted and retried,
// the listener stays up.
func TestListenerRecover(t *testing.T) {
	inbound, socketmap, in, sm := listeners(t, time.Minute, func(l net.Listener) net.Listener {
		return &panicListener{Listener: l, acceptErrs: 3}
	})
	for _, c := range []struct {
		path, bad string
		count     *counter
		works     func(*testing.T, string)
	}{
		{inbound, "sender=PANIC\n\n", in, inboundWorks},
		{socketmap, "9:tls PANIC,", sm, socketmapWorks},
	} {
		other := dial(t, c.path) // open before, used after
		conn := dial(t, c.path)
		conn.Write([]byte(c.bad))
		if !closedByServer(t, conn) || c.count.get("panic") != 1 {
			t.Errorf("%s: panic %d", c.path, c.count.get("panic"))
		}
		if c.count.get("accept_error") != 3 {
			t.Errorf("%s: accept_error %d, want 3", c.path, c.count.get("accept_error"))
		}
		if c.path == socketmap {
			other.Write([]byte(FormatNetstring("tls bank.example")))
			if got, err := ReadNetstring(bufio.NewReader(other), 1000); got != "OK verify" {
				t.Errorf("the other connection: %q %v", got, err)
			}
		} else {
			other.Write([]byte("sender=a@bank.example\n\n"))
			if line, err := bufio.NewReader(other).ReadString('\n'); !strings.HasPrefix(line, "action=DEFER") {
				t.Errorf("the other connection: %q %v", line, err)
			}
		}
		c.works(t, c.path)
	}
}

// TestReadAttributesBounded: the bound holds while reading, whatever the
// shape of the input.
func TestReadAttributesBounded(t *testing.T) {
	for name, in := range map[string]string{
		"endless line":   strings.Repeat("x", 1<<20),
		"long value":     "sender=" + strings.Repeat("a", 70<<10) + "\n\n",
		"many lines":     strings.Repeat("a=b\n", 20<<10),
		"duplicate name": "sender=a@evil.example\nsender=a@bank.example\n\n",
		"no equals":      "sender\n\n",
	} {
		if _, err := ReadAttributes(bufio.NewReaderSize(strings.NewReader(in), 4096), 64<<10); !errors.Is(err, ErrAttributes) {
			t.Errorf("%s: %v", name, err)
		}
	}
	attrs, err := ReadAttributes(bufio.NewReader(strings.NewReader("a=b\r\nsender=x@y.example\n\n")), 100)
	if err != nil || attrs["a"] != "b" || attrs["sender"] != "x@y.example" {
		t.Errorf("%v %v", attrs, err)
	}
}
