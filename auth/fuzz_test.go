package auth

// Fuzz targets. Seeds live in testdata/fuzz/<FuzzName>/ (go test fuzz v1);
// run one with
//
//	go test ./auth -run '^$' -fuzz '^FuzzDKIMVerify$' -fuzztime 30s

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/resolver"
)

// dnsChildEnv makes the test binary a bare dnstest server (no records)
// that prints its address and serves until its stdin closes.
const dnsChildEnv = "SNOWRAIN_AUTH_TEST_DNS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(dnsChildEnv) == "1" {
		srv, err := dnstest.New("")
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString(srv.Addr + "\n")
		io.Copy(io.Discard, os.Stdin)
		srv.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startDNSChild runs a record-less dnstest server in a child process and
// returns its address; it stops when the test ends.
func startDNSChild(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), dnsChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("DNS child: %v", err)
	}
	return strings.TrimSpace(addr)
}

func FuzzParseSignatureTags(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; d=example.org; s=s1; b=abc; bh=def; h=From")
	f.Add("a=; a=; =x; ;;; v")
	f.Fuzz(func(t *testing.T, v string) {
		tags, err := ParseSignatureTags(v)
		if err != nil && !errors.Is(err, ErrSigSyntax) {
			t.Fatalf("error %v does not wrap ErrSigSyntax", err)
		}
		if tags.Domain != strings.ToLower(tags.Domain) || tags.Algorithm != strings.ToLower(tags.Algorithm) ||
			tags.Canon != strings.ToLower(tags.Canon) {
			t.Fatalf("not lower-cased: %+v", tags)
		}
		for _, s := range []string{tags.Version, tags.Algorithm, tags.Domain, tags.Selector, tags.Identifier, tags.Canon, tags.Expiration} {
			if strings.ContainsAny(s, " \t\r\n;") {
				t.Fatalf("FWS or ; left in %q", s)
			}
		}
		if tags.Duplicate != "" && (!validTagName(tags.Duplicate) || strings.Count(v, tags.Duplicate) < 2) {
			t.Fatalf("duplicate %q", tags.Duplicate)
		}
		if again, err2 := ParseSignatureTags(v); again != tags || (err == nil) != (err2 == nil) {
			t.Fatal("not deterministic")
		}
	})
}

func FuzzParseDMARC(f *testing.F) {
	for _, s := range []string{"v=DMARC1; p=reject", "v=DMARC1; p=none; sp=quarantine; np=reject; pct=50; adkim=s",
		"v=DMARC1;p=", "v=DMARC1; p=reject; pct=200", "v=DMARC2"} {
		f.Add(s)
	}
	policy := func(p string, empty bool) bool {
		return p == "none" || p == "quarantine" || p == "reject" || (empty && p == "")
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseDMARC(s)
		if err != nil {
			if rec != nil {
				t.Fatal("record with an error")
			}
			return
		}
		if !isDMARC1(s) {
			t.Fatalf("accepted without leading v=DMARC1: %q", s)
		}
		if !policy(string(rec.Policy), false) || !policy(string(rec.SubdomainPolicy), true) || !policy(string(rec.NP), true) {
			t.Fatalf("policies %q %q %q", rec.Policy, rec.SubdomainPolicy, rec.NP)
		}
		if rec.Percent != nil && (*rec.Percent < 0 || *rec.Percent > 100) {
			t.Fatalf("pct %d accepted", *rec.Percent)
		}
		for _, m := range []dmarc.AlignmentMode{rec.DKIMAlignment, rec.SPFAlignment} {
			if m != dmarc.AlignmentRelaxed && m != dmarc.AlignmentStrict {
				t.Fatalf("alignment mode %q", m)
			}
		}
	})
}

func FuzzAlignment(f *testing.F) {
	f.Add("mail.example.com", "example.com")
	f.Add("a..b", ".")
	f.Add("xn--bcher-kva.example", "BÜCHER.example")
	norm := func(s string) string { d, _ := NormalizeDomain(s); return d }
	f.Fuzz(func(t *testing.T, id, from string) {
		strict := aligned(id, from, dmarc.AlignmentStrict)
		relaxed := aligned(id, from, dmarc.AlignmentRelaxed)
		if strict && !relaxed {
			t.Fatalf("strict but not relaxed: %q %q", id, from)
		}
		if strict != aligned(from, id, dmarc.AlignmentStrict) || relaxed != aligned(from, id, dmarc.AlignmentRelaxed) {
			t.Fatalf("not symmetric: %q %q", id, from)
		}
		if _, ok := NormalizeDomain(id); ok && norm(id) != "" && !aligned(id, id, dmarc.AlignmentStrict) {
			t.Fatalf("%q does not align with itself", id)
		}
		if (norm(id) == "" || norm(from) == "") && relaxed {
			t.Fatalf("empty identifier aligned: %q %q", id, from)
		}
		for _, d := range []string{id, from} {
			if org := OrgDomain(d); !strings.HasSuffix(norm(d), org) {
				t.Fatalf("OrgDomain(%q) = %q, not a suffix", d, org)
			}
		}
	})
}

// isToken reports whether s is an RFC 2045 token, the form our authserv-id
// is configured in.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

func FuzzAuthServID(f *testing.F) {
	f.Add("mx.example.net; spf=pass", "mx.example.net", "example.org")
	f.Add("(a)b", "x", "(")
	f.Fuzz(func(t *testing.T, value, id, domain string) {
		_ = AuthServID(value)
		_ = IsOurs(value, id)
		// What we write, we read back: for every id a token, whatever the
		// message strings around it.
		if isToken(id) {
			v := FormatAuthResults(Results{AuthServID: id, TLS: domain,
				SPF:  SPFResult{Result: "pass", Domain: domain},
				DKIM: []Signature{{Domain: domain, Selector: domain, Result: "fail", Class: DKIMClass(domain), Detail: domain}}})
			if got := AuthServID(v); got != id {
				t.Fatalf("authserv-id %q read back as %q from %q", id, got, v)
			}
			if !IsOurs(v, strings.ToUpper(id)) {
				t.Fatalf("IsOurs is case-sensitive for %q", id)
			}
		}
		// A forger's quoted copy of any id is recognised.
		if !strings.ContainsAny(id, "\r\n") {
			q := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(id)
			if got := AuthServID(" (forged) \"" + q + "\"; dkim=pass"); got != id {
				t.Fatalf("quoted %q read back as %q", id, got)
			}
		}
	})
}

func FuzzFormatAuthResults(f *testing.F) {
	f.Add("example.org", "s1", "rsa-sha256", "TLSv1.2 X", "body_hash", "")
	f.Add("a\r\nInjected: yes", ")(", ";", "(", "\\", ")")
	f.Fuzz(func(t *testing.T, domain, selector, alg, tlsState, class, detail string) {
		// The TLS summary and the classes are ours and short; d=, s= and
		// a= come from the message and may be anything, of any length.
		tlsState, class, detail = tlsState[:min(len(tlsState), 100)], class[:min(len(class), 32)], detail[:min(len(detail), 32)]
		r := Results{AuthServID: "mx.example.net", TLS: tlsState,
			SPF:   SPFResult{Result: "permerror", Domain: domain, ErrorClass: SPFClass(class)},
			Helo:  SPFResult{Result: "pass", Domain: selector},
			DKIM:  []Signature{{Domain: domain, Selector: selector, Algorithm: alg, Result: "fail", Class: DKIMClass(class), Detail: detail}},
			DMARC: DMARCResult{Result: "fail", Policy: "reject", Disposition: "none", FromDomain: domain}}
		v := FormatAuthResults(r)
		checkAuthResValue(t, v)
		// Exactly our results (the HELO one only with a name): nothing
		// injected a separator.
		want := 3
		if selector != "" {
			want++
		}
		if n := strings.Count(v, ";"); n != want || strings.Count(v, ";\r\n\t") != want {
			t.Fatalf("%d separators in %q", n, v)
		}
		if AuthServID(v) != "mx.example.net" {
			t.Fatalf("authserv-id lost in %q", v)
		}
		for _, prop := range []string{"smtp.mailfrom=", "header.d=", "header.s=", "header.a=", "header.from="} {
			if strings.Count(v, prop) < 1 {
				t.Fatalf("%s missing in %q", prop, v)
			}
		}
	})
}

func FuzzFromDomain(f *testing.F) {
	f.Add("Alice <alice@example.org>")
	f.Add("=?utf-8?b?////?= <a@b>, c@d")
	f.Fuzz(func(t *testing.T, v string) {
		d, class := FromDomain([]string{v})
		if (d == "") == (class == "") {
			t.Fatalf("domain %q class %q", d, class)
		}
		if class != "" && class != FromInvalid && class != FromMultiple {
			t.Fatalf("class %q for one header", class)
		}
		for i := 0; i < len(d); i++ {
			if c := d[i]; c <= ' ' || c >= 0x7f || c == '@' {
				t.Fatalf("domain %q from %q", d, v)
			}
		}
		if d != strings.ToLower(d) {
			t.Fatalf("domain %q not lower-case", d)
		}
		if d2, c2 := FromDomain([]string{v, v}); d2 != "" || c2 != FromMultiple {
			t.Fatalf("two headers: %q %q", d2, c2)
		}
		// Every domain found is in the form identities compare in, short
		// enough for its _dmarc name, and found again beside another field.
		all, class := FromDomains([]string{v})
		if class == "" && len(all) != 1 {
			t.Fatalf("valid From with domains %q", all)
		}
		for _, x := range all {
			if n, ok := NormalizeDomain(x); !ok || n != x || len(x) > maxFromDomain {
				t.Fatalf("domain %q not normalised (from %q)", x, v)
			}
		}
		both, _ := FromDomains([]string{"a@other.example", v})
		for _, x := range all {
			if !slices.Contains(both, x) {
				t.Fatalf("%q lost beside another field", x)
			}
		}
	})
}

// FuzzDKIMVerify streams arbitrary messages through the verifier against a
// DNS server with no keys: no panic, no hang, one verdict per DKIM-Signature
// value given to Close.
func FuzzDKIMVerify(f *testing.F) {
	msgs, _ := filepath.Glob("testdata/dkim/*.msg")
	for _, m := range msgs {
		if b, err := os.ReadFile(m); err == nil {
			f.Add(b, uint8(64))
		}
	}
	// The server runs in a child process: its goroutines' idle loops would
	// otherwise show up as new coverage at random and send the fuzzer off
	// minimizing inputs that are not interesting.
	r, err := resolver.New(resolver.Config{Servers: []string{startDNSChild(f)}, Timeout: 500 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte, chunk uint8) {
		fields, _ := splitMessage(msg)
		values := sigValues(fields)
		// Also hand Close values go-msgauth may not see the same way.
		values = append(values, " v=1; d=x; s=y", "garbage")
		done := make(chan []Signature, 1)
		go func() {
			v := NewDKIMVerifier(context.Background(), r, 4)
			n := int(chunk%128) + 1
			for rest := msg; len(rest) > 0; {
				k := min(len(rest), n)
				v.Write(rest[:k])
				rest = rest[k:]
			}
			done <- v.Close(values)
		}()
		select {
		case got := <-done:
			if len(got) != len(values) {
				t.Fatalf("%d verdicts for %d signatures", len(got), len(values))
			}
			for _, s := range got {
				switch s.Result {
				case "fail", "permerror", "temperror", "policy":
				default: // no key anywhere, so nothing passes
					t.Fatalf("result %q: %+v", s.Result, s)
				}
				if s.Result != "policy" && s.Class == "" {
					t.Fatalf("failure without a class: %+v", s)
				}
			}
		case <-time.After(20 * time.Second):
			t.Fatal("verifier hangs")
		}
	})
}
