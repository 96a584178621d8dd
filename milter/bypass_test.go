package milter

import (
	"fmt"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/miltertest"
)

// bypassZone adds a bank with p=reject (also under an IDN name) and an
// attacker domain whose SPF passes from 127.0.9.0/24 and whose DMARC
// passes, so that every spoof below comes with an aligned pass for the
// attacker's own domain.
const bypassZone = `
_dmarc.bank.example. TXT "v=DMARC1; p=reject"
bank.example. TXT "v=spf1 -all"
_dmarc.xn--bnk-qla.example. TXT "v=DMARC1; p=reject"
_dmarc.quiet.example. TXT "v=DMARC1; p=quarantine"
evil.example. TXT "v=spf1 ip4:127.0.9.0/24 -all"
_dmarc.evil.example. TXT "v=DMARC1; p=reject"
`

// spoof is a message from the attacker (SPF pass for evil.example) with
// the given From fields (nil: none at all).
func spoof(name string, froms ...string) corpus.Case {
	var b strings.Builder
	for _, f := range froms {
		if name == "space before colon" {
			fmt.Fprintf(&b, "From :%s\r\n", f)
			continue
		}
		fmt.Fprintf(&b, "From: %s\r\n", f)
	}
	b.WriteString("To: <victim@dest.example>\r\nSubject: wire the money\r\nMessage-ID: <1@evil.example>\r\n\r\nnow\r\n")
	return corpus.Case{Name: name, ClientIP: "127.0.9.1", Helo: "mail.evil.example",
		MailFrom: "bounce@evil.example", Rcpt: "victim@dest.example", Message: []byte(b.String())}
}

// bypassVariants are the From shapes an attacker can try against a
// receiver enforcing DMARC. Each must end in the bank's reject.
var bypassVariants = []corpus.Case{
	spoof("one From", "CEO <ceo@bank.example>"),
	spoof("two From fields", "a@evil.example", "CEO <ceo@bank.example>"),
	spoof("two From fields, bank first", "CEO <ceo@bank.example>", "a@evil.example"),
	spoof("two mailboxes", "a@evil.example, CEO <ceo@bank.example>"),
	spoof("extra bracket", "<ceo@bank.example>>"),
	spoof("unclosed bracket", "CEO <ceo@bank.example"),
	spoof("group", "Bank: ceo@bank.example;"),
	spoof("encoded word address", "=?utf-8?q?ceo=40bank.example?="),
	spoof("comment first", "(CEO) ceo@bank.example"),
	spoof("trailing dot", "CEO <ceo@bank.example.>"),
	spoof("upper case", "CEO <CEO@BANK.EXAMPLE>"),
	spoof("IDN", "CEO <ceo@bänk.example>"),
	spoof("space before colon", "CEO <ceo@bank.example>"),
	spoof("long subdomain", "ceo@"+strings.Repeat("a", 63)+"."+strings.Repeat("b", 63)+"."+strings.Repeat("c", 63)+"."+
		strings.Repeat("d", 45)+".bank.example"),
	spoof("empty From", ""),
	spoof("no domain", "ceo"),
	spoof("address literal", "ceo@[192.0.2.1]"),
	spoof("no From"),
	spoof("many domains", manyDomains(20)+", ceo@bank.example"),
}

func manyDomains(n int) string {
	var list []string
	for i := 0; i < n; i++ {
		list = append(list, fmt.Sprintf("x@d%d.evil.example", i))
	}
	return strings.Join(list, ", ")
}

func newBypassHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	cfg.AuthServID = "mx.test.example"
	cfg.EnforceDMARC = true
	h := newHarness(t, cfg)
	if err := h.dns.Add(bypassZone); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestEnforcementBypassVariants: with enforcement on, no shape of From
// lets a spoof of a p=reject domain through (issue 10: two From fields,
// two mailboxes or a malformed From got 250).
func TestEnforcementBypassVariants(t *testing.T) {
	h := newBypassHarness(t, Config{})
	for _, c := range bypassVariants {
		r, err := miltertest.SendOne(h.client(), postfixFlavor, c)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if r.Act.Type != gomilter.ActionRejectWithCode || r.Act.SMTPCode != 550 {
			t.Errorf("%s: %v, want 550", c.Name, r.Act)
		}
	}
	h.flush()
	if n := countMessages(t, h, "action = 'reject'"); n != len(bypassVariants) {
		t.Errorf("%d rejects recorded, want %d", n, len(bypassVariants))
	}
}

// TestEnforcementOptions: invalid_from, enforce.domains and what stays
// accepted.
func TestEnforcementOptions(t *testing.T) {
	accept, reject, quarantine := gomilter.ActionAccept, gomilter.ActionRejectWithCode, gomilter.ActionAccept
	cases := []struct {
		name   string
		cfg    Config
		c      corpus.Case
		action gomilter.ActionType
		record string
	}{
		{"own domain passes", Config{}, spoof("own", "a@evil.example"), accept, "accept"},
		{"display name is not DMARC's", Config{}, spoof("display", `"ceo@bank.example" <a@evil.example>`), accept, "accept"},
		{"accept invalid: bank still fails", Config{InvalidFrom: "accept"}, spoof("two", "a@evil.example, ceo@bank.example"), reject, "reject"},
		{"accept invalid: malformed bank fails", Config{InvalidFrom: "accept"}, spoof("bracket", "<ceo@bank.example>>"), reject, "reject"},
		{"accept invalid: no From", Config{InvalidFrom: "accept"}, spoof("none"), accept, "accept"},
		{"accept invalid: own domains only", Config{InvalidFrom: "accept"}, spoof("own two", "a@evil.example", "b@evil.example"), accept, "accept"},
		{"quarantine invalid", Config{InvalidFrom: "quarantine"}, spoof("empty", ""), quarantine, "quarantine"},
		{"quarantine invalid, bank rejects", Config{InvalidFrom: "quarantine"}, spoof("two", "a@evil.example", "ceo@bank.example"), reject, "reject"},
		{"listed domain, trailing dot and case", Config{EnforceDomains: []string{"Bank.Example."}}, spoof("dot", "ceo@BANK.example."), reject, "reject"},
		{"listed domain among two", Config{EnforceDomains: []string{"bank.example"}}, spoof("two", "a@evil.example", "ceo@bank.example"), reject, "reject"},
		{"unlisted domains", Config{EnforceDomains: []string{"other.example"}}, spoof("two", "a@evil.example", "ceo@bank.example"), accept, "accept"},
		{"listed, no From domain at all", Config{EnforceDomains: []string{"bank.example"}}, spoof("none"), reject, "reject"},
		{"accept invalid: long From naming bank", Config{InvalidFrom: "accept"},
			spoof("long", "CEO <ceo@bank.example> ("+strings.Repeat("x", 20<<10)+")"), reject, "reject"},
		{"accept invalid: bank in the 17th From", Config{InvalidFrom: "accept"},
			spoof("17", append(strings.Split(strings.Repeat("a@evil.example\n", 16), "\n")[:16], "ceo@bank.example")...), reject, "reject"},
		{"quarantine policy", Config{}, spoof("quiet", "ceo@quiet.example"), quarantine, "quarantine"},
		{"worst wins", Config{}, spoof("quiet and bank", "ceo@quiet.example, ceo@bank.example"), reject, "reject"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newBypassHarness(t, tc.cfg)
			r, err := miltertest.SendOne(h.client(), postfixFlavor, tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if r.Act.Type != tc.action {
				t.Errorf("action %v, want %v", r.Act, tc.action)
			}
			_, q := miltertest.Header(r.Mods, "X-Snowrain-Quarantine")
			if q != (tc.record == "quarantine") {
				t.Errorf("quarantine header %v for %s", q, tc.record)
			}
			h.flush()
			var action string
			if err := h.store.DB.QueryRow(`SELECT action FROM messages`).Scan(&action); err != nil {
				t.Fatal(err)
			}
			if action != tc.record {
				t.Errorf("recorded %q, want %q", action, tc.record)
			}
		})
	}
}

// TestEnforcementSlowData: the DNS budget runs from the end of the
// message. It ran from MAIL FROM, so a client that took longer than the
// budget to send its DATA turned the bank's DMARC fail into a temperror,
// which is not enforced. The DATA here takes twice the budget.
func TestEnforcementSlowData(t *testing.T) {
	h := newBypassHarness(t, Config{DNSBudget: 500 * time.Millisecond})
	c := spoof("slow", "CEO <ceo@fresh.bank.example>")
	s := h.openSession(h.client(), postfixFlavor, c)
	defer s.Close()
	s.Mail("<"+c.MailFrom+">", "")
	s.Rcpt("<"+c.Rcpt+">", "")
	s.DataStart()
	time.Sleep(time.Second)
	r := sendFields(t, s, c)
	if r.act.Type != gomilter.ActionRejectWithCode {
		t.Errorf("slow DATA: %v, want reject", r.act)
	}
}

// sendFields sends the header and body of c on a session past DATA.
func sendFields(t *testing.T, s *gomilter.ClientSession, c corpus.Case) result {
	t.Helper()
	fields, body := corpus.Split(c.Message)
	for _, f := range fields {
		if _, err := s.HeaderField(f.Name, f.Value, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader(string(body)))
	if err == nil && act == nil {
		mods, act, err = s.End()
	}
	if err != nil {
		t.Fatal(err)
	}
	return result{mods, act}
}
