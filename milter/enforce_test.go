package milter

import (
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/miltertest"
)

func TestEnforcement(t *testing.T) {
	strict := pick(t, "dmarc-strict-subdomain") // fail, p=reject
	pct := pick(t, "dmarc-pct-zero")            // fail, reject sampled down to quarantine
	pass := pick(t, "dmarc-pass-spf-only")
	cases := []struct {
		name   string
		cfg    Config
		c      corpus.Case
		action gomilter.ActionType
		header bool
		hold   bool
		record string
	}{
		{"off by default", Config{}, strict, gomilter.ActionAccept, false, false, "accept"},
		{"reject", Config{EnforceDMARC: true}, strict, gomilter.ActionRejectWithCode, false, false, "reject"},
		{"pass is accepted", Config{EnforceDMARC: true}, pass, gomilter.ActionAccept, false, false, "accept"},
		{"quarantine header", Config{EnforceDMARC: true}, pct, gomilter.ActionAccept, true, false, "quarantine"},
		{"quarantine hold", Config{EnforceDMARC: true, QuarantineAction: "hold"}, pct, gomilter.ActionAccept, false, true, "quarantine"},
		{"other domains only", Config{EnforceDMARC: true, EnforceDomains: []string{"pct.example"}}, strict, gomilter.ActionAccept, false, false, "accept"},
		{"listed domain", Config{EnforceDMARC: true, EnforceDomains: []string{"sub.strict.example"}}, strict, gomilter.ActionRejectWithCode, false, false, "reject"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.AuthServID = "mx.test.example"
			h := newHarness(t, tc.cfg)
			r := h.send(postfixFlavor, tc.c)
			if r.act.Type != tc.action {
				t.Errorf("action %v, want %v", r.act, tc.action)
			}
			if tc.action == gomilter.ActionRejectWithCode && (r.act.SMTPCode != 550) {
				t.Errorf("reject code %d", r.act.SMTPCode)
			}
			_, hdr := miltertest.Header(r.mods, "X-Snowrain-Quarantine")
			if hdr != tc.header {
				t.Errorf("quarantine header %v, want %v", hdr, tc.header)
			}
			hold := false
			for _, m := range r.mods {
				hold = hold || m.Type == gomilter.ActionQuarantine
			}
			if hold != tc.hold {
				t.Errorf("hold %v, want %v", hold, tc.hold)
			}
			h.flush()
			var action string
			if err := h.store.DB.QueryRow(`SELECT action FROM messages`).Scan(&action); err != nil {
				t.Fatal(err)
			}
			if action != tc.record {
				t.Errorf("recorded action %q, want %q", action, tc.record)
			}
		})
	}
}

func TestOutboundDirection(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example", SubmissionDaemons: []string{"submission"}})
	c := pick(t, "dkim-rsa-pass")
	auth := miltertest.Flavor{Name: "sasl", Fill: func(b *gomilter.MacroBag, c corpus.Case) {
		miltertest.Postfix.Fill(b, c)
		b.Set("{auth_authen}", "alice")
	}}
	sub := miltertest.Flavor{Name: "submission", Fill: func(b *gomilter.MacroBag, c corpus.Case) {
		miltertest.Postfix.Fill(b, c)
		b.Set("{daemon_name}", "submission")
	}}
	h.send(auth, c)
	h.send(sub, c)
	h.send(postfixFlavor, c)
	h.flush()
	r := checkReportCounts(t, h)
	if r[0] != 1 || r[1] != 2 {
		t.Errorf("inbound %d outbound %d, want 1 and 2", r[0], r[1])
	}
}

func checkReportCounts(t *testing.T, h *harness) [2]int {
	var in, out int
	if err := h.store.DB.QueryRow(`SELECT COUNT(*) FROM messages WHERE direction = 'inbound'`).Scan(&in); err != nil {
		t.Fatal(err)
	}
	if err := h.store.DB.QueryRow(`SELECT COUNT(*) FROM messages WHERE direction = 'outbound'`).Scan(&out); err != nil {
		t.Fatal(err)
	}
	var authn int
	if err := h.store.DB.QueryRow(`SELECT COUNT(*) FROM connections WHERE authenticated = 1`).Scan(&authn); err != nil {
		t.Fatal(err)
	}
	if authn != 1 {
		t.Errorf("%d authenticated connections, want 1", authn)
	}
	return [2]int{in, out}
}
