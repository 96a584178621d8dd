package metrics

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func startServer(t *testing.T, cfg ServerConfig, health Health) (*Metrics, string) {
	t.Helper()
	m := New()
	srv := m.NewServer(cfg, health)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return m, ln.Addr().String()
}

// keepAlive sends one request on a new connection and reads the answer,
// leaving the connection open.
func keepAlive(t *testing.T, addr, path string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, r, resp
}

// closedByServer waits (up to the connection's deadline) for the server
// to close c.
func closedByServer(c net.Conn, r *bufio.Reader) bool {
	_, err := r.ReadByte()
	return errors.Is(err, io.EOF)
}

func TestIdleKeepAliveIsClosed(t *testing.T) {
	_, addr := startServer(t, ServerConfig{IdleTimeout: 50 * time.Millisecond}, nil)
	c, r, _ := keepAlive(t, addr, "/metrics")
	defer c.Close()
	if !closedByServer(c, r) {
		t.Error("idle keep-alive connection not closed")
	}
}

func TestSlowHeaderIsClosed(t *testing.T) {
	_, addr := startServer(t, ServerConfig{ReadHeaderTimeout: 50 * time.Millisecond}, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n") // never finished
	if !closedByServer(c, bufio.NewReader(c)) {
		t.Error("slow header connection not closed")
	}
}

func TestHugeHeaderIsRefused(t *testing.T) {
	_, addr := startServer(t, ServerConfig{MaxHeaderBytes: 1024}, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("huge header: %v %v", resp, err)
	}
}

// TestConnectionCap: beyond MaxConns, idle keep-alives are closed first,
// and a scrape still gets through.
func TestConnectionCap(t *testing.T) {
	m, addr := startServer(t, ServerConfig{MaxConns: 8}, nil)
	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	var conns []conn
	for i := 0; i < 40; i++ {
		c, r, _ := keepAlive(t, addr, "/metrics")
		conns = append(conns, conn{c, r})
	}
	// Each of the last 32 evicted one idle connection: the longest idle,
	// which is usually (not always: a handler the scheduler holds back
	// turns idle late) one of the oldest. So exactly 32 are closed, and
	// the newest, never idle when another came, is open. The server closed
	// them before the last keepAlive returned: a closed one reads EOF at
	// once, an open one waits for the shared deadline.
	deadline := time.Now().Add(5 * time.Second)
	closedAt := make([]bool, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		c.c.SetReadDeadline(deadline)
		wg.Add(1)
		go func() {
			defer wg.Done()
			closedAt[i] = closedByServer(c.c, c.r)
		}()
	}
	wg.Wait()
	closed := 0
	for _, c := range closedAt {
		if c {
			closed++
		}
	}
	if closed != 32 || closedAt[len(conns)-1] {
		t.Errorf("%d of 40 idle connections closed at cap 8, want 32 (the newest closed: %v)", closed, closedAt[len(conns)-1])
	}
	oldest := 0
	for _, c := range closedAt[:32] {
		if c {
			oldest++
		}
	}
	t.Logf("%d of the oldest 32 among the closed", oldest)
	if n := testutil.ToFloat64(m.HTTPRejected); n < 32 {
		t.Errorf("evicted counter %v, want ≥ 32", n)
	}
	if n := testutil.ToFloat64(m.HTTPConns); n > 8 {
		t.Errorf("open connections %v, cap 8", n)
	}
	c, _, resp := keepAlive(t, addr, "/metrics")
	c.Close()
	if resp.StatusCode != 200 {
		t.Errorf("scrape at the cap: %s", resp.Status)
	}
	for _, c := range conns {
		c.c.Close()
	}
}

func TestHealthz(t *testing.T) {
	healthy := true
	_, addr := startServer(t, ServerConfig{}, func() (any, bool) {
		return map[string]string{"milter": map[bool]string{true: "serving", false: "degraded"}[healthy]}, healthy
	})
	for _, want := range []struct {
		healthy bool
		code    int
		status  string
	}{{true, 200, "ok"}, {false, 503, "unhealthy"}} {
		healthy = want.healthy
		c, r, resp := keepAlive(t, addr, "/healthz")
		c.Close()
		_ = r
		if resp.StatusCode != want.code || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("healthz: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Status     string            `json:"status"`
		Components map[string]string `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.Status != "unhealthy" || doc.Components["milter"] != "degraded" {
		t.Errorf("healthz body %+v %v", doc, err)
	}
}

// TestConnLimiterEvictsLongestIdle drives the limiter as the HTTP server
// does, in a fixed order: at the cap a new connection closes the one idle
// longest, never an active one, and is refused when none is idle. (Over
// real sockets, TestConnectionCap, which one is idle longest depends on
// when each handler goroutine runs.)
func TestConnLimiterEvictsLongestIdle(t *testing.T) {
	m := New()
	lim := &connLimiter{max: 3, conns: map[net.Conn]connState{}, m: m}
	conn := func() (net.Conn, net.Conn) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	closed := func(peer net.Conn) bool {
		peer.SetReadDeadline(time.Now().Add(time.Second))
		_, err := peer.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
	}
	var srv, peer [5]net.Conn
	for i := range 3 {
		srv[i], peer[i] = conn()
		if !lim.admit(srv[i]) {
			t.Fatalf("conn %d refused below the cap", i)
		}
		lim.state(srv[i], http.StateNew)
		lim.state(srv[i], http.StateActive)
	}
	// 2 turns idle first, then 0; 1 stays active.
	lim.state(srv[2], http.StateIdle)
	lim.state(srv[0], http.StateIdle)
	srv[3], peer[3] = conn()
	if !lim.admit(srv[3]) || !closed(peer[2]) {
		t.Fatal("at the cap: want the longest-idle connection (2) closed and the new one admitted")
	}
	lim.state(srv[3], http.StateActive)
	srv[4], peer[4] = conn()
	if !lim.admit(srv[4]) || !closed(peer[0]) {
		t.Fatal("at the cap: want the next idle connection (0) closed")
	}
	lim.state(srv[4], http.StateActive)
	extra, _ := conn()
	if lim.admit(extra) {
		t.Error("at the cap with every connection active: want the new one refused")
	}
	if closed(peer[1]) || closed(peer[3]) || closed(peer[4]) {
		t.Error("an active connection was closed")
	}
	if n := testutil.ToFloat64(m.HTTPRejected); n != 3 {
		t.Errorf("evicted/refused counter %v, want 3", n)
	}
}
