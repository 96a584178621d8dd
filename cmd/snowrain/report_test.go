package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// storeWith writes one inbound TLS message at each of times into a new
// database.
func storeWith(t *testing.T, times ...time.Time) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := measure.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	w := measure.NewWriter(s, measure.WriterConfig{})
	for i, at := range times {
		w.Enqueue(&measure.Message{ConnUID: fmt.Sprint(i), Received: at, Direction: "inbound", ClientIP: "192.0.2.1",
			MailFromDomain: "peer.example", TLSVersion: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", ForwardSecret: true,
			SPFResult: "pass", DKIMResult: "pass", DMARCResult: "pass", DMARCPolicy: "reject", AuthClass: "dkim_and_spf", Action: "accept"})
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return path
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("snowrain %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestReportEmptyPeriod: the default report (last full week) over a
// database whose mail is older says so and names the week that holds it;
// that week's report then shows the mail.
func TestReportEmptyPeriod(t *testing.T) {
	at := time.Now().UTC().AddDate(0, 0, -60).Truncate(time.Hour)
	db := storeWith(t, at)
	y, w := at.ISOWeek()
	week := fmt.Sprintf("%d-W%02d", y, w)
	out := run(t, "report", "--db", db, "--tz", "UTC")
	host, _ := os.Hostname()
	for _, want := range []string{"No mail was recorded in this period", "The latest week with mail is " + week,
		"snowrain report --week " + week, "Host:      " + host, "Generated: ", "Period:    "} {
		if !strings.Contains(out, want) {
			t.Errorf("empty report lacks %q:\n%s", want, out)
		}
	}
	out = run(t, "report", "--db", db, "--tz", "UTC", "--week", week)
	if strings.Contains(out, "No mail was recorded") || !strings.Contains(out, "Inbound messages                                 1") {
		t.Errorf("report --week %s:\n%s", week, out)
	}
	var js struct {
		Inbound struct {
			Messages int64 `json:"messages"`
		} `json:"inbound"`
		Meta struct {
			Host    string   `json:"host"`
			Version string   `json:"version"`
			Notices []string `json:"notices"`
			Since   string   `json:"since"`
		} `json:"meta"`
	}
	if err := json.Unmarshal([]byte(run(t, "report", "--db", db, "--tz", "UTC", "--format", "json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Inbound.Messages != 0 || js.Meta.Host != host || js.Meta.Version == "" || len(js.Meta.Notices) != 2 ||
		!strings.Contains(js.Meta.Notices[1], week) || js.Meta.Since == "" {
		t.Errorf("JSON meta %+v", js)
	}
	out = run(t, "report", "--db", storeWith(t), "--tz", "UTC")
	if !strings.Contains(out, "The database holds no mail yet") {
		t.Errorf("report of an empty database:\n%s", out)
	}
}

// TestReportHeadingEveryFormat: host, version, generation time and
// period in every format, and the paper cited under its tables.
func TestReportHeadingEveryFormat(t *testing.T) {
	db := storeWith(t, time.Now().Add(-time.Hour))
	host, _ := os.Hostname()
	// The binary's own version (stamped by the build), not this test's.
	version := strings.TrimSpace(strings.TrimPrefix(run(t, "version"), "snowrain "))
	for _, f := range []string{"text", "md", "html", "json"} {
		out := run(t, "report", "--db", db, "--since", "2h", "--format", f)
		for _, want := range []string{host, version, "Table 3 of Durumeric et al., IMC 2015", time.Now().UTC().Format("2006-01-02")} {
			if !strings.Contains(out, want) {
				t.Errorf("--format %s lacks %q", f, want)
			}
		}
	}
	dir := filepath.Join(t.TempDir(), "csv")
	run(t, "report", "--db", db, "--since", "2h", "--format", "csv", "-o", dir)
	meta, err := os.ReadFile(filepath.Join(dir, "meta.csv"))
	if err != nil || !strings.Contains(string(meta), "host,"+host) || !strings.Contains(string(meta), "version,"+version) {
		t.Errorf("meta.csv: %v\n%s", err, meta)
	}
}

// TestScanReportsWithoutRuns: each scan report over a database without
// runs says which command makes one; a run of another kind is an error.
func TestScanReportsWithoutRuns(t *testing.T) {
	db := storeWith(t)
	for kind, want := range map[string]string{"scan": "No domain scan is stored", "hosts": "No port-25 sweep is stored",
		"resolvers": "No resolver sweep is stored", "exposure": "No port-25 sweep is stored, so Table 14 is empty"} {
		if out := run(t, "report", kind, "--db", db); !strings.Contains(out, want) {
			t.Errorf("report %s lacks %q:\n%s", kind, want, out)
		}
	}
	if out, err := exec.Command(binary, "report", "hosts", "--db", db, "--run", "7").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "--run 7: no such run") {
		t.Errorf("report hosts --run 7: %v %s", err, out)
	}
}
