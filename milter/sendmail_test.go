package milter

import (
	"net"
	"strings"
	"testing"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/sendmailtest"
	"github.com/snowrain/snowrain/internal/testca"
)

// TestSendmailEndToEnd sends the corpus through a real Sendmail with the
// milter attached: the same records as through Postfix.
func TestSendmailEndToEnd(t *testing.T) {
	h := newHarnessOn(t, Config{AuthServID: "mx.test.example"}, "tcp")
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")
	host, port, _ := net.SplitHostPort(h.sock)
	sm := sendmailtest.Start(t, sendmailtest.Options{Milter: "inet:" + port + "@" + host,
		CertFile: cert, KeyFile: key, CAFile: ca.CAFile()})
	cases := corpus.Cases()
	r := sendCorpusThrough(t, h, sm.Addr, ca.Pool(), sm.Output)
	t.Logf("%d messages through Sendmail, by cipher %v", r.Inbound.Messages, r.Inbound.ByCipher)
	var mta, daemon string
	h.store.DB.QueryRow(`SELECT mta, daemon FROM connections LIMIT 1`).Scan(&mta, &daemon)
	if !strings.HasPrefix(mta, "8.") || daemon != "MTA" {
		t.Errorf("MTA recorded as %q daemon %q", mta, daemon)
	}
	queued := strings.Join(sm.QueueFiles(), "\n")
	if n := strings.Count(queued, "H??Authentication-Results: mx.test.example (tls="); n != len(cases) {
		t.Errorf("%d queued messages carry our Authentication-Results, want %d", n, len(cases))
	}
}
