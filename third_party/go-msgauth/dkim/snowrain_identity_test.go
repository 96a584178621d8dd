package dkim

import (
	"errors"
	"testing"
)

// TestIdentityDomain (snowrain patch): i= matches d= without regard to
// case and after dkim-quoted-printable decoding (RFC 6376 3.5, 2.11); an
// identity outside d= is still a mismatch.
func TestIdentityDomain(t *testing.T) {
	for _, c := range []struct {
		i, d, want string
		ok         bool
	}{
		{"@example.com", "example.com", "@example.com", true},
		{"user@Example.COM", "example.com", "user@Example.COM", true},
		{"@mail.EXAMPLE.com", "example.com", "@mail.EXAMPLE.com", true},
		{"user=40x@example.com", "example.com", "user@x@example.com", true},
		{"first=3Dlast@example.com", "example.com", "first=last@example.com", true},
		{"=40example.com", "example.com", "@example.com", true},
		{"user@evilexample.com", "example.com", "", false},
		{"user@example.com.evil", "example.com", "", false},
		{"user@example=2Ecom", "example.com", "user@example.com", true},
		{"user@example.com=", "example.com", "", false},
		{"user@example.com=4", "example.com", "", false},
	} {
		v, err := parseIdentity(c.i, c.d)
		if c.ok != (err == nil) || c.ok && v != c.want {
			t.Errorf("i=%q d=%q: %q, %v", c.i, c.d, v, err)
		}
		if !c.ok && !errors.Is(err, ErrDomainMismatch) {
			t.Errorf("i=%q d=%q: %v, want ErrDomainMismatch", c.i, c.d, err)
		}
	}
}
