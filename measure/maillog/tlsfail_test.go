package maillog

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/tlsrpt"
)

// TestTLSOutcomeGolden reads Postfix 3.7's lines for every TLS failure a
// real instance produced (policy world of feedback's tests: MTA-STS
// enforce and testing, DANE, self-signed, expired, wrong name, no
// STARTTLS, a broken handshake) and Sendmail's, and compares each
// delivery's session and result type with testdata/tlsfail-*.golden.
func TestTLSOutcomeGolden(t *testing.T) {
	for _, name := range []string{"tlsfail-postfix37", "tlsfail-sendmail"} {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile("testdata/" + name + ".log")
			if err != nil {
				t.Fatal(err)
			}
			p := NewParser()
			p.Loc = time.UTC
			p.Now = func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
			tr := NewTLSTracker()
			tr.Loc, tr.Now = p.Loc, p.Now
			var out []string
			for _, line := range strings.Split(strings.TrimSpace(string(in)), "\n") {
				ds, _ := p.Feed(line)
				var first *Delivery
				if len(ds) > 0 {
					first = ds[0]
				}
				o, ok := tr.Feed(line, first)
				for _, d := range ds {
					s := fmt.Sprintf("%s %s %s level=%s", d.QueueID, d.Domain, d.Status, d.Level)
					if ok {
						s += fmt.Sprintf(" session=%s result=%s reason=%q", strings.TrimPrefix(o.Session, "mx/"), o.Result, o.Reason)
					} else {
						s += " no-session"
					}
					out = append(out, s)
				}
			}
			got := strings.Join(out, "\n") + "\n"
			path := "testdata/" + name + ".golden"
			if *update {
				os.WriteFile(path, []byte(got), 0o644)
			}
			want, _ := os.ReadFile(path)
			if got != string(want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestTLSFailureOf(t *testing.T) {
	for _, c := range []struct {
		line string
		want tlsrpt.ResultType
	}{
		{"Nov 30 10:11:17 mx postfix/smtp[1]: server certificate verification failed for a[192.0.2.1]:25: num=62:hostname mismatch", tlsrpt.ResultCertificateHostMismatch},
		{"Nov 30 10:11:17 mx postfix/smtp[1]: certificate verification failed for a[192.0.2.1]:25: untrusted issuer /CN=x", tlsrpt.ResultCertificateNotTrusted},
		{"Nov 30 10:11:17 mx postfix/smtp[1]: server certificate verification failed for a[192.0.2.1]:25: certificate has expired", tlsrpt.ResultCertificateExpired},
		{"Nov 30 10:11:17 mx postfix/smtp[1]: server certificate verification failed for a[192.0.2.1]:25: num=65:no matching DANE TLSA records", tlsrpt.ResultTLSAInvalid},
		{"Nov 30 10:11:17 mx postfix/smtp[1]: Q: to=<a@b.example>, relay=a[192.0.2.1]:25, dsn=4.7.4, status=deferred (TLS is required, but host a[192.0.2.1] refused to start TLS: 454 4.7.0 no)", tlsrpt.ResultSTARTTLSNotSupported},
		{"Nov 30 10:11:17 mx postfix/smtp[1]: Q: to=<a@b.example>, relay=a[192.0.2.1]:25, dsn=2.0.0, status=sent (250 ok)", ""},
		{"Nov 30 10:11:17 mx postfix/smtpd[1]: certificate verification failed for a[192.0.2.1]:25: self-signed certificate", ""},
		{"Nov 30 10:11:17 mx postfix/smtp[1]: warning: no certificate verification failed for x: y", ""},
		{"Nov 30 10:11:17 mx sendmail[1]: STARTTLS=client, relay=a., version=TLSv1.3, verify=NO, cipher=x, bits=1/1", ""},
		{"Nov 30 10:11:17 mx sendmail[1]: STARTTLS=client, relay=a., version=TLSv1.3, verify=PROTOCOL, cipher=x, bits=1/1", tlsrpt.ResultValidationFailure},
	} {
		l, err := ParseSyslog(c.line, time.Now(), time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := TLSFailureOf(l)
		if ok != (c.want != "") || f.Result != c.want {
			t.Errorf("%s:\n got %q %v, want %q", c.line, f.Result, ok, c.want)
		}
	}
}

// TestTLSTrackerBounded: a log with endless process IDs does not grow the
// tracker without bound.
func TestTLSTrackerBounded(t *testing.T) {
	tr := NewTLSTracker()
	for pid := 0; pid < 3*maxProcs; pid++ {
		tr.Feed(fmt.Sprintf("Nov 30 10:11:17 mx postfix/smtp[%d]: SSL_connect error to a[192.0.2.1]:25: x", pid), nil)
	}
	if len(tr.procs) > maxProcs {
		t.Errorf("%d processes tracked", len(tr.procs))
	}
}

func FuzzTLSTracker(f *testing.F) {
	for _, name := range []string{"tlsfail-postfix37", "tlsfail-sendmail"} {
		in, _ := os.ReadFile("testdata/" + name + ".log")
		for _, line := range strings.Split(string(in), "\n") {
			f.Add(line)
		}
	}
	f.Fuzz(func(t *testing.T, line string) {
		p := NewParser()
		tr := NewTLSTracker()
		ds, _ := p.Feed(line)
		var d *Delivery
		if len(ds) > 0 {
			d = ds[0]
		}
		o, ok := tr.Feed(line, d)
		if ok && (d == nil || o.Session == "") {
			t.Fatalf("outcome %+v without a delivery", o)
		}
		if len(o.Reason) > maxReason {
			t.Fatalf("reason of %d bytes", len(o.Reason))
		}
	})
}
