package report

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/tlsinfo"
)

// TestOutboundDeliveredOnly: the outbound rows and every peer-domain
// table count delivered mail; attempts, deferrals and bounces have rows
// of their own (issue 12).
func TestOutboundDeliveredOnly(t *testing.T) {
	s, err := measure.Open(context.Background(), filepath.Join(t.TempDir(), "out.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ds []*maillog.Delivery
	add := func(at time.Time, domain string, status maillog.Status, tls bool, n int) {
		for i := 0; i < n; i++ {
			d := &maillog.Delivery{Time: at, MTA: "postfix", QueueID: "Q1234", Domain: domain, Status: status, Level: maillog.LevelNone}
			if tls {
				d.TLSVersion, d.Cipher, d.Level, d.Suite = "TLSv1.3", "TLS_AES_128_GCM_SHA256", maillog.LevelTrusted, tlsinfo.Parse("TLS_AES_128_GCM_SHA256")
			}
			ds = append(ds, d)
		}
	}
	cur, prev := week47.Since.Add(10*time.Hour), week46.Since.Add(10*time.Hour)
	add(cur, "tls.example", "sent", true, 4)
	add(cur, "plain.example", "sent", false, 3)
	add(cur, "nodns.example", "deferred", false, 5) // DNS failure, relay=none: never delivered
	add(cur, "gone.example", "bounced", false, 3)
	// Mail to flaky.example went over TLS in both weeks; this week some
	// attempts were deferred by a broken STARTTLS first.
	add(prev, "flaky.example", "sent", true, 3)
	add(cur, "flaky.example", "deferred", false, 3)
	add(cur, "flaky.example", "sent", true, 3)
	if err := s.RecordDeliveries(context.Background(), ds, nil); err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), s, Options{Period: week47})
	if err != nil {
		t.Fatal(err)
	}
	summary := map[string]string{}
	for _, row := range r.summary().Rows {
		summary[row[0]] = row[1]
	}
	for name, want := range map[string]string{"Outbound deliveries": "10", "Outbound over TLS": "70.00%",
		"Outbound delivery attempts": "21", "Outbound attempts deferred": "8", "Outbound recipients bounced": "3"} {
		if summary[name] != want {
			t.Errorf("summary %q = %q, want %q", name, summary[name], want)
		}
	}
	col := func(tb Table) []string {
		var out []string
		for _, row := range tb.Rows {
			out = append(out, row[0])
		}
		return out
	}
	if got := col(r.plaintext()); !slices.Equal(got, []string{"plain.example"}) {
		t.Errorf("still in plaintext: %v, want only plain.example", got)
	}
	if got := col(r.fullTLS()); !slices.Equal(got, []string{"tls.example", "flaky.example"}) {
		t.Errorf("100%% TLS: %v", got)
	}
	if got := col(r.downgrades()); len(got) != 0 {
		t.Errorf("downgrade candidates %v, want none", got)
	}
	for _, d := range r.Domains {
		if d.Name == "nodns.example" || d.Name == "gone.example" {
			t.Errorf("domain without deliveries listed: %+v", d)
		}
	}
	if day := r.Days[0]; day.OutDeliveries != 10 || day.OutTLS != 7 {
		t.Errorf("figure 3, %s: %d delivered, %d over TLS; want 10 and 7", day.Date.Format("Mon"), day.OutDeliveries, day.OutTLS)
	}
}
