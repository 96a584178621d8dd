package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
)

var update = flag.Bool("update", false, "rewrite golden files")

// debianMain is the main.cf Debian's postinst starts from: main.cf.debian
// and main.cf.tls (a fresh install's TLS settings: the snakeoil
// certificate, may on both sides).
func debianMain(t *testing.T) map[string]string {
	t.Helper()
	main := map[string]string{}
	for _, f := range []string{"/usr/share/postfix/main.cf.debian", "/usr/share/postfix/main.cf.tls"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("Debian's Postfix files: %v (run scripts/deps-postfix.sh)", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, " ") {
				main[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return main
}

// sinkTLS is a server TLS configuration for a certificate of the CA.
func sinkTLS(t *testing.T, ca *testca.CA, name string, names ...string) *tls.Config {
	cert, key := ca.Issue(t, name, names...)
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{kp}}
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// dialer connects to an MTA's smtpd: postfixtest's Dial (inside the
// test's namespace when it runs in one), or tcpDial.
type dialer func(context.Context) (net.Conn, error)

// tcpDial dials addr on the machine's side.
func tcpDial(addr string) dialer {
	return func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "tcp", addr) }
}

// starttls says EHLO and STARTTLS to an SMTP server and shakes hands
// with cfg, as a sending MTA would.
func starttls(dial dialer, cfg *tls.Config) (tls.ConnectionState, []string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return tls.ConnectionState{}, nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	var ehlo []string
	read := func() (string, error) {
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			last = strings.TrimRight(line, "\r\n")
			ehlo = append(ehlo, last)
			if len(last) < 4 || last[3] != '-' {
				return last, nil
			}
		}
	}
	if _, err := read(); err != nil {
		return tls.ConnectionState{}, nil, err
	}
	ehlo = nil
	fmt.Fprintf(c, "EHLO client.test.example\r\n")
	if _, err := read(); err != nil {
		return tls.ConnectionState{}, nil, err
	}
	lines := ehlo
	fmt.Fprintf(c, "STARTTLS\r\n")
	if rep, err := read(); err != nil || !strings.HasPrefix(rep, "220") {
		return tls.ConnectionState{}, lines, fmt.Errorf("STARTTLS: %q %v", rep, err)
	}
	tc := tls.Client(c, cfg)
	err = tc.Handshake()
	return tc.ConnectionState(), lines, err
}

// send submits one message to pf in cleartext (net/smtp's SendMail would
// insist on verifying the server's certificate).
func send(t *testing.T, pf *postfixtest.Instance, from, to string) {
	t.Helper()
	conn, err := pf.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: audit\r\n\r\nhello\r\n", from, to)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

func offers(ehlo []string, ext string) bool {
	for _, l := range ehlo {
		if len(l) > 4 && strings.EqualFold(strings.Fields(l[4:])[0], ext) {
			return true
		}
	}
	return false
}

// want asserts a finding's status and that its value says what it must.
func want(t *testing.T, r *Report, section, id string, status Status, value ...string) Finding {
	t.Helper()
	f, ok := r.Find(section, id)
	if !ok {
		t.Errorf("no finding %s in %q", id, section)
		return f
	}
	if f.Status != status {
		t.Errorf("%s: status %s, want %s (value %q)", id, f.Status, status, f.Value)
	}
	for _, v := range value {
		if !strings.Contains(f.Value, v) {
			t.Errorf("%s: value %q lacks %q", id, f.Value, v)
		}
	}
	return f
}

// golden compares the audit's JSON, with what changes from one run or
// machine to the next replaced, to testdata/name.
func golden(t *testing.T, name string, r *Report, replace []string) {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, FormatJSON, r); err != nil {
		t.Fatal(err)
	}
	got := strings.NewReplacer(replace...).Replace(b.String())
	got = dateRe.ReplaceAllString(got, "<date>")
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(path, []byte(got), 0o644)
	}
	exp, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(exp) {
		t.Errorf("%s differs (go test ./audit -run %s -update rewrites it):\n%s", path, t.Name(), got)
	}
}

var dateRe = regexp.MustCompile(`\b20\d\d-\d\d-\d\d\b`)

// machine lists what a golden file must not depend on: the OpenSSL
// release, and where the test's files are.
func machine(t *testing.T, ossl *OpenSSL, pairs ...string) []string {
	return append([]string{ossl.Version, "OpenSSL <version>", "OpenSSL " + versionNumber(ossl.Version), "OpenSSL <version>"}, pairs...)
}

func probeOpenSSL(t *testing.T) *OpenSSL {
	ossl, err := ProbeOpenSSL(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return ossl
}

// TestAuditDebianPostfix audits a Postfix configured as Debian ships it
// (main.cf.debian + main.cf.tls: snakeoil certificate, may both ways) and
// checks every finding against what the running instance does.
func TestAuditDebianPostfix(t *testing.T) {
	ca := testca.New(t)
	tlsSink := smtpsink.StartWith(t, "127.77.1.1:0", smtpsink.Options{TLS: sinkTLS(t, ca, "tls-sink", "127.77.1.1")})
	plainSink := smtpsink.Start(t, "127.77.1.2:0")
	dns := dnstest.Start(t, "mail.example.org. A 127.0.0.1\n")
	main := debianMain(t)
	main["myhostname"] = "mail.example.org"
	main["mydestination"] = "$myhostname, localhost.localdomain, localhost"
	main["default_transport"] = "smtp"
	main["transport_maps"] = fmt.Sprintf("inline:{tls.example=smtp:[127.77.1.1]:%s, plain.example=smtp:[127.77.1.2]:%s}",
		port(tlsSink.Addr), port(plainSink.Addr))
	pf := postfixtest.Start(t, postfixtest.Options{Hostname: "mail.example.org", Main: main})
	etc := filepath.Join(pf.Dir, "etc")

	res, _ := resolver.New(resolver.Config{Servers: []string{dns.Addr}, Timeout: time.Second})
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644)
	r, err := Run(context.Background(), Options{MTA: "postfix", ConfigDir: etc, Resolver: res, ResolvConf: resolv,
		STS: &policy.STSFetcher{Resolver: res, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	Write(&text, FormatText, r)
	t.Log(text.String())

	out := "Outbound: master.cf smtp/unix (smtp), default_transport = smtp"
	in := "Inbound: master.cf " + pf.Addr + "/inet (smtpd)"
	want(t, r, out, "outbound.starttls", StatusOK, "yes (level may)")
	want(t, r, out, "outbound.fallback", StatusWarn, "yes")
	want(t, r, out, "outbound.authentication", StatusWarn, "any certificate")
	want(t, r, out, "outbound.dane", StatusWarn, "off")
	want(t, r, out, "outbound.loglevel", StatusWarn, "smtp_tls_loglevel = 0")
	want(t, r, out, "outbound.protocols", StatusWarn, "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3")
	want(t, r, in, "inbound.starttls", StatusOK, "yes (level may)")
	want(t, r, in, "inbound.protocols", StatusWarn, "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3")
	ciphers := want(t, r, in, "inbound.ciphers", StatusInfo, "without forward secrecy", "anonymous (aNULL)")
	if !strings.Contains(ciphers.Value, "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH") {
		t.Errorf("inbound ciphers: %q is not Postfix's medium grade", ciphers.Value)
	}
	want(t, r, "", "certificate.present", StatusOK, "/etc/ssl/certs/ssl-cert-snakeoil.pem")
	want(t, r, "", "certificate.chain", StatusWarn, "self-signed")
	if len(r.Domains) != 1 || r.Domains[0].Name != "mail.example.org" || r.Domains[0].Source != "mydestination" {
		t.Errorf("received domains %+v, want mail.example.org from mydestination (localhost names left out)", r.Domains)
	}
	dom := "Domain mail.example.org (mydestination)"
	for _, id := range []string{"domain.spf", "domain.dmarc"} {
		want(t, r, dom, id, StatusFail)
	}
	for _, id := range []string{"domain.mta_sts", "domain.tls_rpt", "domain.tlsa"} {
		want(t, r, dom, id, StatusWarn)
	}

	// What the instance does. Inbound: STARTTLS offered; TLS 1.1 too
	// (Postfix runs its server at OpenSSL security level 0, where OpenSSL
	// 3 still negotiates it); RSA key exchange accepted (the medium grade
	// keeps it); the certificate is self-signed.
	st, ehlo, err := starttls(pf.Dial, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil || !offers(ehlo, "STARTTLS") || st.Version != tls.VersionTLS12 {
		t.Errorf("STARTTLS with TLS 1.2: %v, EHLO %q", err, ehlo)
	}
	if st, _, err := starttls(pf.Dial, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err != nil || st.Version != tls.VersionTLS11 {
		t.Errorf("TLS 1.1 handshake: %v, the audit says the server accepts it", err)
	}
	if _, _, err := starttls(pf.Dial, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}); err != nil {
		t.Errorf("RSA key exchange refused (%v), the audit counts it among the accepted suites", err)
	}
	if st, _, err := starttls(pf.Dial, &tls.Config{ServerName: "mail.example.org"}); err == nil {
		t.Errorf("the snakeoil certificate verified against the system roots: %v", st.PeerCertificates[0].Subject)
	}
	// Outbound: STARTTLS when offered, cleartext when not.
	for _, rcpt := range []string{"u@tls.example", "u@plain.example"} {
		send(t, pf, "sender@mail.example.org", rcpt)
	}
	if m := tlsSink.Wait(1, 60*time.Second); len(m) != 1 || m[0].TLS == "" {
		t.Errorf("delivery to a STARTTLS server: %+v, want one message over TLS\n%s", m, pf.Log())
	}
	if m := plainSink.Wait(1, 60*time.Second); len(m) != 1 || m[0].TLS != "" {
		t.Errorf("delivery to a server without STARTTLS: %+v, want one message in cleartext (fallback)\n%s", m, pf.Log())
	}

	f, _ := r.Find("", "certificate.names")
	names, _, _ := strings.Cut(f.Value, "; ")
	days, _ := r.Find("", "certificate.expiry")
	_, left, _ := strings.Cut(days.Value, ", ")
	golden(t, "debian.json", r, machine(t, probeOpenSSL(t), pf.Dir, "<instance>", pf.Addr, "<smtpd>",
		`"value": "`+names+`; does not cover`, `"value": "<snakeoil names>; does not cover`,
		left, "<n> days left"))
}

// TestAuditHardenedPostfix audits a Postfix configured as the findings ask
// (DANE through a master.cf override, TLS 1.2+, forward-secret suites,
// a CA certificate, every DNS record) and checks the findings against
// what it does: DANE refuses cleartext to a domain with TLSA records and
// verifies the certificate of another, and still falls back for a domain
// without them.
func TestAuditHardenedPostfix(t *testing.T) {
	ca := testca.New(t)
	// The server's own certificate, for mx.example.net, 90 days.
	cert, key := ca.IssueWith(t, "mx", testca.IssueOptions{NotAfter: time.Now().Add(90*24*time.Hour + time.Hour)}, "mx.example.net")
	chainFile := filepath.Join(filepath.Dir(cert), "mx-chain.pem")
	keyPEM, _ := os.ReadFile(key)
	certPEM, _ := os.ReadFile(cert)
	os.WriteFile(chainFile, append(keyPEM, certPEM...), 0o600)
	leaf, _ := readCerts(cert)

	// Postfix and the receivers live in a network namespace of the test's
	// own, where its DNS server answers on port 53 (the libc resolver
	// asks no other port). Receivers: dane.example (TLSA, STARTTLS),
	// strip.example (TLSA, no STARTTLS: as if stripped), plain.example (no
	// TLSA, no STARTTLS).
	ns := testnet.NewNS(t)
	nsSink := func(addr string, o smtpsink.Options) *smtpsink.Sink {
		ln, err := ns.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return smtpsink.Serve(t, ln, o)
	}
	daneCfg := sinkTLS(t, ca, "dane-sink", "mx.dane.example")
	daneSink := nsSink("127.77.2.1:0", smtpsink.Options{TLS: daneCfg})
	stripSink := nsSink("127.77.2.2:0", smtpsink.Options{})
	plainSink := nsSink("127.77.2.3:0", smtpsink.Options{})
	daneLeaf, _ := x509.ParseCertificate(daneCfg.Certificates[0].Certificate[0])
	spki := func(c *x509.Certificate) string {
		s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		return hex.EncodeToString(s[:])
	}

	// MTA-STS policy over HTTPS.
	stsCfg := sinkTLS(t, ca, "sts", "mta-sts.example.net")
	ln, err := tls.Listen("tcp", "127.77.2.9:0", stsCfg)
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 604800\n")
	})}
	go web.Serve(ln)
	t.Cleanup(func() { web.Close() })

	zone := fmt.Sprintf(`. NS ns.test.
ns.test. A 127.53.0.13
example.net. MX 10 mx.example.net.
mx.example.net. A 127.0.0.1
example.net. TXT "v=spf1 mx -all"
_dmarc.example.net. TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.net"
_mta-sts.example.net. TXT "v=STSv1; id=20261201"
mta-sts.example.net. A 127.77.2.9
_smtp._tls.example.net. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.net"
_25._tcp.mx.example.net. TLSA 3 1 1 %s
dane.example. MX 10 mx.dane.example.
mx.dane.example. A 127.77.2.1
_%s._tcp.mx.dane.example. TLSA 3 1 1 %s
strip.example. MX 10 mx.strip.example.
mx.strip.example. A 127.77.2.2
_%s._tcp.mx.strip.example. TLSA 3 1 1 %s
plain.example. MX 10 mx.plain.example.
mx.plain.example. A 127.77.2.3
`, spki(leaf[0]), port(daneSink.Addr), spki(daneLeaf), port(stripSink.Addr), spki(daneLeaf))
	dns := dnstest.Start(t, zone)
	dns.ServeIn(t, ns, "127.53.0.13:53")
	dns.Signed(".")

	pf := postfixtest.Start(t, postfixtest.Options{Hostname: "mx.example.net", NetNS: ns, Nameserver: "127.53.0.13", Main: map[string]string{
		"mydomain":                            "example.net",
		"mydestination":                       "$mydomain, localhost",
		"default_transport":                   "smtp",
		"transport_maps":                      fmt.Sprintf("inline:{dane.example=smtp:dane.example:%s, strip.example=smtp:strip.example:%s, plain.example=smtp:plain.example:%s}", port(daneSink.Addr), port(stripSink.Addr), port(plainSink.Addr)),
		"smtp_tls_security_level":             "may",
		"smtp_dns_support_level":              "dnssec",
		"smtp_tls_loglevel":                   "1",
		"smtp_tls_CAfile":                     ca.CAFile(),
		"smtp_tls_protocols":                  ">=TLSv1.2",
		"smtp_tls_mandatory_protocols":        ">=TLSv1.2",
		"smtp_tls_ciphers":                    "high",
		"smtp_tls_mandatory_ciphers":          "high",
		"smtp_tls_exclude_ciphers":            "aNULL, kRSA, SHA1",
		"smtp_address_preference":             "ipv4",
		"smtp_connect_timeout":                "5s",
		"smtpd_tls_security_level":            "may",
		"smtpd_tls_chain_files":               chainFile,
		"smtpd_tls_protocols":                 ">=TLSv1.2",
		"smtpd_tls_mandatory_protocols":       ">=TLSv1.2",
		"smtpd_tls_ciphers":                   "high",
		"smtpd_tls_exclude_ciphers":           "kRSA, SHA1",
		"smtpd_tls_loglevel":                  "1",
		"smtpd_tls_mandatory_exclude_ciphers": "aNULL",
	}})
	etc := filepath.Join(pf.Dir, "etc")
	// DANE through master.cf, as a site that keeps main.cf's may for
	// other transports would set it.
	if out, err := exec.Command("postconf", "-c", etc, "-P", "smtp/unix/smtp_tls_security_level=dane").CombinedOutput(); err != nil {
		t.Fatalf("postconf -P: %v %s", err, out)
	}
	if err := pf.Postconf(nil); err != nil {
		t.Fatal(err)
	}

	res, _ := resolver.New(resolver.Config{Servers: []string{dns.Addr}, Timeout: time.Second})
	r, err := Run(context.Background(), Options{MTA: "postfix", ConfigDir: etc, Resolver: res, Roots: ca.Pool(),
		ResolvConf: filepath.Join(pf.Dir, "resolv.conf"),
		STS:        &policy.STSFetcher{Resolver: res, Roots: ca.Pool(), Port: ln.Addr().(*net.TCPAddr).Port, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	Write(&text, FormatText, r)
	t.Log(text.String())

	out := "Outbound: master.cf smtp/unix (smtp), default_transport = smtp"
	in := "Inbound: master.cf " + pf.Addr + "/inet (smtpd)"
	want(t, r, out, "outbound.starttls", StatusOK, "yes (level dane)")
	fall := want(t, r, out, "outbound.fallback", StatusOK, "no for destinations with DNSSEC-signed TLSA records")
	if fall.Setting != "master.cf smtp/unix: -o smtp_tls_security_level=dane" {
		t.Errorf("fallback set by %q, want the master.cf override", fall.Setting)
	}
	want(t, r, out, "outbound.authentication", StatusOK, "DANE")
	want(t, r, out, "outbound.dane", StatusOK, "on")
	want(t, r, out, "outbound.protocols", StatusOK, "TLSv1.2, TLSv1.3")
	want(t, r, out, "outbound.ciphers", StatusOK)
	want(t, r, in, "inbound.starttls", StatusOK)
	want(t, r, in, "inbound.protocols", StatusOK, "TLSv1.2, TLSv1.3")
	want(t, r, in, "inbound.ciphers", StatusOK)
	for _, id := range []string{"certificate.present", "certificate.chain", "certificate.names", "certificate.expiry", "certificate.key"} {
		want(t, r, "", id, StatusOK)
	}
	want(t, r, "", "certificate.expiry", StatusOK, "90 days left")
	dom := "Domain example.net (mydestination)"
	want(t, r, dom, "domain.mx", StatusOK, "mx.example.net")
	want(t, r, dom, "domain.spf", StatusOK, "hard fail")
	want(t, r, dom, "domain.dmarc", StatusOK, "p=reject")
	want(t, r, dom, "domain.mta_sts", StatusOK, "enforce")
	want(t, r, dom, "domain.tls_rpt", StatusOK, "mailto:tlsrpt@example.net")
	want(t, r, dom, "domain.tlsa", StatusOK, "matches the server's certificate at mx.example.net")

	// What the instance does. Inbound: TLS 1.2 with ECDHE, not RSA key
	// exchange (excluded), not TLS 1.1; the chain verifies for its name.
	if _, _, err := starttls(pf.Dial, &tls.Config{RootCAs: ca.Pool(), ServerName: "mx.example.net", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}); err != nil {
		t.Errorf("ECDHE handshake, verified chain: %v", err)
	}
	if _, _, err := starttls(pf.Dial, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}); err == nil {
		t.Error("RSA key exchange accepted, the audit says every suite is forward secret")
	}
	// Outbound: DANE verifies dane.example, refuses cleartext to
	// strip.example, falls back to cleartext for plain.example.
	for _, rcpt := range []string{"u@dane.example", "u@strip.example", "u@plain.example"} {
		send(t, pf, "sender@example.net", rcpt)
	}
	if m := daneSink.Wait(1, 60*time.Second); len(m) != 1 || m[0].TLS == "" {
		t.Errorf("dane.example: %+v, want one message over TLS\n%s", m, pf.Log())
	}
	if m := plainSink.Wait(1, 60*time.Second); len(m) != 1 || m[0].TLS != "" {
		t.Errorf("plain.example: %+v, want one message in cleartext\n%s", m, pf.Log())
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(pf.Log(), "to=<u@strip.example>") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	log := pf.Log()
	if !strings.Contains(log, "Verified TLS connection established to mx.dane.example") {
		t.Errorf("no Verified (DANE) session to mx.dane.example:\n%s", log)
	}
	if !regexp.MustCompile(`to=<u@strip\.example>.*status=deferred \(TLS is required, but was not offered`).MatchString(log) ||
		len(stripSink.Messages()) != 0 {
		t.Errorf("strip.example: want the message deferred, TLS required by DANE, nothing delivered:\n%s", log)
	}

	golden(t, "hardened.json", r, machine(t, probeOpenSSL(t), pf.Dir, "<instance>", pf.Addr, "<smtpd>",
		filepath.Dir(cert), "<ca>", spki(leaf[0]), "<spki>"))
}
