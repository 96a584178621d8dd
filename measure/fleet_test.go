package measure

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/tlsinfo"
)

// openDSN opens the store at dsn for t.
func openDSN(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// exec runs statements that must succeed.
func exec(t testing.TB, s *Store, q string, args ...any) {
	t.Helper()
	if _, err := s.DB.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// fill writes rows into every table of the store, at times from base on,
// with names of their own (tag) where a table is keyed by name: the
// writer's events, deliveries with their TLS outcomes and log position,
// the policy tables, sent and received reports, and a scan run.
func fill(t *testing.T, s *Store, base time.Time, tag string) {
	t.Helper()
	write(t, s, s.Node, 100, corpus(300, base))
	var ds []*maillog.Delivery
	var outs []*maillog.TLSOutcome
	for i := range 20 {
		d := &maillog.Delivery{Time: base.Add(time.Duration(i) * time.Minute), MTA: "postfix", QueueID: fmt.Sprintf("D%s%d", tag, i),
			Domain: fmt.Sprintf("to%d.example", i%4), RelayHost: fmt.Sprintf("mx%d.%s.example", i%2, tag), RelayIP: "192.0.2.9",
			RelayPort: 25, Status: []maillog.Status{maillog.StatusSent, maillog.StatusSent, maillog.StatusDeferred, maillog.StatusBounced}[i%4],
			DSN: "2.0.0", Delay: float64(i) / 4, Level: maillog.LevelNone}
		if i%3 != 0 {
			d.TLSVersion, d.Cipher, d.CipherBits, d.Level = "TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, maillog.LevelVerified
			d.Suite = tlsinfo.Parse(d.Cipher)
		}
		ds = append(ds, d)
		var o *maillog.TLSOutcome
		if i%2 == 0 {
			o = &maillog.TLSOutcome{Session: fmt.Sprintf("smtp[%d]@%d.0", i, base.Unix()), Result: "", Reason: ""}
			if i%4 == 2 {
				o.Result, o.Reason = "certificate-expired", "expired"
			}
		}
		outs = append(outs, o)
	}
	if err := s.RecordDeliveriesTLS(context.Background(), ds, outs, &LogPosition{Source: "/var/log/mail.log", Inode: 7, Offset: int64(len(tag))}); err != nil {
		t.Fatal(err)
	}
	at := base.Unix()
	exec(t, s, `INSERT INTO policy_forgotten (domain, forgotten_at) VALUES (?, ?)`, tag+".example", at)
	exec(t, s, `INSERT INTO policy_overrides (domain, policy, origin, imported_at) VALUES (?, 'encrypt', 'test', ?)`, tag+".example", at)
	exec(t, s, `INSERT INTO mta_sts_policies (domain, policy_id, mode, mx, max_age, fetched_at, expires_at, text)
		VALUES (?, '1', 'enforce', 'mx.example', 86400, ?, ?, 'version: STSv1')`, "mts-"+tag+".example", at, at+86400)
	exec(t, s, `INSERT INTO sent_reports (kind, domain, begin_at, end_at, report_id, destination, sent_at, status)
		VALUES ('dmarc', ?, ?, ?, 'r1', 'mailto:d@x.example', ?, 'sent')`, tag+".example", at-86400, at, at)
	for _, kind := range []string{"dmarc", "tlsrpt"} {
		var id int64
		if err := s.DB.QueryRow(`INSERT INTO received_reports (kind, org_name, report_id, contact, domain, begin_at, end_at, ingested_at)
			VALUES (?, ?, ?, 'c@x.example', 'ours.example', ?, ?, ?) RETURNING id`, kind, "org "+tag, "id-"+tag, at, at+86400, at).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if kind == "dmarc" {
			for i := range 2 {
				exec(t, s, `INSERT INTO received_dmarc_rows (report, source_ip, count, disposition, dkim, spf, header_from)
					VALUES (?, ?, ?, 'none', 'pass', 'fail', 'ours.example')`, id, fmt.Sprintf("192.0.2.%d", i), 3+i)
			}
			continue
		}
		exec(t, s, `INSERT INTO received_tls_policies (report, seq, policy_type, policy_domain, successful, failed)
			VALUES (?, 0, 'sts', 'ours.example', 10, 2)`, id)
		exec(t, s, `INSERT INTO received_tls_failures (report, seq, result_type, count) VALUES (?, 0, 'certificate-expired', 2)`, id)
	}
	var run int64
	if err := s.DB.QueryRow(`INSERT INTO scan_runs (started_at, finished_at, kind, input) VALUES (?, ?, 'domains', ?) RETURNING id`,
		at, at+60, tag+".txt").Scan(&run); err != nil {
		t.Fatal(err)
	}
	exec(t, s, `INSERT INTO scan_domains (run_id, domain, rank, result) VALUES (?, 'a.example', 1, '{}'), (?, 'b.example', 2, '{}')`, run, run)
	exec(t, s, `INSERT INTO scan_ips (run_id, ip, result) VALUES (?, '192.0.2.1', '{}')`, run)
	exec(t, s, `INSERT INTO scan_hosts (run_id, ip, result) VALUES (?, '192.0.2.2', '{}')`, run)
	exec(t, s, `INSERT INTO scan_resolvers (run_id, ip, result) VALUES (?, '192.0.2.3', '{}')`, run)
	exec(t, s, `INSERT INTO scan_sweeps (run_id, shard, shards, targets, seed, next_step, tried) VALUES (?, 0, 1, '192.0.2.0/24', 1, 256, 256)`, run)
}

// counts are the rows of every table.
func counts(t testing.TB, s *Store) map[string]int64 {
	t.Helper()
	tables, err := s.Tables(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, table := range tables {
		var n int64
		if err := s.DB.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

// TestPruneEveryTable: a store holding old and recent rows in every
// table, pruned, holds what a store given only the recent ones holds;
// every table has a retention or is named as kept, on both backends.
func TestPruneEveryTable(t *testing.T) {
	pgtest.EachBackend(t, func(t *testing.T, dsn string) {
		now := time.Now().Truncate(time.Hour)
		both, recent := openDSN(t, dsn), openTemp(t)
		fill(t, both, now.Add(-6*24*time.Hour), "old")
		fill(t, both, now.Add(-time.Hour), "new")
		fill(t, recent, now.Add(-time.Hour), "new")
		before, want := counts(t, both), counts(t, recent)
		pruned := map[string]bool{}
		for _, st := range pruneSteps {
			pruned[st.table] = true
		}
		for table := range before {
			switch {
			case pruned[table] && slices.Contains(keptTables, table):
				t.Errorf("%s: both pruned and kept", table)
			case pruned[table]:
				if before[table] <= want[table] {
					t.Errorf("%s: %d rows with the old ones, %d without: the test fills no old row", table, before[table], want[table])
				}
			case !slices.Contains(keptTables, table):
				t.Errorf("%s: neither pruned nor named as kept (measure/prune.go)", table)
			}
		}
		n, err := both.Prune(context.Background(), 2*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		after := counts(t, both)
		for table, k := range after {
			switch {
			case pruned[table] && k != want[table]:
				t.Errorf("%s: %d rows after prune, want the recent %d", table, k, want[table])
			case pruned[table] && n[table] != before[table]-k:
				t.Errorf("%s: Prune says %d rows went, %d did", table, n[table], before[table]-k)
			case !pruned[table] && k != before[table]:
				t.Errorf("kept table %s: %d rows, had %d", table, k, before[table])
			}
		}
		// The report of the recent hours is untouched.
		since, until := now.Add(-2*time.Hour), now.Add(4*time.Hour)
		if a, b := reportJSON(t, both, since, until), reportJSON(t, recent, since, until); a != b {
			t.Errorf("report after prune differs from the recent store's:\n%s\n%s", a, b)
		}
	})
}

// dumpAll renders every row of every table a copy copies, without ids:
// a row pointing at a record names the record's content instead.
func dumpAll(t testing.TB, s *Store) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	parent := map[string]string{} // child table → its record table
	link := map[string]string{}   // child table → its column pointing there
	for _, ct := range copyTables {
		for _, k := range ct.children {
			parent[k.table], link[k.table] = ct.name, k.column
		}
	}
	content := map[string]map[int64]string{} // record table → id → row
	render := func(table string) {
		cols, err := columnsOfTable(ctx, s, table)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := readRows(ctx, s, `SELECT `+strings.Join(quoted(cols), ", ")+` FROM `+table, nil, len(cols))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			var line []string
			var id int64
			for i, c := range cols {
				v := r[i]
				switch {
				case c == "id":
					id = v.(int64)
					continue
				case c == "updated_at": // when a log position was written
					continue
				case c == link[table]:
					v = "→" + content[parent[table]][v.(int64)]
				}
				line = append(line, fmt.Sprintf("%s=%v", c, v))
			}
			text := strings.Join(line, " ")
			if content[table] != nil {
				content[table][id] = text
			}
			out[table] = append(out[table], text)
		}
		slices.Sort(out[table])
	}
	for _, ct := range copyTables {
		if ct.id {
			content[ct.name] = map[int64]string{}
			render(ct.name)
		}
	}
	tables, err := s.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		if content[table] == nil && !slices.Contains(copySkipped, table) {
			render(table)
		}
	}
	return out
}

func sameDump(t *testing.T, what string, a, b map[string][]string) {
	t.Helper()
	for _, table := range slices.Sorted(maps.Keys(a)) {
		if !slices.Equal(a[table], b[table]) {
			t.Errorf("%s: table %s: %d rows and %d\n%s\n%s", what, table, len(a[table]), len(b[table]),
				strings.Join(a[table][:min(3, len(a[table]))], "\n"), strings.Join(b[table][:min(3, len(b[table]))], "\n"))
		}
	}
	if len(a) != len(b) {
		t.Errorf("%s: %d tables and %d", what, len(a), len(b))
	}
}

// TestCopyEveryTable: every table is copied or named as skipped, and a
// populated SQLite store copied into an empty PostgreSQL database and
// back gives the same rows (ids aside) and the same report.
func TestCopyEveryTable(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	lite := openTemp(t)
	fill(t, lite, base, "a")
	ingestLogs(t, lite)
	copied := map[string]bool{}
	for _, ct := range copyTables {
		copied[ct.name] = true
		for _, k := range ct.children {
			copied[k.table] = true
		}
	}
	tables, err := lite.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		if !copied[table] && !slices.Contains(copySkipped, table) {
			t.Errorf("%s: neither copied nor named as skipped (measure/copy.go)", table)
		}
	}
	pg := openPG(t)
	st, err := Copy(ctx, pg, lite, CopyOptions{Chunk: 100})
	if err != nil || !st.Done {
		t.Fatalf("copy: %+v, %v", st, err)
	}
	want := dumpAll(t, lite)
	for table, rows := range want {
		if len(rows) == 0 {
			t.Errorf("%s: the test fills no row", table)
		}
		if st.Rows[table] != int64(len(rows)) {
			t.Errorf("%s: copy says %d rows, the source has %d", table, st.Rows[table], len(rows))
		}
	}
	sameDump(t, "sqlite → postgres", want, dumpAll(t, pg))
	since, until := base.Add(-48*time.Hour), base.Add(48*time.Hour)
	if a, b := reportJSON(t, lite, since, until), reportJSON(t, pg, since, until); a != b {
		t.Errorf("reports differ:\n%s\n%s", a, b)
	}
	back := openTemp(t)
	if st, err := Copy(ctx, back, pg, CopyOptions{}); err != nil || !st.Done {
		t.Fatalf("copy back: %+v, %v", st, err)
	}
	sameDump(t, "postgres → sqlite", want, dumpAll(t, back))
	// Done is done: a second run copies nothing.
	if st, err := Copy(ctx, pg, lite, CopyOptions{}); err != nil || !st.Done || len(st.Rows) != 0 {
		t.Errorf("copy again: %+v, %v", st, err)
	}
	sameDump(t, "copied twice", want, dumpAll(t, pg))
}

// TestCopyResumes: a copy stopped at MaxRows, and one whose context ends
// mid-way, go on when run again, and end with what one run gives.
func TestCopyResumes(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	lite := openTemp(t)
	fill(t, lite, base, "a")
	want := dumpAll(t, lite)

	pg := openPG(t)
	runs := 0
	for {
		runs++
		st, err := Copy(ctx, pg, lite, CopyOptions{Chunk: 50, MaxRows: 400})
		if err != nil {
			t.Fatal(err)
		}
		if st.Done {
			break
		}
		if runs > 100 {
			t.Fatal("copy never done")
		}
	}
	if runs < 3 {
		t.Errorf("done in %d runs of 400 rows: the test copies too little to stop", runs)
	}
	sameDump(t, "resumed at MaxRows", want, dumpAll(t, pg))

	// Interrupted: the context ends after the second transaction of
	// messages, as a killed process's would.
	pg2 := openPG(t)
	cut, cancel := context.WithCancel(ctx)
	calls := 0
	_, err := Copy(cut, pg2, lite, CopyOptions{Chunk: 50, Progress: func(table string, _ int64) {
		if table == "messages" {
			if calls++; calls == 2 {
				cancel()
			}
		}
	}})
	if err == nil {
		t.Fatal("copy went on past its context")
	}
	var partial int64
	pg2.DB.QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&partial)
	if partial == 0 || partial >= int64(len(want["messages"])) {
		t.Errorf("%d messages copied before the interruption, of %d", partial, len(want["messages"]))
	}
	if st, err := Copy(ctx, pg2, lite, CopyOptions{Chunk: 50}); err != nil || !st.Done {
		t.Fatalf("resumed: %+v, %v", st, err)
	}
	sameDump(t, "resumed after interruption", want, dumpAll(t, pg2))
}

// TestCopyIntoFleet: a host's store copied into a database the fleet
// already writes adds up: records renumbered beside the fleet's, rollups
// summed, as if the host had written there all along; rows that name no
// node take the one given.
func TestCopyIntoFleet(t *testing.T) {
	// The host joins as a new node, or is a node that wrote its own
	// file before (its rollup rows then add to the fleet's).
	for _, node := range []string{"mx2", "mx1"} {
		t.Run(node, func(t *testing.T) {
			ctx := context.Background()
			base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
			host := openTemp(t)
			host.Node = "" // a store from before nodes
			fill(t, host, base, "host")
			fleet := openPG(t)
			fleet.Node = "mx1"
			fill(t, fleet, base, "fleet")
			// What one database given both would hold.
			both := openTemp(t)
			both.Node = "mx1"
			fill(t, both, base, "fleet")
			both.Node = node
			fill(t, both, base, "host")

			if st, err := Copy(ctx, fleet, host, CopyOptions{Node: node, Chunk: 64}); err != nil || !st.Done {
				t.Fatalf("copy: %+v, %v", st, err)
			}
			since, until := base.Add(-48*time.Hour), base.Add(48*time.Hour)
			if a, b := reportJSON(t, fleet, since, until), reportJSON(t, both, since, until); a != b {
				t.Errorf("fleet after the copy differs from one store given both:\n%s\n%s", a, b)
			}
			a, b := dumpAll(t, both), dumpAll(t, fleet)
			if node == "mx1" {
				// One position per node and log: the host's and the
				// fleet's name the same; written in the same second, the
				// destination's is kept (a tie is not newer).
				if want := "offset=5"; len(b["log_positions"]) != 1 || !strings.Contains(b["log_positions"][0], want) {
					t.Errorf("log position %v, want the fleet's (%s)", b["log_positions"], want)
				}
				delete(a, "log_positions")
				delete(b, "log_positions")
			}
			sameDump(t, "fleet after the copy", a, b)
			r, err := fleet.BuildReport(ctx, Scope{Since: since, Until: until, Node: node})
			if err != nil {
				t.Fatal(err)
			}
			want, _ := both.BuildReport(ctx, Scope{Since: since, Until: until, Node: node})
			if r.Inbound.Messages == 0 || fmt.Sprint(r) != fmt.Sprint(want) {
				t.Errorf("node %s after the copy: %+v\nwant %+v", node, r.Inbound, want.Inbound)
			}
		})
	}
}

// TestNodeScope: three nodes write one database; each node's report is
// the report of a store holding its share alone, and the fleet's is the
// report of one store holding everything, on both backends. The peers
// and hours every node saw add up.
func TestNodeScope(t *testing.T) {
	pgtest.EachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
		all := corpus(1500, base)
		shares := make([][]Event, 3)
		for i, ev := range all {
			shares[i%3] = append(shares[i%3], ev)
		}
		fleet := openDSN(t, dsn)
		one := openTemp(t)
		write(t, one, "solo", 200, all)
		since, until := base.Add(-time.Hour), base.Add(5*time.Hour)
		var sumIn int64
		peers := map[string]int64{}
		for i, share := range shares {
			node := fmt.Sprintf("mx%d", i+1)
			write(t, fleet, node, 60, share)
			alone := openTemp(t)
			write(t, alone, node, 60, share)
			got, err := fleet.BuildReport(ctx, Scope{Since: since, Until: until, Node: node})
			if err != nil {
				t.Fatal(err)
			}
			wr, _ := alone.BuildReport(ctx, Scope{Since: since, Until: until})
			wr.Node = node
			if fmt.Sprint(got) != fmt.Sprint(wr) {
				t.Errorf("node %s: report %+v\nwant %+v", node, got, wr)
			}
			sumIn += got.Inbound.Messages
			pt, err := fleet.PeerTraffic(ctx, Scope{Since: since, Until: until, Node: node})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pt {
				peers[p.Domain] += p.In
			}
		}
		whole, err := fleet.BuildReport(ctx, Scope{Since: since, Until: until})
		if err != nil {
			t.Fatal(err)
		}
		if whole.Inbound.Messages != sumIn || sumIn == 0 {
			t.Errorf("fleet %d inbound messages, nodes %d", whole.Inbound.Messages, sumIn)
		}
		if a, b := reportJSON(t, fleet, since, until), reportJSON(t, one, since, until); a != b {
			t.Errorf("fleet report differs from one store's:\n%s\n%s", a, b)
		}
		// Per peer and per hour, exact: the sum over nodes.
		pt, err := fleet.PeerTraffic(ctx, Scope{Since: since, Until: until})
		if err != nil {
			t.Fatal(err)
		}
		want, err := one.PeerTraffic(ctx, Scope{Since: since, Until: until})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(pt, want) {
			t.Errorf("peers:\nfleet %v\none   %v", pt, want)
		}
		shared := 0
		for _, p := range pt {
			if p.In != peers[p.Domain] {
				t.Errorf("peer %s: fleet %d, nodes' sum %d", p.Domain, p.In, peers[p.Domain])
			}
			if p.In > 0 {
				shared++
			}
		}
		if shared < 5 {
			t.Errorf("only %d peers: the corpus does not make nodes share peers", shared)
		}
		ht, err := fleet.HourlyTraffic(ctx, Scope{Since: since, Until: until})
		if err != nil {
			t.Fatal(err)
		}
		wantH, _ := one.HourlyTraffic(ctx, Scope{Since: since, Until: until})
		if !slices.Equal(ht, wantH) || len(ht) < 3 {
			t.Errorf("hours:\nfleet %v\none   %v", ht, wantH)
		}
		nodes, err := fleet.Nodes(ctx)
		if err != nil || !slices.Equal(nodes, []string{"mx1", "mx2", "mx3"}) {
			t.Errorf("nodes %v, %v", nodes, err)
		}
	})
}

// TestOpenServingUnreachable: a daemon's store whose PostgreSQL is down
// at start opens all the same, not ready; records queue (and drop,
// counted, beyond the queue) and are written once the server is up and
// the schema made.
func TestOpenServingUnreachable(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.CreateDB(t)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := OpenServing(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.IsReady() {
		t.Fatal("ready with the server down")
	}
	w := NewWriter(s, WriterConfig{QueueSize: 100, BatchSize: 10, Interval: 10 * time.Millisecond})
	sent := 0
	for i := range 150 {
		m := sampleMessage(i)
		m.QueueID = fmt.Sprint(i)
		w.Enqueue(m)
		sent++
	}
	if _, err := s.DeliveryHistory(ctx, []string{"x.example"}, 0); err == nil {
		t.Error("a read succeeded with the server down")
	}
	if st := w.Stats(); st.Written != 0 || st.Dropped != 50 || st.Queued != 100 {
		t.Errorf("with the server down: %+v, want 100 queued and 50 dropped", st)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Ready():
	case <-time.After(2 * time.Minute):
		t.Fatal("never ready after the server came back")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int64
	s.DB.QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&n)
	if st := w.Stats(); st.Written != 100 || n != 100 {
		t.Errorf("after: %+v, %d stored; want the 100 queued written", st, n)
	}

	// Never reached: Close drops and counts what was queued.
	c2 := pgtest.Start(t, pgtest.Options{})
	dsn2 := c2.CreateDB(t)
	c2.Stop()
	s2, err := OpenServing(ctx, dsn2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	w2 := NewWriter(s2, WriterConfig{QueueSize: 100})
	for i := range 30 {
		w2.Enqueue(sampleMessage(i))
	}
	if err := w2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := w2.Stats(); st.Dropped != 30 || st.Written != 0 {
		t.Errorf("closed before the server came: %+v", st)
	}
	c2.Start() // its database is dropped at cleanup
}
