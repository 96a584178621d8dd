package policy

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// dbLock holds an exclusive lock on the SQLite file at path from another
// connection, as a long report query, a backup or an admin's sqlite3
// shell does, until release (or, as a safety net, a minute).
type dbLock struct {
	held    atomic.Bool
	release chan struct{}
	done    chan struct{}
}

func lockDB(t *testing.T, path string) *dbLock {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "INSERT INTO policy_forgotten VALUES ('lock.example', 0)"); err != nil {
		t.Fatal(err)
	}
	l := &dbLock{release: make(chan struct{}), done: make(chan struct{})}
	l.held.Store(true)
	go func() {
		defer close(l.done)
		select {
		case <-l.release:
		case <-time.After(time.Minute):
		}
		l.held.Store(false)
		conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
		db.Close()
	}()
	t.Cleanup(l.unlock)
	return l
}

func (l *dbLock) unlock() {
	select {
	case <-l.release:
	default:
		close(l.release)
	}
	<-l.done
}

// TestDecisionsWhileDatabaseLocked: another connection holds the store
// locked (BEGIN EXCLUSIVE) far longer than the budget. Every decision
// still answers while the lock is held: records and fetched MTA-STS
// policies go through the asynchronous writer, and reach the store once
// the lock is gone.
func TestDecisionsWhileDatabaseLocked(t *testing.T) {
	w := newWorld(t)
	writer := measure.NewWriter(w.store, measure.WriterConfig{Interval: 50 * time.Millisecond})
	e := w.engine(Config{MTASTS: true, Budget: 2 * time.Second, DecisionSample: 1,
		Overrides: map[string]string{"bank.example": "verify"}})
	e.SetRecorder(writer)
	in := &Inbound{RequireTLS: []string{"bank.example"}, Recorder: writer, Budget: 300 * time.Millisecond}
	lock := lockDB(t, w.store.Path)
	for domain, want := range map[string]string{
		"bank.example":    "verify",
		"enforce.example": "secure match=mx.enforce.example:mx1.backup.example servername=hostname",
		"plain.example":   "",
	} {
		d := e.Decide(context.Background(), domain)
		if d.Answer != want || !lock.held.Load() {
			t.Errorf("%s: %q (%s), want %q while the store is locked (held: %v)", domain, d.Answer, d.Latency, want, lock.held.Load())
		}
		t.Logf("%s answered in %s with the store locked", domain, d.Latency)
	}
	for i := 0; i < 3; i++ {
		start := time.Now()
		a := in.Check(context.Background(), map[string]string{"sender": "a@bank.example"})
		if !strings.HasPrefix(a, "DEFER_IF_PERMIT") || !lock.held.Load() {
			t.Errorf("inbound: %q, held %v", a, lock.held.Load())
		}
		t.Logf("inbound decision in %s with the store locked", time.Since(start))
	}
	lock.unlock()
	if err := writer.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var decisions, sts int
	if err := w.store.DB.QueryRow(`SELECT COUNT(*) FROM policy_decisions`).Scan(&decisions); err != nil {
		t.Fatal(err)
	}
	if err := w.store.DB.QueryRow(`SELECT COUNT(*) FROM mta_sts_policies WHERE domain = 'enforce.example'`).Scan(&sts); err != nil {
		t.Fatal(err)
	}
	if decisions != 6 || sts != 1 {
		t.Errorf("after the lock: %d decisions and %d MTA-STS policies stored, want 6 and 1 (writer %+v)",
			decisions, sts, writer.Stats())
	}
}

// TestReadsPastTheBudget: in rollback-journal mode an exclusive lock
// blocks readers too, and SQLite's busy handler does not heed context
// cancellation. Decisions that need the store fail open at the budget
// (NOTFOUND, DUNNO), counted as deadline, while the lock is held; the
// lookups finish in the background and their answers serve the next
// callers.
func TestReadsPastTheBudget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rollback.db")
	st, err := measure.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Unix() / 3600
	st.DB.Exec(`INSERT INTO hourly_deliveries VALUES (?, 'learn.example', 'sent', 'TLSv1.3', 'X', 'verified', 1, 20, '')`, hour)
	st.DB.Exec(`INSERT INTO hourly_peers VALUES (?, 'inbound', 'tls-only.example', 20, 20, '')`, hour)
	st.DB.Exec(`PRAGMA journal_mode=DELETE`)
	st.Close()
	// Readers wait up to a minute for the lock, far past any budget.
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=60000")
	if err != nil {
		t.Fatal(err)
	}
	store, err := measure.OpenReadOnly(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	store.DB.Close()
	store.DB = db
	defer store.Close()
	engineFaults, inboundFaults := &counter{}, &counter{}
	// Failed lookups are cached for a tenth of CacheTTL.
	e := NewEngine(Config{Learn: LearnConfig{Enabled: true, MinDeliveries: 10, Days: 7}, Budget: 300 * time.Millisecond,
		CacheTTL: time.Second},
		nil, nil, store, nil)
	e.Classes = engineFaults.add
	defer e.Close()
	in := &Inbound{Learned: true, Store: store, Budget: 300 * time.Millisecond, Classes: inboundFaults.add}
	lock := lockDB(t, path)
	for i := 0; i < 3; i++ {
		d := e.Decide(context.Background(), "learn.example")
		if d.Answer != "" || d.Class != "deadline" || !lock.held.Load() {
			t.Errorf("decision %d: %q class %q in %s, held %v", i, d.Answer, d.Class, d.Latency, lock.held.Load())
		}
		t.Logf("decision %d failed open in %s (budget 300ms) with the store locked", i, d.Latency)
		start := time.Now()
		a := in.Check(context.Background(), map[string]string{"sender": "a@tls-only.example"})
		if a != "DUNNO" || !lock.held.Load() {
			t.Errorf("inbound %d: %q, held %v", i, a, lock.held.Load())
		}
		t.Logf("inbound %d failed open in %s (budget 300ms)", i, time.Since(start))
	}
	if engineFaults.get("deadline") != 3 || inboundFaults.get("deadline") != 3 {
		t.Errorf("deadlines counted: engine %d, inbound %d, want 3 each", engineFaults.get("deadline"), inboundFaults.get("deadline"))
	}
	// Concurrent callers share one lookup: one goroutine per domain waits
	// on the lock, not one per request.
	if n := e.flights.running(); n != 1 {
		t.Errorf("%d lookups in flight, want 1", n)
	}
	lock.unlock()
	deadline := time.Now().Add(time.Minute)
	for {
		d := e.Decide(context.Background(), "learn.example")
		a := in.Check(context.Background(), map[string]string{"sender": "a@tls-only.example"})
		if d.Answer == "encrypt" && strings.HasPrefix(a, "DEFER_IF_PERMIT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the lock: %q %q", d.Answer, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
