package policy

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestNetstring(t *testing.T) {
	cases := []struct {
		in   string
		want string
		err  error
	}{
		{"9:tls a.com,", "tls a.com", nil},
		{"0:,", "", nil},
		{"3:abc;", "", ErrNetstringSyntax},
		{"x:abc,", "", ErrNetstringSyntax},
		{"01:a,", "", ErrNetstringSyntax},
		{":a,", "", ErrNetstringSyntax},
		{"99999999:", "", ErrNetstringSize},
		{"5:ab", "", nil},
	}
	for _, c := range cases {
		got, err := ReadNetstring(bufio.NewReader(strings.NewReader(c.in)), 1000)
		if c.err != nil && !errors.Is(err, c.err) || c.err == nil && c.want != "" && (err != nil || got != c.want) {
			t.Errorf("%q: %q, %v", c.in, got, err)
		}
	}
	if FormatNetstring("OK secure") != "9:OK secure," {
		t.Error(FormatNetstring("OK secure"))
	}
}

func FuzzNetstring(f *testing.F) {
	for _, s := range []string{"9:tls a.com,", "0:,", "10000000000:", "3:ab", "-1:x,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ReadNetstring(bufio.NewReader(strings.NewReader(s)), 100)
		if err == nil && (len(got) > 100 || !strings.HasPrefix(s, FormatNetstring(got))) {
			t.Fatalf("%q read as %q", s, got)
		}
	})
}
