package measure

import (
	"context"
	"testing"
	"time"

	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/tlsinfo"
)

func TestProviderPeer(t *testing.T) {
	for _, c := range []struct{ ptr, helo, peer, source string }{
		{"mail-ot1-f41.google.com", "mail-ot1-f41.google.com", "google.com", PeerByPTR},
		{"MAIL-DM6NAM12ON2041.outbound.protection.outlook.com.", "x", "outlook.com", PeerByPTR},
		{"", "sonic305-20.consmr.mail.bf2.yahoo.com", "yahoo.com", PeerByHELO},
		{"", "[192.0.2.1]", "", ""},
		{"", "192.0.2.1", "", ""},
		{"", "localhost", "", ""},
		{"", "mail.example.co.uk", "example.co.uk", PeerByHELO},
		{"", "co.uk", "", ""},
		{"", "host.123", "", ""},
		{"bücher.example", "", "xn--bcher-kva.example", PeerByPTR},
		{"", "a b.example", "", ""},
		{"", "mail.e\x1bvil.example", "", ""},
		{"", "\x1b[2J.evil.example", "", ""},
		{"", "mail_1.example.com", "example.com", PeerByHELO},
	} {
		peer, source := ProviderPeer(c.ptr, c.helo)
		if peer != c.peer || source != c.source {
			t.Errorf("%q/%q: %q %q, want %q %q", c.ptr, c.helo, peer, source, c.peer, c.source)
		}
	}
}

// TestProviderRollup: connections and deliveries land in hourly_providers
// under their peer's domain, with their TLS parameters and certificate
// verdicts.
func TestProviderRollup(t *testing.T) {
	s := openTemp(t)
	at := time.Date(2026, 11, 17, 10, 0, 0, 0, time.UTC)
	w := NewWriter(s, WriterConfig{})
	suite := tlsinfo.Parse("TLS_AES_256_GCM_SHA384")
	w.Enqueue(&Connection{UID: "a", Started: at, Ended: at, Direction: "inbound", ClientPTR: "mail-a.google.com",
		Helo: "mail-a.google.com", TLSVersion: "TLSv1.3", Cipher: suite.Name, KeyExchange: suite.KeyExchange,
		BulkCipher: suite.Cipher, ForwardSecret: true, Messages: 3})
	w.Enqueue(&Connection{UID: "b", Started: at, Ended: at, Direction: "inbound", Helo: "smtp.zoho.com", Messages: 1})
	w.Enqueue(&Connection{UID: "c", Started: at, Ended: at, Direction: "inbound", Helo: "[192.0.2.1]", Messages: 5})
	w.Enqueue(&Connection{UID: "d", Started: at, Ended: at, Direction: "outbound", ClientPTR: "mail-a.google.com", Messages: 2})
	w.Enqueue(&Connection{UID: "e", Started: at, Ended: at, Direction: "inbound", ClientPTR: "mail-b.google.com", Messages: 0})
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ds := []*maillog.Delivery{
		{Time: at, Domain: "gmail.com", RelayHost: "gmail-smtp-in.l.google.com", Status: "sent", TLSVersion: "TLSv1.3",
			Cipher: suite.Name, Level: maillog.LevelVerified, Suite: suite},
		{Time: at, Domain: "gmail.com", RelayHost: "gmail-smtp-in.l.google.com", Status: "sent", TLSVersion: "TLSv1.3",
			Cipher: suite.Name, Level: maillog.LevelVerified, Suite: suite},
		{Time: at, Domain: "zoho.com", RelayHost: "mx.zoho.com", Status: "deferred", Level: maillog.LevelNone},
		{Time: at, Domain: "x.example", RelayHost: "", Status: "bounced", Level: maillog.LevelNone},
	}
	if err := s.RecordDeliveries(context.Background(), ds, nil); err != nil {
		t.Fatal(err)
	}
	rows, err := s.ProviderRows(context.Background(), Scope{Since: at.Truncate(time.Hour), Until: at.Truncate(time.Hour).Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, r := range rows {
		got[r.Direction+" "+r.Peer+" "+r.Source+" "+r.TLSVersion+" "+r.KeyExchange+" "+r.Cipher+" "+r.Cert+" "+r.Status] += r.Messages
	}
	want := map[string]int64{
		"inbound google.com ptr TLSv1.3 ECDHE AES-256-GCM  ":             3,
		"inbound zoho.com helo     ":                                     1,
		"outbound google.com mx TLSv1.3 ECDHE AES-256-GCM verified sent": 2,
		"outbound zoho.com mx    none deferred":                          1,
	}
	if len(got) != len(want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%q: %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

func FuzzProviderPeer(f *testing.F) {
	for _, s := range []string{"mail.google.com", "[1.2.3.4]", "x..y", "a.b.c.d.e.f", "\xff.com", "xn--.com"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, ptr, helo string) {
		peer, source := ProviderPeer(ptr, helo)
		if (peer == "") != (source == "") || len(peer) > 253 {
			t.Fatalf("%q %q", peer, source)
		}
	})
}
