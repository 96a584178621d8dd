package feedback

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/snowrain/snowrain/internal/reportfixture"
)

// seeds are the fixture's messages that are small enough to mutate.
func seeds(f *testing.F) [][]byte {
	dir := f.TempDir()
	fx := reportfixture.Maildir(f, filepath.Join(dir, "m"))
	var out [][]byte
	for name := range fx.Files {
		b, _ := os.ReadFile(filepath.Join(fx.Dir, "new", name))
		if len(b) < 64<<10 {
			out = append(out, b)
		}
	}
	return out
}

// FuzzExtractMessage: no message makes the MIME walk or the attachment
// reader panic, run unbounded, or hand back a document without an ID.
func FuzzExtractMessage(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		found, err := ExtractMessage(msg)
		if err != nil && Class(err) == "error" {
			t.Fatalf("unclassified error %v", err)
		}
		for _, d := range found.Docs {
			if (d.DMARC == nil) == (d.TLS == nil) {
				t.Fatal("document of neither or both kinds")
			}
		}
	})
}

// FuzzExtractPayload: raw attachments (gzip, zip, XML, JSON).
func FuzzExtractPayload(f *testing.F) {
	f.Add([]byte(`{"report-id":"x","date-range":{"start-datetime":"2026-11-30T00:00:00Z","end-datetime":"2026-11-30T23:59:59Z"}}`))
	f.Add(reportfixture.Gzip([]byte("<feedback/>")))
	f.Add(reportfixture.Zip(f, map[string][]byte{"a.xml": []byte("<feedback/>")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		docs, err := ExtractPayload("x", b)
		if err != nil && Class(err) == "error" {
			t.Fatalf("unclassified error %v", err)
		}
		if err == nil && len(docs) == 0 {
			t.Fatal("no error and no document")
		}
	})
}
