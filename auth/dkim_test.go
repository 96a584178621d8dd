package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/resolver"
)

// dkimCorpusMax is the MaxVerifications every corpus case runs with: low
// enough that 15-over_limit's third signature is over the cap.
const dkimCorpusMax = 2

func testResolver(t testing.TB, srv *dnstest.Server) *resolver.Client {
	t.Helper()
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// field is one header field as a milter hands it over: the name, and the
// raw value after the colon (leading space and folding included).
type field struct{ name, value string }

// splitMessage cuts a CRLF message into its header fields and body. It is
// lenient, as a milter's MTA is: a line without a colon becomes a field with
// an empty value.
func splitMessage(msg []byte) (fields []field, body []byte) {
	head := msg
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		head, body = msg[:i], msg[i+4:]
	}
	for _, line := range strings.Split(string(head), "\r\n") {
		if len(fields) > 0 && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
			fields[len(fields)-1].value += "\r\n" + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		fields = append(fields, field{name, value})
	}
	return fields, body
}

// sigValues returns the raw DKIM-Signature values, as a milter collects
// them for Close.
func sigValues(fields []field) []string {
	var out []string
	for _, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			out = append(out, f.value)
		}
	}
	return out
}

// verifyStreaming feeds msg the way the milter does: one Write per header
// field, the blank line, then the body in chunks of chunk bytes.
func verifyStreaming(r resolver.Resolver, msg []byte, max, chunk int) []Signature {
	fields, body := splitMessage(msg)
	v := NewDKIMVerifier(context.Background(), r, max)
	for _, f := range fields {
		v.Write([]byte(f.name + ":" + f.value + "\r\n"))
	}
	v.Write([]byte("\r\n"))
	for rest := body; len(rest) > 0; {
		n := min(len(rest), chunk)
		v.Write(rest[:n])
		rest = rest[n:]
	}
	return v.Close(sigValues(fields))
}

func formatSig(s Signature) string {
	dash := func(v string) string {
		if v == "" {
			return "-"
		}
		return v
	}
	return fmt.Sprintf("%s %s %s %s %s %s %d", s.Result, dash(string(s.Class)), dash(s.Detail), s.Domain, s.Selector, s.Algorithm, s.KeyBits)
}

// startZone serves a corpus .dns file: zone text, plus "SERVFAIL name"
// lines that a zone file cannot express.
func startZone(t testing.TB, zone string) *dnstest.Server {
	t.Helper()
	var text, servfail []string
	for _, line := range strings.Split(zone, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "SERVFAIL "); ok {
			servfail = append(servfail, strings.TrimSpace(name))
		} else {
			text = append(text, line)
		}
	}
	srv := dnstest.Start(t, strings.Join(text, "\n"))
	for _, n := range servfail {
		srv.ServFail(n)
	}
	return srv
}

// TestDKIMCorpus runs testdata/dkim/NN-name.{msg,dns,result}: see each
// .readme for why the case exists, and gen.go for how it was made.
func TestDKIMCorpus(t *testing.T) {
	msgs, _ := filepath.Glob("testdata/dkim/*.msg")
	if len(msgs) < 18 {
		t.Fatalf("%d DKIM cases, want at least 18", len(msgs))
	}
	for _, path := range msgs {
		base := strings.TrimSuffix(path, ".msg")
		t.Run(filepath.Base(base), func(t *testing.T) {
			t.Parallel()
			msg := mustRead(t, path)
			zone := mustRead(t, base+".dns")
			want := strings.TrimSpace(string(mustRead(t, base+".result")))
			if readme := strings.TrimSpace(string(mustRead(t, base+".readme"))); readme == "" {
				t.Error("empty .readme")
			}
			if bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatal(".msg has bare LF line ends")
			}
			srv := startZone(t, string(zone))
			// The milter's shape (one write per header, 64-byte body
			// chunks) and a worst case (one byte at a time).
			for _, chunk := range []int{64, 1} {
				sigs := verifyStreaming(testResolver(t, srv), msg, dkimCorpusMax, chunk)
				var got []string
				for _, s := range sigs {
					got = append(got, formatSig(s))
				}
				if g := strings.Join(got, "\n"); g != want {
					t.Errorf("chunk %d: got\n%s\nwant\n%s", chunk, g, want)
				}
			}
		})
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDKIMSignatureCap checks that signatures over the cap cost no DNS:
// twelve copies of one signature under a cap of three make three lookups.
func TestDKIMSignatureCap(t *testing.T) {
	msg := mustRead(t, "testdata/dkim/01-rsa_pass.msg")
	fields, _ := splitMessage(msg)
	sig := "DKIM-Signature:" + sigValues(fields)[0] + "\r\n"
	many := []byte(strings.Repeat(sig, 11) + string(msg))
	srv := startZone(t, string(mustRead(t, "testdata/dkim/01-rsa_pass.dns")))
	sigs := verifyStreaming(testResolver(t, srv), many, 3, 512)
	if len(sigs) != 12 {
		t.Fatalf("%d verdicts for 12 signatures", len(sigs))
	}
	for i, s := range sigs {
		want := "pass - - example.org s1 rsa-sha256 2048"
		if i >= 3 {
			want = "policy - over_limit example.org s1 rsa-sha256 2048" // key seen for the others
		}
		if got := formatSig(s); got != want {
			t.Errorf("signature %d: %s, want %s", i, got, want)
		}
	}
	if q := srv.Queries(); q != 3 {
		t.Errorf("%d DNS queries for 3 verified signatures", q)
	}
	if DKIMVerdict(sigs) != "pass" {
		t.Errorf("verdict %s", DKIMVerdict(sigs))
	}
}

// TestDKIMNoHang: a key server that never answers costs one resolver
// timeout, and the milter's writes never block on it for good.
func TestDKIMNoHang(t *testing.T) {
	msg := mustRead(t, "testdata/dkim/14-two_signatures_one_fails.msg")
	srv := startZone(t, string(mustRead(t, "testdata/dkim/14-two_signatures_one_fails.dns")))
	srv.SetDrop(true)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sigs := verifyStreaming(r, msg, 8, 64)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("verification took %v", d)
	}
	for _, s := range sigs {
		if got := formatSig(s); !strings.HasPrefix(got, "temperror other dns_temp ") {
			t.Errorf("dropped DNS: %s", got)
		}
	}
}

// TestDKIMVerifierEdges covers the verifier outside the corpus: nothing
// written, no signatures, a header block that never ends, a cancelled
// context.
func TestDKIMVerifierEdges(t *testing.T) {
	srv := dnstest.Start(t, "")
	r := testResolver(t, srv)

	v := NewDKIMVerifier(context.Background(), r, 8)
	if got := v.Close(nil); len(got) != 0 {
		t.Errorf("nothing written, no headers: %+v", got)
	}

	v = NewDKIMVerifier(context.Background(), r, 8)
	got := v.Close([]string{" v=1; d=Example.ORG.; s=s1; a=rsa-sha256"})
	if len(got) != 1 || formatSig(got[0]) != "permerror other syntax example.org s1 rsa-sha256 0" {
		t.Errorf("empty message, one header: %+v", got)
	}

	v = NewDKIMVerifier(context.Background(), r, 8)
	v.Write([]byte("From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"))
	if got := v.Close(nil); len(got) != 0 {
		t.Errorf("unsigned message: %+v", got)
	}

	// The header block is cut off: go-msgauth cannot read it.
	v = NewDKIMVerifier(context.Background(), r, 8)
	v.Write([]byte("DKIM-Signature: v=1; d=example.org; s=s1\r\nFrom: a@example.org\r\n"))
	got = v.Close([]string{" v=1; d=example.org; s=s1"})
	if len(got) != 1 || got[0].Result != "permerror" || got[0].Detail != "syntax" {
		t.Errorf("truncated header: %+v", got)
	}

	// A cancelled context: the lookup fails at once, as a temporary error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msg := mustRead(t, "testdata/dkim/01-rsa_pass.msg")
	v = NewDKIMVerifier(ctx, r, 8)
	v.Write(msg)
	fields, _ := splitMessage(msg)
	got = v.Close(sigValues(fields))
	if len(got) != 1 || got[0].Result != "temperror" {
		t.Errorf("cancelled context: %+v", got)
	}
}

func TestDKIMVerdict(t *testing.T) {
	cases := []struct {
		results []string
		want    DKIMStatus
	}{
		{nil, "none"},
		{[]string{"pass"}, "pass"},
		{[]string{"fail", "pass"}, "pass"},
		{[]string{"permerror", "temperror"}, "temperror"},
		{[]string{"permerror", "fail"}, "fail"},
		{[]string{"temperror", "fail", "pass"}, "pass"},
		{[]string{"fail", "temperror"}, "temperror"},
		{[]string{"permerror"}, "permerror"},
		{[]string{"temperror"}, "temperror"},
		{[]string{"policy", "permerror"}, "permerror"},
		{[]string{"neutral", "policy"}, "neutral"},
		{[]string{"policy"}, "policy"},
		{[]string{"bogus"}, "permerror"},
	}
	for _, c := range cases {
		var sigs []Signature
		for _, r := range c.results {
			sigs = append(sigs, Signature{Result: DKIMStatus(r)})
		}
		if got := DKIMVerdict(sigs); got != c.want {
			t.Errorf("DKIMVerdict(%v) = %s, want %s", c.results, got, c.want)
		}
	}
}

// TestClassifyDKIM: every go-msgauth verification error, built as the
// patched copy returns it (a sentinel, or a sentinel wrapping what went
// wrong), gets its class. The texts of those errors are pinned in
// third_party/go-msgauth/dkim/snowrain_errors_test.go. Every dkimClasses
// entry must be the one that decides at least one case.
func TestClassifyDKIM(t *testing.T) {
	wrap := func(class, detail error) error { return fmt.Errorf("%w: %w", class, detail) }
	dnsErr := func(name, msg string) error { return &net.DNSError{Err: msg, Name: name} }
	cases := []struct {
		err  error
		want string
	}{
		{wrap(dkim.ErrKeyUnavailable, dnsErr("s1._domainkey.example.org.", "server answered SERVFAIL")), "temperror other dns_temp"},
		{wrap(dkim.ErrKeyTooShort, errors.New("want 1024 bits, has 512 bits")), "permerror weak_key -"},
		{dkim.ErrKeyRevoked, "permerror revoked -"},
		{dkim.ErrExpired, "permerror expired -"},
		{dkim.ErrBodyHash, "fail body_hash -"},
		{wrap(dkim.ErrSignature, errors.New("crypto/rsa: verification error")), "fail other header_sig"},
		{wrap(dkim.ErrSignature, errors.New("dkim: invalid Ed25519 signature")), "fail other header_sig"},
		{dkim.ErrSignatureVersion, "permerror version -"},
		{dkim.ErrKeyVersion, "permerror version key_version"},
		{wrap(dkim.ErrSignatureTags, dkim.ErrDuplicateTag), "permerror duplicate_tags -"},
		{wrap(dkim.ErrKeyRecord, dkim.ErrDuplicateTag), "permerror duplicate_tags -"},
		{wrap(dkim.ErrWeakHash, errors.New("sha1")), "permerror unsupported_algorithm sha1"},
		{dkim.ErrUnsupportedHash, "permerror unsupported_algorithm hash"},
		{dkim.ErrUnsupportedKeyAlgorithm, "permerror unsupported_algorithm key"},
		{dkim.ErrMalformedAlgorithm, "permerror unsupported_algorithm syntax"},
		{dkim.ErrInappropriateKey, "permerror unsupported_algorithm key_hash"},
		{dkim.ErrInappropriateHash, "permerror unsupported_algorithm key_hash"},
		{dkim.ErrUnsupportedHeaderCanon, "permerror unsupported_algorithm canon"},
		{dkim.ErrUnsupportedBodyCanon, "permerror unsupported_algorithm canon"},
		{dkim.ErrUnsupportedQueryMethod, "permerror unsupported_algorithm query"},
		{wrap(dkim.ErrNoKey, dnsErr("missing._domainkey.example.org.", "no such host")), "permerror other no_key"},
		{dkim.ErrNoValidKey, "permerror other no_key"},
		{dkim.ErrMultipleKeys, "permerror other no_key"},
		{wrap(dkim.ErrKeySyntax, errors.New("missing public key data")), "permerror other key_syntax"},
		{wrap(dkim.ErrKeySyntax, errors.New("illegal base64 data at input byte 4")), "permerror other key_syntax"},
		{wrap(dkim.ErrKeyRecord, dkim.ErrMalformedTagList), "permerror other key_syntax"},
		{dkim.ErrBodyLengthTag, "fail other l_tag"},
		{dkim.ErrDomainMismatch, "permerror other syntax"},
		{dkim.ErrFromNotSigned, "permerror other from_not_signed"},
		{dkim.ErrMissingTag, "permerror other syntax"},
		{wrap(dkim.ErrSignatureTags, dkim.ErrMalformedTagList), "permerror other syntax"},
		{wrap(dkim.ErrMalformedTime, errors.New(`strconv.ParseInt: parsing "x": invalid syntax`)), "permerror other syntax"},
		{wrap(dkim.ErrMalformedExpiration, errors.New(`strconv.ParseInt: parsing "x": invalid syntax`)), "permerror other syntax"},
		{wrap(dkim.ErrMalformedBodyHash, errors.New("illegal base64 data at input byte 0")), "permerror other syntax"},
		{wrap(dkim.ErrMalformedSignature, errors.New("illegal base64 data at input byte 0")), "permerror other syntax"},
		// Not in the table: the fallback.
		{dkim.ErrInappropriateService, "permerror other -"},
		{wrap(dkim.ErrKeySize, errors.New("31 bytes")), "permerror other -"},
		{errors.New("dkim: something new"), "permerror other -"},
		// What the errors quote (the signer's selector, domain, t=) never
		// decides the class.
		{wrap(dkim.ErrNoKey, dnsErr("canonicalization._domainkey.example.org.", "no such host")), "permerror other no_key"},
		{wrap(dkim.ErrNoKey, dnsErr("key revoked._domainkey.signature has expired.", "invalid domain name")), "permerror other no_key"},
		{wrap(dkim.ErrKeyUnavailable, dnsErr("key is too short._domainkey.x.", "i/o timeout")), "temperror other dns_temp"},
		{wrap(dkim.ErrMalformedTime, errors.New(`strconv.ParseInt: parsing "key revoked": invalid syntax`)), "permerror other syntax"},
		{errors.New("dkim: body hash did not verify"), "permerror other -"},
	}
	decided := map[error]bool{}
	for _, c := range cases {
		r, cl, d := ClassifyDKIM(c.err)
		if d == "" {
			d = "-"
		}
		if got := string(r) + " " + string(cl) + " " + d; got != c.want {
			t.Errorf("%q → %q, want %q", c.err, got, c.want)
		}
		for _, e := range dkimClasses {
			if errors.Is(c.err, e.err) {
				decided[e.err] = true
				break
			}
		}
	}
	for _, e := range dkimClasses {
		if !decided[e.err] {
			t.Errorf("dkimClasses entry %q decides no test case", e.err)
		}
	}
	if r, c, d := ClassifyDKIM(nil); r != "pass" || c != "" || d != "" {
		t.Errorf("nil → %s %s %s", r, c, d)
	}
}

func TestKeyBits(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pkix, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	pkcs1 := x509.MarshalPKCS1PublicKey(&rk.PublicKey)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	b64 := base64.StdEncoding.EncodeToString
	p := b64(pkix)
	cases := map[string]int{
		"v=DKIM1; k=rsa; p=" + p:                             1024,
		"p=" + p:                                             1024,
		"v=DKIM1; p=" + p[:40] + " \t" + p[40:]:              1024, // FWS inside p=
		"v=DKIM1; k=rsa; p=" + b64(pkcs1):                    1024, // RFC 6376 erratum 3017
		"v=DKIM1; k=ed25519; p=" + b64(edPub):                256,
		"v=DKIM1; k=ed25519; p=" + b64(edPub[:31]):           0,
		"v=DKIM1; k=rsa; p=":                                 0,
		"v=DKIM1; k=rsa; p=!!!!":                             0,
		"v=DKIM1; k=rsa; p=" + b64([]byte("not a key")):      0,
		"v=DKIM1; k=rsa":                                     0,
		"":                                                   0,
		"v=DKIM1; k=rsa; p=" + b64(edPub):                    0,
		"v=DKIM1; k=rsa; p=" + b64(mustPKIX(t, edPub)):       0, // an ed25519 SPKI is no RSA key
		"v=DKIM1; k = ed25519 ; p = " + b64(edPub) + " ; t=": 256,
	}
	for rec, want := range cases {
		if got := KeyBits(rec); got != want {
			t.Errorf("KeyBits(%.60q) = %d, want %d", rec, got, want)
		}
	}
}

func mustPKIX(t *testing.T, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseSignatureTags(t *testing.T) {
	cases := []struct {
		in        string
		want      SignatureTags
		syntaxErr bool
	}{
		{" v=1; a=RSA-SHA256; c=Relaxed/simple; d=Example.ORG.; s=s1; i=@example.org; x=1600000000; b=abc;\r\n\tbh=de f=",
			SignatureTags{Version: "1", Algorithm: "rsa-sha256", Domain: "example.org", Selector: "s1", Identifier: "@example.org",
				Canon: "relaxed/simple", Expiration: "1600000000"}, false},
		{"d=example.org; s=sel\r\n ector", SignatureTags{Domain: "example.org", Selector: "selector"}, false},
		{"d=a.example; d=b.example; s=s1", SignatureTags{Domain: "a.example", Selector: "s1", Duplicate: "d"}, false},
		{"v=1; v=1; d=x; d=y", SignatureTags{Version: "1", Domain: "x", Duplicate: "v"}, false},
		{"=broken; d=example.org", SignatureTags{Domain: "example.org"}, true},
		{"d=example.org; novalue", SignatureTags{Domain: "example.org"}, true},
		{"1a=x; d=example.org", SignatureTags{Domain: "example.org"}, true},
		{"a-b=x; s=s", SignatureTags{Selector: "s"}, true},
		{"x_1=ok; s=s", SignatureTags{Selector: "s"}, false},
		{";;; ;", SignatureTags{}, false},
		{"", SignatureTags{}, false},
		{"d = example.org ; s = s1 ", SignatureTags{Domain: "example.org", Selector: "s1"}, false},
	}
	for _, c := range cases {
		got, err := ParseSignatureTags(c.in)
		if got != c.want {
			t.Errorf("ParseSignatureTags(%q) = %+v, want %+v", c.in, got, c.want)
		}
		if (err != nil) != c.syntaxErr || (err != nil && !errors.Is(err, ErrSigSyntax)) {
			t.Errorf("ParseSignatureTags(%q) error %v, want syntax error %v", c.in, err, c.syntaxErr)
		}
	}
}
