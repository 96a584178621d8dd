package milter

import (
	"context"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/report"
)

// TestDKIMTempErrorEverywhere: a signature whose key lookup gets SERVFAIL
// is dkim=temperror in the Authentication-Results header, temperror in
// the store (signature and message) and temperror in the report, never
// "fail" (RFC 8601 2.7.1).
func TestDKIMTempErrorEverywhere(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	h.dns.ServFail("rsa._domainkey.dkim.example")
	r := h.send(postfixFlavor, pick(t, "dkim-rsa-pass"))
	if r.act.Type != gomilter.ActionAccept {
		t.Fatalf("action %v", r.act)
	}
	ar, _ := header(r.mods, "Authentication-Results")
	if !strings.Contains(ar, "dkim=temperror") {
		t.Errorf("Authentication-Results %q, want dkim=temperror", ar)
	}
	h.flush()
	var msgResult, sigResult, class string
	h.store.DB.QueryRow(`SELECT m.dkim_result, s.result, s.class FROM messages m JOIN signatures s
		ON s.message_id = m.id`).Scan(&msgResult, &sigResult, &class)
	if msgResult != "temperror" || sigResult != "temperror" || class != "other" {
		t.Errorf("store: message %q, signature %q class %q; want temperror, temperror, other", msgResult, sigResult, class)
	}
	now := time.Now()
	rep, err := report.Build(context.Background(), h.store, report.Options{
		Period: report.Period{Since: now.Add(-time.Hour), Until: now.Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	in := rep.Current.Inbound
	if in.DKIM["temperror"] != 1 || in.DKIM["fail"] != 0 || in.DKIMResults["temperror"] != 1 || in.DKIMResults["fail"] != 0 {
		t.Errorf("report counts messages %v, signatures %v; want one temperror, no fail", in.DKIM, in.DKIMResults)
	}
	for _, tb := range rep.Tables() {
		if tb.ID != "dkim_results" {
			continue
		}
		for _, row := range tb.Rows {
			want := "0"
			if row[0] == "temperror" {
				want = "1"
			}
			if row[1] != want || row[3] != want {
				t.Errorf("report row %v: want %s signature and message", row, want)
			}
		}
	}
}
