package measure

import (
	"crypto/tls"
	"fmt"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/sendmailtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/measure/maillog"
)

// TestSendmailOutboundTLS has a real Sendmail relay to a TLS 1.3 sink and
// reads its syslog lines: the STARTTLS=client line joins the stat=Sent one.
func TestSendmailOutboundTLS(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "sink", "127.0.0.1")
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	sink := smtpsink.StartWith(t, "127.0.0.1:0", smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS13}})
	mycert, mykey := ca.Issue(t, "mx", "mx.test.example", "127.0.0.1")
	sm := sendmailtest.Start(t, sendmailtest.Options{SmartHost: sink.Addr, Syslog: true,
		CertFile: mycert, KeyFile: mykey, CAFile: ca.CAFile()})
	c, err := smtp.Dial(sm.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Hello("client.example")
	if err := c.StartTLS(&tls.Config{ServerName: "mx.test.example", RootCAs: ca.Pool()}); err != nil {
		t.Fatal(err)
	}
	c.Mail("sender@example.org")
	c.Rcpt("user@far.example")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: relayed\r\n\r\nhello\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if msgs := sink.Wait(1, 30*time.Second); len(msgs) != 1 {
		t.Fatalf("sink got %d messages\n%s", len(msgs), strings.Join(sm.Syslog(), "\n"))
	}
	var d *maillog.Delivery
	for i := 0; i < 50 && d == nil; i++ {
		p := maillog.NewParser()
		for _, line := range sm.Syslog() {
			ds, _ := p.Feed(line)
			for _, got := range ds {
				if got.Domain == "far.example" {
					d = got
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d == nil {
		t.Fatalf("no delivery parsed from:\n%s", strings.Join(sm.Syslog(), "\n"))
	}
	if d.Status != "sent" || d.TLSVersion != "TLSv1.3" || d.Cipher == "" || d.Level == maillog.LevelNone {
		t.Errorf("delivery %+v\n%s", d, strings.Join(sm.Syslog(), "\n"))
	}
}

// TestSendmailInjectedReply (issue 10): a real Sendmail relays to a
// receiver whose replies name another recipient and imitate stat=, and
// the sender's quoted local part does too. Sendmail 8.17 logs the reply
// before stat= (reply=…): the status comes from Sendmail's DSN, every
// recipient of the line is its own delivery, none for bank.example.
func TestSendmailInjectedReply(t *testing.T) {
	replies := []string{"451 4.3.0 later), to=<x@bank.example>, stat=Sent (", "250 ok), to=<victim@bank.example>, x=("}
	sink := smtpsink.StartWith(t, "127.0.0.1:0", smtpsink.Options{DataReply: func(n int) string { return replies[(n-1)%2] }})
	sm := sendmailtest.Start(t, sendmailtest.Options{SmartHost: sink.Addr, Syslog: true})
	rcpts := []string{"a@one.example", "b@two.example", `"c, stat=Sent, to=<d@bank.example>"@three.example`}
	for i := 0; i < 2; i++ {
		if err := smtp.SendMail(sm.Addr, nil, "sender@example.org", rcpts, []byte("Subject: x\r\n\r\nhello\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	sink.Wait(1, 30*time.Second)
	var got map[string]int
	for i := 0; i < 50; i++ {
		got = map[string]int{}
		p := maillog.NewParser()
		for _, line := range sm.Syslog() {
			ds, _ := p.Feed(line)
			for _, d := range ds {
				got[d.Domain+" "+string(d.Status)]++
			}
		}
		if len(got) == 6 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := map[string]int{}
	for _, d := range []string{"one.example", "two.example", "three.example"} {
		want[d+" sent"], want[d+" deferred"] = 1, 1
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries %v, want %v\n%s", got, want, strings.Join(sm.Syslog(), "\n"))
	}
}
