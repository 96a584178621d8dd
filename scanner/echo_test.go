package scanner

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/sendmailtest"
	"github.com/snowrain/snowrain/internal/testca"
)

// TestEchoClassGoldens classifies the recorded replies of real MTAs
// (testdata/starttls-replies.txt): an MTA's own refusal text is no echo.
func TestEchoClassGoldens(t *testing.T) {
	data, err := os.ReadFile("testdata/starttls-replies.txt")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			t.Fatalf("line %d: %d fields", i+1, len(f))
		}
		code, _ := strconv.Atoi(f[3])
		t.Run(fmt.Sprintf("%s/%s/%s", f[0], f[1], f[2]), func(t *testing.T) {
			if got := ClassifyEcho(code, f[4]); string(got) != f[5] {
				t.Errorf("%d %q: %s, want %s", code, f[4], got, f[5])
			}
		})
		n++
	}
	if n < 20 {
		t.Errorf("only %d golden replies", n)
	}
}

// rewriter is a middlebox on loopback between the scanner and a real
// MTA: it replaces the STARTTLS command line with what a box delivers.
// It returns the address it listens on.
func rewriter(t *testing.T, addr, upstream, replacement string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(c, s); c.Close() }()
			go func() {
				defer wg.Done()
				defer s.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					starttls := strings.EqualFold(strings.TrimSpace(line), "STARTTLS")
					if starttls && replacement != "" {
						line = replacement + "\r\n"
					}
					if _, err := io.WriteString(s, line); err != nil {
						return
					}
					if starttls {
						io.Copy(s, r) // a TLS handshake may follow: bytes, not lines
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestEchoClassesRealMTAs sweeps real Postfix and Sendmail, directly and
// behind boxes rewriting STARTTLS: the class follows from the real
// server's reply. A Sendmail without TLS ("454 4.3.3 TLS not available
// after start") is no truncated echo (issue 12).
func TestEchoClassesRealMTAs(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")
	pfOff := postfixtest.Start(t, postfixtest.Options{})
	pfBroken := postfixtest.Start(t, postfixtest.Options{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"})
	pfOn := postfixtest.Start(t, postfixtest.Options{CertFile: cert, KeyFile: key})
	smOff := sendmailtest.Start(t, sendmailtest.Options{})
	smOn := sendmailtest.Start(t, sendmailtest.Options{CertFile: cert, KeyFile: key, CAFile: ca.CAFile()})
	cases := []struct {
		name, upstream, replacement string
		class                       StripClass
		advertised                  bool
	}{
		{"postfix-off", pfOff.Addr, "", StripNoEcho, false},
		{"postfix-broken", pfBroken.Addr, "", StripNoEcho, true},
		{"postfix-on", pfOn.Addr, "", StripHandshake, true},
		{"postfix-behind-pix", pfOn.Addr, "XXXXXXXX", StripNoEcho, true},
		{"sendmail-off", smOff.Addr, "", StripNoEcho, false},
		{"sendmail-on", smOn.Addr, "", StripHandshake, true},
		{"sendmail-behind-pix", smOn.Addr, "XXXXXXXX", StripEchoReplaced, true},
		{"sendmail-behind-truncator", smOn.Addr, "STAR", StripEchoTruncated, true},
		{"sendmail-behind-lowercaser", smOn.Addr, "starttls", StripHandshake, true},
	}
	g := &Grabber{EHLOName: "scanner.test.example", Timeout: 20 * time.Second, Dialer: &Dialer{}}
	for i, c := range cases {
		ap := netip.MustParseAddrPort(rewriter(t, fmt.Sprintf("127.68.0.%d:0", i+1), c.upstream, c.replacement))
		r := g.HostGrab(context.Background(), ap.Addr(), int(ap.Port()))
		if r.Class != c.class || r.Advertised != c.advertised || r.EHLOMasked {
			t.Errorf("%s: class %q advertised %v masked %v (reply %q, %s), want %q %v unmasked",
				c.name, r.Class, r.Advertised, r.EHLOMasked, r.Reply, r.Error, c.class, c.advertised)
		}
	}
	// The domain scan's grab of the broken Postfix: STARTTLS refused, and
	// the session still ends with QUIT, as Postfix's log shows for both
	// grabs (ehlo=1 starttls=0/1 quit=1).
	ap := netip.MustParseAddrPort(pfBroken.Addr)
	if r := g.Grab(context.Background(), ap.Addr(), int(ap.Port())); r.ErrorClass != ErrClassNoTLS || !strings.Contains(r.Error, "454") {
		t.Errorf("grab of broken TLS: %q %s", r.ErrorClass, r.Error)
	}
	quits := func() int { return strings.Count(pfBroken.Log(), "ehlo=1 starttls=0/1 quit=1 commands=2/3") }
	for end := time.Now().Add(20 * time.Second); quits() < 2 && time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
	}
	if quits() != 2 {
		t.Errorf("Postfix saw %d sessions end with QUIT after the refused STARTTLS, want 2:\n%s", quits(), pfBroken.Log())
	}
}
