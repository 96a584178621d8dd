package feedback

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
)

// TestSMTPRelay sends the known store's aggregate reports by SMTP to a
// relay instead of sendmail: one message per destination, the envelope
// as configured.
func TestSMTPRelay(t *testing.T) {
	pgtest.EachBackend(t, testSMTPRelay)
}

func testSMTPRelay(t *testing.T, dsn string) {
	sink := smtpsink.Start(t, "127.0.0.1:0")
	s := knownStore(t, dsn)
	cfg := knownConfig(t)
	cfg.SMTPRelay = sink.Addr
	ds, err := (&Sender{Config: cfg, Store: s}).Send(context.Background(), fixtureDay, KindDMARC)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, d := range ds {
		if d.Status != StatusSent {
			t.Errorf("%+v", d)
		}
		sent++
	}
	msgs := sink.Messages()
	if len(msgs) != sent || sent != 3 {
		t.Fatalf("%d messages at the relay, %d sent, want 3", len(msgs), sent)
	}
	for _, m := range msgs {
		if !strings.HasPrefix(m.From, "<reports@ours.example>") || len(m.To) != 1 || !strings.Contains(string(m.Data), "Subject: Report Domain: ") {
			t.Errorf("relay got from %q to %v:\n%.300s", m.From, m.To, m.Data)
		}
	}
}

// TestSentUnreadable: when the store cannot say whether a report already
// went out, it is not sent (a second copy to a receiver is worse than a
// day's delay): the delivery failed and is tried again next run.
func TestSentUnreadable(t *testing.T) {
	pgtest.EachBackend(t, testSentUnreadable)
}

func testSentUnreadable(t *testing.T, dsn string) {
	sink := smtpsink.Start(t, "127.0.0.1:0")
	s := knownStore(t, dsn)
	if _, err := s.DB.Exec(`ALTER TABLE sent_reports RENAME TO sent_reports_gone`); err != nil {
		t.Fatal(err)
	}
	cfg := knownConfig(t)
	cfg.SMTPRelay = sink.Addr
	ds, err := (&Sender{Config: cfg, Store: s}).Send(context.Background(), fixtureDay, KindDMARC)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 {
		t.Errorf("%d deliveries, want 3", len(ds))
	}
	for _, d := range ds {
		if d.Status != StatusFailed || !strings.Contains(d.Reason, "sent reports") {
			t.Errorf("%+v", d)
		}
	}
	if n := len(sink.Messages()); n != 0 {
		t.Errorf("%d messages at the relay", n)
	}
}

// TestPublicDialer: without a test dialer, a TLS report is never POSTed
// to a loopback or private address a rua= names.
func TestPublicDialer(t *testing.T) {
	s := knownStore(t, filepath.Join(t.TempDir(), "known.db"))
	for _, target := range []string{"https://127.0.0.1:9/x", "https://10.0.0.1:9/x", "https://[::1]:9/x", "https://169.254.169.254/latest"} {
		u, _ := url.Parse(target)
		d := Delivery{}
		sender := &Sender{Config: knownConfig(t), Store: s}
		sender.Config.defaults()
		sender.post(context.Background(), "x.example", fixtureDay, u, []byte("gz"), &d)
		if d.Status != StatusFailed || !strings.Contains(d.Reason, "non-public address") {
			t.Errorf("%s: %s %s", target, d.Status, d.Reason)
		}
	}
}

func TestParseRUA(t *testing.T) {
	for _, c := range []struct {
		in    string
		limit int64
		ok    bool
	}{
		{"mailto:a@example.org", 0, true},
		{"mailto:a@example.org!10m", 10 << 20, true},
		{"mailto:a@example.org!500", 500, true},
		{"mailto:a@example.org!2k", 2 << 10, true},
		{"mailto:a@example.org!", 0, false},
		{"mailto:a@example.org!10x", 0, false},
		{"https://example.org/rua", 0, false},
		{"mailto:-oQ/tmp/x@example.org", 0, false},
		{"mailto:a@example.org,b@example.org", 0, false},
		{"mailto:a@example.org%0d%0aBcc:x@evil.example", 0, false},
		{"mailto:a@exa mple.org", 0, false},
		{"mailto:dmarc%2Breports@example.org!1m", 1 << 20, true},
		{"mailto:a%0A@example.org", 0, false},
	} {
		_, limit, err := parseRUA(c.in)
		if (err == nil) != c.ok || limit != c.limit {
			t.Errorf("%q: limit %d err %v", c.in, limit, err)
		}
	}
}
