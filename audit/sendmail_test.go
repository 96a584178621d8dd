package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snowrain/snowrain/internal/sendmailtest"
	"github.com/snowrain/snowrain/internal/testca"
)

// TestAuditSendmail audits the .cf m4 builds for a real Sendmail with a
// certificate, and checks the findings against the running daemon.
func TestAuditSendmail(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "sendmail", "mx.test.example")
	sm := sendmailtest.Start(t, sendmailtest.Options{CertFile: cert, KeyFile: key, CAFile: ca.CAFile()})
	cf := filepath.Join(sm.Dir, "test.cf")
	r, err := Run(context.Background(), Options{MTA: "sendmail", SendmailCF: cf, Roots: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	Write(&text, FormatText, r)
	t.Log(text.String())
	if !strings.HasPrefix(r.Version, "Sendmail 8.") {
		t.Errorf("version %q", r.Version)
	}
	out := "Outbound: the smtp/esmtp mailers"
	want(t, r, out, "outbound.starttls", StatusOK, "yes")
	want(t, r, out, "outbound.fallback", StatusWarn, "yes")
	want(t, r, out, "outbound.dane", StatusWarn, "off")
	want(t, r, out, "outbound.loglevel", StatusOK, "LogLevel 9")
	in := "Inbound: DaemonPortOptions Name=MTA Port=" + port(sm.Addr)
	want(t, r, in, "inbound.starttls", StatusOK, "yes")
	protos := want(t, r, in, "inbound.protocols", StatusOK, "TLSv1.2, TLSv1.3")
	want(t, r, "", "certificate.chain", StatusOK)
	want(t, r, "", "certificate.names", StatusOK, "covers mx.test.example")

	// The daemon: STARTTLS offered, TLS 1.2 accepted; TLS 1.1 only if the
	// audit says so (Sendmail leaves OpenSSL's default security level).
	st, ehlo, err := starttls(tcpDial(sm.Addr), &tls.Config{RootCAs: ca.Pool(), ServerName: "mx.test.example", MaxVersion: tls.VersionTLS12})
	if err != nil || !offers(ehlo, "STARTTLS") || st.Version != tls.VersionTLS12 {
		t.Errorf("STARTTLS with TLS 1.2: %v, EHLO %q", err, ehlo)
	}
	_, _, err = starttls(tcpDial(sm.Addr), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if refused := strings.Contains(protos.Value, "TLSv1.1 (OpenSSL"); refused != (err != nil) {
		t.Errorf("TLS 1.1 handshake: %v; the audit says %q", err, protos.Value)
	}
}

// TestParseSendmailCF reads the options, daemons and classes of a .cf.
func TestParseSendmailCF(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "local-host-names")
	os.WriteFile(local, []byte("# ours\nexample.org mail.example.org\n"), 0o644)
	cf := `# comment
DZ8.17.1.9
Djmx.example.org
Cwlocalhost example.com
Fw-o ` + local + `
O CipherList=HIGH:!aNULL
O ServerSSLOptions=+SSL_OP_NO_SSLv3 +SSL_OP_NO_TLSv1 +SSL_OP_NO_TLSv1_1
O ServerCertFile=/etc/mail/tls/cert.pem
O DaemonPortOptions=Name=MTA
O DaemonPortOptions=Port=587, Name=MSA, M=E
O ClientPortOptions=Family=inet, M=S
#O DANE=true
Kaccess hash -T<TMPF> -o /etc/mail/access
Stls_server
`
	c, err := ParseSendmailCF(strings.NewReader(cf))
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != "8.17.1.9" || c.Hostname != "mx.example.org" || c.Options["CipherList"] != "HIGH:!aNULL" ||
		c.Options["DANE"] != "" || c.Access != "/etc/mail/access" || !c.Rulesets["tls_server"] {
		t.Errorf("parsed %+v", c)
	}
	if len(c.Daemons) != 2 || c.Daemons[1].Port != "587" || c.Daemons[1].Modifiers != "E" || c.Client["m"] != "S" {
		t.Errorf("daemons %+v client %+v", c.Daemons, c.Client)
	}
	allow := sslNoProtocols(c.Options["ServerSSLOptions"])
	if allow[1] || allow[2] || allow[3] || !allow[4] || !allow[5] {
		t.Errorf("ServerSSLOptions leave %v, want TLSv1.2 and TLSv1.3", allow)
	}
	domains, _ := sendmailDomains(c)
	var names []string
	for _, d := range domains {
		names = append(names, d.Name+"="+d.Source)
	}
	if got := strings.Join(names, " "); got != "example.com=class w (Cw) example.org=class w ("+local+") mail.example.org=class w ("+local+")" {
		t.Errorf("domains %s", got)
	}
}
