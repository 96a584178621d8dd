package main

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/measure"
)

// pgCount runs a count query on the database at dsn.
func pgCount(t *testing.T, dsn, q string, args ...any) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestServePostgres: serve --check and serve on a PostgreSQL URL. The
// daemon creates the schema, records every message under its node, keeps
// answering the milter while PostgreSQL is stopped (counting what it
// drops), and writes again once it is back; --check says when the server
// cannot be reached.
func TestServePostgres(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.CreateDB(t)
	shown := measure.Redact(dsn)
	dir := t.TempDir()
	dns := dnstest.Start(t, corpus.Zone())

	out, code := runAs(t, -1, -1, "serve", "--check", "--config", emptyConf(t, dir), "--db", dsn,
		"--milter", "unix:"+dir+"/milter.sock", "--dns", dns.Addr)
	for _, want := range []string{"ok    database " + shown + ": opens; empty: serve creates schema",
		"ok    database " + shown + ": writable"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--check on an empty database (exit %d) lacks %q:\n%s", code, want, out)
		}
	}

	d := startDaemon(t, dir, dns.Addr, "--db", dsn, "--node", "mx-a", "--queue-size", "300")
	stop := make(chan struct{})
	accepted, wg := load(d.sock, 4, stop)
	defer func() { close(stop); wg.Wait() }()
	waitRows := func(what string, min int64) int64 {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			n := pgCount(t, dsn, `SELECT COUNT(*) FROM messages WHERE node = 'mx-a'`)
			if n >= min {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d messages stored, want %d\n%s", what, n, min, d.log)
			}
		}
	}
	waitRows("before the outage", 100)

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	// Mail flows while the database is down: the milter keeps answering.
	down := accepted.Load()
	for accepted.Load() < down+500 {
		select {
		case err := <-d.done:
			t.Fatalf("daemon exited while PostgreSQL was down: %v\n%s", err, d.log)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	back := pgCount(t, dsn, `SELECT COUNT(*) FROM messages`)
	waitRows("after the outage", back+100)

	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	stored := pgCount(t, dsn, `SELECT COUNT(*) FROM messages WHERE node = 'mx-a'`)
	rolled := pgCount(t, dsn, `SELECT COALESCE(SUM(messages), 0) FROM hourly_messages WHERE node = 'mx-a'`)
	if stored != rolled || stored >= accepted.Load() {
		t.Errorf("%d messages stored, %d in the rollup, %d answered: want equal rows and rollup, and drops during the outage",
			stored, rolled, accepted.Load())
	}
	// The drops are counted (the queue's and failed batches'), and said
	// at exit.
	if m := regexp.MustCompile(`msg=flushed written=\d+ dropped=(\d+)`).FindStringSubmatch(d.log.String()); m == nil || m[1] == "0" {
		t.Errorf("no drops counted at exit (%d messages answered, %d stored):\n%s", accepted.Load(), stored, d.log)
	}

	out, code = runAs(t, -1, -1, "serve", "--check", "--config", emptyConf(t, dir), "--db", dsn,
		"--milter", "unix:"+dir+"/milter.sock", "--dns", dns.Addr)
	if want := "is current"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("--check on the migrated database (exit %d) lacks %q:\n%s", code, want, out)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	out, code = runAs(t, -1, -1, "serve", "--check", "--config", emptyConf(t, dir), "--db", dsn,
		"--milter", "unix:"+dir+"/milter.sock", "--dns", dns.Addr)
	if want := "FAIL  database " + shown + ": measure: " + shown + ": failed to connect"; code != 1 || !strings.Contains(out, want) {
		t.Errorf("--check with PostgreSQL down (exit %d) lacks %q:\n%s", code, want, out)
	}
	if err := c.Start(); err != nil { // the database is dropped at cleanup
		t.Fatal(err)
	}
}
