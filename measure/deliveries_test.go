package measure

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/tlsinfo"
)

// TestDeliveryCounts: the outbound share is delivered mail over TLS out
// of delivered mail; deferrals and bounces are counted apart, and the
// per-domain maps hold delivered mail only.
func TestDeliveryCounts(t *testing.T) {
	s := openTemp(t)
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	d := func(domain string, status maillog.Status, tls bool) *maillog.Delivery {
		x := &maillog.Delivery{Time: at, MTA: "postfix", QueueID: "Q1234", Domain: domain, Status: status, Level: maillog.LevelNone}
		if tls {
			x.TLSVersion, x.Cipher, x.Level, x.Suite = "TLSv1.3", "TLS_AES_128_GCM_SHA256", maillog.LevelTrusted, tlsinfo.Parse("TLS_AES_128_GCM_SHA256")
		}
		return x
	}
	ds := []*maillog.Delivery{
		d("tls.example", "sent", true), d("tls.example", "sent", true),
		d("plain.example", "sent", false),
		// Deferred three times over TLS, then delivered: one delivery.
		d("retry.example", "deferred", true), d("retry.example", "deferred", true), d("retry.example", "deferred", true),
		d("retry.example", "sent", true),
		// A broken STARTTLS: deferred, then delivered in plaintext.
		d("failtls.example", "deferred", false), d("failtls.example", "sent", false),
		// Never delivered: DNS failure (relay=none), and a bounce.
		d("nodns.example", "deferred", false), d("nodns.example", "deferred", false),
		d("bounce.example", "bounced", true),
	}
	if err := s.RecordDeliveries(context.Background(), ds, nil); err != nil {
		t.Fatal(err)
	}
	r, err := s.BuildReport(context.Background(), Scope{Since: at.Add(-time.Hour), Until: at.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Delivery
	if c.Deliveries != 5 || c.TLSDeliveries != 3 || c.ForwardSecret != 3 || c.Attempts != 12 || c.TLSAttempts != 7 ||
		c.Deferred != 6 || c.Bounced != 1 {
		t.Errorf("counts %+v", c)
	}
	if c.ByDomain["nodns.example"] != 0 || c.ByDomain["bounce.example"] != 0 || c.ByDomain["retry.example"] != 1 ||
		c.TLSByDomain["retry.example"] != 1 || c.DeferredByDomain["nodns.example"] != 2 {
		t.Errorf("by domain %v, TLS %v, deferred %v", c.ByDomain, c.TLSByDomain, c.DeferredByDomain)
	}
	if c.ByStatus["deferred"] != 6 || c.ByLevel[string(maillog.LevelTrusted)] != 3 || c.ByLevel[string(maillog.LevelNone)] != 2 {
		t.Errorf("by status %v, by level %v", c.ByStatus, c.ByLevel)
	}
}

// TestMigrationDropsOverlongFields: a database written by the parser
// without field limits loses its over-long rows and exactly their rollup
// counts when it is opened.
func TestMigrationDropsOverlongFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	old := &Store{DB: db, Path: path}
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 11; v++ { // the schema before this change (migration 12)
		if err := old.apply(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	// Rows as the writer of that time stored them (plain SQL: today's
	// writer also fills tables of later migrations).
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).Unix()
	huge := "u" + strings.Repeat("a", 10<<20) + ".example"
	stored := []struct{ qid, domain, relay, status, version, cipher, level string }{
		{"Q1", "ok.example", "none", "deferred", "", "", "none"},
		{"Q2", "ok.example", "mx.ok.example", "sent", "", "", "none"},
		{"Q3", huge, "", "sent", "", "", "none"},
		{"Q4", "ok.example", "", "sent", "TLSv1.3", strings.Repeat("X", 100), "trusted"},
	}
	for _, r := range stored {
		if _, err := db.ExecContext(ctx, `INSERT INTO deliveries (delivered_at, mta, queue_id, domain, relay_host,
			status, tls_version, cipher, tls_level) VALUES (?, 'postfix', ?, ?, ?, ?, ?, ?, ?)`,
			at, r.qid, r.domain, r.relay, r.status, r.version, r.cipher, r.level); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO hourly_deliveries VALUES (?, ?, ?, ?, ?, ?, 0, 1)
			ON CONFLICT DO UPDATE SET deliveries = deliveries + 1`,
			at/3600, r.domain, r.status, r.version, r.cipher, r.level); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rows, rolled, none int64
	var longest int
	if err := s.DB.QueryRow(`SELECT COUNT(*), MAX(length(domain)), SUM(relay_host = 'none') FROM deliveries`).Scan(&rows, &longest, &none); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.QueryRow(`SELECT SUM(deliveries) FROM hourly_deliveries`).Scan(&rolled); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || rolled != 2 || longest != len("ok.example") || none != 0 {
		t.Errorf("after migration: %d rows, %d in rollups, longest domain %d, %d relay none", rows, rolled, longest, none)
	}
}
