package report

import (
	"bytes"
	"context"
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
	s, err := measure.Open(context.Background(), filepath.Join(t.TempDir(), "gen.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w := measure.NewWriter(s, measure.WriterConfig{})
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
			w.Enqueue(m)
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
			w.Enqueue(c)
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
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordDeliveries(context.Background(), deliveries, nil); err != nil {
		t.Fatal(err)
	}
	s.DB.Exec(`INSERT INTO downgrades (detected_at, direction, peer_kind, peer, tls_before, window)
		VALUES (?, 'inbound', 'domain', 'downgrade.example', 10, 10)`, week47.Since.Add(2*time.Hour).Unix())
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
	s := generate(t)
	r, err := Build(context.Background(), s, Options{Period: week47, GeoIP: countryDB(t),
		Providers: map[string]string{"big.example": "Big Mail"}})
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

func TestGoldenFormats(t *testing.T) {
	d := buildGenerated(t).Document(testMeta)
	golden(t, "week47.txt", render(t, FormatText, d))
	golden(t, "week47.md", render(t, FormatMarkdown, d))
	golden(t, "week47.json", render(t, FormatJSON, d))
	goldenCSV(t, "csv", d)
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

// BenchmarkReport10M builds the report over a store of 10 million
// messages (5 million in the reported week).
func BenchmarkReport10M(b *testing.B) {
	path := os.Getenv("SNOWRAIN_BENCH_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "big.db")
	}
	s, err := measure.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n int64
	if err := s.DB.QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n < 10_000_000 {
		fillBig(b, s, 10_000_000-n)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Build(context.Background(), s, Options{Period: week47})
		if err != nil {
			b.Fatal(err)
		}
		if err := Write(io.Discard, FormatText, r.Document(testMeta)); err != nil {
			b.Fatal(err)
		}
	}
}

func fillBig(b *testing.B, s *measure.Store, n int64) {
	w := measure.NewWriter(s, measure.WriterConfig{QueueSize: 100000, BatchSize: 5000, Interval: time.Second})
	span := week47.Until.Sub(week46.Since)
	domains := []string{"a.example", "b.example", "c.example", "d.example"}
	for i := int64(0); i < n; i++ {
		m := &measure.Message{ConnUID: "c", Received: week46.Since.Add(time.Duration(i) * span / time.Duration(n)),
			Direction: "inbound", ClientIP: fmt.Sprintf("192.0.2.%d", i%250), MailFromDomain: domains[i%4],
			TLSVersion: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", SPFResult: "pass", DKIMResult: "pass",
			DMARCResult: "pass", DMARCPolicy: "reject", AuthClass: "dkim_and_spf", Action: "accept"}
		for !w.Enqueue(m) {
			time.Sleep(time.Millisecond)
		}
	}
	w.Close(context.Background())
}
