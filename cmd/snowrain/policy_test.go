package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/policy"
)

// policyDaemon is a running `snowrain serve` with both policy listeners
// and /metrics.
type policyDaemon struct {
	*daemon
	dir, socketmap, inbound, metrics string
}

func startPolicyDaemon(t *testing.T, extra ...string) *policyDaemon {
	t.Helper()
	dns := dnstest.Start(t, "plain.example. MX 10 mx.plain.example.\n")
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	p := &policyDaemon{dir: dir, socketmap: filepath.Join(dir, "policy.sock"), inbound: filepath.Join(dir, "inbound.sock"),
		metrics: ln.Addr().String()}
	ln.Close()
	p.daemon = startDaemon(t, dir, dns.Addr, append([]string{"--policy-socket", "unix:" + p.socketmap,
		"--policy-inbound-socket", "unix:" + p.inbound, "--metrics", p.metrics}, extra...)...)
	eventually(t, "policy sockets", func() bool {
		_, e1 := os.Stat(p.socketmap)
		_, e2 := os.Stat(p.inbound)
		return e1 == nil && e2 == nil
	})
	return p
}

// eventually polls cond until it holds (a generous deadline is only a
// safety net) and returns how long that took.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func (p *policyDaemon) askMap(t *testing.T, key string) string {
	t.Helper()
	c, err := net.Dial("unix", p.socketmap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte(policy.FormatNetstring("tls " + key)))
	reply, err := policy.ReadNetstring(bufio.NewReader(c), 100000)
	if err != nil {
		t.Fatalf("socketmap %s: %v", key, err)
	}
	return reply
}

func (p *policyDaemon) askInbound(t *testing.T, sender string) string {
	t.Helper()
	c, err := net.Dial("unix", p.inbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte("request=smtpd_access_policy\nsender=" + sender + "\nencryption_protocol=\n\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("inbound %s: %v", sender, err)
	}
	return strings.TrimSuffix(line, "\n")
}

func (p *policyDaemon) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestPolicyChangesReachDaemon: `policy import`, `policy forget` and a
// SIGHUP with new overrides and requirements are answered by the running
// daemon at once, though each key was answered (and cached for five
// minutes) before.
func TestPolicyChangesReachDaemon(t *testing.T) {
	d := startPolicyDaemon(t)
	cli := func(args ...string) {
		t.Helper()
		out, err := exec.Command(binary, append(append([]string{"policy"}, args...), "--db", d.db)...).CombinedOutput()
		if err != nil {
			t.Fatalf("policy %v: %v\n%s", args, err, out)
		}
	}
	if got := d.askMap(t, "imported.example"); got != "NOTFOUND " {
		t.Fatalf("before import: %q", got)
	}
	list := filepath.Join(d.dir, "list.csv")
	os.WriteFile(list, []byte("domain,policy\nIMPORTED.example.,verify\n"), 0o644)
	cli("import", list)
	took := eventually(t, "import", func() bool { return d.askMap(t, "imported.example") == "OK verify" })
	t.Logf("import answered by the daemon after %s", took)

	cli("forget", "Imported.Example")
	took = eventually(t, "forget", func() bool { return d.askMap(t, "imported.example") == "NOTFOUND " })
	t.Logf("forget answered by the daemon after %s", took)

	if got := d.askMap(t, "reloaded.example"); got != "NOTFOUND " {
		t.Fatalf("before SIGHUP: %q", got)
	}
	if got := d.askInbound(t, "a@bank.example"); got != "action=DUNNO" {
		t.Fatalf("before SIGHUP: %q", got)
	}
	os.WriteFile(filepath.Join(d.dir, "snowrain.conf"), []byte(`
[policy.overrides]
"reloaded.example" = "secure match=.reloaded.example"
[policy.inbound]
require_tls = ["BANK.example."]
action = "reject"
`), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	took = eventually(t, "SIGHUP", func() bool {
		return d.askMap(t, "reloaded.example") == "OK secure match=.reloaded.example" &&
			strings.HasPrefix(d.askInbound(t, "a@bank.example"), "action=550 5.7.10")
	})
	t.Logf("SIGHUP answered by the daemon after %s", took)

	// An invalid reload keeps what runs.
	os.WriteFile(filepath.Join(d.dir, "snowrain.conf"), []byte(`
[policy.overrides]
"reloaded.example" = "secure ciphers=null"
`), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "refused reload logged", func() bool { return strings.Contains(daemonLog(d.daemon), "keeping the running policy configuration") })
	if got := d.askMap(t, "reloaded.example"); got != "OK secure match=.reloaded.example" {
		t.Errorf("after a refused reload: %q", got)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
}

// daemonLog is what the daemon logged so far.
func daemonLog(d *daemon) string {
	sw := d.cmd.Stderr.(*syncWriter)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return d.log.String()
}

// rss reads a /proc/PID/status field in MiB (VmRSS, VmHWM).
func rss(pid int, field string) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// TestPolicyListenersUnderAttack sends the running daemon's policy
// listeners what an attacker with access to the sockets would: endless
// lines, huge netstring lengths, slow and idle clients by the hundred.
// Each offending connection is closed and counted, the daemon's peak RSS
// stays within a bound, and the listeners answer afterwards.
func TestPolicyListenersUnderAttack(t *testing.T) {
	d := startPolicyDaemon(t, "--policy-read-timeout", "500ms", "--policy-idle-timeout", "2s")
	pid := d.cmd.Process.Pid
	d.askMap(t, "plain.example")
	d.askInbound(t, "a@plain.example")
	base := rss(pid, "VmRSS")

	// 1 GiB in one line, four connections at once: the server stops each
	// at 64 KiB.
	var wg sync.WaitGroup
	var mu sync.Mutex
	sentTotal := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", d.inbound)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			chunk := bytes.Repeat([]byte("A"), 1<<20)
			sent := 0
			for sent < 256<<20 {
				c.SetWriteDeadline(time.Now().Add(30 * time.Second))
				n, err := c.Write(chunk)
				sent += n
				if err != nil {
					break
				}
			}
			mu.Lock()
			sentTotal += sent
			mu.Unlock()
		}()
	}
	// Netstrings announcing 4 GiB, and one within the length limit whose
	// data never ends.
	for _, bad := range []string{"4294967295:", "9999999999:", "10001:"} {
		c, err := net.Dial("unix", d.socketmap)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(bad))
		c.Write(bytes.Repeat([]byte("B"), 1<<20))
		if reply, _ := policy.ReadNetstring(bufio.NewReader(c), 1000); reply != "PERM request too long" {
			t.Errorf("%q → %q", bad, reply)
		}
		c.Close()
	}
	// 300 idle and 100 slow connections on each listener.
	var held []net.Conn
	for _, path := range []string{d.inbound, d.socketmap} {
		for i := 0; i < 400; i++ {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			if i%4 == 0 { // a request that starts and never ends
				if path == d.inbound {
					c.Write([]byte("request=smtp"))
				} else {
					c.Write([]byte("50:tls slow"))
				}
			}
			held = append(held, c)
		}
	}
	wg.Wait()
	if sentTotal >= 4*256<<20 {
		t.Error("the daemon took a whole endless line")
	}
	// Every held connection is closed by the daemon: slow ones by the
	// read timeout, idle ones by the idle timeout.
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("a held connection was not closed by the daemon: %v", err)
		}
		c.Close()
	}
	peak := rss(pid, "VmHWM")
	t.Logf("RSS %.0f MiB before, peak %.0f MiB; %d MiB of endless lines offered, %d KiB taken", base, peak,
		4*256, sentTotal>>10)
	// Without the bound, one endless line alone grew the daemon by
	// its length (337 MiB in issue 10).
	if peak-base > 64 {
		t.Errorf("peak RSS %.0f MiB, %.0f MiB over the %.0f MiB before", peak, peak-base, base)
	}
	for what, min := range map[string]float64{
		`snowrain_policy_total{service="inbound",what="malformed"}`:      4,
		`snowrain_policy_total{service="socketmap",what="too_long"}`:     3,
		`snowrain_policy_total{service="inbound",what="read_timeout"}`:   100,
		`snowrain_policy_total{service="socketmap",what="read_timeout"}`: 100,
	} {
		if got := d.metric(t, what); got < min {
			t.Errorf("%s = %v, want at least %v", what, got, min)
		}
	}
	if got := d.askMap(t, "plain.example"); got != "NOTFOUND " {
		t.Errorf("socketmap after the attack: %q", got)
	}
	if got := d.askInbound(t, "a@plain.example"); got != "action=DUNNO" {
		t.Errorf("inbound after the attack: %q", got)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
}

// TestPolicyListenersOutOfDescriptors: the daemon runs out of file
// descriptors (EMFILE) while clients keep connecting. Both listeners log
// it, count it and keep accepting once descriptors are free again.
func TestPolicyListenersOutOfDescriptors(t *testing.T) {
	d := startPolicyDaemon(t)
	pid := d.cmd.Process.Pid
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	limit := len(fds) + 8
	if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), fmt.Sprintf("--nofile=%d:%d", limit, limit)).CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v %s", err, out)
	}
	var held []net.Conn
	for _, path := range []string{d.socketmap, d.inbound} {
		for i := 0; i < 20; i++ {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
	}
	eventually(t, "EMFILE logged", func() bool {
		return strings.Count(daemonLog(d.daemon), "accept failed; retrying") >= 2 &&
			strings.Contains(daemonLog(d.daemon), "too many open files")
	})
	for _, c := range held {
		c.Close()
	}
	exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile=4096:4096").Run()
	eventually(t, "listeners back", func() bool {
		return d.askMap(t, "plain.example") == "NOTFOUND " && d.askInbound(t, "a@plain.example") == "action=DUNNO"
	})
	// The supervisor in front of every listener counts the failed accepts.
	for _, what := range []string{`snowrain_listener_accept_errors_total{errno="EMFILE",listener="socketmap"}`,
		`snowrain_listener_accept_errors_total{errno="EMFILE",listener="inbound"}`} {
		if d.metric(t, what) < 1 {
			t.Errorf("%s not counted", what)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
}

// TestPolicyAnswersWhileStoreLocked: another process holds the daemon's
// database locked (BEGIN EXCLUSIVE, as a backup or an admin's sqlite3
// shell would). The socketmap and the inbound service keep answering
// while the lock is held; their records reach the store once it is gone.
func TestPolicyAnswersWhileStoreLocked(t *testing.T) {
	d := startPolicyDaemon(t, "--require-tls", "bank.example")
	list := filepath.Join(d.dir, "list.csv")
	os.WriteFile(list, []byte("imported.example,verify\n"), 0o644)
	if out, err := exec.Command(binary, "policy", "import", list, "--db", d.db).CombinedOutput(); err != nil {
		t.Fatalf("import: %v %s", err, out)
	}
	asked := 0 // every answer is recorded
	eventually(t, "import", func() bool { asked++; return d.askMap(t, "imported.example") == "OK verify" })

	db, err := sql.Open("sqlite3", "file:"+d.db+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	var locked atomic.Bool
	locked.Store(true)
	for i := 0; i < 10; i++ {
		for key, want := range map[string]string{"imported.example": "OK verify", "plain.example": "NOTFOUND ",
			fmt.Sprintf("new%d.example", i): "NOTFOUND "} {
			if got := d.askMap(t, key); got != want || !locked.Load() {
				t.Errorf("%s: %q, want %q while the store is locked", key, got, want)
			}
			asked++
		}
		if got := d.askInbound(t, "a@bank.example"); !strings.HasPrefix(got, "action=DEFER_IF_PERMIT") {
			t.Errorf("inbound while locked: %q", got)
		}
		asked++
	}
	locked.Store(false)
	conn.ExecContext(context.Background(), "ROLLBACK")
	conn.Close()
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	if n := countRows(t, d.db, "policy_decisions"); n != asked {
		t.Errorf("%d decisions recorded after the lock, want %d", n, asked)
	}
}
