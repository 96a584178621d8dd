package policy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/testca"
)

// TestPostfixInboundRequireTLS runs the delegation service behind a real
// Postfix (check_policy_service): plaintext mail from a listed sender
// domain is deferred with 4.7.10, the same over STARTTLS goes through, and
// other senders are not concerned.
func TestPostfixInboundRequireTLS(t *testing.T) {
	for _, mode := range []string{"defer", "reject", "record"} {
		t.Run(mode, func(t *testing.T) {
			ca := testca.New(t)
			cert, key := ca.Issue(t, "mx", "mx.test.example")
			dir, _ := os.MkdirTemp("/var/tmp", "snowrain-inbound-")
			os.Chmod(dir, 0o755)
			t.Cleanup(func() { os.RemoveAll(dir) })
			sock := filepath.Join(dir, "inbound.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			os.Chmod(sock, 0o666)
			var decided []string
			srv := &Inbound{RequireTLS: []string{"bank.example", ".gov.example"}, Action: InboundAction(mode),
				OnDecision: func(d, a string) { decided = append(decided, d) }}
			go srv.Serve(ln)
			t.Cleanup(func() { ln.Close() })
			pf := postfixtest.Start(t, postfixtest.Options{CertFile: cert, KeyFile: key, Main: map[string]string{
				"smtpd_recipient_restrictions": "check_policy_service unix:" + sock + ", permit_mynetworks, reject",
			}})
			send := func(from string, starttls bool) error {
				c, err := smtp.Dial(pf.Addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Hello("client.example")
				if starttls {
					if err := c.StartTLS(&tls.Config{ServerName: "mx.test.example", RootCAs: ca.Pool()}); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.Mail(from); err != nil {
					return err
				}
				return c.Rcpt("user@dest.example")
			}
			err = send("alice@bank.example", false)
			var reply *textproto.Error
			errors.As(err, &reply)
			switch mode {
			case "defer":
				if reply == nil || reply.Code != 450 || !strings.HasPrefix(reply.Msg, "4.7.10") {
					t.Errorf("plaintext from bank.example: %v, want 450 4.7.10", err)
				}
			case "reject":
				if reply == nil || reply.Code != 550 || !strings.HasPrefix(reply.Msg, "5.7.10") {
					t.Errorf("plaintext from bank.example: %v, want 550 5.7.10", err)
				}
			case "record":
				if err != nil {
					t.Errorf("record only: %v", err)
				}
			}
			if err := send("bob@mail.gov.example", true); err != nil {
				t.Errorf("TLS from a listed domain: %v", err)
			}
			if err := send("carol@other.example", false); err != nil {
				t.Errorf("plaintext from an unlisted domain: %v", err)
			}
			if len(decided) != 1 || decided[0] != "bank.example" {
				t.Errorf("decisions %v", decided)
			}
		})
	}
}

func TestInboundCheckAttributes(t *testing.T) {
	p := &Inbound{RequireTLS: []string{"bank.example"}}
	for attrs, want := range map[string]string{
		"sender=a@bank.example":                             "DEFER_IF_PERMIT",
		"sender=a@BANK.example":                             "DEFER_IF_PERMIT",
		"sender=a@bank.example encryption_protocol=TLSv1.3": "DUNNO",
		"sender=":                "DUNNO",
		"sender=a@other.example": "DUNNO",
	} {
		m := map[string]string{}
		for _, kv := range strings.Fields(attrs) {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		if got := p.Check(t.Context(), m); !strings.HasPrefix(got, want) {
			t.Errorf("%s → %s", attrs, got)
		}
	}
}

func FuzzReadAttributes(f *testing.F) {
	f.Add("request=smtpd_access_policy\nsender=a@b.example\nencryption_protocol=\n\n")
	f.Add("novalue\n\n")
	f.Add("a=b\r\n\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		attrs, err := ReadAttributes(bufio.NewReader(strings.NewReader(s)), 1000)
		if err == nil {
			p := &Inbound{RequireTLS: []string{"b.example"}}
			if a := p.Check(context.Background(), attrs); strings.ContainsAny(a, "\n\r") {
				t.Fatalf("action %q breaks the protocol", a)
			}
		}
	})
}

func FuzzParseImport(f *testing.F) {
	f.Add([]byte("domain,policy\nbank.example,verify\n.corp.example,encrypt\n"))
	f.Add([]byte(`[{"domain":"a.example","policy":"secure match=.a.example"}]`))
	f.Add([]byte(`{"policies":{"a.example":{"mode":"enforce","mxs":[".a.example"]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseImport(data)
		if err != nil {
			return
		}
		for _, e := range list {
			p, err := ParseTLSPolicy(e.Policy)
			if !IsHostPattern(e.Domain) || err != nil || p.String() != e.Policy {
				t.Fatalf("accepted %+v (%v)", e, err)
			}
		}
	})
}
