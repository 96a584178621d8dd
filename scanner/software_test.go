package scanner

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/sendmailtest"
	"github.com/snowrain/snowrain/internal/testca"
)

// softwareCase is one recorded greeting of testdata/software.txt.
type softwareCase struct {
	name, source, want, rule, version, banner string
	ehlo                                      []string
}

// readSoftwareCases reads blocks of "key: value" lines: [name], source:,
// want:, rule:, version:, banner:, and one ehlo: per EHLO reply line.
func readSoftwareCases(t *testing.T) []softwareCase {
	t.Helper()
	f, err := os.Open("testdata/software.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []softwareCase
	var c *softwareCase
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			out = append(out, softwareCase{name: line[1 : len(line)-1]})
			c = &out[len(out)-1]
		case c == nil:
			t.Fatalf("line %d outside a case", n)
		default:
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				k, v = strings.TrimSuffix(line, ":"), ""
			}
			switch k {
			case "source":
				c.source = v
			case "want":
				c.want = v
			case "rule":
				c.rule = v
			case "version":
				c.version = v
			case "banner":
				c.banner = v
			case "ehlo":
				c.ehlo = append(c.ehlo, v)
			default:
				t.Fatalf("line %d: unknown key %q", n, k)
			}
		}
	}
	return out
}

// TestSoftwareGolden classifies the recorded greetings: real Postfix and
// Sendmail captured from the test fixtures, the others from public
// sources named in each case.
func TestSoftwareGolden(t *testing.T) {
	cases := readSoftwareCases(t)
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.source == "" {
				t.Error("no source")
			}
			got := ClassifySoftware(c.banner, c.ehlo)
			if got.Name != c.want || got.Rule != c.rule || got.Version != c.version {
				t.Errorf("%+v, want %s by %s version %q", got, c.want, c.rule, c.version)
			}
		})
		seen[c.want] = true
	}
	for _, s := range []string{SoftwarePostfix, SoftwareExim, SoftwareSendmail, SoftwareExchange, SoftwareExchangeOnline,
		SoftwareGoogle, SoftwareQmail, SoftwareOpenSMTPD, SoftwareZimbra, SoftwareHaraka, SoftwareCiscoESA, SoftwareUnknown} {
		if !seen[s] {
			t.Errorf("no recorded greeting of %s", s)
		}
	}
	// Every rule is exercised by some recorded greeting.
	used := map[string]bool{}
	for _, c := range cases {
		used[c.rule] = true
	}
	for _, r := range SoftwareRules {
		if !used[r.ID] {
			t.Errorf("rule %s has no golden case", r.ID)
		}
		if r.Source == "" || r.Matches == "" {
			t.Errorf("rule %s lacks its source or description", r.ID)
		}
	}
}

// capture reads a real server's banner and EHLO reply, as the grab does.
func capture(t *testing.T, addr string) (string, []string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	banner, err := ReadReply(r)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "EHLO scanner.test.example\r\n")
	ehlo, err := ReadReply(r)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return banner.Text(), ehlo.Lines
}

// TestSoftwareRealMTAs classifies live Postfix (its default banner,
// Debian's, and one that hides the name) and Sendmail through the grab
// the scans use, and checks the recorded golden copies still match what
// these versions say.
func TestSoftwareRealMTAs(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")
	cases := []struct {
		name, addr, want, rule, golden string
	}{
		{"postfix default", postfixtest.Start(t, postfixtest.Options{CertFile: cert, KeyFile: key}).Addr,
			SoftwarePostfix, "postfix.banner", "postfix-3.7-default"},
		{"postfix debian", postfixtest.Start(t, postfixtest.Options{CertFile: cert, KeyFile: key,
			Main: map[string]string{"smtpd_banner": "$myhostname ESMTP $mail_name (Debian/GNU)"}}).Addr,
			SoftwarePostfix, "postfix.banner", "postfix-3.7-debian"},
		{"postfix hidden", postfixtest.Start(t, postfixtest.Options{CertFile: cert, KeyFile: key,
			Main: map[string]string{"smtpd_banner": "$myhostname ESMTP"}}).Addr,
			SoftwarePostfix, "postfix.ehlo", "postfix-3.7-hidden-banner"},
		{"sendmail", sendmailtest.Start(t, sendmailtest.Options{CertFile: cert, KeyFile: key, CAFile: ca.CAFile()}).Addr,
			SoftwareSendmail, "sendmail.banner", "sendmail-8.17-default"},
	}
	recorded := map[string]softwareCase{}
	for _, c := range readSoftwareCases(t) {
		recorded[c.name] = c
	}
	g := &Grabber{EHLOName: "scanner.test.example", Timeout: 20 * time.Second, Dialer: &Dialer{}}
	for _, c := range cases {
		ap := netip.MustParseAddrPort(c.addr)
		r := g.Grab(context.Background(), ap.Addr(), int(ap.Port()))
		if r.Software == nil || r.Software.Name != c.want || r.Software.Rule != c.rule {
			t.Errorf("%s: grab says %+v (banner %q), want %s by %s", c.name, r.Software, r.Banner, c.want, c.rule)
		}
		if r.TLS == nil {
			t.Errorf("%s: no TLS in the grab: %s", c.name, r.Error)
		}
		banner, ehlo := capture(t, c.addr)
		t.Logf("%s:\nbanner: %s\nehlo: %s", c.name, banner, strings.Join(ehlo, "\nehlo: "))
		rec, ok := recorded[c.golden]
		if !ok {
			t.Errorf("%s: no recorded case %s", c.name, c.golden)
			continue
		}
		// The recording is this version's reply: the same keywords in the
		// same order (their parameters, such as the SASL mechanisms the
		// machine has, may differ).
		keywords := func(lines []string) string {
			var k []string
			for _, l := range lines[1:] {
				k = append(k, strings.Fields(l + " x")[0])
			}
			return strings.Join(k, " ")
		}
		if got, want := keywords(ehlo), keywords(rec.ehlo); got != want {
			t.Errorf("%s: live EHLO keywords %q, recorded %q", c.name, got, want)
		}
	}
}

func FuzzClassifySoftware(f *testing.F) {
	for _, c := range []struct{ banner, ehlo string }{
		{"mx.example ESMTP Postfix", "mx.example\nPIPELINING\nSIZE 10240000\nETRN\nENHANCEDSTATUSCODES"},
		{"mx.google.com ESMTP abc - gsmtp", "mx.google.com at your service, [192.0.2.1]\nSIZE 1"},
		{"h ESMTP", "h\n8BITMIME\nSIZE 10485760"},
		{"", ""},
	} {
		f.Add(c.banner, c.ehlo)
	}
	f.Fuzz(func(t *testing.T, banner, ehlo string) {
		s := ClassifySoftware(banner, strings.Split(ehlo, "\n"))
		if s.Name == "" || s.Rule == "" {
			t.Fatalf("%+v", s)
		}
		if _, ok := SoftwareRuleByID(s.Rule); !ok && s.Rule != NoRule {
			t.Fatalf("rule %q", s.Rule)
		}
	})
}
