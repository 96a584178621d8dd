package measure

import (
	"context"
	"maps"
	"testing"
	"time"
)

// TestExposureSideBothBackends: the milter's side of the exposure join
// reads the same on SQLite and on PostgreSQL, two nodes' mail summed, and
// counts what the corpus holds: every inbound message once per client
// address and once per client address and sender domain.
func TestExposureSideBothBackends(t *testing.T) {
	base := time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)
	evs := corpus(400, base)
	wantClients, wantSenders := map[string]int64{}, map[[2]string]int64{}
	for _, ev := range evs {
		m, ok := ev.(*Message)
		if !ok || m.Direction != "inbound" {
			continue
		}
		wantClients[m.ClientIP] += 2 // once per node
		sender := m.MailFromDomain
		if sender == "" {
			sender = m.FromDomain
		}
		wantSenders[[2]string{m.ClientIP, sender}] += 2
	}
	since, until := base.Add(-time.Hour), base.Add(4*time.Hour)
	for _, s := range []*Store{openTemp(t), openPG(t)} {
		write(t, s, "mx-a", 50, evs)
		write(t, s, "mx-b", 70, evs)
		clients, senders := map[string]int64{}, map[[2]string]int64{}
		if err := s.EachClient(context.Background(), since, until, func(ip string, n int64) error {
			clients[ip] += n
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.EachClientDomain(context.Background(), since, until, func(ip, d string, n int64) error {
			senders[[2]string{ip, d}] += n
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(clients, wantClients) {
			t.Errorf("%s: messages by client %v, want %v", s.Dialect(), clients, wantClients)
		}
		if !maps.Equal(senders, wantSenders) {
			t.Errorf("%s: messages by client and sender %v, want %v", s.Dialect(), senders, wantSenders)
		}
		n := 0
		if err := s.EachClient(context.Background(), until, until.Add(time.Hour), func(string, int64) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("%s: %d clients after the corpus (%v)", s.Dialect(), n, err)
		}
	}
}
