package supervise

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails Accept with the given errors, in order, before
// passing through to a real listener.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// echo answers one line per connection.
func echo(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprint(c, line)
		}()
	}
}

func roundTrip(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(c, "ping\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
}

func newTest(t *testing.T) (*Supervisor, *syncBuf, func(string) int) {
	logs := &syncBuf{}
	s := New(slog.New(slog.NewTextHandler(logs, nil)))
	s.Backoff = func(int) time.Duration { return time.Millisecond }
	var mu sync.Mutex
	counts := map[string]int{}
	s.OnAcceptError = func(name, errno string) { mu.Lock(); counts[name+" "+errno]++; mu.Unlock() }
	s.OnRestart = func(name string) { mu.Lock(); counts[name+" restart"]++; mu.Unlock() }
	t.Cleanup(func() { s.Stop(); s.Wait(context.Background()) })
	return s, logs, func(k string) int { mu.Lock(); defer mu.Unlock(); return counts[k] }
}

// waitRestarted waits (the restart happens in the background) until name
// was restarted once and serves; the test's round trip then checks it.
func waitRestarted(s *Supervisor, name string) {
	for i := 0; i < 500; i++ {
		if st, _ := s.Status(); st[name].Restarts == 1 && st[name].State == Serving {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTemporaryAcceptErrorsAreRetried(t *testing.T) {
	s, logs, counts := newTest(t)
	inner, _ := net.Listen("tcp", "127.0.0.1:0")
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	enfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)}
	ln := &flakyListener{Listener: inner, errs: []error{emfile, emfile, enfile}}
	s.Start(Service{Name: "echo", Addr: inner.Addr().String(), Serve: echo,
		Listen: func() (net.Listener, error) { return nil, errors.New("must not be called") }}, ln)
	roundTrip(t, inner.Addr().String())
	if counts("echo EMFILE") != 2 || counts("echo ENFILE") != 1 || counts("echo restart") != 0 {
		t.Errorf("counts: EMFILE %d ENFILE %d restarts %d", counts("echo EMFILE"), counts("echo ENFILE"), counts("echo restart"))
	}
	out := logs.String()
	if !strings.Contains(out, "level=ERROR msg=\"accept failed; retrying\" listener=echo") ||
		!strings.Contains(out, "too many open files") || !strings.Contains(out, "failed_accepts=3") {
		t.Errorf("logs:\n%s", out)
	}
	st, healthy := s.Status()
	if !healthy || st["echo"].State != Serving || st["echo"].AcceptErrors != 3 {
		t.Errorf("status %+v healthy %v", st, healthy)
	}
}

// TestQuietListenerRecovers: after a descriptor shortage, a listener that
// waits in Accept without failing is serving again, though no client came
// (healthz said degraded until the next connection otherwise).
func TestQuietListenerRecovers(t *testing.T) {
	s, logs, counts := newTest(t)
	inner, _ := net.Listen("tcp", "127.0.0.1:0")
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	ln := &flakyListener{Listener: inner, errs: []error{emfile, emfile}}
	s.Start(Service{Name: "quiet", Addr: inner.Addr().String(), Serve: echo,
		Listen: func() (net.Listener, error) { return nil, errors.New("must not be called") }}, ln)
	for i := 0; i < 1000; i++ {
		if st, healthy := s.Status(); healthy && st["quiet"].State == Serving && st["quiet"].AcceptErrors == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, healthy := s.Status()
	if !healthy || st["quiet"].State != Serving || counts("quiet EMFILE") != 2 {
		t.Fatalf("status %+v healthy %v, EMFILE counted %d", st, healthy, counts("quiet EMFILE"))
	}
	if !strings.Contains(logs.String(), `msg="accepting again" listener=quiet`) {
		t.Errorf("logs:\n%s", logs.String())
	}
	// It serves, and reports its recovery once.
	roundTrip(t, inner.Addr().String())
	if n := strings.Count(logs.String(), `msg="accepting again"`); n != 1 {
		t.Errorf("%d recoveries logged, want 1:\n%s", n, logs.String())
	}
	// A later shortage is a new streak: logged and degraded again.
	ln.mu.Lock()
	ln.errs = []error{emfile}
	ln.mu.Unlock()
	roundTrip(t, inner.Addr().String()) // the Accept that was waiting takes this one; the next fails
	for i := 0; i < 1000 && counts("quiet EMFILE") < 3; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), `msg="accept failed; retrying" listener=quiet`); n != 2 {
		t.Errorf("%d failure streaks logged, want 2:\n%s", n, logs.String())
	}
}

func TestStoppedServerIsRestarted(t *testing.T) {
	s, logs, counts := newTest(t)
	first, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := first.Addr().String()
	broken := &flakyListener{Listener: first, errs: []error{errors.New("accept: something permanent")}}
	listens := 0
	s.Start(Service{Name: "echo", Addr: addr, Serve: echo, Listen: func() (net.Listener, error) {
		listens++
		return net.Listen("tcp", addr)
	}}, broken)
	waitRestarted(s, "echo")
	roundTrip(t, addr)
	if listens != 1 || counts("echo restart") != 1 {
		t.Errorf("listens %d, restarts %d", listens, counts("echo restart"))
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="listener stopped; restarting it" listener=echo`) {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestUnrecoverableListenerIsFatal(t *testing.T) {
	s, logs, _ := newTest(t)
	s.MaxFailures = 3
	first, _ := net.Listen("tcp", "127.0.0.1:0")
	broken := &flakyListener{Listener: first, errs: []error{errors.New("accept: permanent")}}
	s.Start(Service{Name: "milter", Addr: "unix:/gone/milter.sock", Serve: echo,
		Listen: func() (net.Listener, error) { return nil, errors.New("mkdir /gone: read-only file system") }}, broken)
	select {
	case err := <-s.Fatal():
		if !strings.Contains(err.Error(), "milter listener unix:/gone/milter.sock") {
			t.Errorf("fatal: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("no fatal error")
	}
	st, healthy := s.Status()
	if healthy || st["milter"].State != Failed || !strings.Contains(st["milter"].LastError, "read-only") {
		t.Errorf("status %+v", st)
	}
	if n := strings.Count(logs.String(), "listener restart failed"); n != 3 {
		t.Errorf("%d failed restarts logged, want 3:\n%s", n, logs)
	}
}

func TestCheckReplacesLostListener(t *testing.T) {
	s, _, counts := newTest(t)
	s.CheckEvery = 5 * time.Millisecond
	first, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := first.Addr().String()
	var mu sync.Mutex
	lost := first
	s.Start(Service{Name: "echo", Addr: addr, Serve: echo,
		Listen: func() (net.Listener, error) { return net.Listen("tcp", addr) },
		Check: func(ln net.Listener) error {
			mu.Lock()
			defer mu.Unlock()
			if ln == lost {
				return errors.New("socket file removed")
			}
			return nil
		}}, first)
	waitRestarted(s, "echo")
	roundTrip(t, addr)
	if st, _ := s.Status(); !strings.Contains(st["echo"].LastError, "listener lost: socket file removed") || counts("echo restart") != 1 {
		t.Errorf("status %+v restarts %d", st, counts("echo restart"))
	}
}

func TestPanicInServeIsRestarted(t *testing.T) {
	s, logs, _ := newTest(t)
	first, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := first.Addr().String()
	calls := 0
	s.Start(Service{Name: "echo", Addr: addr, Listen: func() (net.Listener, error) { return net.Listen("tcp", addr) },
		Serve: func(ln net.Listener) error {
			calls++
			if calls == 1 {
				panic("bug")
			}
			return echo(ln)
		}}, first)
	waitRestarted(s, "echo")
	roundTrip(t, addr)
	if !strings.Contains(logs.String(), `msg="panic in listener" listener=echo panic=bug`) {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestStopDoesNotRestart(t *testing.T) {
	s, _, counts := newTest(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s.Start(Service{Name: "echo", Addr: ln.Addr().String(), Serve: echo,
		Listen: func() (net.Listener, error) { return nil, errors.New("must not be called") }}, ln)
	s.Stop()
	if err := s.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Status()
	if st["echo"].State != Stopped || counts("echo restart") != 0 {
		t.Errorf("status %+v restarts %d", st, counts("echo restart"))
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open after Stop")
	}
}
