package policy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/snowrain/snowrain/internal/pgtest"
)

func TestParseTLSPolicy(t *testing.T) {
	for in, want := range map[string]string{
		"verify":      "verify",
		"  encrypt  ": "encrypt",
		"secure match=.bank.example servername=hostname":        "secure match=.bank.example servername=hostname",
		"secure match=hostname:nexthop:dot-nexthop":             "secure match=hostname:nexthop:dot-nexthop",
		"secure match=.BANK.example servername=MX.bank.example": "secure match=.bank.example servername=mx.bank.example",
		"encrypt protocols=>=TLSv1.2 ciphers=high":              "encrypt protocols=>=TLSv1.2 ciphers=high",
		"encrypt protocols=!SSLv2:!SSLv3":                       "encrypt protocols=!SSLv2:!SSLv3",
		"fingerprint match=3D:95:34:51:24:66:33:B9:D2:40:99:C0:C1:17:0B:D1|EC:3B:2D:B0:5B:B8:1D:DB:AA:5B:33:4F:35:A2:FE:4A": "fingerprint match=3D:95:34:51:24:66:33:B9:D2:40:99:C0:C1:17:0B:D1|EC:3B:2D:B0:5B:B8:1D:DB:AA:5B:33:4F:35:A2:FE:4A",
	} {
		p, err := ParseTLSPolicy(in)
		if err != nil || p.String() != want {
			t.Errorf("%q → %q %v, want %q", in, p.String(), err, want)
		}
	}
	for _, bad := range []string{
		"", "nonsense", "secure match=.bank.example ciphers=null", "secure exclude=ALL", "secure ciphers=export",
		"secure match=.bank.example,ciphers=null", "secure match=a b", "verify tafile=/etc/passwd",
		"secure match=*.bank.example", "secure match=.bank.example match=.evil.example", "encrypt match=.a.example",
		"secure match=", "secure servername=a_b.example", "encrypt protocols=TLSv9",
		"secure match=a\x00b", "fingerprint match=zz", "secure\tmatch=.a.example\nciphers=null",
	} {
		if p, err := ParseTLSPolicy(bad); !errors.Is(err, ErrPolicySyntax) {
			t.Errorf("%q accepted as %q", bad, p.String())
		}
	}
}

func FuzzParseTLSPolicy(f *testing.F) {
	for _, s := range []string{"secure match=.a.example servername=hostname", "encrypt ciphers=high", "secure match=a b ciphers=null",
		"fingerprint match=AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		answer, _, ok := encodeAnswer(s)
		if !ok {
			return
		}
		p, err := ParseTLSPolicy(answer)
		if err != nil || p.String() != answer {
			t.Fatalf("%q encoded as %q, which does not read back (%v)", s, answer, err)
		}
		if len(answer) > MaxAnswer || strings.ContainsAny(answer, ",\r\n\t\x00") ||
			strings.Contains(answer, "exclude=") || strings.Contains(answer, "tafile=") {
			t.Fatalf("%q encoded as %q", s, answer)
		}
	})
}

// TestSocketmapStoredPolicies: whatever the store holds (a row written by
// hand, or by an older version), the socketmap only answers attributes of
// the grammar.
func TestSocketmapStoredPolicies(t *testing.T) {
	pgtest.EachBackend(t, testSocketmapStoredPolicies)
}

func testSocketmapStoredPolicies(t *testing.T, dsn string) {
	w := newWorldOn(t, dsn)
	for domain, pol := range map[string]string{
		"bank.example":  "secure match=.bank.example ciphers=null exclude=ALL",
		"other.example": "nonsense ciphers=null",
		"BIG.example.":  "verify match=hostname " + strings.Repeat("x", 20000),
	} {
		if _, err := w.store.DB.Exec(`INSERT INTO policy_overrides VALUES (?, ?, 'hand', 0)`, domain, pol); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.store.DB.Exec(`INSERT INTO mta_sts_policies VALUES ('sts.example', '1', 'enforce',
		'mx.sts.example ciphers=null *.pool.example exclude=ALL', 86400, 0, 9999999999, '')`); err != nil {
		t.Fatal(err)
	}
	w.dns.Add("sts.example. MX 10 mx.sts.example.\nsts.example. MX 20 a.pool.example.\n_mta-sts.sts.example. TXT \"v=STSv1; id=1;\"\n")
	var mu sync.Mutex
	classes := map[string]int{}
	srv := &SocketmapServer{Engine: w.engine(Config{MTASTS: true}), Classes: func(c string) { mu.Lock(); classes[c]++; mu.Unlock() }}
	ln, _ := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close(); srv.Close() })
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for key, want := range map[string]string{
		"bank.example":  "OK secure match=.bank.example",
		"other.example": "NOTFOUND ",
		"big.example":   "OK verify match=hostname",
		"sts.example":   "OK secure match=mx.sts.example:a.pool.example servername=hostname",
	} {
		c.Write([]byte(FormatNetstring("tls " + key)))
		if got, err := ReadNetstring(r, 100000); err != nil || got != want {
			t.Errorf("%s → %q %v, want %q", key, got, err, want)
		}
	}
}

func TestImportValidation(t *testing.T) {
	good := `{"policies": {
		"bank.example": {"mode": "enforce", "mxs": [".bank.example", "MX.Bank.Example."]},
		"alias.example": {"policy-alias": "shared"},
		"test.example": {"mode": "testing", "mxs": [".test.example"]},
		"bare.example": {"mode": "enforce"}},
		"policy-aliases": {"shared": {"mode": "enforce", "mxs": [".mail.example"]}}}`
	list, err := ParseImport([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range list {
		got[e.Domain] = e.Policy
	}
	want := map[string]string{
		"bank.example":  "secure match=.bank.example:mx.bank.example servername=hostname",
		"alias.example": "secure match=.mail.example servername=hostname",
		"bare.example":  "encrypt",
	}
	if len(got) != len(want) {
		t.Errorf("imported %v, want %v", got, want)
	}
	for d, p := range want {
		if got[d] != p {
			t.Errorf("%s: %q, want %q", d, got[d], p)
		}
	}
	for name, c := range map[string]struct{ data, mention string }{
		"option in mxs": {`{"policies": {"bank.example": {"mode": "enforce",
			"mxs": [".bank.example ciphers=null exclude=ALL"]}}}`, `policy "bank.example": mxs[0]`},
		"comma in mxs":    {`{"policies": {"bank.example": {"mode": "enforce", "mxs": [".bank.example,ciphers=null"]}}}`, `mxs[0]`},
		"colon in mxs":    {`{"policies": {"bank.example": {"mode": "enforce", "mxs": ["a.example:b.example"]}}}`, `mxs[0]`},
		"wildcard in mxs": {`{"policies": {"bank.example": {"mode": "enforce", "mxs": ["*.bank.example"]}}}`, `mxs[0]`},
		"space in domain": {`{"policies": {"bank.example x": {"mode": "enforce"}}}`, `policy "bank.example x": domain`},
		"bad mode":        {`{"policies": {"bank.example": {"mode": "enforce-ish"}}}`, `mode "enforce-ish"`},
		"unknown alias":   {`{"policies": {"bank.example": {"policy-alias": "nope"}}}`, `policy-alias "nope"`},
		"csv option":      {"domain,policy\nbank.example,secure ciphers=null\n", `line 2 ("bank.example"): policy`},
		"csv domain":      {"domain,policy\nbank example,verify\n", `line 2 ("bank example"): domain`},
		"csv short":       {"bank.example\n", `line 1: want domain,policy`},
		"json newline":    {`[{"domain": "bank.example", "policy": "verify\nexclude=ALL"}]`, `entry 1 ("bank.example")`},
		"json literal":    {`[{"domain": "[192.0.2.1]", "policy": "verify"}]`, `domain "[192.0.2.1]"`},
	} {
		_, err := ParseImport([]byte(c.data))
		if !errors.Is(err, ErrImport) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%s: %v, want an import error naming %s", name, err, c.mention)
		}
	}
	// An export, derived rows included, reads back as the imported part.
	w := newWorld(t)
	e := w.engine(Config{})
	if err := e.Import(context.Background(), list, "list.json"); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	all, _ := e.List(context.Background())
	WriteCSV(&out, append(all, Entry{Domain: "sts.example", Policy: "(not enforced)", Source: SourceMTASTS}))
	again, err := ParseImport([]byte(out.String()))
	if err != nil || len(again) != len(list) {
		t.Errorf("export read back: %v %v\n%s", again, err, out.String())
	}
	if err := e.Import(context.Background(), []Entry{{Domain: "x.example", Policy: "secure exclude=ALL"}}, "t"); err == nil {
		t.Error("Import took an invalid entry")
	}
}
