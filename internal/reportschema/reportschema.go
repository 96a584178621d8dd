// Package reportschema checks report documents against their RFCs' schemas
// in tests: DMARC aggregate XML against RFC 7489 Appendix C with libxml2's
// xmllint, TLS reports against RFC 8460 section 4.4 written as a JSON
// schema (testdata/rfc8460-report.schema.json), with the small validator
// here: type, required, properties, items, enum, minimum, minLength and
// the formats date-time and ip are all that schema uses.
package reportschema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

//go:embed testdata/rfc7489-appendix-c.xsd
var rfc7489XSD []byte

//go:embed testdata/rfc8460-report.schema.json
var rfc8460Schema []byte

// DMARC validates an aggregate report with xmllint against RFC 7489
// Appendix C's schema (made loadable: testdata/rfc7489-appendix-c.txt).
// A missing xmllint fails the test: scripts/deps-reports.sh installs it.
func DMARC(t testing.TB, doc []byte) error {
	t.Helper()
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Fatal("xmllint not installed: run scripts/deps-reports.sh (libxml2-utils)")
	}
	const tns = `targetNamespace="http://dmarc.org/dmarc-xml/0.1"`
	if bytes.Count(rfc7489XSD, []byte(tns)) != 1 {
		t.Fatal("reportschema: targetNamespace not found once in the RFC's schema")
	}
	dir := t.TempDir()
	xsd := filepath.Join(dir, "rfc7489.xsd")
	doc1 := filepath.Join(dir, "report.xml")
	if err := os.WriteFile(xsd, bytes.Replace(rfc7489XSD, []byte(tns), nil, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(doc1, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("xmllint", "--noout", "--nonet", "--schema", xsd, doc1).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xmllint: %v: %s", err, out)
	}
	return nil
}

// TLSRPT validates a TLS report's JSON against RFC 8460's schema; the
// error lists every violation with its JSON path.
func TLSRPT(doc []byte) error {
	var schema, v any
	if err := json.Unmarshal(rfc8460Schema, &schema); err != nil {
		return fmt.Errorf("reportschema: schema: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	var errs []string
	check(schema.(map[string]any), v, "$", &errs)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func check(s map[string]any, v any, path string, errs *[]string) {
	fail := func(f string, a ...any) { *errs = append(*errs, path+": "+fmt.Sprintf(f, a...)) }
	if t, ok := s["type"].(string); ok && !hasType(v, t) {
		fail("want %s, have %T", t, v)
		return
	}
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if e == v {
				found = true
			}
		}
		if !found {
			fail("%v not one of %v", v, enum)
		}
	}
	if min, ok := s["minimum"].(float64); ok {
		if n, ok := v.(json.Number); ok {
			if f, _ := n.Float64(); f < min {
				fail("%v below %v", n, min)
			}
		}
	}
	if min, ok := s["minLength"].(float64); ok {
		if str, ok := v.(string); ok && float64(len([]rune(str))) < min {
			fail("shorter than %v", min)
		}
	}
	if f, ok := s["format"].(string); ok {
		if str, ok := v.(string); ok && !hasFormat(str, f) {
			fail("%q is not a %s", str, f)
		}
	}
	if obj, ok := v.(map[string]any); ok {
		if req, ok := s["required"].([]any); ok {
			for _, k := range req {
				if _, ok := obj[k.(string)]; !ok {
					fail("missing %q", k)
				}
			}
		}
		if props, ok := s["properties"].(map[string]any); ok {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if ps, ok := props[k].(map[string]any); ok {
					check(ps, obj[k], path+"."+k, errs)
				}
			}
		}
	}
	if arr, ok := v.([]any); ok {
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range arr {
				check(items, e, fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	}
}

func hasType(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	}
	return false
}

func hasFormat(s, f string) bool {
	switch f {
	case "date-time":
		_, err := time.Parse(time.RFC3339, s)
		return err == nil
	case "ip":
		_, err := netip.ParseAddr(s)
		return err == nil
	}
	return true
}
