package scanner

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	cases := []struct {
		in    string
		code  int
		lines int
		err   error
	}{
		{"220 mx.example ESMTP\r\n", 220, 1, nil},
		{"250-mx.example\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n", 250, 4, nil},
		{"250\r\n", 250, 1, nil},
		{"250-a\r\n251 b\r\n", 0, 0, ErrReplySyntax},
		{"hello\r\n", 0, 0, ErrReplySyntax},
		{"250_x\r\n", 0, 0, ErrReplySyntax},
		{strings.Repeat("250-x\r\n", 2000), 0, 0, ErrReplyLong},
	}
	for _, c := range cases {
		r, err := ReadReply(bufio.NewReader(strings.NewReader(c.in)))
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%.30q: %v, want %v", c.in, err, c.err)
			}
			continue
		}
		if err != nil || r.Code != c.code || len(r.Lines) != c.lines {
			t.Errorf("%.30q: %+v %v", c.in, r, err)
		}
	}
	r, _ := ReadReply(bufio.NewReader(strings.NewReader("250-mx\r\n250-starttls\r\n250 SIZE 1000\r\n")))
	if ext := Extensions(r); ext["STARTTLS"] != "" || ext["SIZE"] != "1000" {
		if _, ok := ext["STARTTLS"]; !ok {
			t.Errorf("extensions %v", ext)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"220 ok\r\n", "250-a\r\n250 b\r\n", "500 #5.5.1 command not recognized\r\n", "250-XXXXXXXA\r\n250 8BITMIME\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ReadReply(bufio.NewReader(strings.NewReader(s)))
		if err == nil && (r.Code < 100 || r.Code > 599 || len(r.Lines) == 0) {
			t.Fatalf("accepted %q as %+v", s, r)
		}
		_ = Extensions(r)
	})
}
