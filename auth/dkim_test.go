package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/resolver"
)

func testResolver(t testing.TB, srv *dnstest.Server) *resolver.Client {
	t.Helper()
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sigValues returns the raw DKIM-Signature values, as a milter sees them.
func sigValues(msg []byte) []string {
	var out []string
	head := msg[:bytes.Index(msg, []byte("\r\n\r\n"))+2]
	lines := strings.Split(string(head), "\r\n")
	for i := 0; i < len(lines); i++ {
		name, value, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(name, "DKIM-Signature") {
			continue
		}
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
			i++
			value += "\r\n" + lines[i]
		}
		out = append(out, value)
	}
	return out
}

// verifyStreaming feeds msg in small chunks, as the milter does.
func verifyStreaming(r resolver.Resolver, msg []byte, max int) []Signature {
	v := NewDKIMVerifier(context.Background(), r, max)
	for rest := msg; len(rest) > 0; {
		n := min(len(rest), 7)
		v.Write(rest[:n])
		rest = rest[n:]
	}
	return v.Close(sigValues(msg))
}

func formatSig(s Signature) string {
	dash := func(v string) string {
		if v == "" {
			return "-"
		}
		return v
	}
	return fmt.Sprintf("%s %s %s %s %s %s %d", s.Result, dash(s.Class), dash(s.Detail), s.Domain, s.Selector, s.Algorithm, s.KeyBits)
}

// TestDKIMCorpus runs testdata/dkim/NN-name.{msg,dns,result}: see each
// .readme for why the case exists, and gen.go for how it was made.
func TestDKIMCorpus(t *testing.T) {
	msgs, _ := filepath.Glob("testdata/dkim/*.msg")
	if len(msgs) == 0 {
		t.Fatal("no DKIM cases")
	}
	for _, path := range msgs {
		base := strings.TrimSuffix(path, ".msg")
		t.Run(filepath.Base(base), func(t *testing.T) {
			msg, _ := os.ReadFile(path)
			zone, _ := os.ReadFile(base + ".dns")
			want, _ := os.ReadFile(base + ".result")
			var zoneText []string
			var servfail []string
			for _, line := range strings.Split(string(zone), "\n") {
				if name, ok := strings.CutPrefix(line, "SERVFAIL "); ok {
					servfail = append(servfail, name)
				} else {
					zoneText = append(zoneText, line)
				}
			}
			srv := dnstest.Start(t, strings.Join(zoneText, "\n"))
			for _, n := range servfail {
				srv.ServFail(n)
			}
			sigs := verifyStreaming(testResolver(t, srv), msg, 8)
			var got []string
			for _, s := range sigs {
				got = append(got, formatSig(s))
			}
			if g, w := strings.Join(got, "\n"), strings.TrimSpace(string(want)); g != w {
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func TestDKIMSignatureCap(t *testing.T) {
	msg, _ := os.ReadFile("testdata/dkim/14-two_signatures_one_fails.msg")
	zone, _ := os.ReadFile("testdata/dkim/14-two_signatures_one_fails.dns")
	srv := dnstest.Start(t, string(zone))
	sigs := verifyStreaming(testResolver(t, srv), msg, 1)
	if len(sigs) != 2 || sigs[1].Result != "policy" || sigs[1].Detail != "over_limit" {
		t.Errorf("over the cap: %+v", sigs)
	}
	if DKIMVerdict(sigs) != "fail" {
		t.Errorf("verdict %s: the verified signature fails", DKIMVerdict(sigs))
	}
}

// TestClassifyDKIMStrings pins go-msgauth v0.7.0's error texts: an upgrade
// that rewords one breaks here, not silently in the tables.
func TestClassifyDKIMStrings(t *testing.T) {
	cases := map[string]string{
		"dkim: key unavailable: lookup failed":                     "temperror other dns_temp",
		"dkim: key is too short: want 1024 bits, has 512 bits":     "permerror weak_key ",
		"dkim: key revoked":                                        "permerror revoked ",
		"dkim: signature has expired":                              "permerror expired ",
		"dkim: body hash did not verify":                           "fail body_hash ",
		"dkim: signature did not verify: crypto/rsa: verification": "fail other header_sig",
		"dkim: incompatible signature version":                     "permerror version ",
		"dkim: incompatible public key version":                    "permerror version key_version",
		"dkim: malformed signature tags: dkim: duplicate tag name": "permerror duplicate_tags ",
		"dkim: hash algorithm too weak: sha1":                      "permerror unsupported_algorithm sha1",
		"dkim: unsupported hash algorithm":                         "permerror unsupported_algorithm hash",
		"dkim: unsupported key algorithm":                          "permerror unsupported_algorithm key",
		"dkim: malformed algorithm name":                           "permerror unsupported_algorithm syntax",
		"dkim: inappropriate key algorithm":                        "permerror unsupported_algorithm key_hash",
		"dkim: unsupported header canonicalization algorithm":      "permerror unsupported_algorithm canon",
		"dkim: unsupported public key query method":                "permerror unsupported_algorithm query",
		"dkim: no key for signature: lookup x: no such host":       "permerror other no_key",
		"dkim: no valid key found":                                 "permerror other no_key",
		"dkim: multiple TXT records found for key":                 "permerror other no_key",
		"dkim: key syntax error: missing public key data":          "permerror other key_syntax",
		"dkim: signature missing required tag":                     "permerror other syntax",
		"dkim: From field not signed":                              "permerror other from_not_signed",
		"dkim: something new":                                      "permerror other ",
	}
	for msg, want := range cases {
		r, c, d := ClassifyDKIM(errors.New(msg))
		if got := r + " " + c + " " + d; got != want {
			t.Errorf("%q → %q, want %q", msg, got, want)
		}
	}
	if r, _, _ := ClassifyDKIM(nil); r != "pass" {
		t.Errorf("nil → %s", r)
	}
}
