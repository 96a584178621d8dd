package measure

import (
	"context"
	"crypto/tls"
	"net/smtp"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/sendmailtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/measure/maillog"
)

// TestSendmailTLSFailures has a real Sendmail relay to a sink whose
// certificate no CA it knows signed, and to one that breaks the TLS
// handshake, and reads its syslog lines into the store: each delivery's
// session carries the RFC 8460 result type its lines gave.
func TestSendmailTLSFailures(t *testing.T) {
	ca := testca.New(t)
	stranger := testca.New(t) // a CA Sendmail does not trust
	for _, c := range []struct {
		name   string
		sink   smtpsink.Options
		status string
		result string
	}{
		{"untrusted", sinkOpts(t, stranger), "sent", "certificate-not-trusted"},
		{"handshake", smtpsink.Options{FailTLS: true}, "", "validation-failure"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sink := smtpsink.StartWith(t, "127.0.0.1:0", c.sink)
			mycert, mykey := ca.Issue(t, "mx", "mx.test.example", "127.0.0.1")
			sm := sendmailtest.Start(t, sendmailtest.Options{SmartHost: sink.Addr, Syslog: true,
				CertFile: mycert, KeyFile: mykey, CAFile: ca.CAFile()})
			defer sm.Stop()
			cl, err := smtp.Dial(sm.Addr)
			if err != nil {
				t.Fatal(err)
			}
			cl.Hello("client.example")
			cl.Mail("sender@example.org")
			cl.Rcpt("user@far.example")
			w, err := cl.Data()
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("Subject: relayed\r\n\r\nhello\r\n"))
			w.Close()
			cl.Quit()
			var lines []string
			for i := 0; i < 100; i++ {
				lines = sm.Syslog()
				if strings.Contains(strings.Join(lines, "\n"), "to=<user@far.example>") {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Log(strings.Join(lines, "\n"))
			s, err := Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.IngestReader(context.Background(), strings.NewReader(strings.Join(lines, "\n")+"\n"), maillog.NewParser()); err != nil {
				t.Fatal(err)
			}
			var status, result, detail string
			err = s.DB.QueryRow(`SELECT d.status, t.result, COALESCE(t.detail, '') FROM deliveries d
				JOIN delivery_tls t ON t.delivery_id = d.id WHERE d.domain = 'far.example'`).Scan(&status, &result, &detail)
			if err != nil {
				t.Fatalf("no delivery with its TLS outcome: %v", err)
			}
			if result != c.result || (c.status != "" && status != c.status) {
				t.Errorf("delivery %s, result %q (%s); want %s %s", status, result, detail, c.status, c.result)
			}
		})
	}
}

func sinkOpts(t *testing.T, ca *testca.CA) smtpsink.Options {
	cert, key := ca.Issue(t, "sink", "127.0.0.1")
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}}}
}
