package auth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/internal/dnstest"
)

// dkimConformanceMax is the signature cap the public corpora run with,
// the milter's default.
const dkimConformanceMax = 8

// txtRR builds a TXT record for value, cut into 255-octet strings and
// escaped for miekg/dns, as a zone would publish it.
func txtRR(name, value string) dns.RR {
	strs := chunk255(value)
	for i := range strs {
		strs[i] = strings.ReplaceAll(strs[i], `\`, `\\`)
	}
	return &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(strings.ToLower(name)), Rrtype: dns.TypeTXT,
		Class: dns.ClassINET, Ttl: 60}, Txt: strs}
}

// crlf gives a message the CRLF line ends an MTA hands a milter; some
// corpus files have bare LF.
func crlf(msg []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

// serveFakeDNS serves Mail::DKIM's t/FAKE_DNS.dat: "name value" lines,
// NXDOMAIN, and ~~error~~ for a failing lookup (a timeout or SERVFAIL).
func serveFakeDNS(t *testing.T, path string) *dnstest.Server {
	t.Helper()
	srv := dnstest.Start(t, "")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		value = strings.TrimSpace(value)
		switch {
		case value == "NXDOMAIN": // nothing served: dnstest answers NXDOMAIN
		case value == "~~Query timed out~~":
			srv.Silence(name)
		case value == "~~SERVFAIL~~":
			srv.ServFail(name)
		case strings.HasPrefix(value, "~~"):
			t.Fatalf("%s: unknown error %s", path, value)
		case value == `""`:
			srv.AddRR(txtRR(name, ""))
		default:
			srv.AddRR(txtRR(name, value))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestMailDKIMCorpus verifies Mail::DKIM's corpus through our DKIM
// verifier, fed as the milter feeds it, against the results of
// mail-dkim/verifier-results.txt; known-differences.txt lists the cases
// where we knowingly give another result, asserted as what we give.
func TestMailDKIMCorpus(t *testing.T) {
	const dir = "testdata/conformance/dkim/mail-dkim"
	known := readKnownDiffs(t, "testdata/conformance/dkim/known-differences.txt")
	srv := serveFakeDNS(t, dir+"/FAKE_DNS.dat")
	r := testResolver(t, srv)
	f, err := os.Open(dir + "/verifier-results.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	used := map[string]bool{}
	var passed, differ, cases int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		col := strings.Split(line, "\t")
		if len(col) != 5 {
			t.Fatalf("verifier-results.txt: bad line %q", line)
		}
		file, want, wantSigs := col[0], col[2], col[3]
		cases++
		t.Run(file, func(t *testing.T) {
			msg := crlf(mustRead(t, filepath.Join(dir, "corpus", file)))
			sigs := verifyStreaming(r, msg, dkimConformanceMax, 64)
			got := string(DKIMVerdict(sigs))
			var gotSigs []string
			for _, s := range sigs {
				gotSigs = append(gotSigs, string(s.Result))
			}
			if kd, ok := known[file]; ok {
				used[file] = true
				differ++
				if got == want {
					t.Errorf("known difference now gives %s, as expected: drop it from known-differences.txt", got)
				} else if got != kd.got {
					t.Errorf("known difference: got %s %v, listed as %s; want %s", got, sigs, kd.got, want)
				}
				return
			}
			if got != want {
				t.Errorf("got %s, want %s (%s); signatures %+v", got, want, col[4], sigs)
				return
			}
			if wantSigs != "-" {
				w := strings.Split(wantSigs, ",")
				if len(gotSigs) < len(w) || !slices.Equal(gotSigs[:len(w)], w) {
					t.Errorf("signatures %v, want %v first", gotSigs, w)
					return
				}
			}
			passed++
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(dir + "/corpus/*")
	if len(files) != cases {
		t.Errorf("%d corpus files, %d in verifier-results.txt", len(files), cases)
	}
	for name := range known {
		if !used[name] {
			t.Errorf("known difference %s is not in the corpus", name)
		}
	}
	t.Logf("Mail::DKIM corpus: %d passed, %d known differences", passed, differ)
}

// rfc8463Brisbane is the Ed25519 key of RFC 8463 appendix A.2, which
// dkimpy's tests write inline for rfc6376.signed.msg.
const rfc8463Brisbane = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

// TestDKIMSamples verifies the dkimpy and mailauth samples: each of their
// signatures passes in its own suite.
func TestDKIMSamples(t *testing.T) {
	const dir = "testdata/conformance/dkim"
	read := func(p string) string { return strings.TrimSpace(string(mustRead(t, filepath.Join(dir, p)))) }

	dkimpy := dnstest.Start(t, "")
	dkimpy.AddRR(
		txtRR("sed._domainkey.test.ex", read("dkimpy/eximtest.dns")),
		txtRR("20120113._domainkey.gmail.com", read("dkimpy/gmail-20120113.txt")),
		txtRR("test._domainkey.football.example.com", read("dkimpy/test.txt")),
		txtRR("brisbane._domainkey.football.example.com", rfc8463Brisbane))

	mailauth := dnstest.Start(t, "")
	var zone map[string]map[string][][]string
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, "mailauth/dns.json")), &zone); err != nil {
		t.Fatal(err)
	}
	for name, types := range zone {
		for _, txt := range types["TXT"] {
			mailauth.AddRR(txtRR(name, strings.Join(txt, "")))
		}
	}

	cases := []struct {
		file string
		srv  *dnstest.Server
		want []string
	}{
		{"dkimpy/ed25519test2.msg", dkimpy, []string{"pass"}},           // Exim's Ed25519 signature
		{"dkimpy/rfc6376.signed.msg", dkimpy, []string{"pass", "pass"}}, // RFC 8463 A.3, Ed25519 and RSA
		{"dkimpy/test2.message", dkimpy, []string{"pass"}},              // test_degenerate_folding
		{"mailauth/signed.eml", mailauth, []string{"pass", "pass"}},     // RFC 8463 A.3, relaxed
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			msg := crlf(mustRead(t, filepath.Join(dir, tc.file)))
			var got []string
			for _, s := range verifyStreaming(testResolver(t, tc.srv), msg, dkimConformanceMax, 64) {
				got = append(got, string(s.Result))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("signatures %v, want %v", got, tc.want)
			}
		})
	}
}
