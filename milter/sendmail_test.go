package milter

import (
	"crypto/tls"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/sendmailtest"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/policy"
)

// TestSendmailEndToEnd sends the corpus through a real Sendmail with the
// milter attached: the same records as through Postfix.
func TestSendmailEndToEnd(t *testing.T) {
	h := newHarnessOn(t, Config{AuthServID: "mx.test.example"}, "tcp")
	neg := h.recordNegotiations()
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")
	host, port, _ := net.SplitHostPort(h.sock)
	sm := sendmailtest.Start(t, sendmailtest.Options{Milter: "inet:" + port + "@" + host,
		CertFile: cert, KeyFile: key, CAFile: ca.CAFile()})
	cases := corpus.Cases()
	r := sendCorpusThrough(t, h, sm.Addr, ca.Pool(), sm.Output)
	neg.expect(t, required|optional|gomilter.OptNoMailReply, 0)
	t.Logf("%d messages through Sendmail, by cipher %v", r.Inbound.Messages, r.Inbound.ByCipher)
	var mta, daemon string
	if err := h.store.DB.QueryRow(`SELECT mta, daemon FROM connections LIMIT 1`).Scan(&mta, &daemon); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mta, "8.") || daemon != "MTA" {
		t.Errorf("MTA recorded as %q daemon %q", mta, daemon)
	}
	queued := strings.Join(sm.QueueFiles(), "\n")
	if n := strings.Count(queued, "H??Authentication-Results: mx.test.example (tls="); n != len(cases) {
		t.Errorf("%d queued messages carry our Authentication-Results, want %d", n, len(cases))
	}
}

// TestSendmailInboundRequireTLS applies the inbound TLS requirement in the
// milter, Sendmail having no policy delegation.
func TestSendmailInboundRequireTLS(t *testing.T) {
	h := newHarnessOn(t, Config{AuthServID: "mx.test.example"}, "tcp")
	h.filter.Inbound = (&policy.Inbound{RequireTLS: []string{"bank.example"}}).Check
	neg := h.recordNegotiations()
	// MAIL FROM keeps its reply (the check answers there), the rest not.
	defer neg.expect(t, required|optional, gomilter.OptNoMailReply)
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")
	host, port, _ := net.SplitHostPort(h.sock)
	sm := sendmailtest.Start(t, sendmailtest.Options{Milter: "inet:" + port + "@" + host,
		CertFile: cert, KeyFile: key, CAFile: ca.CAFile()})
	send := func(from string, starttls bool) error {
		c, err := smtp.Dial(sm.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Hello("client.example")
		if starttls {
			if err := c.StartTLS(&tls.Config{ServerName: "mx.test.example", RootCAs: ca.Pool()}); err != nil {
				t.Fatal(err)
			}
		}
		return c.Mail(from)
	}
	err := send("alice@bank.example", false)
	var reply *textproto.Error
	if !errors.As(err, &reply) || reply.Code != 450 || !strings.Contains(reply.Msg, "4.7.10") {
		t.Errorf("plaintext from bank.example: %v, want 450 4.7.10", err)
	}
	if err := send("alice@bank.example", true); err != nil {
		t.Errorf("over STARTTLS: %v", err)
	}
	if err := send("bob@other.example", false); err != nil {
		t.Errorf("unlisted sender: %v", err)
	}
}
