package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/miltertest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/policy"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "snowrain-bin")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755) // tests run it as other users too
	binary = filepath.Join(dir, "snowrain")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running `snowrain serve`.
type daemon struct {
	cmd  *exec.Cmd
	sock string
	db   string
	log  *strings.Builder
	done chan error
}

func startDaemon(t *testing.T, dir, dnsAddr string, extra ...string) *daemon {
	return startDaemonB(t, dir, dnsAddr, extra...)
}

func startDaemonB(t testing.TB, dir, dnsAddr string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{sock: filepath.Join(dir, "milter.sock"), db: filepath.Join(dir, "snowrain.db"),
		log: &strings.Builder{}, done: make(chan error, 1)}
	args := append([]string{"serve", "--config", filepath.Join(dir, "snowrain.conf"),
		"--milter", "unix:" + d.sock, "--db", d.db, "--dns", dnsAddr, "--batch-interval", "100ms"}, extra...)
	os.WriteFile(filepath.Join(dir, "snowrain.conf"), []byte("authserv_id = \"first.example\"\n"), 0o644)
	d.cmd = exec.Command(binary, args...)
	d.cmd.Stderr = &syncWriter{w: d.log}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.cmd.Process.Kill() })
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("unix", d.sock); err == nil {
			c.Close()
			return d
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("daemon did not listen: %s", d.log)
	return nil
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (d *daemon) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("daemon exited: %v\n%s", err, d.log)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("daemon did not exit")
	}
}

func countRows(t *testing.T, path, table string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// load sends corpus messages from workers until stop closes, counting the
// ones the milter answered.
func load(sock string, workers int, stop <-chan struct{}) (*atomic.Int64, *sync.WaitGroup) {
	var accepted atomic.Int64
	var wg sync.WaitGroup
	cases := corpus.Cases()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := miltertest.NewClient("unix", sock)
			for i := w; ; i += workers {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := miltertest.SendOne(cl, miltertest.Postfix, cases[i%len(cases)]); err != nil {
					return // the daemon is going away
				}
				accepted.Add(1)
			}
		}(w)
	}
	return &accepted, &wg
}

func TestSIGTERMFlushesEverything(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	d := startDaemon(t, t.TempDir(), dns.Addr)
	stop := make(chan struct{})
	accepted, wg := load(d.sock, 8, stop)
	for accepted.Load() < 300 {
		time.Sleep(10 * time.Millisecond)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	close(stop)
	wg.Wait()
	if n := countRows(t, d.db, "messages"); int64(n) != accepted.Load() {
		t.Errorf("recorded %d messages, the milter answered %d\n%s", n, accepted.Load(), d.log)
	}
}

func TestKill9LeavesDatabaseIntact(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	d := startDaemon(t, dir, dns.Addr)
	stop := make(chan struct{})
	accepted, wg := load(d.sock, 8, stop)
	for accepted.Load() < 300 {
		time.Sleep(10 * time.Millisecond)
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	close(stop)
	wg.Wait()
	db, _ := sql.Open("sqlite3", "file:"+d.db)
	var check string
	db.QueryRow("PRAGMA integrity_check").Scan(&check)
	db.Close()
	if check != "ok" {
		t.Fatalf("integrity_check: %s", check)
	}
	before := countRows(t, d.db, "messages")
	d2 := startDaemon(t, dir, dns.Addr)
	if _, err := miltertest.SendOne(miltertest.NewClient("unix", d2.sock), miltertest.Postfix, corpus.Cases()[0]); err != nil {
		t.Fatal(err)
	}
	d2.cmd.Process.Signal(syscall.SIGTERM)
	d2.wait(t)
	if after := countRows(t, d.db, "messages"); after != before+1 {
		t.Errorf("after restart: %d messages, want %d", after, before+1)
	}
}

func TestSIGHUPReloadsAndMetrics(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	metricsAddr := ln.Addr().String()
	ln.Close()
	d := startDaemon(t, dir, dns.Addr, "--metrics", metricsAddr)
	cl := miltertest.NewClient("unix", d.sock)
	c := corpus.Cases()[0]
	arOf := func() string {
		r, err := miltertest.SendOne(cl, miltertest.Postfix, c)
		if err != nil {
			t.Fatal(err)
		}
		ar, _ := miltertest.Header(r.Mods, "Authentication-Results")
		return ar
	}
	if fi, err := os.Stat(d.sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode: %v %v, want 0660", fi.Mode(), err)
	}
	if ar := arOf(); !strings.HasPrefix(ar, "first.example") {
		t.Fatalf("A-R %q", ar)
	}
	os.WriteFile(filepath.Join(dir, "snowrain.conf"), []byte("authserv_id = \"second.example\"\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	var ar string
	for i := 0; i < 100 && !strings.HasPrefix(ar, "second.example"); i++ {
		time.Sleep(20 * time.Millisecond)
		ar = arOf()
	}
	if !strings.HasPrefix(ar, "second.example") {
		t.Errorf("after SIGHUP, A-R %q", ar)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+metricsAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"snowrain_messages_total", "snowrain_store_queue_depth",
		"snowrain_dns_query_seconds", "snowrain_store_events_dropped_total", "snowrain_verdicts_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
}

func TestReportJSON(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	for _, n := range corpus.ServFail {
		dns.ServFail(n)
	}
	dir := t.TempDir()
	d := startDaemon(t, dir, dns.Addr)
	cl := miltertest.NewClient("unix", d.sock)
	cases := corpus.Cases()
	for _, c := range cases {
		if _, err := miltertest.SendOne(cl, miltertest.Postfix, c); err != nil {
			t.Fatal(err)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	out, err := exec.Command(binary, "report", "--db", d.db, "--format", "json", "--since", "1h").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"inbound"`, `"outbound"`, `"messages": ` + fmt.Sprint(len(cases)),
		`"TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"`, `"dkim_fail_class"`, `"weak_key": 2`, `"dmarc_policy"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("JSON report lacks %s:\n%s", want, out)
		}
	}
	text, err := exec.Command(binary, "report", "--db", d.db, "--since", "1h").Output()
	if err != nil || !strings.Contains(string(text), "Table 8") {
		t.Errorf("text report: %v\n%s", err, text)
	}
	pr, err := exec.Command(binary, "db", "prune", "--db", d.db, "--older-than", "0d").CombinedOutput()
	if err != nil || !strings.Contains(string(pr), fmt.Sprintf("pruned %d", len(cases))) {
		t.Errorf("prune: %v %s", err, pr)
	}
	if out, err := exec.Command(binary, "db", "vacuum", "--db", d.db).CombinedOutput(); err != nil {
		t.Errorf("vacuum: %v %s", err, out)
	}
}

// TestReportMailTo sends the report through a real Postfix's sendmail.
func TestReportMailTo(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	d := startDaemon(t, dir, dns.Addr)
	miltertest.SendOne(miltertest.NewClient("unix", d.sock), miltertest.Postfix, corpus.Cases()[0])
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	pf := postfixtest.Start(t, postfixtest.Options{})
	out, err := exec.Command(binary, "report", "--db", d.db, "--since", "1h", "--mail-to", "postmaster@dest.example",
		"--sendmail", "/usr/sbin/sendmail -C "+filepath.Join(pf.Dir, "etc")+" -t -i").CombinedOutput()
	if err != nil {
		t.Fatalf("report --mail-to: %v %s", err, out)
	}
	for i := 0; i < 100 && !strings.Contains(pf.Log(), "to=<postmaster@dest.example>"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if log := pf.Log(); !strings.Contains(log, "to=<postmaster@dest.example>") || !strings.Contains(log, "status=sent") {
		t.Errorf("report not delivered by Postfix:\n%s", log)
	}
}

// TestServeFollowsMaillog runs the daemon with --maillog and checks the
// deliveries land in the database and the line classes in /metrics.
func TestServeFollowsMaillog(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	logPath := filepath.Join(dir, "mail.log")
	os.WriteFile(logPath, []byte(
		"Nov 24 10:00:01 mx postfix/smtp[1]: Trusted TLS connection established to mx.a.example[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n"+
			"Nov 24 10:00:01 mx postfix/smtp[1]: 4A1B2C3D4E: to=<u@a.example>, relay=mx.a.example[192.0.2.1]:25, delay=0.2, delays=0/0/0.1/0.1, dsn=2.0.0, status=sent (ok)\n"+
			"not a syslog line\n"), 0o644)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	metricsAddr := ln.Addr().String()
	ln.Close()
	d := startDaemon(t, dir, dns.Addr, "--maillog", logPath, "--metrics", metricsAddr)
	var body []byte
	for i := 0; i < 100 && !strings.Contains(string(body), `snowrain_maillog_lines_total{class="delivery"} 1`); i++ {
		time.Sleep(50 * time.Millisecond)
		if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}
	if !strings.Contains(string(body), `snowrain_maillog_lines_total{class="malformed"} 1`) {
		t.Errorf("maillog metrics missing:\n%s", body)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	if n := countRows(t, d.db, "deliveries"); n != 1 {
		t.Errorf("%d deliveries recorded, want 1", n)
	}
}

func TestPolicyCLI(t *testing.T) {
	dns := dnstest.Start(t, "plain.example. MX 10 mx.plain.example.\n")
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(binary, append([]string{"policy"}, append(args, "--db", db, "--dns", dns.Addr)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("policy %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	os.WriteFile(filepath.Join(dir, "list.csv"), []byte("domain,policy\nbank.example,verify\n.corp.example,encrypt\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "starttls-everywhere.json"), []byte(`{"policies": {
		"sts.example": {"mode": "enforce", "mxs": [".sts.example"]},
		"test.example": {"mode": "testing", "mxs": [".test.example"]}}}`), 0o644)
	if out := run("import", filepath.Join(dir, "list.csv")); !strings.Contains(out, "imported 2") {
		t.Errorf("import csv: %s", out)
	}
	if out := run("import", filepath.Join(dir, "starttls-everywhere.json")); !strings.Contains(out, "imported 1") {
		t.Errorf("import json: %s", out)
	}
	if out := run("check", "mail.corp.example"); !strings.Contains(out, "OK encrypt (source override") {
		t.Errorf("check: %s", out)
	}
	if out := run("check", "plain.example"); !strings.Contains(out, "NOTFOUND") || !strings.Contains(out, "mta-sts: no _mta-sts record") {
		t.Errorf("check plain: %s", out)
	}
	list := run("list", "--format", "json")
	for _, want := range []string{`"bank.example"`, `"secure match=.sts.example servername=hostname"`} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %s:\n%s", want, list)
		}
	}
	run("forget", "bank.example")
	if out := run("export"); strings.Contains(out, "bank.example") || !strings.Contains(out, "sts.example") {
		t.Errorf("after forget:\n%s", out)
	}
	os.WriteFile(filepath.Join(dir, "bad.csv"), []byte("x.example,nonsense\n"), 0o644)
	if out, err := exec.Command(binary, "policy", "import", filepath.Join(dir, "bad.csv"), "--db", db).CombinedOutput(); err == nil {
		t.Errorf("bad policy imported: %s", out)
	}
}

// TestDowngradeDetected: a sender domain that always used TLS arrives in
// plaintext; the daemon records the downgrade and counts it.
func TestDowngradeDetected(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	metricsAddr := ln.Addr().String()
	ln.Close()
	d := startDaemon(t, dir, dns.Addr, "--metrics", metricsAddr)
	cl := miltertest.NewClient("unix", d.sock)
	c := corpus.Cases()[0] // spf-pass.example
	c.TLS = "1.3"
	for i := 0; i < 8; i++ {
		if _, err := miltertest.SendOne(cl, miltertest.Postfix, c); err != nil {
			t.Fatal(err)
		}
	}
	c.TLS = ""
	miltertest.SendOne(cl, miltertest.Postfix, c)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `snowrain_downgrades_total{direction="inbound",kind="domain"} 1`) {
		t.Errorf("downgrade not counted:\n%s", body)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	if n := countRows(t, d.db, "downgrades"); n != 2 { // the domain and the IP
		t.Errorf("%d downgrades recorded, want 2", n)
	}
}

// TestServePolicySockets checks serve's wiring of the socketmap and the
// inbound delegation service.
func TestServePolicySockets(t *testing.T) {
	dns := dnstest.Start(t, "plain.example. MX 10 mx.plain.example.\n")
	dir := t.TempDir()
	pol, in := filepath.Join(dir, "policy.sock"), filepath.Join(dir, "inbound.sock")
	d := startDaemon(t, dir, dns.Addr, "--policy-socket", "unix:"+pol, "--policy-inbound-socket", "unix:"+in,
		"--require-tls", "bank.example")
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(in); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := net.Dial("unix", pol)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(policy.FormatNetstring("tls plain.example")))
	reply, err := policy.ReadNetstring(bufio.NewReader(c), 1000)
	c.Close()
	if err != nil || reply != "NOTFOUND " {
		t.Errorf("socketmap: %q %v", reply, err)
	}
	c, err = net.Dial("unix", in)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("request=smtpd_access_policy\nsender=a@bank.example\nencryption_protocol=\n\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(line, "action=DEFER_IF_PERMIT 4.7.10") {
		t.Errorf("inbound: %q", line)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	if n := countRows(t, d.db, "policy_decisions"); n != 2 {
		t.Errorf("%d decisions recorded, want 2", n)
	}
}

// TestScanCLI runs `snowrain scan domains` against loopback servers and
// renders `snowrain report scan`.
func TestScanCLI(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.one.example")
	kp, _ := tls.LoadX509KeyPair(cert, key)
	sink := smtpsink.StartWith(t, "127.61.0.1:0", smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}}})
	_, port, _ := net.SplitHostPort(sink.Addr)
	dns := dnstest.Start(t, "one.example. MX 10 mx.one.example.\nmx.one.example. A 127.61.0.1\n"+
		"two.example. MX 10 mx.one.example.\n_dmarc.two.example. TXT \"v=DMARC1; p=reject\"\n")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "list.csv"), []byte("1,one.example\n2,two.example\n3,none.example\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "block.txt"), []byte("# nothing blocked on loopback for this test\n"), 0o644)
	db := filepath.Join(dir, "scan.db")
	out, err := exec.Command(binary, "scan", "domains", "--input", filepath.Join(dir, "list.csv"), "--db", db,
		"--dns", dns.Addr, "--port", port, "--blocklist", filepath.Join(dir, "block.txt"), "--roots", ca.CAFile(),
		"--ehlo", "scanner.test.example", "--jsonl", filepath.Join(dir, "out.jsonl"), "--rate", "100").CombinedOutput()
	if err != nil {
		t.Fatalf("scan: %v\n%s", err, out)
	}
	jsonl, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	if n := strings.Count(string(jsonl), "\n"); n != 4 { // 3 domains and 1 address
		t.Errorf("%d JSON lines:\n%s", n, jsonl)
	}
	text, err := exec.Command(binary, "report", "scan", "--db", db).CombinedOutput()
	if err != nil || !strings.Contains(string(text), "SMTP server, STARTTLS handshake completed        2  100.00%") {
		t.Errorf("report scan: %v\n%s", err, text)
	}
	for _, f := range []string{"html", "json", "md"} {
		if out, err := exec.Command(binary, "report", "scan", "--db", db, "--format", f).CombinedOutput(); err != nil || len(out) < 100 {
			t.Errorf("report scan --format %s: %v %s", f, err, out)
		}
	}
}

// TestScanHostsCLI sweeps a /29 on loopback holding one Cisco-style box
// and one honest server.
func TestScanHostsCLI(t *testing.T) {
	// One port on the box and the server; the rest of the /29 closed.
	ports := testnet.Pick(t, testnet.Request{TCP: []string{"127.66.0.1", "127.66.0.2"}, Closed: "127.66.0.0/29"})
	ln := ports.TCP[0]
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprint(c, "220 ********************\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch {
					case strings.HasPrefix(strings.ToUpper(line), "EHLO"):
						fmt.Fprint(c, "250-box\r\n250-XXXXXXXA\r\n250 8BITMIME\r\n")
					case strings.HasPrefix(strings.ToUpper(line), "QUIT"):
						fmt.Fprint(c, "221 bye\r\n")
						return
					default:
						fmt.Fprint(c, "500 #5.5.1 command not recognized: \"XXXXXXXX\"\r\n")
					}
				}
			}()
		}
	}()
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.two.example")
	kp, _ := tls.LoadX509KeyPair(cert, key)
	smtpsink.Serve(t, ports.TCP[1], smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}}})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "block.txt"), []byte("127.66.0.7\n"), 0o644)
	db := filepath.Join(dir, "h.db")
	// Two shards of one permutation, collected into one run (the second
	// machine's results imported with --resume).
	for i, shard := range []string{"0/2", "1/2"} {
		args := []string{"scan", "hosts", "--targets", "127.66.0.0/29", "--port", strconv.Itoa(ports.Port), "--db", db,
			"--blocklist", filepath.Join(dir, "block.txt"), "--shard", shard, "--seed", "5", "--timeout", "2s"}
		if i == 1 {
			args = append(args, "--resume", "1")
		}
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("scan hosts %s: %v\n%s", shard, err, out)
		}
	}
	out, err := exec.Command(binary, "report", "hosts", "--db", db, "--run", "1").CombinedOutput()
	// Table 9 counts all 7 addresses tried (8, one blocklisted), though
	// only the 2 open ones are stored.
	for _, row := range []string{`Addresses probed\s+7\s`, `TCP port 25 open\s+2\s`, `Responsive SMTP server\s+2\s`,
		`Successful STARTTLS handshake\s+1\s`} {
		if !regexp.MustCompile(row).Match(out) {
			t.Errorf("report hosts: no row %q", row)
		}
	}
	if err != nil || !strings.Contains(string(out), "Cisco-style tampering (XXXX echo or extension)      1") ||
		!strings.Contains(string(out), "STARTTLS replaced (XXXXXXXX)      1  100.00%") {
		t.Errorf("report hosts run 1: %v\n%s", err, out)
	}
}
