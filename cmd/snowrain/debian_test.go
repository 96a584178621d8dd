package main

import (
	"crypto/tls"
	"database/sql"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
)

// debianWorld is a Postfix laid out as Debian ships it (stock master.cf,
// smtpd, cleanup and smtp chrooted in its queue directory), delivering
// every domain named in hosts to one sink through the chrooted smtp, and a
// `snowrain serve` whose sockets live below that queue directory.
type debianWorld struct {
	pf   *postfixtest.Instance
	sink *smtpsink.Sink
	ca   *testca.CA
	dns  *dnstest.Server
	dir  string
}

func newDebianWorld(t *testing.T, domains ...string) *debianWorld {
	w := &debianWorld{ca: testca.New(t), dir: t.TempDir(), dns: dnstest.Start(t, corpus.Zone())}
	cert, key := w.ca.Issue(t, "mx", "mx.test.example")
	w.sink = smtpsink.Start(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(w.sink.Addr)
	var hosts []string
	for _, d := range domains {
		hosts = append(hosts, "127.0.0.1 "+d)
	}
	w.pf = postfixtest.Start(t, postfixtest.Options{Debian: true, CertFile: cert, KeyFile: key,
		ChrootHosts: hosts, Main: map[string]string{
			"default_transport":      "smtp",
			"smtp_dns_support_level": "disabled", // the chroot's etc/hosts names the sink
			"smtp_tcp_port":          port,
		}})
	if out, _ := exec.Command("postconf", "-c", w.pf.ConfDir(), "-hF", "smtp/unix/chroot", "cleanup/unix/chroot").Output(); string(out) != "y\ny\n" {
		t.Fatalf("not Debian's chrooted master.cf: %q", out)
	}
	return w
}

// serve starts `snowrain serve` as Postfix's admin would, with postconf
// answering for this instance (MAIL_CONFIG), and returns it and the main.cf
// lines it printed.
func (w *debianWorld) serve(t *testing.T, extra ...string) (*daemon, []string) {
	t.Helper()
	spool := filepath.Join(w.pf.QueueDir(), "snowrain")
	d := &daemon{sock: filepath.Join(spool, "milter.sock"), db: filepath.Join(w.dir, "snowrain.db"),
		log: &strings.Builder{}, done: make(chan error, 1)}
	conf := filepath.Join(w.dir, "snowrain.conf")
	if _, err := os.Stat(conf); err != nil {
		os.WriteFile(conf, nil, 0o644)
	}
	args := append([]string{"serve", "--config", conf, "--milter", "unix:" + d.sock,
		"--socket-owner", "root:postfix", "--db", d.db, "--dns", w.dns.Addr,
		"--authserv-id", "mx.test.example", "--batch-interval", "100ms"}, extra...)
	d.cmd = exec.Command(binary, args...)
	d.cmd.Env = append(os.Environ(), "MAIL_CONFIG="+w.pf.ConfDir())
	d.cmd.Stderr = &syncWriter{w: d.log}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.cmd.Process.Kill() })
	for i := 0; i < 400 && !strings.Contains(logOf(d), "milter_default_action = accept\n"); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	var lines []string
	for _, l := range strings.Split(logOf(d), "\n") {
		if mainCFLine.MatchString(l) {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("serve printed no main.cf lines:\n%s", logOf(d))
	}
	return d, lines
}

var mainCFLine = regexp.MustCompile(`^[a-z_]+ = \S`)

func logOf(d *daemon) string {
	sw := d.cmd.Stderr.(*syncWriter)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return d.log.String()
}

// send submits one message over SMTP with STARTTLS and returns Postfix's
// queue ID, or the error of the command that failed.
func (w *debianWorld) send(from, to string) (string, error) { return w.sendTLS(from, to, true) }

func (w *debianWorld) sendTLS(from, to string, useTLS bool) (string, error) {
	conn, err := net.DialTimeout("tcp", w.pf.Addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	conn.SetDeadline(time.Now().Add(90 * time.Second))
	c, err := smtp.NewClient(conn, "mx.test.example")
	if err != nil {
		conn.Close()
		return "", err
	}
	defer c.Close()
	if err := c.Hello("client.test.example"); err != nil {
		return "", err
	}
	if useTLS {
		if err := c.StartTLS(&tls.Config{ServerName: "mx.test.example", RootCAs: w.ca.Pool()}); err != nil {
			return "", err
		}
	}
	if err := c.Mail(from); err != nil {
		return "", err
	}
	if err := c.Rcpt(to); err != nil {
		return "", err
	}
	wc, err := c.Data()
	if err != nil {
		return "", err
	}
	msgid := fmt.Sprintf("%d@test.example", time.Now().UnixNano())
	fmt.Fprintf(wc, "From: <%s>\r\nTo: <%s>\r\nSubject: Debian layout\r\nMessage-ID: <%s>\r\n\r\nhello\r\n", from, to, msgid)
	if err := wc.Close(); err != nil {
		return "", err
	}
	c.Quit()
	return w.queueID(msgid)
}

// queueID finds the queue ID cleanup gave the message: Postfix's logger
// writes the line a little after the SMTP reply.
func (w *debianWorld) queueID(msgid string) (string, error) {
	rx := regexp.MustCompile(`postfix-[^/]+/cleanup\[\d+\]: ([0-9A-F]+): message-id=<` + regexp.QuoteMeta(msgid) + `>`)
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if m := rx.FindStringSubmatch(w.pf.Log()); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("no cleanup line for message-id <%s> in Postfix's log", msgid)
}

// waitLog waits until Postfix's log matches re.
func (w *debianWorld) waitLog(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if m := rx.FindString(w.pf.Log()); m != "" {
			return m
		}
	}
	t.Fatalf("Postfix never logged %s:\n%s", re, w.pf.Log())
	return ""
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
}

// TestDebianPostfixMilter: the lines `snowrain serve` prints, pasted as they
// are into a Debian-laid-out Postfix, attach the milter to the chrooted
// smtpd; with snowrain stopped, mail is still accepted and delivered.
func TestDebianPostfixMilter(t *testing.T) {
	w := newDebianWorld(t, "dest.example")
	d, lines := w.serve(t)
	want := []string{"smtpd_milters = unix:snowrain/milter.sock", "non_smtpd_milters = $smtpd_milters", "milter_default_action = accept"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("serve printed %q, want %q", lines, want)
	}
	if strings.Contains(logOf(d), "level=WARN") {
		t.Errorf("warning for a socket below the queue directory:\n%s", logOf(d))
	}
	if err := w.pf.Apply(lines...); err != nil {
		t.Fatal(err)
	}
	qid, err := w.send("alice@spf-pass.example", "bob@dest.example")
	if err != nil {
		t.Fatalf("send: %v\n%s", err, w.pf.Log())
	}
	msgs := w.sink.Wait(1, 60*time.Second)
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "Authentication-Results: mx.test.example ") {
		t.Fatalf("delivered without our Authentication-Results: %q\n%s\n%s", msgs, w.pf.Log(), logOf(d))
	}
	w.waitLog(t, qid+`: to=<bob@dest.example>, relay=dest.example\[127.0.0.1\]:\d+,.* status=sent`)
	d.stop(t)
	db, err := sql.Open("sqlite3", "file:"+d.db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var tlsVersion, from string
	err = db.QueryRow("SELECT tls_version, mail_from_domain FROM messages WHERE queue_id = ?", qid).Scan(&tlsVersion, &from)
	db.Close()
	if err != nil || tlsVersion != "TLSv1.3" || from != "spf-pass.example" {
		t.Errorf("record of %s: tls %q from %q err %v", qid, tlsVersion, from, err)
	}
	if strings.Contains(w.pf.Log(), "Milter service") {
		t.Errorf("Postfix could not reach the milter:\n%s", w.pf.Log())
	}

	// snowrain stopped: accepted and delivered, without our header.
	qid2, err := w.send("alice@spf-pass.example", "carol@dest.example")
	if err != nil {
		t.Fatalf("with snowrain stopped: %v\n%s", err, w.pf.Log())
	}
	msgs = w.sink.Wait(2, 60*time.Second)
	if len(msgs) != 2 || strings.Contains(string(msgs[1].Data), "Authentication-Results: mx.test.example") {
		t.Fatalf("with snowrain stopped: %d messages\n%s", len(msgs), w.pf.Log())
	}
	w.waitLog(t, qid2+`: to=<carol@dest.example>,.* status=sent`)
}

// TestDebianPostfixPolicies adds the opt-in parts: the outbound TLS policy
// map (through proxymap, out of the chroot of smtp) and the inbound policy
// service, pasted as printed. Policy answers reach Postfix; with snowrain
// stopped, inbound mail still flows (DUNNO) and outbound mail is deferred
// with 4.7.5, as the printed comment says.
func TestDebianPostfixPolicies(t *testing.T) {
	w := newDebianWorld(t, "dest.example", "secure.example")
	os.WriteFile(filepath.Join(w.dir, "snowrain.conf"), []byte("[policy.overrides]\n\"secure.example\" = \"encrypt\"\n"), 0o644)
	spool := filepath.Join(w.pf.QueueDir(), "snowrain")
	d, lines := w.serve(t, "--policy-socket", "unix:"+filepath.Join(spool, "policy.sock"),
		"--policy-inbound-socket", "unix:"+filepath.Join(spool, "inbound.sock"), "--require-tls", "bank.example")
	printed := strings.Join(lines, "\n")
	for _, want := range []string{
		"smtp_tls_policy_maps = proxy:socketmap:unix:" + spool + "/policy.sock:tls",
		"smtpd_recipient_restrictions = check_policy_service { unix:snowrain/inbound.sock, default_action=DUNNO, timeout=10s }",
	} {
		if !strings.Contains(printed, want) {
			t.Errorf("serve did not print %q:\n%s", want, printed)
		}
	}
	if err := w.pf.Apply(lines...); err != nil {
		t.Fatal(err)
	}
	// The socketmap's answer reaches the chrooted smtp: encrypt, and the
	// sink offers no STARTTLS.
	if _, err := w.send("alice@spf-pass.example", "u@secure.example"); err != nil {
		t.Fatalf("send: %v\n%s", err, w.pf.Log())
	}
	w.waitLog(t, `to=<u@secure.example>,.* status=deferred \(TLS is required, but was not offered`)
	if _, err := w.send("alice@spf-pass.example", "u@dest.example"); err != nil {
		t.Fatal(err)
	}
	w.waitLog(t, `to=<u@dest.example>,.* status=sent`)
	// The inbound service's answer reaches the chrooted smtpd: plaintext
	// mail from a require-tls domain is deferred at RCPT.
	_, err := w.sendTLS("x@bank.example", "u@dest.example", false)
	if err == nil || !strings.Contains(err.Error(), "4.7.10") {
		t.Errorf("plaintext mail from bank.example: %v, want a 4.7.10 deferral\n%s", err, w.pf.Log())
	}

	d.stop(t)
	if _, err := w.sendTLS("alice@bank.example", "u@dest.example", false); err != nil {
		t.Fatalf("with snowrain stopped, inbound mail refused: %v\n%s", err, w.pf.Log())
	}
	w.waitLog(t, `to=<u@dest.example>,.* dsn=4\.7\.5, status=deferred`)
	t.Logf("Postfix log:\n%s", w.pf.Log())
	if strings.Contains(w.pf.Log(), "4.3.5") {
		t.Errorf("policy service failure reached a client:\n%s", w.pf.Log())
	}
}
