package milter

import (
	"errors"
	"net/textproto"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/postfixtest"
)

// smtpTry sends c to addr from c.ClientIP and returns the reply code to
// the end of DATA (250 when accepted). pause, if set, is spent in the
// middle of the DATA.
func smtpTry(t *testing.T, addr string, c corpus.Case, pause time.Duration) int {
	t.Helper()
	cl := smtpOpen(t, addr, c)
	defer cl.Close()
	if err := cl.Mail(c.MailFrom); err != nil {
		t.Fatalf("%s: MAIL: %v", c.Name, err)
	}
	if err := cl.Rcpt(c.Rcpt); err != nil {
		t.Fatalf("%s: RCPT: %v", c.Name, err)
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatalf("%s: DATA: %v", c.Name, err)
	}
	half := len(c.Message) / 2
	w.Write(c.Message[:half])
	time.Sleep(pause)
	w.Write(c.Message[half:])
	err = w.Close()
	var te *textproto.Error
	switch {
	case err == nil:
		cl.Quit()
		return 250
	case errors.As(err, &te):
		return te.Code
	}
	t.Fatalf("%s: end of DATA: %v", c.Name, err)
	return 0
}

// TestPostfixEnforcementBypass sends the spoofs of issue 10 through a real
// Postfix with DMARC enforcement on: every From shape an attacker can
// choose ends in 550, and a client slow to send its DATA gets no
// temperror out of it.
func TestPostfixEnforcementBypass(t *testing.T) {
	h := newHarnessOn(t, Config{AuthServID: "mx.test.example", EnforceDMARC: true, DNSBudget: time.Second}, "tcp")
	if err := h.dns.Add(bypassZone); err != nil {
		t.Fatal(err)
	}
	neg := h.recordNegotiations()
	pf := postfixtest.Start(t, postfixtest.Options{Milter: "inet:" + h.sock})
	defer neg.expect(t, required|optional|gomilter.OptNoMailReply, 0)
	for _, c := range bypassVariants {
		if code := smtpTry(t, pf.Addr, c, 0); code != 550 {
			t.Errorf("%s: %d, want 550", c.Name, code)
		}
	}
	if code := smtpTry(t, pf.Addr, spoof("slow DATA", "CEO <ceo@new.bank.example>"), 2*time.Second); code != 550 {
		t.Errorf("slow DATA: %d, want 550", code)
	}
	if code := smtpTry(t, pf.Addr, spoof("own domain", "a@evil.example"), 0); code != 250 {
		t.Errorf("the attacker's own domain: %d, want 250", code)
	}
	if t.Failed() {
		t.Log(pf.Log())
	}
}
