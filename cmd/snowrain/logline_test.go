package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/miltertest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
)

// sendSMTP delivers c to addr inside ns from c.ClientIP over STARTTLS
// (TLS 1.3).
func sendSMTP(t *testing.T, ns *testnet.NS, addr, helo string, c corpus.Case, tlsCfg *tls.Config) {
	t.Helper()
	conn := dialFrom(t, ns, c.ClientIP, addr)
	cl, err := smtp.NewClient(conn, "mx.test.example")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, step := range []func() error{
		func() error { return cl.Hello(helo) },
		func() error { return cl.StartTLS(tlsCfg) },
		func() error { return cl.Mail(c.MailFrom) },
		func() error { return cl.Rcpt(c.Rcpt) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(c.Message)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cl.Quit()
}

// TestMessageLogLineThroughPostfix sends a signed message over TLS through
// a real Postfix (with client name lookups) into the real daemon, takes
// the queue ID from Postfix's log and finds every field of the message's
// one line in the daemon's log, as an admin's grep would.
func TestMessageLogLineThroughPostfix(t *testing.T) {
	needRoot(t)
	c := pickCase(t, "dmarc-pass-dkim-only") // signed by dmarc-dkim.example, SPF fails, DMARC passes on DKIM
	zone := corpus.Zone() + "41.1.0.127.in-addr.arpa. PTR mail.dmarc-dkim.example.\nmail.dmarc-dkim.example. A 127.0.1.41\n"
	// Postfix and its clients in a namespace of the test's own, DNS on
	// port 53 there; the daemon on the machine's side, its milter a unix
	// socket Postfix's smtpd (user postfix) reaches across namespaces.
	ns := testnet.NewNS(t)
	dns := dnstest.Start(t, zone)
	dns.ServeIn(t, ns, "127.53.11.1:53")
	dir := sharedDir(t, 0)
	d := startServe(t, dir, serveConf(dir, dns.Addr, `socket_mode = "0666"`), true)
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")
	pf := postfixtest.Start(t, postfixtest.Options{Milter: "unix:" + d.sock, CertFile: cert, KeyFile: key,
		NetNS: ns, Nameserver: "127.53.11.1", Main: map[string]string{"smtpd_peername_lookup": "yes"}})
	sendSMTP(t, ns, pf.Addr, "mail.dmarc-dkim.example", c,
		&tls.Config{ServerName: "mx.test.example", RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13})
	re := regexp.MustCompile(`smtpd\[\d+\]: ([0-9A-Za-z]{6,}): client=mail\.dmarc-dkim\.example\[127\.0\.1\.41\]`)
	var qid string
	waitFor(t, "queue ID in Postfix's log", func() bool {
		if m := re.FindStringSubmatch(pf.Log()); m != nil {
			qid = m[1]
		}
		return qid != "" && strings.Contains(d.logs(), "queue_id="+qid+" ")
	}, d)
	var lines []string
	for _, l := range strings.Split(d.logs(), "\n") {
		if strings.Contains(l, "queue_id="+qid+" ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d lines for queue ID %s, want 1:\n%s", len(lines), qid, d.logs())
	}
	for _, want := range []string{"level=INFO msg=message queue_id=" + qid, "client_addr=127.0.1.41",
		"client_name=mail.dmarc-dkim.example", "helo=mail.dmarc-dkim.example", "direction=inbound", "tls=TLSv1.3",
		"cipher=TLS_AES_", "mail_from=spf-fail.example", "from=dmarc-dkim.example", "spf=fail",
		"spf_domain=spf-fail.example", `dkim="d=dmarc-dkim.example:pass"`, "dmarc=pass", "dmarc_policy=quarantine",
		"dmarc_disposition=none", "action=accept"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line lacks %s:\n%s", want, lines[0])
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	exitCode(t, d)
}

// TestSyslogTarget: with log_target = "syslog:PATH" every record is one
// datagram with the mail facility and its level's priority.
func TestSyslogTarget(t *testing.T) {
	dns := dnstest.Start(t, corpus.Zone())
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "log.sock")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan string, 100)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	d := startServe(t, dir, serveConf(dir, dns.Addr, fmt.Sprintf("log_target = %q", "syslog:"+sockPath)), false)
	waitFor(t, "milter socket", answers("unix", d.sock), d)
	if _, err := miltertest.SendOne(miltertest.NewClient("unix", d.sock), miltertest.Postfix, corpus.Cases()[0]); err != nil {
		t.Fatal(err)
	}
	os.Remove(d.sock) // provokes an error-level record
	var serving, message, errLine string
	deadline := time.After(time.Minute)
	for message == "" || serving == "" || errLine == "" {
		select {
		case m := <-got:
			switch {
			case strings.Contains(m, `msg="snowrain serving"`):
				serving = m
			case strings.Contains(m, "msg=message queue_id=spf-pass"):
				message = m
			case strings.Contains(m, `msg="listener stopped; restarting it"`):
				errLine = m
			}
		case <-deadline:
			t.Fatalf("syslog datagrams missing: serving %q message %q error %q\nstderr:\n%s", serving, message, errLine, d.logs())
		}
	}
	// <22>: facility mail (2) × 8 + info (6); <19>: mail, err (3).
	if !strings.HasPrefix(serving, "<22>") || !strings.Contains(serving, "snowrain[") || strings.Contains(serving, "time=") {
		t.Errorf("serving record: %q", serving)
	}
	if !strings.HasPrefix(message, "<22>") || strings.Count(message, "\n") > 1 {
		t.Errorf("message record: %q", message)
	}
	if !strings.HasPrefix(errLine, "<19>") {
		t.Errorf("error record: %q", errLine)
	}
	if strings.Contains(d.logs(), "msg=message") {
		t.Errorf("records also on stderr:\n%s", d.logs())
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	exitCode(t, d)
}
