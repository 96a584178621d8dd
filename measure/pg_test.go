package measure

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/tlsinfo"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openPG opens a store on a new database of the package's PostgreSQL
// cluster.
func openPG(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRebind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{`VALUES (?,?,?)`, `VALUES ($1,$2,$3)`},
		{`SELECT '?', "a?b", ? -- what?` + "\n" + `, ? /* ? */ , ?`, `SELECT '?', "a?b", $1 -- what?` + "\n" + `, $2 /* ? */ , $3`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{`SELECT 'open ?`, `SELECT 'open ?`},
		{`SELECT a FROM t WHERE r = ?1 UNION ALL SELECT b FROM u WHERE r = ?1`, `SELECT a FROM t WHERE r = $1 UNION ALL SELECT b FROM u WHERE r = $1`},
	} {
		if got := Rebind(c.in); got != c.want {
			t.Errorf("Rebind(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestIsPostgresAndRedact(t *testing.T) {
	for dsn, want := range map[string]bool{
		"postgres://u@h/db": true, "postgresql://h/db": true, "/var/lib/snowrain/snowrain.db": false,
		"postgres.db": false, "file:postgres://x": false,
	} {
		if IsPostgres(dsn) != want {
			t.Errorf("IsPostgres(%q) = %v", dsn, !want)
		}
	}
	for in, want := range map[string]string{
		"postgres://snow:secret@db.example/snowrain":               "postgres://snow:xxxxx@db.example/snowrain",
		"postgres://snow@db.example/snowrain?password=secret&x=1":  "postgres://snow@db.example/snowrain?password=xxxxx&x=1",
		"/var/lib/snowrain/snowrain.db":                            "/var/lib/snowrain/snowrain.db",
		"postgres://snow@/snowrain?host=%2Fvar%2Frun%2Fpostgresql": "postgres://snow@/snowrain?host=%2Fvar%2Frun%2Fpostgresql",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPostgresEditsApply: every SQLite text a PostgreSQL edit replaces is
// in its migration (an edit that no longer matches would leave SQLite SQL
// in the PostgreSQL text).
func TestPostgresEditsApply(t *testing.T) {
	for v, edits := range pgEdits {
		for _, e := range edits {
			if !strings.Contains(migrations[v-1], e.sqlite) {
				t.Errorf("migration %d lacks %q", v, e.sqlite)
			}
		}
	}
}

type column struct {
	Name, Type string
	PK         int // position in the primary key, 1-based; 0: not in it
}

// schemaOf lists every table's columns, types reduced to integer, text
// and real, and primary keys.
func schemaOf(t *testing.T, s *Store) map[string][]column {
	t.Helper()
	ctx := context.Background()
	out := map[string][]column{}
	var tables []string
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if s.Dialect() == Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	rows, err := s.DB.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	for _, table := range tables {
		var cols []column
		if s.Dialect() == Postgres {
			rows, err = s.DB.QueryContext(ctx, `SELECT c.column_name, c.data_type, COALESCE(k.ordinal_position, 0)
				FROM information_schema.columns c
				LEFT JOIN information_schema.table_constraints tc ON tc.table_schema = c.table_schema
					AND tc.table_name = c.table_name AND tc.constraint_type = 'PRIMARY KEY'
				LEFT JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name
					AND k.table_schema = c.table_schema AND k.table_name = c.table_name AND k.column_name = c.column_name
				WHERE c.table_schema = current_schema() AND c.table_name = ?`, table)
		} else {
			rows, err = s.DB.QueryContext(ctx, `SELECT name, type, pk FROM pragma_table_info(?)`, table)
		}
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c column
			if err := rows.Scan(&c.Name, &c.Type, &c.PK); err != nil {
				t.Fatal(err)
			}
			switch strings.ToLower(c.Type) {
			case "integer", "bigint":
				c.Type = "integer"
			case "text":
				c.Type = "text"
			case "real", "double precision":
				c.Type = "real"
			}
			cols = append(cols, c)
		}
		rows.Close()
		slices.SortFunc(cols, func(a, b column) int { return strings.Compare(a.Name, b.Name) })
		out[table] = cols
	}
	return out
}

// TestSchemasMatch: all migrations applied on SQLite and on PostgreSQL
// give the same tables, columns, types and primary keys.
func TestSchemasMatch(t *testing.T) {
	lite, pg := openTemp(t), openPG(t)
	for _, s := range []*Store{lite, pg} {
		if v, err := s.SchemaVersion(context.Background()); err != nil || v != len(migrations) {
			t.Fatalf("%s: schema %d (%v), want %d", s.Dialect(), v, err, len(migrations))
		}
	}
	a, b := schemaOf(t, lite), schemaOf(t, pg)
	if len(a) < 20 {
		t.Fatalf("SQLite schema has %d tables", len(a))
	}
	for table, cols := range a {
		if !slices.Equal(cols, b[table]) {
			t.Errorf("table %s:\nsqlite   %v\npostgres %v", table, cols, b[table])
		}
	}
	for table := range b {
		if _, ok := a[table]; !ok {
			t.Errorf("table %s only in PostgreSQL", table)
		}
	}
}

// TestMigrateConcurrentPostgres: nodes starting at once against one empty
// database migrate it once, without errors.
func TestMigrateConcurrentPostgres(t *testing.T) {
	dsn := pgtest.DB(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	s, err := OpenReadOnly(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n, v int
	s.DB.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &v)
	if n != len(migrations) || v != len(migrations) {
		t.Errorf("%d migration rows up to %d, want %d", n, v, len(migrations))
	}
	if _, err := s.DB.Exec(`INSERT INTO policy_forgotten VALUES ('x.example', 1)`); err == nil {
		t.Error("a read-only store wrote")
	}
	if err := s.CheckWritable(context.Background()); err != nil {
		t.Errorf("CheckWritable: %v", err)
	}
}

// corpus is a varied mix of every writer event: both directions, with
// and without TLS, every verdict the report counts, several signatures
// per message, over three hours.
func corpus(n int, base time.Time) []Event {
	var evs []Event
	versions := []string{"", "TLSv1.2", "TLSv1.3"}
	ciphers := map[string]string{"": "", "TLSv1.2": "ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.3": "TLS_AES_256_GCM_SHA384"}
	spf := []string{"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}
	dkim := []string{"pass", "fail", "none", "temperror", "permerror", "policy", "neutral"}
	classes := []string{"", "body_hash", "key_missing", "expired", "other"}
	for i := range n {
		at := base.Add(time.Duration(i%180) * time.Minute).Add(time.Duration(i) * time.Millisecond)
		v := versions[i%3]
		dir := Direction("inbound")
		if i%4 == 3 {
			dir = "outbound"
		}
		m := &Message{ConnUID: fmt.Sprintf("c%d", i/2), Received: at, Direction: dir, QueueID: fmt.Sprintf("Q%06d", i),
			ClientIP: fmt.Sprintf("192.0.2.%d", i%17), MailFromDomain: fmt.Sprintf("s%d.example", i%11),
			RcptDomains: []string{"example.net", fmt.Sprintf("r%d.example", i%3)}, RcptCount: 1 + i%3,
			FromDomain: fmt.Sprintf("f%d.example", i%7), FromClass: "single", Size: int64(1000 + i),
			TLSVersion: v, Cipher: ciphers[v], ForwardSecret: v != "" && i%5 != 0,
			SPFResult: auth.SPFStatus(spf[i%len(spf)]), SPFDomain: "s.example", HeloSPFResult: "none", DKIMResult: auth.DKIMStatus(dkim[i%len(dkim)]),
			DMARCResult: auth.DMARCStatus([]string{"pass", "fail", "none"}[i%3]), DMARCPolicy: auth.DMARCPolicy([]string{"reject", "none", "quarantine"}[i%3]),
			DMARCDisposition: "none", DMARCRecord: "s.example", SPFAligned: i%2 == 0, DKIMAligned: i%3 == 0,
			AuthClass: auth.AuthMethods([]string{"dkim_and_spf", "spf_only", "dkim_only", "none"}[i%4]), Action: Action([]string{"accept", "accept", "reject", "tempfail"}[i%4])}
		if i%9 == 0 {
			m.MailFromDomain = ""
		}
		if i%13 == 0 {
			m.FailOpen = "dns_budget,dkim_budget"
		}
		if i%10 == 0 {
			m.MailFromLocal, m.DMARCPublished = "alice", "v=DMARC1; p=reject; rua=mailto:d@s.example"
		}
		if m.SPFResult == "temperror" {
			m.SPFClass = "timeout"
		}
		for j := range i % 4 {
			m.Signatures = append(m.Signatures, Signature{Domain: fmt.Sprintf("d%d.example", j), Selector: "s",
				Algorithm: "rsa-sha256", KeyBits: 1024 << (j % 2), Result: auth.DKIMStatus(dkim[(i+j)%len(dkim)]), Class: auth.DKIMClass(classes[(i+j)%len(classes)]),
				Detail: fmt.Sprintf("detail %d", j)})
			if (i+j)%11 == 0 { // COPY's text format gives these a meaning
				m.Signatures[j].Detail = "tab\tnewline\ncr\rbackslash\\N quote' \"dq\" \\."
			}
		}
		evs = append(evs, m)
		if i%2 == 1 {
			evs = append(evs, &Connection{UID: fmt.Sprintf("c%d", i/2), Started: at.Add(-time.Second), Ended: at,
				Direction: dir, MTA: "postfix", Daemon: "smtpd", ClientIP: m.ClientIP,
				ClientPTR: []string{"", "mail-a1.google.com", "x.outlook.com"}[i%3], Helo: fmt.Sprintf("helo%d.example.org", i%5),
				TLSVersion: v, Cipher: ciphers[v], CipherBits: 128, KeyExchange: "X25519", BulkCipher: "AES-256-GCM",
				MAC: "AEAD", ForwardSecret: m.ForwardSecret, ClientCert: i%7 == 0, CertVerify: "NONE",
				Authenticated: dir == "outbound", Messages: 2})
		}
		if i%50 == 7 {
			evs = append(evs, &Downgrade{At: at, Direction: dir, PeerKind: "domain", Peer: m.MailFromDomain, TLSBefore: 5, Window: 10})
		}
		if i%20 == 3 {
			evs = append(evs, &PolicyDecision{At: at, Domain: fmt.Sprintf("r%d.example", i%3), Source: "mta-sts",
				Answer: "secure match=mx.example", Latency: time.Duration(i) * time.Microsecond})
		}
		if i%40 == 5 {
			evs = append(evs, &MTASTSPolicy{Domain: fmt.Sprintf("r%d.example", i%3), ID: fmt.Sprint(i), Mode: "enforce",
				MX: []string{"mx.example", "*.example"}, MaxAge: 24 * time.Hour, Fetched: at, Text: "version: STSv1"})
		}
	}
	return evs
}

// deliveries reads the maillog package's real and TLS-failure logs
// (Postfix and Sendmail) into the store, as the log follower does.
func ingestLogs(t *testing.T, s *Store) {
	t.Helper()
	for _, name := range []string{"postfix37-real.log", "tlsfail-postfix37.log", "sendmail.log", "tlsfail-sendmail.log", "postfix311.log"} {
		f, err := os.Open(filepath.Join("maillog", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		p := maillog.NewParser()
		p.Loc = time.UTC
		p.Now = func() time.Time { return time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC) }
		if _, err := s.IngestReader(context.Background(), f, p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f.Close()
	}
	ds := []*maillog.Delivery{{Time: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC), MTA: "postfix", QueueID: "QX",
		Domain: "tls.example", RelayHost: "mx.tls.example", RelayIP: "192.0.2.1", RelayPort: 25, Status: "sent",
		DSN: "2.0.0", Delay: 0.25, TLSVersion: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", CipherBits: 128,
		Level: maillog.LevelTrusted, Suite: tlsinfo.Parse("TLS_AES_128_GCM_SHA256")}}
	outs := []*maillog.TLSOutcome{{Session: "s1", Result: "certificate-expired", Reason: "expired"}}
	if err := s.RecordDeliveriesTLS(context.Background(), ds, outs, &LogPosition{Source: "/var/log/mail.log", Inode: 42, Offset: 1 << 40}); err != nil {
		t.Fatal(err)
	}
}

// write sends evs through a Writer of node into s.
func write(t *testing.T, s *Store, node string, batch int, evs []Event) {
	t.Helper()
	if err := writeEvents(s, node, batch, evs); err != nil {
		t.Fatal(err)
	}
}

func writeEvents(s *Store, node string, batch int, evs []Event) error {
	w := NewWriter(s, WriterConfig{QueueSize: len(evs) + 1, BatchSize: batch, Interval: 10 * time.Millisecond, Node: node})
	for _, ev := range evs {
		if !w.Enqueue(ev) {
			return fmt.Errorf("queue full")
		}
	}
	if err := w.Close(context.Background()); err != nil {
		return err
	}
	if st := w.Stats(); st.Dropped != 0 || st.Written != int64(len(evs)) {
		return fmt.Errorf("writer %s: %+v, want %d written", node, st, len(evs))
	}
	return nil
}

// dump renders every row of the record tables, ids left out (each
// backend draws its own) and links followed instead.
func dump(t *testing.T, s *Store) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for name, q := range map[string]string{
		"messages":         `SELECT * FROM messages`,
		"signatures":       `SELECT m.queue_id, s.* FROM signatures s JOIN messages m ON m.id = s.message_id`,
		"connections":      `SELECT * FROM connections`,
		"deliveries":       `SELECT * FROM deliveries`,
		"delivery_tls":     `SELECT d.queue_id, d.domain, d.status, t.* FROM delivery_tls t JOIN deliveries d ON d.id = t.delivery_id`,
		"downgrades":       `SELECT * FROM downgrades`,
		"policy_decisions": `SELECT * FROM policy_decisions`,
		"mta_sts_policies": `SELECT * FROM mta_sts_policies`,
		"log_positions":    `SELECT source, inode, "offset" FROM log_positions`,
		"hourly_messages":  `SELECT * FROM hourly_messages`,
		"hourly_peers":     `SELECT * FROM hourly_peers`,
		"hourly_clients":   `SELECT * FROM hourly_clients`,
		"hourly_dkim":      `SELECT * FROM hourly_dkim_results`,
		"hourly_dkim_fail": `SELECT * FROM hourly_dkim_failures`,
		"hourly_deliv":     `SELECT * FROM hourly_deliveries`,
		"hourly_providers": `SELECT * FROM hourly_providers`,
	} {
		rows, err := s.DB.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var line []string
			for i, c := range cols {
				if c == "id" || c == "message_id" || c == "delivery_id" {
					continue
				}
				switch v := vals[i].(type) {
				case []byte:
					vals[i] = string(v)
				}
				line = append(line, fmt.Sprintf("%s=%v", c, vals[i]))
			}
			out[name] = append(out[name], strings.Join(line, " "))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		slices.Sort(out[name])
	}
	return out
}

func reportJSON(t *testing.T, s *Store, since, until time.Time) string {
	t.Helper()
	r, err := s.BuildReport(context.Background(), Scope{Since: since, Until: until})
	if err != nil {
		t.Fatalf("%s: %v", s.Dialect(), err)
	}
	b, _ := json.MarshalIndent(r, "", " ")
	prov, err := s.ProviderRows(context.Background(), Scope{Since: time.Unix(0, 0), Until: time.Unix(1<<40, 0)})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(prov, func(a, b ProviderRow) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	last, ok, err := s.LatestActivity(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s\nproviders %v\nlatest %v %v", b, prov, last, ok)
}

// TestIngestSameOnBoth: the same events and logs written into SQLite and
// PostgreSQL give the same rows, the same rollups and the same report.
func TestIngestSameOnBoth(t *testing.T) {
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	evs := corpus(3000, base)
	lite, pg := openTemp(t), openPG(t)
	for _, s := range []*Store{lite, pg} {
		write(t, s, "mx1", 250, evs)
		ingestLogs(t, s)
	}
	a, b := dump(t, lite), dump(t, pg)
	for table, rows := range a {
		if len(rows) == 0 {
			t.Errorf("%s: no rows written", table)
		}
		if !slices.Equal(rows, b[table]) {
			n := min(len(rows), len(b[table]))
			for i := range n {
				if rows[i] != b[table][i] {
					t.Errorf("%s row %d:\nsqlite   %s\npostgres %s", table, i, rows[i], b[table][i])
					break
				}
			}
			t.Errorf("%s: %d rows in SQLite, %d in PostgreSQL", table, len(rows), len(b[table]))
		}
	}
	since, until := base.Add(-48*time.Hour), base.Add(48*time.Hour)
	ra, rb := reportJSON(t, lite, since, until), reportJSON(t, pg, since, until)
	if ra != rb {
		t.Errorf("reports differ:\nsqlite:\n%s\npostgres:\n%s", ra, rb)
	}
	if !strings.Contains(ra, `"messages": 2250`) || !strings.Contains(ra, `"deliveries"`) {
		t.Errorf("report without the corpus:\n%s", ra)
	}
	for _, s := range []*Store{lite, pg} {
		if n, err := s.Prune(context.Background(), time.Since(base.Add(time.Hour))); err != nil || n["messages"] == 0 {
			t.Errorf("%s: prune %v, %v", s.Dialect(), n, err)
		}
		if err := s.Vacuum(context.Background()); err != nil {
			t.Errorf("%s: vacuum: %v", s.Dialect(), err)
		}
	}
	if ra, rb := reportJSON(t, lite, since, until), reportJSON(t, pg, since, until); ra != rb {
		t.Errorf("reports differ after prune:\nsqlite:\n%s\npostgres:\n%s", ra, rb)
	}
	for _, s := range []*Store{lite, pg} {
		p, ok, err := s.LogPosition(context.Background(), "/var/log/mail.log")
		if err != nil || !ok || p.Inode != 42 || p.Offset != 1<<40 {
			t.Errorf("%s: log position %+v %v %v", s.Dialect(), p, ok, err)
		}
	}
}

// TestThreeNodesOneDatabase: three writers of three nodes, at once, into
// one PostgreSQL database give the sum: per node what each wrote, in
// total what one SQLite store given everything holds.
func TestThreeNodesOneDatabase(t *testing.T) {
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	dsn := pgtest.DB(t)
	nodes := []string{"mx1", "mx2", "mx3"}
	shares := make([][]Event, 3)
	all := corpus(3000, base)
	for i, ev := range all {
		shares[i%3] = append(shares[i%3], ev)
	}
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A store of its own per node, as on three machines.
			s, err := Open(context.Background(), dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			s.Node = node
			// Small batches of events that share rollup rows: the
			// nodes' upserts meet on the same keys.
			if err := writeEvents(s, "", 40, shares[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	pg, err := OpenReadOnly(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	lite := openTemp(t)
	write(t, lite, "one", 500, all)

	since, until := base.Add(-time.Hour), base.Add(5*time.Hour)
	if ra, rb := reportJSON(t, lite, since, until), reportJSON(t, pg, since, until); ra != rb {
		t.Errorf("fleet report differs from the single store's:\nsqlite:\n%s\npostgres:\n%s", ra, rb)
	}
	for i, node := range nodes {
		var want int64
		for _, ev := range shares[i] {
			if _, ok := ev.(*Message); ok {
				want++
			}
		}
		var rolled, rows int64
		pg.DB.QueryRow(`SELECT SUM(messages) FROM hourly_messages WHERE node = ?`, node).Scan(&rolled)
		pg.DB.QueryRow(`SELECT COUNT(*) FROM messages WHERE node = ?`, node).Scan(&rows)
		if rolled != want || rows != want {
			t.Errorf("node %s: %d messages in the rollup, %d rows; want %d", node, rolled, rows, want)
		}
	}
}

// TestPostgresDownMidLoad: PostgreSQL stopped while mail comes in: every
// Enqueue returns at once, what cannot be written is counted as dropped,
// and the writer writes again once the server is back.
func TestPostgresDownMidLoad(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	s, err := Open(context.Background(), c.CreateDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := NewWriter(s, WriterConfig{QueueSize: 200, BatchSize: 50, Interval: 10 * time.Millisecond, Retries: 1})
	base := time.Now().Truncate(time.Hour)
	sent := 0
	send := func(prefix string, n int) {
		for i := range n {
			m := sampleMessage(i)
			m.QueueID = fmt.Sprintf("%s%d", prefix, i)
			m.Received = base
			w.Enqueue(m)
			sent++
		}
	}
	waitFor := func(what string, cond func(WriterStats) bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); !cond(w.Stats()); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v", what, w.Stats())
			}
		}
	}
	send("before", 100)
	waitFor("the first records written", func(st WriterStats) bool { return st.Written == 100 })

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	// The load goes on while the server is down: Enqueue never waits
	// for it (this loop would not end), the queue fills and drops.
	for st := w.Stats(); st.FailedBatches == 0 || st.Dropped <= int64(w.cfg.QueueSize); st = w.Stats() {
		send("down", 100)
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Whatever was queued when the server came back may or may not make
	// it; records sent from now on are written.
	waitFor("the writer idle", func(st WriterStats) bool { return st.Written+st.Dropped == int64(sent) })
	before := w.Stats()
	send("after", 150)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Written+st.Dropped != int64(sent) || st.Written-before.Written != 150 || st.Dropped == 0 {
		t.Errorf("stats %+v (before the last 150: %+v) of %d sent", st, before, sent)
	}
	var rows, after, rolled int64
	s.DB.QueryRow(`SELECT COUNT(*), SUM(CASE WHEN queue_id LIKE 'after%' THEN 1 ELSE 0 END) FROM messages`).Scan(&rows, &after)
	s.DB.QueryRow(`SELECT SUM(messages) FROM hourly_messages`).Scan(&rolled)
	if rows != st.Written || rolled != st.Written || after != 150 {
		t.Errorf("%d messages stored (%d of the last 150), %d in the rollup; the writer counted %d written",
			rows, after, rolled, st.Written)
	}
}

// TestPostgresHostileText: text PostgreSQL refuses (invalid UTF-8, NUL)
// is stored mended, and the rest of its batch with it: one hostile header
// must not cost a batch of records.
func TestPostgresHostileText(t *testing.T) {
	s := openPG(t)
	m := sampleMessage(1)
	m.QueueID = "hostile"
	m.FromDomain = "bad\xff\xfe.example"
	m.MailFromDomain = "nul\x00.example"
	m.Signatures[0].Detail = "x\xc3(\x00y"
	c := &Connection{UID: "c0", Started: m.Received, Ended: m.Received, Direction: "inbound", Helo: "helo\x00\xff", Messages: 1}
	write(t, s, "mx1", 10, []Event{sampleMessage(0), m, c, sampleMessage(2)})
	var from, mailFrom, detail, helo string
	if err := s.DB.QueryRow(`SELECT m.from_domain, m.mail_from_domain, s.detail FROM messages m
		JOIN signatures s ON s.message_id = m.id WHERE m.queue_id = 'hostile'`).Scan(&from, &mailFrom, &detail); err != nil {
		t.Fatal(err)
	}
	s.DB.QueryRow(`SELECT helo FROM connections`).Scan(&helo)
	if from != "bad\uFFFD.example" || mailFrom != "nul.example" || detail != "x\uFFFD(y" || helo != "helo\uFFFD" {
		t.Errorf("stored %q %q %q %q", from, mailFrom, detail, helo)
	}
	var peers int
	s.DB.QueryRow(`SELECT COUNT(*) FROM hourly_peers WHERE domain = ?`, "nul\x00.example").Scan(&peers)
	if peers != 1 {
		t.Errorf("the rollup's mended key is not found by the same text: %d rows", peers)
	}
}
