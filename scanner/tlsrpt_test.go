package scanner

import (
	"strings"
	"testing"
)

// TestParseTLSRPT follows RFC 8460 §3: one v=TLSRPTv1 record, rua of
// mailto: or https: URIs.
func TestParseTLSRPT(t *testing.T) {
	for _, c := range []struct {
		txts   []string
		status TLSRPTStatus
		rua    string
	}{
		{nil, TLSRPTAbsent, ""},
		{[]string{"v=spf1 -all"}, TLSRPTAbsent, ""},
		{[]string{"v=TLSRPTv1; rua=mailto:tls@example.net"}, TLSRPTValid, "mailto:tls@example.net"},
		{[]string{"v=TLSRPTv1;rua=mailto:a@example.net,https://r.example.net/v1"}, TLSRPTValid, "mailto:a@example.net https://r.example.net/v1"},
		{[]string{"v=TLSRPTv1; rua=ftp://x"}, TLSRPTInvalid, ""},
		{[]string{"v=TLSRPTv1;"}, TLSRPTInvalid, ""},
		{[]string{"v=TLSRPTv1; rua=mailto:a@x", "v=TLSRPTv1; rua=mailto:b@x"}, TLSRPTMultiple, ""},
		{[]string{"v=TLSRPTv10; rua=mailto:a@x"}, TLSRPTAbsent, ""},
	} {
		r := ParseTLSRPT(c.txts)
		if r.Status != c.status || strings.Join(r.RUA, " ") != c.rua {
			t.Errorf("%q: %+v, want %s %q", c.txts, r, c.status, c.rua)
		}
	}
}

func FuzzParseTLSRPT(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:tls@example.net,https://x.example/")
	f.Add("v=TLSRPTv1;;;=;rua=")
	f.Fuzz(func(t *testing.T, txt string) {
		r := ParseTLSRPT([]string{txt})
		if r.Status == TLSRPTValid && len(r.RUA) == 0 {
			t.Fatalf("valid without rua: %+v", r)
		}
	})
}
