package feedback

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/internal/reportschema"
)

// golden compares got with testdata/name (go test -update rewrites it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(path, got, 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n%s", name, got)
	}
}

// TestDMARCGolden gathers the known store's aggregate reports, checks
// each against RFC 7489's schema with xmllint and against its golden file,
// on both backends.
func TestDMARCGolden(t *testing.T) {
	pgtest.EachBackend(t, testDMARCGolden)
}

func testDMARCGolden(t *testing.T, dsn string) {
	s := knownStore(t, dsn)
	reports, err := DMARCReports(context.Background(), s, knownConfig(t), fixtureDay)
	if err != nil {
		t.Fatal(err)
	}
	var domains []string
	for _, r := range reports {
		domains = append(domains, r.Domain)
		doc, err := r.Feedback.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := reportschema.DMARC(t, doc); err != nil {
			t.Errorf("%s: %v", r.Domain, err)
		}
		golden(t, "dmarc-"+r.Domain+".xml", doc)
	}
	if len(domains) != 2 || domains[0] != "example.net" || domains[1] != "example.org" {
		t.Errorf("reports for %v, want example.net and example.org (no rua, no record, outbound, other days left out)", domains)
	}
}

// TestTLSGolden gathers the known store's TLS reports (deliveries from
// real Postfix 3.7 log lines, decisions as the policy engine records
// them), checks each against RFC 8460's schema and its golden file, on
// both backends.
func TestTLSGolden(t *testing.T) {
	pgtest.EachBackend(t, testTLSGolden)
}

func testTLSGolden(t *testing.T, dsn string) {
	s := knownStore(t, dsn)
	reports, err := TLSReports(context.Background(), s, knownConfig(t), fixtureDay)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 13 {
		t.Errorf("%d reports, want one per domain publishing _smtp._tls (13)", len(reports))
	}
	for _, r := range reports {
		doc, err := r.Report.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := reportschema.TLSRPT(doc); err != nil {
			t.Errorf("%s: %v", r.Domain, err)
		}
		golden(t, "tls-"+r.Domain+".json", doc)
	}
}
