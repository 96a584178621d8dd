package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"maps"
	"net"
	"net/smtp"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/miltertest"
	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/policy"
)

// sendThrough delivers c to the Postfix at addr over SMTP from c.ClientIP
// on loopback, with STARTTLS when c.TLS asks (the same suite for the same
// case every time).
func sendThrough(t *testing.T, addr string, c corpus.Case, roots *x509.CertPool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.ClientIP)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	cl, err := smtp.NewClient(conn, "mx.test.example")
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	defer cl.Close()
	steps := []func() error{func() error { return cl.Hello(c.Helo) }}
	if c.TLS != "" {
		cfg := &tls.Config{ServerName: "mx.test.example", RootCAs: roots, MinVersion: tls.VersionTLS13}
		if c.TLS == "1.2" {
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			cfg.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		}
		steps = append(steps, func() error { return cl.StartTLS(cfg) })
	}
	steps = append(steps, func() error { return cl.Mail(c.MailFrom) }, func() error { return cl.Rcpt(c.Rcpt) })
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatalf("%s: DATA: %v", c.Name, err)
	}
	w.Write(c.Message)
	if err := w.Close(); err != nil {
		t.Fatalf("%s: end of DATA: %v", c.Name, err)
	}
	cl.Quit()
}

// mxNode is one host of a test fleet: snowrain serve behind its own
// Postfix, whose smtpd_milters is the daemon's socket.
type mxNode struct {
	name string
	d    *daemon
	pf   *postfixtest.Instance
	sent int64 // messages sent to it
}

// startMX starts serve with db and node, and a Postfix in front of it.
func startMX(t *testing.T, name, db, dnsAddr, cert, key string) *mxNode {
	t.Helper()
	dir := sharedDir(t, 0)
	d := startServe(t, dir, serveConf(dir, dnsAddr, `socket_mode = "0666"`), true, "--db", db, "--node", name)
	pf := postfixtest.Start(t, postfixtest.Options{Milter: "unix:" + d.sock, CertFile: cert, KeyFile: key})
	return &mxNode{name: name, d: d, pf: pf}
}

// storedMessages is how many messages the store at db holds, of node or
// of all.
func storedMessages(t *testing.T, db, node string) int64 {
	t.Helper()
	s, err := measure.OpenReadOnly(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.BuildReport(context.Background(), measure.Scope{Since: time.Now().Add(-24 * time.Hour),
		Until: time.Now().Add(24 * time.Hour), Node: node})
	if err != nil {
		t.Fatal(err)
	}
	return r.Inbound.Messages
}

// reportDoc is a JSON report without what differs between two runs of
// the same mail: its meta (host, time) and the downgrades detected as
// they happened (each node's detector sees its own connections, at its
// own times).
func reportDoc(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out := run(t, append([]string{"report", "--format", "json"}, args...)...)
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	delete(doc, "meta")
	tables := doc["tables"].([]any)
	doc["tables"] = slices.DeleteFunc(tables, func(tb any) bool { return tb.(map[string]any)["id"] == "detected_downgrades" })
	return doc
}

func jsonText(v any) string {
	b, _ := json.MarshalIndent(v, "", " ")
	return string(b)
}

// TestFleetThreeNodes: three `snowrain serve` nodes behind three real
// Postfix instances write one PostgreSQL database while the corpus is
// sent, split across them (twice, so that every peer is seen by more than
// one node); a fourth serve writes the same mail into SQLite alone. The
// fleet's report is the single store's, section by section; narrowed to
// a node it counts what that node was sent, and the nodes add up to the
// fleet. Then `db copy` moves the SQLite store into another PostgreSQL
// database, in slices (--max-rows, run again) and at once: the reports
// stay the same.
func TestFleetThreeNodes(t *testing.T) {
	needRoot(t)
	cluster := pgtest.Start(t, pgtest.Options{})
	fleetDB := cluster.CreateDB(t)
	dns := dnstest.Start(t, corpus.Zone())
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")

	var nodes []*mxNode
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startMX(t, name, fleetDB, dns.Addr, cert, key))
	}
	soloDB := filepath.Join(sharedDir(t, 0), "solo.db")
	solo := startMX(t, "solo", soloDB, dns.Addr, cert, key)

	// Round r sends case i to node (i+r) mod 3; the second round only
	// the even cases, so that the nodes' shares differ.
	since := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	cases := corpus.Cases()
	for r := range 2 {
		for i, c := range cases {
			if r == 1 && i%2 == 1 {
				continue
			}
			n := nodes[(i+r)%3]
			sendThrough(t, n.pf.Addr, c, ca.Pool())
			n.sent++
			sendThrough(t, solo.pf.Addr, c, ca.Pool())
			solo.sent++
		}
	}
	// Every daemon flushes at SIGTERM once its Postfix is idle.
	for _, n := range append(slices.Clone(nodes), solo) {
		if err := n.pf.WaitIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		n.d.cmd.Process.Signal(syscall.SIGTERM)
		if code := exitCode(t, n.d); code != 0 {
			t.Fatalf("node %s exited %d:\n%s", n.name, code, n.d.logs())
		}
	}
	var total int64
	for _, n := range nodes {
		if got := storedMessages(t, fleetDB, n.name); got != n.sent {
			t.Errorf("node %s: %d messages stored, %d sent\n%s", n.name, got, n.sent, n.d.logs())
		}
		total += n.sent
	}
	if got := storedMessages(t, soloDB, ""); got != solo.sent || total != solo.sent {
		t.Fatalf("solo store: %d messages, sent %d (the fleet %d)", got, solo.sent, total)
	}

	period := []string{"--since", since.Format(time.RFC3339), "--until", since.Add(3 * time.Hour).Format(time.RFC3339), "--tz", "UTC"}
	fleet := reportDoc(t, append([]string{"--db", fleetDB}, period...)...)
	single := reportDoc(t, append([]string{"--db", soloDB}, period...)...)
	if a, b := jsonText(fleet), jsonText(single); a != b {
		t.Errorf("the fleet's report differs from the single store's:\nfleet:\n%s\nsingle:\n%s", a, b)
	}

	// Narrowed to each node: what it was sent; the nodes add up to the
	// fleet, per verdict and per day.
	sumMaps := map[string]map[string]float64{}
	days := map[string]float64{}
	for _, n := range nodes {
		doc := reportDoc(t, append([]string{"--db", fleetDB, "--node", n.name}, period...)...)
		in := doc["inbound"].(map[string]any)
		if got := int64(in["messages"].(float64)); got != n.sent {
			t.Errorf("report --node %s: %d inbound messages, it was sent %d", n.name, got, n.sent)
		}
		if doc["node"] != n.name {
			t.Errorf("report --node %s names node %v", n.name, doc["node"])
		}
		for _, k := range []string{"spf", "dkim", "dmarc", "auth", "by_cipher", "by_tls_version"} {
			if sumMaps[k] == nil {
				sumMaps[k] = map[string]float64{}
			}
			for v, c := range in[k].(map[string]any) {
				sumMaps[k][v] += c.(float64)
			}
		}
		for _, d := range doc["days"].([]any) {
			day := d.(map[string]any)
			days[day["date"].(string)+" in"] += day["inbound_messages"].(float64)
			days[day["date"].(string)+" tls"] += day["inbound_tls"].(float64)
		}
	}
	in := fleet["inbound"].(map[string]any)
	for k, sum := range sumMaps {
		want := map[string]float64{}
		for v, c := range in[k].(map[string]any) {
			want[v] = c.(float64)
		}
		if !maps.Equal(sum, want) {
			t.Errorf("inbound %s: the nodes add up to %v, the fleet has %v", k, sum, want)
		}
	}
	for _, d := range fleet["days"].([]any) {
		day := d.(map[string]any)
		if days[day["date"].(string)+" in"] != day["inbound_messages"].(float64) || days[day["date"].(string)+" tls"] != day["inbound_tls"].(float64) {
			t.Errorf("day %s: nodes %v/%v, fleet %v/%v", day["date"], days[day["date"].(string)+" in"],
				days[day["date"].(string)+" tls"], day["inbound_messages"], day["inbound_tls"])
		}
	}
	if out, code := runAs(t, -1, -1, append([]string{"report", "--db", fleetDB, "--node", "zz"}, period...)...); code != 1 ||
		!strings.Contains(out, `no mail recorded by node: "zz"; the nodes in`) || !strings.Contains(out, "a, b, c") {
		t.Errorf("report --node of no node: exit %d\n%s", code, out)
	}

	// A host joining the fleet: its SQLite store copied into PostgreSQL,
	// in slices, then again at once into another database.
	for _, maxRows := range []string{"40", "0"} {
		copyDB := cluster.CreateDB(t)
		runs := 0
		for {
			runs++
			out := run(t, "db", "copy", "--from", soloDB, "--to", copyDB, "--max-rows", maxRows)
			if strings.Contains(out, "(complete)") {
				break
			}
			if !strings.Contains(out, "stopped at --max-rows") || runs > 50 {
				t.Fatalf("db copy run %d:\n%s", runs, out)
			}
		}
		if maxRows != "0" && runs < 3 {
			t.Errorf("copied in %d runs of %s rows: nothing was resumed", runs, maxRows)
		}
		if out := run(t, "db", "copy", "--from", soloDB, "--to", copyDB); !strings.Contains(out, "copied 0 rows") {
			t.Errorf("db copy of a copied store again:\n%s", out)
		}
		copied := reportDoc(t, append([]string{"--db", copyDB}, period...)...)
		if a, b := jsonText(copied), jsonText(single); a != b {
			t.Errorf("after db copy (--max-rows %s, %d runs) the report differs:\ncopy:\n%s\nsqlite:\n%s", maxRows, runs, a, b)
		}
	}
}

// TestServePostgresUnreachableAtStart: serve started while its
// PostgreSQL is down serves mail all the same: the milter answers, the
// socketmap fails open, records queue and the ones beyond the queue are
// dropped and counted; once the server is up the schema is made and the
// queued records and later ones are written.
func TestServePostgresUnreachableAtStart(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.CreateDB(t)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dns := dnstest.Start(t, corpus.Zone())
	sock := filepath.Join(dir, "policy.sock")
	d := startDaemon(t, dir, dns.Addr, "--db", dsn, "--node", "mx-late", "--queue-size", "200",
		"--policy-socket", "unix:"+sock, "--policy-learn")
	waitFor(t, "the outage logged", func() bool { return strings.Contains(d.logs(), "database unreachable") }, d)

	// Mail flows: every message answered, the socketmap too. Each
	// message is two records (the message, its connection): the queue of
	// 200 holds a third of them.
	cl := miltertest.NewClient("unix", d.sock)
	cases := corpus.Cases()
	for i := range 300 {
		if _, err := miltertest.SendOne(cl, miltertest.Postfix, cases[i%len(cases)]); err != nil {
			t.Fatalf("message %d with PostgreSQL down: %v\n%s", i, err, d.logs())
		}
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	conn.Write([]byte(policy.FormatNetstring("tls learned.example")))
	if got, err := policy.ReadNetstring(bufio.NewReader(conn), 1000); err != nil || got != "NOTFOUND " {
		t.Errorf("socketmap with PostgreSQL down: %q %v", got, err)
	}
	conn.Close()

	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// The queued records go in one transaction once the schema is made.
	var queued int64
	waitFor(t, "the queued records written", func() bool {
		queued = pgCountIf(t, dsn, `SELECT COUNT(*) FROM messages WHERE node = 'mx-late'`)
		return queued > 0
	}, d)
	if queued >= 300 {
		t.Errorf("%d messages stored of 300 sent with the queue full: none dropped?", queued)
	}
	for i := range 30 {
		if _, err := miltertest.SendOne(cl, miltertest.Postfix, cases[i%len(cases)]); err != nil {
			t.Fatalf("message %d after the outage: %v", i, err)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.wait(t)
	m := regexp.MustCompile(`msg=flushed written=(\d+) dropped=(\d+)`).FindStringSubmatch(d.logs())
	if m == nil {
		t.Fatalf("no flush line:\n%s", d.logs())
	}
	written, _ := strconv.Atoi(m[1])
	dropped, _ := strconv.Atoi(m[2])
	stored := pgCount(t, dsn, `SELECT COUNT(*) FROM messages WHERE node = 'mx-late'`)
	// Every record beyond the queue while the server was down is
	// counted dropped (messages, their connections, and the downgrades
	// the corpus's peers show), every later message written.
	if stored != queued+30 || written < 200+60 || dropped < 2*300-200 {
		t.Errorf("%d messages stored (%d queued, then 30), the writer says %d records written and %d dropped; "+
			"want at least 260 written (the queue's 200, 30 messages with their connections) and 400 dropped\n%s",
			stored, queued, written, dropped, d.logs())
	}
	if rolled := pgCount(t, dsn, `SELECT COALESCE(SUM(messages), 0) FROM hourly_messages WHERE node = 'mx-late'`); rolled != stored {
		t.Errorf("%d in the rollup, %d stored", rolled, stored)
	}
}

// pgCountIf is pgCount that takes a missing table (no schema yet) for 0.
func pgCountIf(t *testing.T, dsn, q string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		return 0
	}
	return n
}
