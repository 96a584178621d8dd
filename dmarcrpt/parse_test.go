package dmarcrpt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseHostile(t *testing.T) {
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>` +
		`<feedback><report_metadata><org_name>&lol2;</org_name></report_metadata></feedback>`
	external := `<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><feedback>&xxe;</feedback>`
	deep := "<feedback>" + strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + "</feedback>"
	huge := bytes.Repeat([]byte(" "), MaxReportSize+1)
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"billion laughs", []byte(laughs), ErrEntities},
		{"external entity", []byte(external), ErrEntities},
		{"deep", []byte(deep), ErrTooDeep},
		{"huge", huge, ErrTooLarge},
		{"truncated", []byte("<feedback><report_metadata>"), ErrMalformed},
		{"no id", []byte("<feedback><report_metadata><date_range><begin>1</begin><end>2</end></date_range></report_metadata><policy_published><domain>x</domain></policy_published></feedback>"), ErrMalformed},
		{"undeclared entity", []byte("<feedback>&nope;</feedback>"), ErrMalformed},
		{"other encoding", []byte(`<?xml version="1.0" encoding="EBCDIC"?><feedback/>`), ErrMalformed},
	} {
		_, err := Parse(bytes.NewReader(c.in))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestParseReal reads reports as large receivers write them (no version,
// no envelope_from, np=, extra namespaces).
func TestParseReal(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.xml")
	if len(files) == 0 {
		t.Fatal("no testdata reports")
	}
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f, err := Parse(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(f.Records) == 0 || f.Records[0].Row.Count == 0 {
			t.Errorf("%s: no records read", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	doc, _ := sample().Marshal()
	f.Add(doc)
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f.Add(b)
	}
	f.Add([]byte(`<?xml version="1.0" encoding="iso-8859-1"?><feedback><report_metadata><report_id>é</report_id></report_metadata></feedback>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fb, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		if fb.Metadata.ReportID == "" || fb.Policy.Domain == "" {
			t.Fatal("accepted a report without id or domain")
		}
		if _, err := fb.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}
