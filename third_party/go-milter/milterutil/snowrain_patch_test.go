package milterutil

import (
	"testing"

	"golang.org/x/text/transform"
)

// chained is what CrLfToLf and NewlineToSpace were before the snowrain
// patch: the transformer chains.
func chained(s string, t transform.Transformer) string {
	dst, _, _ := transform.String(transform.Chain(&NulToSpTransformer{}, t), s)
	return dst
}

var newlineCases = []string{"", "plain value", "a\r\n\tb", "a\nb", "a\rb", "\r\r\n", "\r\x00\n", "x\x00y", "end\r",
	"\r\n", "mx.test.example (tls=TLSv1.3);\r\n\tspf=pass smtp.mailfrom=a.example;\r\n\tdkim=pass", "ünï\r\ncode\x00"}

func TestCrLfToLfAsBefore(t *testing.T) {
	for _, s := range newlineCases {
		if got, want := CrLfToLf(s), chained(s, &CrLfToLfTransformer{}); got != want {
			t.Errorf("CrLfToLf(%q) = %q, want %q", s, got, want)
		}
		if got, want := NewlineToSpace(s), chained(s, &NewlineToSpaceTransformer{}); got != want {
			t.Errorf("NewlineToSpace(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzCrLfToLf(f *testing.F) {
	for _, s := range newlineCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := CrLfToLf(s), chained(s, &CrLfToLfTransformer{}); got != want {
			t.Errorf("CrLfToLf(%q) = %q, want %q", s, got, want)
		}
		if got, want := NewlineToSpace(s), chained(s, &NewlineToSpaceTransformer{}); got != want {
			t.Errorf("NewlineToSpace(%q) = %q, want %q", s, got, want)
		}
	})
}
