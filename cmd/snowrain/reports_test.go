package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/reportfixture"
	"github.com/snowrain/snowrain/internal/reportschema"
	"github.com/snowrain/snowrain/measure"
)

// TestIngestReportsCLI runs `snowrain ingest-reports` on a Maildir with
// reports in every format, duplicates and hostile archives, then
// `snowrain report`: its "How receivers see your mail" tables equal the
// reports' sums.
func TestIngestReportsCLI(t *testing.T) {
	dir := t.TempDir()
	fx := reportfixture.Maildir(t, filepath.Join(dir, "Maildir"))
	db := filepath.Join(dir, "s.db")
	out, err := exec.Command(binary, "ingest-reports", "--db", db, "--format", "json", fx.Dir).Output()
	if err != nil {
		t.Fatalf("ingest-reports: %v\n%s", err, out)
	}
	var res struct {
		Results []struct{ Source, Status, Class string }
		Counts  map[string]int
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, e := range fx.Files {
		want[e.Status]++
	}
	for k, v := range want {
		if res.Counts[k] != v {
			t.Errorf("%s: %d, want %d\n%s", k, res.Counts[k], v, out)
		}
	}
	text, err := exec.Command(binary, "ingest-reports", "--db", db, fx.Dir).Output()
	if err != nil || !strings.Contains(string(text), "0 stored, 8 duplicates, 8 refused") {
		t.Errorf("second run: %v\n%s", err, text)
	}

	out, err = exec.Command(binary, "report", "--db", db, "--week", reportfixture.Week, "--tz", "UTC", "--format", "json").Output()
	if err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	var rep struct {
		Tables []struct {
			ID   string
			Rows [][]string
		}
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	wantD, wantT := fx.Expected()
	rows := map[string][][]string{}
	for _, tb := range rep.Tables {
		rows[tb.ID] = tb.Rows
	}
	if len(rows["receivers_dmarc"]) != len(wantD) || len(rows["receivers_tls"]) != len(wantT) {
		t.Fatalf("section: %v %v", rows["receivers_dmarc"], rows["receivers_tls"])
	}
	for _, r := range rows["receivers_dmarc"] {
		w := wantD[[2]string{r[0], r[1]}]
		if w == nil || r[3] != fmt.Sprint(w.Messages) || r[4] != fmt.Sprint(w.Pass) || r[5] != fmt.Sprint(w.Fail) {
			t.Errorf("DMARC row %q, want %+v", r, w)
		}
	}
	for _, r := range rows["receivers_tls"] {
		w := wantT[[2]string{r[0], r[1]}]
		if w == nil || r[3] != fmt.Sprint(w.Successful) || r[4] != fmt.Sprint(w.Failed) {
			t.Errorf("TLS row %q, want %+v", r, w)
		}
	}
}

// TestReportsSendDryRun runs `snowrain reports send --dry-run`: the
// documents and the messages are written, valid, and nothing is sent.
func TestReportsSendDryRun(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "s.db")
	ctx := context.Background()
	s, err := measure.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	w := measure.NewWriter(s, measure.WriterConfig{})
	for i, ip := range []string{"192.0.2.1", "192.0.2.1", "2001:db8::7"} {
		w.Enqueue(&measure.Message{ConnUID: "c", Received: day.Add(time.Duration(i) * time.Minute), Direction: "inbound",
			ClientIP: ip, MailFromDomain: "example.org", FromDomain: "example.org", SPFResult: "pass", SPFDomain: "example.org",
			SPFAligned: i < 2, DMARCResult: map[bool]auth.DMARCStatus{true: "pass", false: "fail"}[i < 2], DMARCPolicy: "quarantine",
			DMARCDisposition: "quarantine", DMARCRecord: "example.org", Action: "accept",
			DMARCPublished: "v=DMARC1;p=quarantine;rua=mailto:dmarc@example.org;",
			Signatures:     []measure.Signature{{Domain: "example.org", Selector: "s", Result: "fail", Class: "body_hash"}}})
	}
	w.Close(ctx)
	s.Close()
	dns := dnstest.Start(t, "example.org. A 192.0.2.10\n")
	conf := filepath.Join(dir, "snowrain.conf")
	os.WriteFile(conf, []byte("authserv_id = \"mx.ours.example\"\n[reports]\nfrom = \"reports@ours.example\"\nsendmail = \"/bin/false\"\n"), 0o644)
	outDir := filepath.Join(dir, "out")
	out, err := exec.Command(binary, "reports", "send", "--config", conf, "--db", db, "--dns", dns.Addr,
		"--dry-run", outDir, "--period", "2026-11-30", "--format", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("reports send: %v\n%s", err, out)
	}
	var res struct {
		Day        string
		Deliveries []struct{ Kind, Domain, Destination, Status, File string }
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Day != "2026-11-30" || len(res.Deliveries) != 1 || res.Deliveries[0].Status != "dry-run" ||
		res.Deliveries[0].Destination != "mailto:dmarc@example.org" {
		t.Fatalf("deliveries: %s", out)
	}
	files, _ := filepath.Glob(filepath.Join(outDir, "*"))
	sort.Strings(files)
	if len(files) != 2 {
		t.Fatalf("files %v", files)
	}
	begin := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC).Unix()
	doc, _ := os.ReadFile(filepath.Join(outDir, fmt.Sprintf("mx.ours.example!example.org!%d!%d.xml", begin, begin+86399)))
	if err := reportschema.DMARC(t, doc); err != nil {
		t.Errorf("%v\n%s", err, doc)
	}
	if !strings.Contains(string(doc), "<count>2</count>") || !strings.Contains(string(doc), "2001:0db8:0000:0000:0000:0000:0000:0007") {
		t.Errorf("report:\n%s", doc)
	}
	msg, _ := os.ReadFile(res.Deliveries[0].File)
	if !strings.Contains(string(msg), fmt.Sprintf("Subject: Report Domain: example.org Submitter: mx.ours.example Report-ID: <%d.example.org@mx.ours.example>", begin)) {
		t.Errorf("message:\n%s", msg)
	}
	var sent int
	s2, _ := measure.Open(ctx, db)
	s2.DB.QueryRow(`SELECT COUNT(*) FROM sent_reports`).Scan(&sent)
	s2.Close()
	if sent != 0 {
		t.Errorf("a dry run recorded %d sent reports", sent)
	}
}
