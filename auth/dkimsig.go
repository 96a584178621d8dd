package auth

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSigSyntax is wrapped by every error ParseSignatureTags returns.
var ErrSigSyntax = errors.New("dkim-signature syntax")

// SignatureTags are the DKIM-Signature tags the classifier records, parsed
// by us because go-msgauth's Verification does not expose them.
type SignatureTags struct {
	Version    string // v=
	Algorithm  string // a=, e.g. rsa-sha256
	Domain     string // d=
	Selector   string // s=
	Identifier string // i=
	Canon      string // c=
	Expiration string // x=
	Duplicate  string // name of the first repeated tag, if any
}

// ParseSignatureTags parses a DKIM-Signature header value into its tags
// (RFC 6376 section 3.2). It keeps going after a duplicate tag so that the
// record still has a domain and selector; other syntax errors are returned
// together with whatever was parsed.
func ParseSignatureTags(value string) (SignatureTags, error) {
	var t SignatureTags
	seen := map[string]bool{}
	var firstErr error
	for _, spec := range strings.Split(value, ";") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		name, val, ok := strings.Cut(spec, "=")
		name = strings.TrimSpace(name)
		if !ok || !validTagName(name) {
			if firstErr == nil {
				firstErr = fmt.Errorf("%w: bad tag-spec %.40q", ErrSigSyntax, spec)
			}
			continue
		}
		if seen[name] {
			if t.Duplicate == "" {
				t.Duplicate = name
			}
			continue
		}
		seen[name] = true
		t.set(name, stripFWS(val))
	}
	return t, firstErr
}

func (t *SignatureTags) set(name, val string) {
	switch name {
	case "v":
		t.Version = val
	case "a":
		t.Algorithm = strings.ToLower(val)
	case "d":
		t.Domain = strings.ToLower(strings.TrimSuffix(val, "."))
	case "s":
		t.Selector = val
	case "i":
		t.Identifier = val
	case "c":
		t.Canon = strings.ToLower(val)
	case "x":
		t.Expiration = val
	}
}

func validTagName(n string) bool {
	if n == "" || !isAlpha(n[0]) {
		return false
	}
	for i := 1; i < len(n); i++ {
		c := n[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}
