package maillog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// injections are reply texts, relay names and local parts that tried, or
// might try, to pass for another field.
var injections = []string{
	"250 2.0.0 Ok), to=<victim@bank.example>, x=(",
	"250 ok>, relay=mx.bank.example[198.51.100.1]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (x",
	"451 later), status=sent (, to=<v@bank.example>, dsn=2.0.0",
	"250 ok, stat=Sent (queued), to=<v@bank.example>, mailer=esmtp, pri=1, relay=mx.bank.example. [198.51.100.1], dsn=2.0.0, stat=Sent (",
	"451, stat=Sent (forged",
	"250 ok\x00\r\nNov 24 10:00:02 mx postfix/smtp[1]: 1A2B3C4D5E: to=<v@bank.example>, relay=x[192.0.2.1]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (x)",
	"550 " + strings.Repeat("(", 100) + "to=<v@bank.example>",
	"250 " + strings.Repeat("x", 20000),
}

// seedLines adds the golden logs' lines to a fuzz corpus.
func seedLines(f *testing.F, add func(string)) {
	for _, name := range goldenLogs {
		in, err := os.ReadFile("testdata/" + name + ".log")
		if err != nil {
			f.Fatal(err)
		}
		for _, line := range strings.Split(string(in), "\n") {
			add(line)
		}
	}
}

// FuzzFeed feeds arbitrary lines: no panic, a delivery only with the
// delivery class, and every stored field within its limits and in
// normalised form.
func FuzzFeed(f *testing.F) {
	seedLines(f, func(s string) { f.Add(s) })
	f.Fuzz(func(t *testing.T, line string) {
		p := NewParser()
		ds, class := p.Feed(line)
		if (len(ds) > 0) != (class == ClassDelivery) {
			t.Fatalf("class %s with deliveries %v", class, ds)
		}
		for _, d := range ds {
			if n, ok := normDomain(d.Domain); !ok || n != d.Domain {
				t.Fatalf("domain %q stored (normalised %q, %v)", d.Domain, n, ok)
			}
			if len(d.RelayHost) > MaxDomain+2 || len(d.QueueID) > maxQueueID || len(d.Cipher) > maxCipher {
				t.Fatalf("field over its limit: %+v", d)
			}
			switch d.Status {
			case StatusSent, StatusDeferred, StatusBounced:
			default:
				t.Fatalf("status %q", d.Status)
			}
		}
	})
}

// printable is what Postfix and Sendmail do to a reply before logging it:
// one line, control characters replaced.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// quoteLocal writes a local part as the MTAs log it (RFC 5321 §4.1.2):
// a dot-string as it is, anything else quoted with \ before " and \.
func quoteLocal(s string) string {
	dotString := s != "" && !strings.HasPrefix(s, ".") && !strings.HasSuffix(s, ".") && !strings.Contains(s, "..")
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".!#$%&'*+-/=?^_`{|}~", r)) {
			dotString = false
		}
	}
	if dotString {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(printable(s)) + `"`
}

// hostName keeps the characters and length (RFC 1035 §2.3.4) a host name
// from DNS can have in a log: the MTAs do not use an MX name that is not
// one.
func hostName(s string) string {
	if len(s) > 253 {
		s = s[:253]
	}
	h := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return -1
	}, s)
	if h == "" {
		return "mx.real.example"
	}
	return h
}

// FuzzReplyText writes the status lines Postfix and Sendmail would write
// for a delivery to real.example, with the fuzzer choosing what the other
// parties choose: the receiver's reply text and relay host name, and the
// sender's local part. Whatever they write, a delivery read from the line
// is real.example's, with the status, DSN and relay address the MTA
// wrote; the line is broken only if an address is over RFC 5321's limits
// or the line over MaxLine. The reply never decides whether a line is
// read.
func FuzzReplyText(f *testing.F) {
	for _, inj := range injections {
		f.Add(inj, "u", "mx.real.example")
		f.Add("250 ok", inj, "mx.real.example")
		f.Add("250 ok", "u", inj)
	}
	seedLines(f, func(s string) {
		if _, reply, ok := strings.Cut(s, "status="); ok {
			f.Add(reply, "u", "mx.real.example")
		}
		if _, reply, ok := strings.Cut(s, "stat="); ok {
			f.Add(reply, "u", "mx.real.example")
		}
	})
	f.Fuzz(func(t *testing.T, reply, local, relay string) {
		reply, relay, addr := printable(reply), hostName(relay), quoteLocal(local)+"@real.example"
		lines := []struct {
			line   string
			status Status
			dsn    string
		}{
			{fmt.Sprintf("Nov 24 10:00:01 mx postfix/smtp[7]: 1A2B3C4D5E: to=<%s>, relay=%s[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (%s)",
				addr, relay, reply), StatusSent, "2.0.0"},
			{fmt.Sprintf("Nov 24 10:00:01 mx postfix/smtp[7]: 1A2B3C4D5E: to=<%s>, orig_to=<%s@local.example>, relay=%s[192.0.2.1]:25, conn_use=2, delay=0.1, delays=0/0/0/0.1, dsn=4.0.0, status=deferred (host %s[192.0.2.1] said: %s)",
				addr, quoteLocal(local), relay, relay, reply), StatusDeferred, "4.0.0"},
			{fmt.Sprintf("Nov 24 10:00:01 mx sendmail[7]: 6AU9rhPf005001: to=<%s>, delay=00:00:00, xdelay=00:00:00, mailer=esmtp, pri=90018, relay=%s. [192.0.2.1], dsn=4.0.0, reply=%s, stat=Deferred: %s",
				addr, relay, reply, reply), StatusDeferred, "4.0.0"},
			{fmt.Sprintf("Nov 24 10:00:01 mx sendmail[7]: 6AU9rhPf005001: to=<%s>, ctladdr=<%s@local.example> (1001/1001), delay=00:00:00, xdelay=00:00:00, mailer=esmtp, pri=90018, relay=%s. [192.0.2.1], dsn=2.0.0, stat=Sent (%s)",
				addr, quoteLocal(local), relay, reply), StatusSent, "2.0.0"},
		}
		for _, c := range lines {
			p := NewParser()
			ds, class := p.Feed(c.line)
			fitting := len(c.line) <= MaxLine && len(addr) <= MaxPath
			if class != ClassDelivery {
				if fitting {
					t.Fatalf("class %s for\n%s", class, c.line)
				}
				continue
			}
			if len(ds) != 1 {
				t.Fatalf("%d deliveries from\n%s", len(ds), c.line)
			}
			d := ds[0]
			if d.Domain != "real.example" || d.Status != c.status || d.DSN != c.dsn || d.RelayIP != "192.0.2.1" {
				t.Fatalf("delivery %+v from\n%s", d, c.line)
			}
		}
	})
}

// FuzzLineReader: every byte of the input is accounted for, lines within
// the bound come back as they were, and none longer is returned.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nbb\nccc"), 2)
	f.Add([]byte(strings.Repeat("x", 70000)+"\nshort\n"), 16)
	f.Add([]byte("\n\n\n"), 1)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<20 {
			return
		}
		lr := NewLineReader(bytes.NewReader(in), max)
		var want [][]byte
		for _, l := range bytes.SplitAfter(in, []byte("\n")) {
			if len(l) > 0 && len(bytes.TrimSuffix(l, []byte("\n"))) <= max {
				want = append(want, l)
			}
		}
		total := 0
		var got [][]byte
		for {
			line, n, err := lr.Next()
			total += n
			if len(bytes.TrimSuffix(line, []byte("\n"))) > max {
				t.Fatalf("line of %d bytes with bound %d", len(line), max)
			}
			if len(line) > 0 {
				got = append(got, append([]byte(nil), line...))
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil && !errors.Is(err, ErrLineTooLong) {
				t.Fatal(err)
			}
		}
		if total != len(in) {
			t.Fatalf("read %d of %d bytes", total, len(in))
		}
		if len(got) != len(want) {
			t.Fatalf("got %d lines, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d: %q, want %q", i, got[i], want[i])
			}
		}
	})
}
