package auth

import (
	"bufio"
	"os"
	"regexp"
	"testing"

	"golang.org/x/net/idna"
)

// TestPSLSuite runs the Public Suffix List's own test vectors
// (testdata/conformance/psl/test_psl.txt) against Registrable and
// OrgDomain. Expected registrable domains are given in the input's form
// (U-labels for U-label input); ours are A-labels, so compare the
// expected value converted to A-labels. null means no registrable domain:
// Registrable returns "", and OrgDomain the normalised name itself.
func TestPSLSuite(t *testing.T) {
	f, err := os.Open("testdata/conformance/psl/test_psl.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`^checkPublicSuffix\((null|'[^']*'), (null|'[^']*')\);$`)
	arg := func(s string) (string, bool) {
		if s == "null" {
			return "", false
		}
		return s[1 : len(s)-1], true
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue // comments, blank lines, the commented-out .local cases
		}
		n++
		in, _ := arg(m[1])
		want, hasWant := arg(m[2])
		t.Run(m[1], func(t *testing.T) {
			if hasWant {
				a, err := idna.Lookup.ToASCII(want)
				if err != nil {
					t.Fatalf("expected %q: %v", want, err)
				}
				want = a
			}
			if got := Registrable(in); got != want {
				t.Errorf("Registrable(%q) = %q, want %q", in, got, want)
			}
			norm, _ := NormalizeDomain(in)
			wantOrg := want
			if !hasWant {
				wantOrg = norm
			}
			if got := OrgDomain(in); got != wantOrg {
				t.Errorf("OrgDomain(%q) = %q, want %q", in, got, wantOrg)
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 78 {
		t.Errorf("read %d vectors, want the file's 78", n)
	}
}
