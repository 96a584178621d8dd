package main

// Tests of the daemon's runtime against the real `snowrain serve`:
// listeners under descriptor exhaustion, lost sockets, a second instance,
// /metrics under many keep-alives, /healthz, SIGHUP, --check, database
// ownership, and the per-message log line.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/miltertest"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/policy"
)

// serveConf is a configuration file for a daemon living in dir.
func serveConf(dir, dnsAddr string, extra ...string) string {
	return fmt.Sprintf("milter = %q\ndb = %q\ndns = [%q]\nbatch_interval = \"100ms\"\nauthserv_id = \"mx.test.example\"\n",
		"unix:"+filepath.Join(dir, "milter.sock"), filepath.Join(dir, "snowrain.db"), dnsAddr) + strings.Join(extra, "\n") + "\n"
}

// startServe runs `snowrain serve --config DIR/snowrain.conf ARGS…` with
// conf and waits until it serves (unless wait is false).
func startServe(t *testing.T, dir, conf string, wait bool, args ...string) *daemon {
	t.Helper()
	d := &daemon{sock: filepath.Join(dir, "milter.sock"), db: filepath.Join(dir, "snowrain.db"),
		log: &strings.Builder{}, done: make(chan error, 1)}
	path := filepath.Join(dir, "snowrain.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(binary, append([]string{"serve", "--config", path}, args...)...)
	d.cmd.Stderr = &syncWriter{w: d.log}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.cmd.Process.Kill() })
	if wait {
		waitFor(t, "milter socket", answers("unix", d.sock), d)
		// Every listener is up once it says so.
		waitFor(t, "serving", func() bool { return strings.Contains(d.logs(), `msg="snowrain serving"`) }, d)
	}
	return d
}

func (d *daemon) logs() string {
	w := d.cmd.Stderr.(*syncWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return d.log.String()
}

// waitFor polls cond for up to a minute (the daemon runs under the race
// detector on a loaded 2-core machine); it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool, d *daemon) {
	t.Helper()
	for i := 0; i < 1200; i++ {
		if cond() {
			return
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("daemon exited (%v) while waiting for %s:\n%s", err, what, d.logs())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("timed out waiting for %s:\n%s", what, d.logs())
}

// answers is a waitFor condition: something accepts on addr.
func answers(network, addr string) func() bool {
	return func() bool {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

// exitCode waits for the daemon to exit and returns its status.
func exitCode(t *testing.T, d *daemon) int {
	t.Helper()
	select {
	case err := <-d.done:
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatalf("wait: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatalf("daemon did not exit:\n%s", d.logs())
	}
	return -1
}

// freeTCP is 127.0.0.1:PORT free now, for the daemon to bind itself: a
// port picked below the ephemeral range (testnet.FreePort), which no ":0"
// listener or client socket of a concurrent test takes meanwhile.
func freeTCP(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testnet.FreePort(t, "127.0.0.1")))
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// health is /healthz's document.
type health struct {
	Status     string `json:"status"`
	Components map[string]struct {
		State        string `json:"state"`
		Addr         string `json:"addr"`
		Restarts     int    `json:"restarts"`
		AcceptErrors int64  `json:"accept_errors"`
		LastError    string `json:"last_error"`
	} `json:"components"`
}

// getHealth sends GET /healthz on c (a kept-alive connection) and reads
// the answer.
func getHealth(t *testing.T, c net.Conn, r *bufio.Reader) (int, health) {
	t.Helper()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: snowrain\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, h
}

func lowestFreeFD(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		used[n] = true
	}
	n := 0
	for used[n] {
		n++
	}
	return n
}

func prlimitNofile(t *testing.T, pid int, soft string) {
	t.Helper()
	if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+soft+":").CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v %s", err, out)
	}
}

// TestEMFILEOnEveryListener lowers the running daemon's RLIMIT_NOFILE
// with prlimit until no descriptor is left, connects to each of its four
// listeners, and checks that each accept failure is logged and counted,
// /healthz says which listener is degraded, the daemon stays up, and
// every listener serves again (the connections that waited included)
// once descriptors are free.
func TestEMFILEOnEveryListener(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	metricsAddr := freeTCP(t)
	pol, in := filepath.Join(dir, "policy.sock"), filepath.Join(dir, "inbound.sock")
	d := startServe(t, dir, serveConf(dir, dns.Addr), true, "--metrics", metricsAddr,
		"--policy-socket", "unix:"+pol, "--policy-inbound-socket", "unix:"+in, "--require-tls", "bank.example")
	held, err := net.Dial("tcp", metricsAddr) // a keep-alive /healthz connection, opened while descriptors last
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldR := bufio.NewReader(held)
	if code, h := getHealth(t, held, heldR); code != 200 || h.Status != "ok" || len(h.Components) != 5 {
		t.Fatalf("healthz before: %d %+v", code, h)
	}
	pid := d.cmd.Process.Pid
	limit := prlimitOf(t, pid)
	prlimitNofile(t, pid, strconv.Itoa(lowestFreeFD(t, pid)))

	// One waiting connection per listener, each with its request sent.
	milterConn, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer milterConn.Close()
	smConn, err := net.Dial("unix", pol)
	if err != nil {
		t.Fatal(err)
	}
	defer smConn.Close()
	io.WriteString(smConn, policy.FormatNetstring("tls plain.example"))
	inConn, err := net.Dial("unix", in)
	if err != nil {
		t.Fatal(err)
	}
	defer inConn.Close()
	io.WriteString(inConn, "request=smtpd_access_policy\nsender=a@bank.example\nencryption_protocol=\n\n")
	mConn, err := net.Dial("tcp", metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer mConn.Close()
	io.WriteString(mConn, "GET /metrics HTTP/1.1\r\nHost: snowrain\r\n\r\n")

	for _, name := range []string{"milter", "socketmap", "inbound", "metrics"} {
		waitFor(t, name+" accept error logged", func() bool {
			return strings.Contains(d.logs(), `level=ERROR msg="accept failed; retrying" listener=`+name) &&
				strings.Contains(d.logs(), "too many open files")
		}, d)
	}
	code, h := getHealth(t, held, heldR)
	if code != 503 || h.Status != "unhealthy" {
		t.Errorf("healthz during EMFILE: %d %+v", code, h)
	}
	for _, name := range []string{"milter", "socketmap", "inbound", "metrics"} {
		if c := h.Components[name]; c.State != "degraded" || !strings.Contains(c.LastError, "too many open files") {
			t.Errorf("healthz %s during EMFILE: %+v", name, c)
		}
	}

	prlimitNofile(t, pid, limit)
	milterConn.Close()
	// The connections that waited in the backlog are served now.
	for _, c := range []net.Conn{smConn, inConn, mConn} {
		c.SetDeadline(time.Now().Add(time.Minute))
	}
	if reply, err := policy.ReadNetstring(bufio.NewReader(smConn), 1000); err != nil || reply != "NOTFOUND " {
		t.Errorf("socketmap after EMFILE: %q %v", reply, err)
	}
	if line, err := bufio.NewReader(inConn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "action=DEFER_IF_PERMIT 4.7.10") {
		t.Errorf("inbound after EMFILE: %q %v", line, err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(mConn), nil); err != nil || resp.StatusCode != 200 {
		t.Errorf("metrics after EMFILE: %v %v", resp, err)
	}
	if _, err := miltertest.SendOne(miltertest.NewClient("unix", d.sock), miltertest.Postfix, corpus.Cases()[0]); err != nil {
		t.Errorf("milter after EMFILE: %v", err)
	}
	for _, name := range []string{"milter", "socketmap", "inbound", "metrics"} {
		waitFor(t, name+" accepting again", func() bool {
			return strings.Contains(d.logs(), `msg="accepting again" listener=`+name)
		}, d)
	}
	body := scrape(t, metricsAddr)
	for _, name := range []string{"milter", "socketmap", "inbound", "metrics"} {
		if !strings.Contains(body, `snowrain_listener_accept_errors_total{errno="EMFILE",listener="`+name+`"}`) {
			t.Errorf("EMFILE of %s not counted:\n%s", name, grepLines(body, "snowrain_listener"))
		}
	}
	// A listener is marked healthy by its first accept after the pause, or
	// once a retried accept has waited half a second without failing.
	waitFor(t, "healthz ok after recovery", func() bool {
		code, h = getHealth(t, held, heldR)
		return code == 200
	}, d)
	if code != 200 {
		t.Errorf("healthz after recovery: %d %+v", code, h)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, d); code != 0 {
		t.Errorf("exit %d after recovery:\n%s", code, d.logs())
	}
	if n := countRows(t, d.db, "messages"); n != 1 {
		t.Errorf("%d messages recorded, want 1", n)
	}
}

func prlimitOf(t *testing.T, pid int) string {
	t.Helper()
	out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile", "--raw", "--noheadings", "--output", "SOFT").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRemovedSocketIsRecreated: the milter's socket file removed under a
// running daemon (tmpfiles, an admin's rm) is noticed, logged, counted
// and bound again.
func TestRemovedSocketIsRecreated(t *testing.T) {
	// The bound is on what the daemon keeps, not on how much garbage the
	// collector lets pile up: serve's own GOGC=400 (gc.go) lets 2,000
	// scrapes' garbage reach several times the live heap before a cycle,
	// so the child runs with the runtime's default pacing here.
	t.Setenv("GOGC", "100")
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	metricsAddr := freeTCP(t)
	d := startServe(t, dir, serveConf(dir, dns.Addr), true, "--metrics", metricsAddr)
	if err := os.Remove(d.sock); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "socket bound again", answers("unix", d.sock), d)
	if _, err := miltertest.SendOne(miltertest.NewClient("unix", d.sock), miltertest.Postfix, corpus.Cases()[0]); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.logs(), `level=ERROR msg="listener stopped; restarting it" listener=milter`) ||
		!strings.Contains(d.logs(), "listener lost: socket file") {
		t.Errorf("restart not logged:\n%s", d.logs())
	}
	if body := scrape(t, metricsAddr); !strings.Contains(body, `snowrain_listener_restarts_total{listener="milter"} 1`) {
		t.Errorf("restart not counted:\n%s", grepLines(body, "snowrain_listener"))
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, d); code != 0 {
		t.Errorf("exit %d:\n%s", code, d.logs())
	}
}

// TestListenerBeyondRepairExitsNonZero: when the socket cannot be bound
// again (its directory replaced by a file), the daemon flushes what it
// recorded and exits 1, so systemd's Restart=on-failure restarts it.
func TestListenerBeyondRepairExitsNonZero(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	sockDir := filepath.Join(dir, "run")
	conf := serveConf(dir, dns.Addr) + fmt.Sprintf("milter = %q\n", "unix:"+filepath.Join(sockDir, "milter.sock"))
	conf = strings.Replace(conf, "milter = \"unix:"+filepath.Join(dir, "milter.sock")+"\"\n", "", 1)
	d := startServe(t, dir, conf, false)
	d.sock = filepath.Join(sockDir, "milter.sock")
	waitFor(t, "milter socket", func() bool { _, err := os.Stat(d.sock); return err == nil }, d)
	if _, err := miltertest.SendOne(miltertest.NewClient("unix", d.sock), miltertest.Postfix, corpus.Cases()[0]); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(sockDir)
	os.WriteFile(sockDir, []byte("not a directory\n"), 0o644)
	if code := exitCode(t, d); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, d.logs())
	}
	for _, want := range []string{`msg="listener restart failed" listener=milter`, "not a directory",
		`msg="listener failed; exiting so the service manager restarts the daemon"`, "msg=flushed written="} {
		if !strings.Contains(d.logs(), want) {
			t.Errorf("log lacks %s:\n%s", want, d.logs())
		}
	}
	if n := countRows(t, d.db, "messages"); n != 1 {
		t.Errorf("%d messages recorded, want 1", n)
	}
}

// TestSecondServeNeverTakesOver: a second daemon on the same socket, or
// on the same database, exits 1 and leaves the first one serving.
func TestSecondServeNeverTakesOver(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	first := startServe(t, dir, serveConf(dir, dns.Addr), true)
	ino, err := inode(first.sock)
	if err != nil {
		t.Fatal(err)
	}
	// Same socket, its own database.
	dir2 := t.TempDir()
	conf2 := strings.Replace(serveConf(dir2, dns.Addr), filepath.Join(dir2, "milter.sock"), first.sock, 1)
	second := startServe(t, dir2, conf2, false)
	if code := exitCode(t, second); code != 1 || !strings.Contains(second.logs(), "in use by a running process") {
		t.Errorf("second serve on the same socket: exit %d\n%s", code, second.logs())
	}
	// Same database, its own socket.
	dir3 := t.TempDir()
	conf3 := strings.Replace(serveConf(dir3, dns.Addr), filepath.Join(dir3, "snowrain.db"), first.db, 1)
	third := startServe(t, dir3, conf3, false)
	if code := exitCode(t, third); code != 1 || !strings.Contains(third.logs(), "another snowrain serve is running on this database") {
		t.Errorf("second serve on the same database: exit %d\n%s", code, third.logs())
	}
	if now, err := inode(first.sock); err != nil || now != ino {
		t.Errorf("first daemon's socket replaced: %v", err)
	}
	if _, err := miltertest.SendOne(miltertest.NewClient("unix", first.sock), miltertest.Postfix, corpus.Cases()[0]); err != nil {
		t.Errorf("first daemon no longer serves: %v", err)
	}
	first.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, first); code != 0 {
		t.Errorf("first daemon exit %d", code)
	}
	// Stopped, it leaves a stale socket behind only if killed; a new
	// daemon takes a stale one over.
	os.Remove(first.sock)
	l, _ := net.Listen("unix", first.sock)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	again := startServe(t, dir, serveConf(dir, dns.Addr), true)
	again.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, again); code != 0 {
		t.Errorf("daemon over a stale socket: exit %d\n%s", code, again.logs())
	}
}

func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestMetricsKeepAlivesBounded opens 2,000 keep-alive connections to
// /metrics (issue 10: they stayed open forever, RSS 16 → 155 MiB): the
// daemon holds at most 32, closing the longest-idle ones, and its RSS
// stays bounded.
func TestMetricsKeepAlivesBounded(t *testing.T) {
	// The bound is on what the daemon keeps, not on how much garbage the
	// collector lets pile up: serve's own GOGC=400 (gc.go) lets 2,000
	// scrapes' garbage reach several times the live heap before a cycle,
	// so the child runs with the runtime's default pacing here.
	t.Setenv("GOGC", "100")
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	metricsAddr := freeTCP(t)
	d := startServe(t, dir, serveConf(dir, dns.Addr), true, "--metrics", metricsAddr)
	scrape(t, metricsAddr)
	before := vmRSS(t, d.cmd.Process.Pid)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	closed := 0
	for i := 0; i < 2000; i++ {
		c, err := net.Dial("tcp", metricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: snowrain\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil { // closed at the cap before it was served: allowed, counted
			closed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	after := vmRSS(t, d.cmd.Process.Pid)
	body := scrape(t, metricsAddr)
	open := metricValue(t, body, "snowrain_metrics_connections")
	evicted := metricValue(t, body, "snowrain_metrics_connections_evicted_total")
	t.Logf("RSS %d → %d MiB; open %v, evicted %v, refused %d", before>>20, after>>20, open, evicted, closed)
	if open > 32 {
		t.Errorf("%v metrics connections open, cap 32", open)
	}
	if evicted < 2000-32 {
		t.Errorf("%v connections evicted, want ≥ %d", evicted, 2000-32)
	}
	if growth := after - before; growth > 48<<20 {
		t.Errorf("RSS grew by %d MiB over 2,000 keep-alives (bound 48 MiB)", growth>>20)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, d); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

func pickCase(t *testing.T, name string) corpus.Case {
	t.Helper()
	for _, c := range corpus.Cases() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no corpus case %s", name)
	return corpus.Case{}
}

// TestSIGHUPAppliesEverySetting: DNS servers, enforcement and the log
// level change on SIGHUP; listener address and database are named as
// needing a restart and keep their running values.
func TestSIGHUPAppliesEverySetting(t *testing.T) {
	empty := dnstest.Start(t, "nothing.example. TXT \"here\"\n")
	full := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	d := startServe(t, dir, serveConf(dir, empty.Addr, `log_level = "info"`), true)
	cl := miltertest.NewClient("unix", d.sock)
	spfPass, strict := pickCase(t, "spf-pass"), pickCase(t, "dmarc-strict-subdomain")
	ar := func(c corpus.Case) (string, *miltertest.Result) {
		r, err := miltertest.SendOne(cl, miltertest.Postfix, c)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := miltertest.Header(r.Mods, "Authentication-Results")
		return h, &r
	}
	if h, _ := ar(spfPass); !strings.Contains(h, "spf=none") {
		t.Fatalf("before reload, with the empty DNS server: %s", h)
	}
	conf := serveConf(dir, full.Addr, `log_level = "debug"`, "[enforce]", "dmarc = true")
	conf = strings.Replace(conf, filepath.Join(dir, "milter.sock"), filepath.Join(dir, "other.sock"), 1)
	conf = strings.Replace(conf, filepath.Join(dir, "snowrain.db"), filepath.Join(dir, "other.db"), 1)
	os.WriteFile(filepath.Join(dir, "snowrain.conf"), []byte(conf), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload", func() bool { return strings.Contains(d.logs(), "configuration reloaded") }, d)
	logs := d.logs()
	for _, want := range []string{`msg="configuration reloaded"`, "applied=log_level,dns,enforce.dmarc",
		`level=WARN msg="settings changed that take effect only after a restart; running with the old values" settings=milter,db`,
		`level=DEBUG msg="reload: settings that differ from the running ones"`, `msg="resolver reconfigured" dns=[` + full.Addr + `]`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if h, _ := ar(spfPass); !strings.Contains(h, "spf=pass") {
		t.Errorf("after reload, DNS still the old server: %s", h)
	}
	if _, r := ar(strict); r.Act == nil || r.Act.SMTPCode != 550 {
		t.Errorf("after reload, DMARC p=reject failure not rejected: %+v", r.Act)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.sock")); err == nil {
		t.Error("listener moved on SIGHUP")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, d); code != 0 {
		t.Errorf("exit %d", code)
	}
	if n := countRows(t, d.db, "messages"); n != 3 {
		t.Errorf("%d messages in the running database, want 3", n)
	}
}

// runAs runs the binary as user (uid:gid) and returns its output and
// exit code.
func runAs(t *testing.T, uid, gid int, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

const nobody, nogroup = 65534, 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		// Not a skip: a test that cannot run has not passed.
		t.Fatal("needs root: runs the daemon as another user and real MTAs (run make test as root)")
	}
}

// sharedDir is a directory under the test's temporary directory that
// other users can enter.
func sharedDir(t *testing.T, owner int) string {
	t.Helper()
	root := t.TempDir()
	os.Chmod(filepath.Dir(root), 0o755) // the test's own temporary directory is 0700
	os.Chmod(root, 0o755)
	dir := filepath.Join(root, "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(dir, owner, owner)
	return dir
}

// emptyConf writes an empty configuration file others can read.
func emptyConf(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServeRefusesReadOnlyDatabase: a database a root-run command left
// owned by root makes serve (run as the daemon's user) exit 1 naming the
// file and the fix, instead of claiming to serve.
func TestServeRefusesReadOnlyDatabase(t *testing.T) {
	needRoot(t)
	dir := sharedDir(t, 0) // root's, as a root-created directory is
	db := filepath.Join(dir, "snowrain.db")
	if out, code := runAs(t, -1, -1, "db", "vacuum", "--db", db); code != 0 {
		t.Fatalf("db vacuum: %s", out)
	}
	os.Chmod(dir, 0o777)
	out, code := runAs(t, nobody, nogroup, "serve", "--config", emptyConf(t, dir), "--db", db,
		"--milter", "unix:"+filepath.Join(dir, "milter.sock"), "--dns", "127.0.0.1:53")
	want := "database " + db + " is not writable by user nobody"
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "is owned by root") ||
		!strings.Contains(out, "fix: chown nobody "+db+"*") {
		t.Errorf("exit %d, want 1 and %q:\n%s", code, want, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "milter.sock")); err == nil {
		t.Error("serve listened on a database it cannot write")
	}
}

// TestRootCommandsKeepOwnership: as root, a writing command creates the
// database with the owner of its directory; read-only commands and
// mistyped ones create nothing.
func TestRootCommandsKeepOwnership(t *testing.T) {
	needRoot(t)
	dir := sharedDir(t, nobody)
	db := filepath.Join(dir, "snowrain.db")
	for _, args := range [][]string{{"policy", "list", "--db", db}, {"policy", "lst", "--db", db},
		{"policy", "check", "a.example", "--db", db}, {"report", "--db", db}} {
		if out, code := runAs(t, -1, -1, args...); code == 0 {
			t.Errorf("%v on a missing database succeeded: %s", args, out)
		}
		if _, err := os.Stat(db); err == nil {
			t.Fatalf("%v created the database", args)
		}
	}
	log := filepath.Join(dir, "mail.log")
	os.WriteFile(log, []byte("Nov 24 10:00:01 mx postfix/smtp[1]: Q1: to=<u@a.example>, relay=mx.a.example[192.0.2.1]:25, dsn=2.0.0, status=sent (ok)\n"), 0o644)
	if out, code := runAs(t, -1, -1, "ingest", "--db", db, log); code != 0 {
		t.Fatalf("ingest: %s", out)
	}
	for _, p := range []string{db, db + "-wal", db + "-shm"} {
		if uid, ok := ownerOf(p); ok && uid != nobody {
			t.Errorf("%s owned by uid %d, want the directory's owner %d", p, uid, nobody)
		}
	}
	// The daemon, run as that user, can write it.
	out, code := runAs(t, nobody, nogroup, "serve", "--check", "--config", emptyConf(t, dir), "--db", db,
		"--milter", "unix:"+filepath.Join(dir, "milter.sock"), "--dns", "127.0.0.1:53")
	if code != 0 || !strings.Contains(out, "ok    database "+db+": writable") {
		t.Errorf("serve --check as nobody: exit %d\n%s", code, out)
	}
	// Read-only commands read it, as root, and change nothing.
	if out, code := runAs(t, -1, -1, "policy", "list", "--db", db); code != 0 {
		t.Errorf("policy list: %s", out)
	}
}

// TestServeCheck: one line per check and exit 0/1, like `postfix check`.
func TestServeCheck(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	conf := filepath.Join(dir, "snowrain.conf")
	os.WriteFile(conf, []byte(serveConf(dir, dns.Addr)), 0o644)
	run := func(args ...string) (string, int) {
		return runAs(t, -1, -1, append([]string{"serve", "--check", "--config", conf}, args...)...)
	}
	out, code := run()
	for _, want := range []string{"ok    configuration: " + conf + ": every option valid",
		"ok    database " + filepath.Join(dir, "snowrain.db") + ": does not exist; serve creates it",
		"ok    milter unix:" + filepath.Join(dir, "milter.sock") + ": free", "ok    dns: servers [" + dns.Addr + "]"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("fresh --check (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	metricsAddr := freeTCP(t)
	d := startServe(t, dir, serveConf(dir, dns.Addr), true, "--metrics", metricsAddr)
	out, code = run("--metrics", metricsAddr)
	for _, want := range []string{"ok    database " + filepath.Join(dir, "snowrain.db") + ": opens; schema",
		"is current", "ok    database " + filepath.Join(dir, "snowrain.db") + ": writable",
		"warn  milter unix:" + d.sock + ": in use by a running process", "warn  metrics inet:" + metricsAddr + ": in use"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--check beside a running daemon (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	exitCode(t, d)
	os.WriteFile(filepath.Join(dir, "bad.conf"), []byte("log_format = \"xml\"\n"), 0o644)
	out, code = runAs(t, -1, -1, "serve", "--check", "--config", filepath.Join(dir, "bad.conf"))
	if code != 1 || !strings.Contains(out, "FAIL  configuration "+filepath.Join(dir, "bad.conf")+": config: log_format") {
		t.Errorf("bad configuration: exit %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(dir, "notadir"), nil, 0o644)
	out, code = run("--milter", "unix:"+filepath.Join(dir, "notadir", "m.sock"), "--db", filepath.Join(dir, "notadir", "x.db"))
	if code != 1 || !strings.Contains(out, "FAIL  milter unix:") || !strings.Contains(out, "is not a directory") {
		t.Errorf("socket under a file: exit %d\n%s", code, out)
	}
	if needRoot := os.Geteuid() == 0; needRoot {
		shared := sharedDir(t, 0)
		out, code = runAs(t, nobody, nogroup, "serve", "--check", "--config", emptyConf(t, filepath.Dir(shared)), "--db", filepath.Join(shared, "x.db"),
			"--milter", "unix:"+filepath.Join(shared, "m.sock"))
		if code != 1 || !strings.Contains(out, "FAIL  database "+filepath.Join(shared, "x.db")+": does not exist and "+shared+" is not writable") ||
			!strings.Contains(out, "FAIL  milter unix:"+filepath.Join(shared, "m.sock")+": directory "+shared+" not writable") {
			t.Errorf("unwritable directory as nobody: exit %d\n%s", code, out)
		}
	}
}

func timeAfterMinute() <-chan time.Time { return time.After(time.Minute) }
