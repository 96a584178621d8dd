package report

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/tlsinfo"
)

var update = flag.Bool("update", false, "rewrite golden files")

// week46 and week47 are the generated store's two weeks.
var (
	week47 = Period{Since: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}
	week46 = week47.Previous()
)

// generate fills a store with two weeks of mail whose counts are known:
// per day 10 inbound messages on weekdays, 4 on weekends; TLS everywhere
// except plain.example, and downgrade.example, which lost TLS in week 47.
func generate(t testing.TB) *measure.Store {
	t.Helper()
	return generateOn(t, filepath.Join(t.TempDir(), "gen.db"))
}

// generateOn is generate into the store at dsn, the mail spread over the
// nodes given (as a fleet's serve processes would write it), one node by
// default.
func generateOn(t testing.TB, dsn string, nodes ...string) *measure.Store {
	t.Helper()
	s, err := measure.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if len(nodes) == 0 {
		nodes = []string{s.Node}
	}
	var ws []*measure.Writer
	for _, n := range nodes {
		ws = append(ws, measure.NewWriter(s, measure.WriterConfig{Node: n}))
	}
	k := 0
	w := func() *measure.Writer { return ws[k%len(ws)] }
	domains := []string{"big.example", "plain.example", "downgrade.example", "small.example", "big.example"}
	ips := []string{"192.0.2.10", "198.51.100.20", "203.0.113.30", "192.0.2.11", "192.0.2.12"}
	suites := []string{"ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_256_GCM_SHA384"}
	var deliveries []*maillog.Delivery
	for day := week46.Since; day.Before(week47.Until); day = day.AddDate(0, 0, 1) {
		n := 10
		if day.Weekday() == time.Saturday || day.Weekday() == time.Sunday {
			n = 4
		}
		late := !day.Before(week47.Since)
		for i := 0; i < n; i++ {
			d := domains[i%len(domains)]
			m := &measure.Message{ConnUID: fmt.Sprintf("c%s%d", day.Format("0102"), i), Received: day.Add(time.Duration(i) * time.Hour),
				Direction: "inbound", ClientIP: ips[i%len(ips)], MailFromDomain: d, FromDomain: d, Action: "accept",
				SPFResult: "pass", DKIMResult: "pass", DMARCResult: "pass", DMARCPolicy: "reject", AuthClass: "dkim_and_spf"}
			tls := d != "plain.example" && !(late && d == "downgrade.example")
			if tls {
				m.TLSVersion, m.Cipher = "TLSv1.2", suites[0]
				if i%3 == 0 {
					m.TLSVersion, m.Cipher = "TLSv1.3", suites[1]
				}
				m.ForwardSecret = true
			}
			switch i % 5 {
			case 1:
				m.DKIMResult, m.AuthClass = "fail", "spf_only"
				m.Signatures = []measure.Signature{{Domain: d, Result: "fail", Class: "body_hash"}}
				if late {
					m.Signatures[0].Class = "weak_key"
				}
			case 2:
				m.SPFResult, m.SPFClass, m.AuthClass, m.DMARCPolicy = "temperror", "temperror", "dkim_only", "absent"
			case 3:
				m.DMARCPolicy = "quarantine"
			}
			w().Enqueue(m)
			// Its connection, for Table 6: named by a verified PTR, or
			// for plain.example by its HELO alone.
			c := &measure.Connection{UID: m.ConnUID, Started: m.Received, Ended: m.Received, Direction: "inbound",
				ClientIP: m.ClientIP, ClientPTR: "mail." + d, Helo: "mail." + d, TLSVersion: m.TLSVersion, Cipher: m.Cipher,
				ForwardSecret: m.ForwardSecret, Messages: 1}
			if d == "plain.example" {
				c.ClientPTR = ""
			}
			su := tlsinfo.Parse(m.Cipher)
			c.KeyExchange, c.BulkCipher = su.KeyExchange, su.Cipher
			w().Enqueue(c)
			k++
			if i%2 == 0 {
				od := &maillog.Delivery{Time: m.Received, MTA: "postfix", QueueID: fmt.Sprintf("Q%d", i), Domain: d,
					RelayHost: "mx." + d, Status: "sent", Level: maillog.LevelNone}
				if tls {
					od.TLSVersion, od.Cipher, od.CipherBits, od.Level, od.Suite = "TLSv1.3", suites[1], 256, maillog.LevelTrusted, tlsinfo.Parse(suites[1])
				}
				deliveries = append(deliveries, od)
			}
		}
	}
	for _, w := range ws {
		if err := w.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// The deliveries are read by each node's log follower: node by node.
	for i, n := range nodes {
		var mine []*maillog.Delivery
		for j, d := range deliveries {
			if j%len(nodes) == i {
				mine = append(mine, d)
			}
		}
		s.Node = n
		if err := s.RecordDeliveries(context.Background(), mine, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DB.Exec(`INSERT INTO downgrades (detected_at, direction, peer_kind, peer, tls_before, "window", node)
		VALUES (?, 'inbound', 'domain', 'downgrade.example', 10, 10, ?)`, week47.Since.Add(2*time.Hour).Unix(), nodes[0]); err != nil {
		t.Fatal(err)
	}
	return s
}

// countryDB writes a small MMDB mapping the generator's networks.
func countryDB(t testing.TB) string {
	return mmdbFile(t, map[string]string{"192.0.2.0/24": "DE", "198.51.100.0/24": "US"})
}

// mmdbFile writes an MMDB country database mapping CIDRs to ISO codes.
func mmdbFile(t testing.TB, codes map[string]string) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "snowrain-test-country", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, code := range codes {
		_, n, _ := net.ParseCIDR(cidr)
		if err := tree.Insert(n, mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(code)}}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "country.mmdb")
	f, _ := os.Create(path)
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		os.WriteFile(path, got, 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./report -update rewrites it):\n%s", name, got)
	}
}

func buildGenerated(t *testing.T) *Report {
	return buildOn(t, generate(t), "")
}

// buildOn builds the golden files' report from s, of one node or all.
func buildOn(t *testing.T, s *measure.Store, node string) *Report {
	t.Helper()
	r, err := Build(context.Background(), s, Options{Period: week47, GeoIP: countryDB(t),
		Providers: map[string]string{"big.example": "Big Mail"}, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testMeta stands for the host, version and time a report is made at.
var testMeta = Meta{Host: "mx.test.example", Version: "v0.0.0-test", Generated: time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)}

// render writes d in format.
func render(t testing.TB, format string, d *Document) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, format, d); err != nil {
		t.Fatalf("%s: %v", format, err)
	}
	return b.Bytes()
}

// TestGoldenFormats: the generated mail gives the golden report in every
// format, written into SQLite by one node or into PostgreSQL by three
// (the fleet's report sums its nodes).
func TestGoldenFormats(t *testing.T) {
	pgtest.EachBackend(t, func(t *testing.T, dsn string) {
		var nodes []string
		if measure.IsPostgres(dsn) {
			nodes = []string{"mx1", "mx2", "mx3"}
		}
		d := buildOn(t, generateOn(t, dsn, nodes...), "").Document(testMeta)
		golden(t, "week47.txt", render(t, FormatText, d))
		golden(t, "week47.md", render(t, FormatMarkdown, d))
		golden(t, "week47.json", render(t, FormatJSON, d))
		goldenCSV(t, "csv", d)
	})
}

// TestNodeReports: a fleet's report narrowed to each node in turn adds
// up to the fleet's, section by section: the figures, every day, every
// peer domain, every provider; a node that wrote nothing is an error.
func TestNodeReports(t *testing.T) {
	pgtest.EachBackend(t, func(t *testing.T, dsn string) {
		nodes := []string{"mx1", "mx2", "mx3"}
		s := generateOn(t, dsn, nodes...)
		fleet := buildOn(t, s, "")
		var in, out int64
		days := make([]Day, len(fleet.Days))
		peers := map[string]Domain{}
		prov := map[string]int64{}
		for _, n := range nodes {
			r := buildOn(t, s, n)
			if r.Current.Node != n || !strings.Contains(r.Document(testMeta).Scope, "node "+n) {
				t.Errorf("node %s: report of %q, scope %q", n, r.Current.Node, r.Document(testMeta).Scope)
			}
			if r.Current.Inbound.Messages == 0 {
				t.Errorf("node %s: no message", n)
			}
			in += r.Current.Inbound.Messages
			out += r.Current.Delivery.Deliveries
			for i, d := range r.Days {
				days[i].InMessages += d.InMessages
				days[i].InTLS += d.InTLS
				days[i].OutDeliveries += d.OutDeliveries
				days[i].OutTLS += d.OutTLS
			}
			for _, d := range r.Domains {
				p := peers[d.Name]
				p.Name = d.Name
				p.In, p.InTLS, p.Out, p.OutTLS = p.In+d.In, p.InTLS+d.InTLS, p.Out+d.Out, p.OutTLS+d.OutTLS
				p.PrevIn, p.PrevInTLS = p.PrevIn+d.PrevIn, p.PrevInTLS+d.PrevInTLS
				p.PrevOut, p.PrevOutTLS = p.PrevOut+d.PrevOut, p.PrevOutTLS+d.PrevOutTLS
				peers[d.Name] = p
			}
			for _, p := range r.Providers {
				prov[p.Name] += p.From.Messages + p.To.Messages
			}
		}
		if in != fleet.Current.Inbound.Messages || out != fleet.Current.Delivery.Deliveries {
			t.Errorf("nodes' sums %d inbound, %d delivered; fleet %d and %d", in, out,
				fleet.Current.Inbound.Messages, fleet.Current.Delivery.Deliveries)
		}
		for i, d := range fleet.Days {
			days[i].Date = d.Date
			if days[i] != d {
				t.Errorf("day %s: nodes' sum %+v, fleet %+v", d.Date.Format("2006-01-02"), days[i], d)
			}
		}
		for _, d := range fleet.Domains {
			if peers[d.Name] != d {
				t.Errorf("peer %s: nodes' sum %+v, fleet %+v", d.Name, peers[d.Name], d)
			}
		}
		for _, p := range fleet.Providers {
			if prov[p.Name] != p.From.Messages+p.To.Messages {
				t.Errorf("provider %s: nodes' sum %d, fleet %d", p.Name, prov[p.Name], p.From.Messages+p.To.Messages)
			}
		}
		if _, err := Build(context.Background(), s, Options{Period: week47, Node: "mx9"}); !errors.Is(err, ErrUnknownNode) ||
			!strings.Contains(err.Error(), "mx1, mx2, mx3") {
			t.Errorf("unknown node: %v", err)
		}
	})
}

// goldenCSV compares WriteCSV's files with testdata/dir: one per table,
// tables.csv and meta.csv.
func goldenCSV(t *testing.T, dir string, d *Document) {
	t.Helper()
	out := t.TempDir()
	if err := WriteCSV(out, d); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.csv"))
	if len(files) != len(d.Tables)+2 {
		t.Errorf("%d CSV files for %d tables, tables.csv and meta.csv", len(files), len(d.Tables))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		golden(t, dir+"/"+filepath.Base(f), b)
	}
}

// TestKnownCounts checks the generated figures by hand, so the golden
// files are not the only witness.
func TestKnownCounts(t *testing.T) {
	r := buildGenerated(t)
	// Week 47: 5 weekdays × 10 + 2 weekend days × 4 = 58 messages.
	if r.Current.Inbound.Messages != 58 || r.Prior.Inbound.Messages != 58 {
		t.Fatalf("messages %d / %d, want 58 each", r.Current.Inbound.Messages, r.Prior.Inbound.Messages)
	}
	var down, plainRow bool
	for _, row := range r.downgrades().Rows {
		if row[0] == "downgrade.example" && row[1] == "inbound" && row[2] == "100.00%" && row[3] == "0.00%" {
			down = true
		}
	}
	for _, row := range r.plaintext().Rows {
		plainRow = plainRow || row[0] == "plain.example"
	}
	if !down || !plainRow {
		t.Errorf("downgrade found %v, plaintext listed %v", down, plainRow)
	}
	// Table 8: body_hash in week 46 became weak_key in week 47.
	for _, row := range r.table8().Rows {
		if row[0] == "Weak key (< 1024 bits)" && (row[2] != "100.00%" || row[3] != "0.00%" || row[4] != "+100.00") {
			t.Errorf("weak key row %v", row)
		}
	}
	f3 := r.figure3()
	if len(f3.Rows) != 9 || f3.Rows[0][2] != "10" || f3.Rows[5][2] != "4" {
		t.Errorf("figure 3 rows %v", f3.Rows)
	}
	if got := r.countryTable().Rows; len(got) != 3 || got[0][0] != "DE" {
		t.Errorf("countries %v", got)
	}
}

// TestHTMLInChromium opens the HTML report in headless Chromium: every
// section and both charts render, and the browser logs no error.
func TestHTMLInChromium(t *testing.T) {
	r := buildGenerated(t)
	d := r.Document(testMeta)
	dom := chromiumDOM(t, render(t, FormatHTML, d))
	for _, tb := range r.Tables() {
		if !bytes.Contains(dom, []byte(`<section id="`+tb.ID+`">`)) {
			t.Errorf("section %s not rendered", tb.ID)
		}
	}
	for _, id := range []string{"figure3-chart", "table17-chart"} {
		if !bytes.Contains(dom, []byte(`id="`+id+`"`)) {
			t.Errorf("chart %s not rendered", id)
		}
	}
	for _, want := range []string{"mx.test.example", "2026-11-16 – 2026-11-22 (UTC)", "v0.0.0-test",
		"Table 3 of Durumeric et al., IMC 2015, §3.1"} {
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// chromiumDOM loads page in headless Chromium and returns the DOM it
// built; the test fails on any console message (a CSP violation, a
// script error).
func chromiumDOM(t *testing.T, page []byte) []byte {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium missing: run scripts/deps-chromium.sh as root (make test does)")
	}
	path := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(path, page, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0", "--dump-dom", "file://"+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "CONSOLE") || strings.Contains(line, "Uncaught") {
			t.Errorf("console: %s", line)
		}
	}
	return dom
}

// BenchmarkReport10M builds the weekly report over a store of 10 million
// messages (5 million in the reported week) that three nodes wrote, each
// with its deliveries: from SQLite (SNOWRAIN_BENCH_DB, a file kept between
// runs) and from PostgreSQL (SNOWRAIN_BENCH_PG, a database kept between
// runs; without it a throwaway cluster, filled on every run). The stores
// are filled through the writer, as the nodes' daemons fill them.
func BenchmarkReport10M(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		path := os.Getenv("SNOWRAIN_BENCH_DB")
		if path == "" {
			path = filepath.Join(b.TempDir(), "big.db")
		}
		benchReport(b, path)
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := os.Getenv("SNOWRAIN_BENCH_PG")
		if dsn == "" {
			dsn = pgtest.Start(b, pgtest.Options{Durable: true}).CreateDB(b)
		}
		benchReport(b, dsn)
	})
}

func benchReport(b *testing.B, dsn string) {
	ctx := context.Background()
	s, err := measure.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	all := measure.Scope{Since: time.Unix(0, 0), Until: time.Now().AddDate(10, 0, 0)}
	have, err := s.BuildReport(ctx, all)
	if err != nil {
		b.Fatal(err)
	}
	if n := have.Inbound.Messages; n < 10_000_000 {
		start := time.Now()
		fillBig(b, s, n, 10_000_000)
		b.Logf("%s: wrote %d messages in %s", s.Dialect(), 10_000_000-n, time.Since(start).Round(time.Second))
	}
	if s.Dialect() == measure.Postgres {
		if _, err := s.DB.Exec(`ANALYZE`); err != nil { // as autovacuum would by now
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Build(ctx, s, Options{Period: week47})
		if err != nil {
			b.Fatal(err)
		}
		if r.Current.Inbound.Messages < 4_900_000 {
			b.Fatalf("%d messages in the week", r.Current.Inbound.Messages)
		}
		if err := Write(io.Discard, FormatText, r.Document(testMeta)); err != nil {
			b.Fatal(err)
		}
	}
}

// bigProfiles are the verdicts of the generated mail: a few dozen
// combinations, most mail in the first, as real mail has them (verdicts
// go together: a large sender's mail passes everything over TLS 1.3).
var bigProfiles = func() []measure.Message {
	var out []measure.Message
	for _, v := range []struct{ version, cipher string }{{"TLSv1.3", "TLS_AES_256_GCM_SHA384"},
		{"TLSv1.3", "TLS_AES_128_GCM_SHA256"}, {"TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"}, {"", ""}} {
		for _, a := range []struct {
			spf    auth.SPFStatus
			dkim   auth.DKIMStatus
			dmarc  auth.DMARCStatus
			policy auth.DMARCPolicy
			auth   auth.AuthMethods
			action measure.Action
		}{
			{"pass", "pass", "pass", "reject", "dkim_and_spf", "accept"},
			{"pass", "pass", "pass", "none", "dkim_and_spf", "accept"},
			{"pass", "none", "pass", "quarantine", "spf_only", "accept"},
			{"softfail", "pass", "pass", "reject", "dkim_only", "accept"},
			{"fail", "fail", "fail", "reject", "none", "reject"},
			{"none", "none", "none", "absent", "none", "accept"},
			{"temperror", "temperror", "temperror", "reject", "none", "tempfail"},
		} {
			out = append(out, measure.Message{TLSVersion: v.version, Cipher: v.cipher, ForwardSecret: v.version != "",
				SPFResult: a.spf, DKIMResult: a.dkim, DMARCResult: a.dmarc, DMARCPolicy: a.policy, AuthClass: a.auth, Action: a.action})
		}
	}
	return out
}()

// fillBig writes messages have to want (spread evenly over the two
// weeks) through three nodes' writers, and a delivery for every fourth.
// Peers and clients have a few large ones and a long tail: 20 domains
// send 60% of the mail, 5,000 the rest; 250 addresses 60%, 20,000 the
// rest.
func fillBig(b *testing.B, s *measure.Store, have, want int64) {
	nodes := []string{"mx1", "mx2", "mx3"}
	var ws []*measure.Writer
	for _, n := range nodes {
		ws = append(ws, measure.NewWriter(s, measure.WriterConfig{QueueSize: 100000, BatchSize: 5000, Interval: time.Second, Node: n}))
	}
	span := week47.Until.Sub(week46.Since)
	n := want - have
	var deliveries []*maillog.Delivery
	flush := func(node string) {
		s.Node = node
		if err := s.RecordDeliveries(context.Background(), deliveries, nil); err != nil {
			b.Fatal(err)
		}
		deliveries = deliveries[:0]
	}
	for i := int64(0); i < n; i++ {
		at := week46.Since.Add(span / time.Duration(n) * time.Duration(i)) // (i * span overflows)
		domain, ip := fmt.Sprintf("big%d.example", i%20), fmt.Sprintf("192.0.2.%d", i%250)
		if i%5 >= 3 {
			domain, ip = fmt.Sprintf("tail%d.example", (i*7919)%5000), fmt.Sprintf("10.%d.%d.1", (i*104729)%20000/256, (i*104729)%256)
		}
		p := bigProfiles[min(i%100/3, int64(len(bigProfiles)-1))]
		if i%100 >= 60 {
			p = bigProfiles[(i*31)%int64(len(bigProfiles))]
		}
		m := p
		m.ConnUID, m.Received, m.Direction, m.ClientIP, m.MailFromDomain, m.FromDomain = "c", at, "inbound", ip, domain, domain
		w := ws[i%3]
		for !w.Enqueue(&m) {
			time.Sleep(time.Millisecond)
		}
		if i%4 == 0 {
			d := &maillog.Delivery{Time: at, MTA: "postfix", Domain: domain, RelayHost: "mx." + domain, Status: maillog.StatusSent,
				Level: maillog.LevelNone}
			if p.TLSVersion != "" {
				d.TLSVersion, d.Cipher, d.Level, d.Suite = p.TLSVersion, p.Cipher, maillog.LevelTrusted, tlsinfo.Parse(p.Cipher)
			}
			deliveries = append(deliveries, d)
			if len(deliveries) == 5000 {
				flush(nodes[i/20000%3])
			}
		}
	}
	flush(nodes[0])
	for _, w := range ws {
		w.Close(context.Background())
	}
}
