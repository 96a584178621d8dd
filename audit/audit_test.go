package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePostfixProtocols(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // allowed protocols, or "error"
	}{
		{"", "SSLv2 SSLv3 TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"},
		{"!SSLv2, !SSLv3", "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"},
		{"!SSLv2 !SSLv3 !TLSv1 !TLSv1.1", "TLSv1.2 TLSv1.3"},
		{">=TLSv1", "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"},
		{">=TLSv1.2", "TLSv1.2 TLSv1.3"},
		{">=TLSv1, <=TLSv1.2", "TLSv1 TLSv1.1 TLSv1.2"},
		{"TLSv1.2:TLSv1.3", "TLSv1.2 TLSv1.3"},
		{"TLSv1.2, !TLSv1.2", ""},
		{">=TLSv1.1, !TLSv1.2", "TLSv1.1 TLSv1.3"},
		{"tlsv1.3", "TLSv1.3"},
		{"TLSv9", "error"},
	} {
		allow, err := parsePostfixProtocols(c.in)
		var got []string
		for i, ok := range allow {
			if ok {
				got = append(got, protocols[i])
			}
		}
		g := strings.Join(got, " ")
		if err != nil {
			g = "error"
		}
		if g != c.want {
			t.Errorf("%q: %q, want %q", c.in, g, c.want)
		}
	}
}

// TestCipherClasses classifies `openssl ciphers -v` lines of OpenSSL 1.0
// (which still had RC4, 3DES and export suites) and 3.0.
func TestCipherClasses(t *testing.T) {
	out := `ECDHE-RSA-AES256-GCM-SHA384 TLSv1.2 Kx=ECDH     Au=RSA  Enc=AESGCM(256) Mac=AEAD
TLS_AES_256_GCM_SHA384         TLSv1.3 Kx=any      Au=any   Enc=AESGCM(256)            Mac=AEAD
AES128-SHA              SSLv3 Kx=RSA      Au=RSA  Enc=AES(128)  Mac=SHA1
ADH-AES256-GCM-SHA384   TLSv1.2 Kx=DH       Au=None Enc=AESGCM(256) Mac=AEAD
RC4-SHA                 SSLv3 Kx=RSA      Au=RSA  Enc=RC4(128)  Mac=SHA1
DES-CBC3-SHA            SSLv3 Kx=RSA      Au=RSA  Enc=3DES(168) Mac=SHA1
EXP-RC4-MD5             SSLv3 Kx=RSA(512) Au=RSA  Enc=RC4(40)   Mac=MD5  export
NULL-SHA256             TLSv1.2 Kx=RSA      Au=RSA  Enc=None      Mac=SHA256
PSK-AES128-GCM-SHA256   TLSv1.2 Kx=PSK      Au=PSK  Enc=AESGCM(128) Mac=AEAD
`
	cs := parseCiphers(out)
	if len(cs) != 9 {
		t.Fatalf("%d ciphers parsed, want 9", len(cs))
	}
	want := []struct {
		weak         string
		fs, anon, pk bool
	}{
		{"", true, false, false}, {"", true, false, false}, {"", false, false, false}, {"", true, true, false},
		{"RC4", false, false, false}, {"3DES", false, false, false}, {"export grade", false, false, false},
		{"NULL (no encryption)", false, false, false}, {"", false, false, true},
	}
	for i, c := range cs {
		w := want[i]
		if c.Weakness() != w.weak || c.ForwardSecret() != w.fs || c.Anonymous() != w.anon || c.PSK() != w.pk {
			t.Errorf("%s: weak %q fs %v anon %v psk %v", c.Name, c.Weakness(), c.ForwardSecret(), c.Anonymous(), c.PSK())
		}
	}
}

// TestRefuses: what OpenSSL 3 negotiates at each security level.
func TestRefuses(t *testing.T) {
	o := &OpenSSL{Version: "OpenSSL 3.0.19 27 Jan 2026", Major: 3, Disabled: map[string]bool{"SSL3": true}}
	for _, c := range []struct {
		proto   string
		level   int
		refused bool
	}{
		{"SSLv2", 0, true}, {"SSLv3", 0, true}, {"TLSv1", 0, false}, {"TLSv1.1", 0, false},
		{"TLSv1", 1, true}, {"TLSv1.1", 2, true}, {"TLSv1.2", 2, false}, {"TLSv1.3", 3, false},
	} {
		if got := o.Refuses(c.proto, c.level) != ""; got != c.refused {
			t.Errorf("%s at level %d: refused %v, want %v", c.proto, c.level, got, c.refused)
		}
	}
	if SecLevelOf("HIGH:@SECLEVEL=0", 2) != 0 || SecLevelOf("HIGH", 2) != 2 {
		t.Error("@SECLEVEL in the list must win")
	}
}

// TestPostfixDomainsExpanded lists the received domains from names,
// files and tables (listed by the real postmap).
func TestPostfixDomainsExpanded(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/postmap"); err != nil {
		t.Fatal("postmap not installed: run scripts/deps-postfix.sh")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "relay")
	os.WriteFile(file, []byte("# relayed\nrelay.example, Relay2.Example.\n"), 0o644)
	table := filepath.Join(dir, "vmail")
	os.WriteFile(table, []byte("vmail.example OK\n.sub.vmail.example OK\n"), 0o644)
	c := &PostfixConfig{Main: map[string]string{
		"mydestination":           "mx.example.org, localhost.localdomain, localhost, bücher.example",
		"virtual_alias_domains":   "inline:{alias.example=x}",
		"virtual_mailbox_domains": "texthash:" + table,
		"relay_domains":           file + ", regexp:/nonexistent",
	}}
	ds, notes := postfixDomains(context.Background(), c, "")
	var got []string
	for _, d := range ds {
		got = append(got, d.Name+"="+d.Source)
	}
	want := []string{"mx.example.org=mydestination", "xn--bcher-kva.example=mydestination",
		"alias.example=virtual_alias_domains (inline:{alias.example=x})",
		"vmail.example=virtual_mailbox_domains (texthash:" + table + ")",
		"relay.example=relay_domains (" + file + ")", "relay2.example=relay_domains (" + file + ")"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("domains:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "regexp:/nonexistent") {
		t.Errorf("notes %q, want the unlistable regexp table named", notes)
	}
}

// TestTextEscapes: values from DNS reach a terminal only escaped.
func TestTextEscapes(t *testing.T) {
	r := &Report{MTA: "postfix", Version: "Postfix 3.7", Config: "/etc/postfix", Sections: []Section{{Name: "Domain x",
		Findings: []Finding{{ID: "domain.spf", Title: "SPF", Status: StatusWarn, Value: "\"v=spf1 \x1b[2J\u202e+all\"", Reason: "r"}}}}}
	var b strings.Builder
	if err := Write(&b, FormatText, r); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\u202e") || !strings.Contains(b.String(), `\x1b[2J\u202e+all`) {
		t.Errorf("text not escaped:\n%s", b.String())
	}
}

func FuzzParseSendmailCF(f *testing.F) {
	f.Add("O DaemonPortOptions=Port=587, Name=MSA, M=E\nO CipherList=HIGH\nCwa.example b.example\nFw-o /x\nKaccess hash /etc/mail/access\nStls_server\n")
	f.Add("O\nD\nC\nF\nK\nS\n")
	f.Fuzz(func(t *testing.T, cf string) {
		c, err := ParseSendmailCF(strings.NewReader(cf))
		if err != nil {
			return
		}
		sslNoProtocols(c.Options["ServerSSLOptions"])
		c.Files = nil // never read files named by fuzz input
		sendmailDomains(c)
	})
}

func FuzzParsePostfixProtocols(f *testing.F) {
	for _, s := range []string{">=TLSv1", "!SSLv2, !SSLv3", "TLSv1.2:TLSv1.3", "<=", "!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		allow, err := parsePostfixProtocols(s)
		if err == nil && len(allow) != len(protocols) {
			t.Fatalf("%d protocols", len(allow))
		}
	})
}

func FuzzParsePostconf(f *testing.F) {
	f.Add("smtp/inet/command = smtpd\nsmtp/unix/chroot = y\n", "smtp/unix/smtp_tls_security_level = dane\n")
	f.Add(" = \n/// = x\n", "a/b = c\n")
	f.Fuzz(func(t *testing.T, fields, overrides string) {
		for _, s := range parseServices(fields, overrides) {
			if strings.Contains(s.Name, "/") || strings.Contains(s.Type, "/") {
				t.Fatalf("service %q/%q", s.Name, s.Type)
			}
		}
		for k := range parseParams(fields) {
			if k == "" || strings.ContainsAny(k, " \t") {
				t.Fatalf("key %q", k)
			}
		}
	})
}
