package feedback_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/feedback"
	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/internal/reportfixture"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/report"
)

// TestIngestMaildir reads a Maildir with reports in each format and
// compression (xml.gz, zip, xml, a gzip body; tlsrpt+gzip, tlsrpt+json),
// duplicates and hostile messages: each report is stored once, each
// duplicate known, each hostile message refused with its class; then the
// weekly report's section equals the sums of the reports. On both
// backends.
func TestIngestMaildir(t *testing.T) {
	pgtest.EachBackend(t, testIngestMaildir)
}

func testIngestMaildir(t *testing.T, dsn string) {
	ctx := context.Background()
	fx := reportfixture.Maildir(t, filepath.Join(t.TempDir(), "Maildir"))
	s, err := measure.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := &feedback.Ingester{Store: s}
	res, err := in.Ingest(ctx, fx.Dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range res {
		name := filepath.Base(strings.SplitN(r.Source, ":", 2)[0])
		seen[name] = true
		want, ok := fx.Files[name]
		if !ok {
			t.Errorf("result for an unknown file %s", r.Source)
			continue
		}
		if r.Status != want.Status || r.Class != want.Class || r.Kind != want.Kind {
			t.Errorf("%s: %s %s %s (%s), want %s %s %s", name, r.Status, r.Kind, r.Class, r.Error, want.Status, want.Kind, want.Class)
		}
	}
	for name := range fx.Files {
		if !seen[name] {
			t.Errorf("%s: no result", name)
		}
	}
	var n int
	if err := s.DB.QueryRow(`SELECT COUNT(*) FROM received_reports`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(fx.DMARC)+len(fx.TLS) {
		t.Errorf("%d reports stored, want %d", n, len(fx.DMARC)+len(fx.TLS))
	}
	checkSection(t, s, fx)

	// Read again: everything a duplicate, nothing added.
	again, _ := in.Ingest(ctx, fx.Dir)
	for _, r := range again {
		if r.Status == feedback.IngestStored {
			t.Errorf("stored twice: %s", r.Source)
		}
	}
	checkSection(t, s, fx)
}

// checkSection compares the weekly report's "How receivers see your mail"
// with the fixture's sums.
func checkSection(t *testing.T, s *measure.Store, fx *reportfixture.Fixture) {
	t.Helper()
	period, _ := report.ParseWeek(reportfixture.Week, time.UTC)
	r, err := report.Build(context.Background(), s, report.Options{Period: period, Loc: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	wantD, wantT := fx.Expected()
	var dmarcT, tlsT report.Table
	for _, tb := range r.Tables() {
		switch tb.ID {
		case "receivers_dmarc":
			dmarcT = tb
		case "receivers_tls":
			tlsT = tb
		}
	}
	if len(dmarcT.Rows) != len(wantD) || len(tlsT.Rows) != len(wantT) {
		t.Fatalf("section rows %d and %d, want %d and %d\n%v\n%v", len(dmarcT.Rows), len(tlsT.Rows), len(wantD), len(wantT), dmarcT.Rows, tlsT.Rows)
	}
	for _, row := range dmarcT.Rows {
		w := wantD[[2]string{row[0], row[1]}]
		if w == nil {
			t.Errorf("unexpected DMARC row %v", row)
			continue
		}
		var srcs []string
		for ip, n := range w.Failing {
			srcs = append(srcs, fmt.Sprintf("%s (%d)", ip, n))
		}
		sort.Strings(srcs)
		want := []string{w.Receiver, w.Domain, fmt.Sprint(w.Reports), fmt.Sprint(w.Messages), fmt.Sprint(w.Pass), fmt.Sprint(w.Fail), strings.Join(srcs, ", ")}
		if strings.Join(row, "|") != strings.Join(want, "|") {
			t.Errorf("DMARC row\n got %q\nwant %q", row, want)
		}
	}
	for _, row := range tlsT.Rows {
		w := wantT[[2]string{row[0], row[1]}]
		if w == nil {
			t.Errorf("unexpected TLS row %v", row)
			continue
		}
		var types []string
		for ty, n := range w.Types {
			types = append(types, fmt.Sprintf("%s %d", ty, n))
		}
		sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
		got := append([]string(nil), row...)
		parts := strings.Split(got[5], ", ")
		sort.Strings(parts)
		got[5] = strings.Join(parts, ", ")
		want := []string{w.Receiver, w.Domain, fmt.Sprint(w.Reports), fmt.Sprint(w.Successful), fmt.Sprint(w.Failed), strings.Join(types, ", ")}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("TLS row\n got %q\nwant %q", got, want)
		}
	}
}

// TestIngestMboxAndRaw reads an mbox holding two report messages and a
// hostile one, and raw report files of every kind.
func TestIngestMboxAndRaw(t *testing.T) {
	pgtest.EachBackend(t, testIngestMboxAndRaw)
}

func testIngestMboxAndRaw(t *testing.T, dsn string) {
	ctx := context.Background()
	dir := t.TempDir()
	fx := reportfixture.Maildir(t, filepath.Join(dir, "Maildir"))
	s, err := measure.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(fx.Dir, "new", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var mbox bytes.Buffer
	for _, name := range []string{"1764000001.M1.google", "1764000012.M12.laughs", "1764000006.M6.mstls"} {
		fmt.Fprintf(&mbox, "From noreply@example Tue Nov 24 00:00:00 2026\n")
		msg := strings.ReplaceAll(string(read(name)), "\r\n", "\n")
		msg = strings.ReplaceAll(msg, "\nFrom ", "\n>From ")
		mbox.WriteString(msg + "\n")
	}
	mboxPath := filepath.Join(dir, "reports.mbox")
	os.WriteFile(mboxPath, mbox.Bytes(), 0o644)

	xmlDoc, _ := fx.DMARC[1].Marshal()
	jsonDoc, _ := fx.TLS[1].Marshal()
	raw := map[string][]byte{
		"r.xml":     xmlDoc,
		"r.xml.gz":  reportfixture.Gzip(xmlDoc),
		"r.zip":     reportfixture.Zip(t, map[string][]byte{"r.xml": xmlDoc}),
		"r.json":    jsonDoc,
		"r.json.gz": reportfixture.Gzip(jsonDoc),
		"bomb.gz":   reportfixture.Gzip(make([]byte, 40<<20)),
	}
	var paths []string
	for name, b := range raw {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		paths = append(paths, p)
	}
	sort.Strings(paths)
	res, err := (&feedback.Ingester{Store: s}).Ingest(ctx, append([]string{mboxPath}, paths...)...)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range res {
		got[filepath.Base(strings.SplitN(r.Source, ":", 2)[0])] = r.Status + " " + r.Kind + r.Class
	}
	want := map[string]string{
		"reports.mbox#1": "stored dmarc", "reports.mbox#2": "refused xml_entities", "reports.mbox#3": "stored tlsrpt",
		"r.xml": "stored dmarc", "r.xml.gz": "duplicate dmarc", "r.zip": "duplicate dmarc",
		"r.json": "duplicate tlsrpt", "r.json.gz": "duplicate tlsrpt", "bomb.gz": "refused compression_bomb",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(res) != len(want) {
		t.Errorf("%d results, want %d: %v", len(res), len(want), got)
	}
}
