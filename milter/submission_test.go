package milter

import (
	"net/smtp"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
)

// TestPostfixLocalSubmissionOutbound (issue 12): mail submitted on the
// host with sendmail(1) reaches the milter through Postfix's
// non_smtpd_milters as a connect from "localhost" [127.0.0.1] with port
// 0; it is outbound. A message from an SMTP client on the same address
// stays inbound.
func TestPostfixLocalSubmissionOutbound(t *testing.T) {
	h := newHarnessOn(t, Config{AuthServID: "mx.test.example"}, "tcp")
	sink := smtpsink.Start(t, "127.0.0.1:0")
	pf := postfixtest.Start(t, postfixtest.Options{Milter: "inet:" + h.sock, Main: map[string]string{
		"default_transport": "smtp", "relayhost": "[" + strings.Replace(sink.Addr, ":", "]:", 1),
		"smtp_tls_security_level": "none"}})
	// The way `snowrain report --mail-to` and cron jobs send: sendmail -t.
	cmd := exec.Command("sendmail", "-C", filepath.Join(pf.Dir, "etc"), "-t", "-i", "-f", "reports@local.example")
	cmd.Stdin = strings.NewReader("From: reports@local.example\nTo: admin@far.example\nSubject: weekly report\n\nhello\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}
	if err := smtp.SendMail(pf.Addr, nil, "peer@remote.example", []string{"user@far.example"},
		[]byte("From: peer@remote.example\r\nSubject: from outside\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := sink.Wait(2, 30*time.Second); len(got) != 2 {
		t.Fatalf("sink got %d messages\n%s", len(got), pf.Log())
	}
	h.flush()
	dirs := map[string]string{}
	rows, err := h.store.DB.Query(`SELECT mail_from_domain, direction FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var domain, dir string
		if err := rows.Scan(&domain, &dir); err != nil {
			t.Fatal(err)
		}
		dirs[domain] = dir
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if dirs["local.example"] != "outbound" || dirs["remote.example"] != "inbound" || len(dirs) != 2 {
		t.Errorf("directions %v, want local.example outbound, remote.example inbound\n%s", dirs, pf.Log())
	}
}
