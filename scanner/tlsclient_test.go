package scanner

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
)

// issueKey writes a certificate for name with the given key, signed by ca,
// as Postfix's smtpd_tls_chain_files wants it: key, then leaf, then CA.
func issueKey(t *testing.T, ca *testca.CA, name string, key crypto.Signer) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, name+".pem")
	data := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(path, append(data, ca.CertPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// negativeSerialCert makes a self-signed certificate with a negative
// serial number with the openssl command (Go refuses to make one).
func negativeSerialCert(t *testing.T, name string) (cert, key string) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cert, key = filepath.Join(dir, "neg.pem"), filepath.Join(dir, "neg.key")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-set_serial", "-4242",
		"-subj", "/CN="+name, "-addext", "subjectAltName=DNS:"+name, "-days", "2", "-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	return cert, key
}

// sslConf writes an OpenSSL configuration for Postfix's tls_config_file
// with tls_config_name = snowrain: its system_default settings apply to
// every TLS context Postfix makes, before Postfix's own settings.
func sslConf(t *testing.T, settings string) string {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "openssl.cnf")
	conf := "snowrain = init\n[init]\nssl_conf = ssl_module\n[ssl_module]\nsystem_default = settings\n[settings]\n" + settings
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestGrabRealPostfixTLS grabs real Postfix receivers configured as
// servers still found on the Internet: each must count as STARTTLS, with
// what was negotiated recorded (issue 12).
func TestGrabRealPostfixTLS(t *testing.T) {
	ca := testca.New(t)
	rsaCert, rsaKey := ca.Issue(t, "rsa", "mx.rsa.example")
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsa512, err := rsa.GenerateKey(rand.Reader, 512)
	if err != nil {
		t.Fatal(err)
	}
	negCert, negKey := negativeSerialCert(t, "mx.neg.example")
	cases := []struct {
		name            string
		main            map[string]string
		cert, key       string
		version, cipher string
		keyType         string
		keyBits         int
		group           string
		trust           Trust // default trusted
		chain           int   // default 2: leaf and CA
	}{
		{name: "rsa-kex-only", cert: rsaCert, key: rsaKey,
			main: map[string]string{
				// A TLS 1.2 Postfix limited to AES256-GCM-SHA384: RSA key
				// exchange only, which Go ≥ 1.22 no longer offers by default.
				"smtpd_tls_protocols":   ">=TLSv1.2, <=TLSv1.2",
				"tls_medium_cipherlist": "AES256-GCM-SHA384",
			},
			version: "TLSv1.2", cipher: "TLS_RSA_WITH_AES_256_GCM_SHA384", keyType: "RSA", keyBits: 2048},
		{name: "tls10-only", cert: rsaCert, key: rsaKey,
			main: map[string]string{
				// OpenSSL 3 needs security level 0 for TLS 1.0 (its MD5+SHA-1
				// signatures).
				"smtpd_tls_protocols":   ">=TLSv1, <=TLSv1",
				"tls_medium_cipherlist": "DEFAULT:@SECLEVEL=0",
			},
			version: "TLSv1", cipher: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", keyType: "RSA", keyBits: 2048, group: "X25519"},
		{name: "tls11-rsa-kex-cbc", cert: rsaCert, key: rsaKey,
			main: map[string]string{
				"smtpd_tls_protocols":   ">=TLSv1.1, <=TLSv1.1",
				"tls_medium_cipherlist": "AES128-SHA:@SECLEVEL=0",
			},
			version: "TLSv1.1", cipher: "TLS_RSA_WITH_AES_128_CBC_SHA", keyType: "RSA", keyBits: 2048},
		{name: "tls12-sha1-signatures", cert: rsaCert, key: rsaKey,
			// Signs its key exchange with SHA-1 only: Go 1.25 dropped SHA-1
			// from TLS 1.2 (tlssha1=1 brings it back for the scanner).
			main: map[string]string{
				"tls_config_file":       sslConf(t, "SignatureAlgorithms = RSA+SHA1\n"),
				"tls_config_name":       "snowrain",
				"smtpd_tls_protocols":   ">=TLSv1.2, <=TLSv1.2",
				"tls_medium_cipherlist": "ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
			},
			version: "TLSv1.2", cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", keyType: "RSA", keyBits: 2048, group: "X25519"},
		{name: "ecdsa-p256", cert: issueKey(t, ca, "mx.ec.example", ecKey),
			version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", keyType: "ECDSA", keyBits: 256, group: "X25519"},
		{name: "ecdsa-p384-tls12", cert: issueKey(t, ca, "mx.ec384.example", ec384),
			main:    map[string]string{"smtpd_tls_protocols": "<=TLSv1.2"},
			version: "TLSv1.2", cipher: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", keyType: "ECDSA", keyBits: 384, group: "X25519"},
		{name: "ed25519", cert: issueKey(t, ca, "mx.ed.example", edKey),
			version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", keyType: "Ed25519", keyBits: 256, group: "X25519"},
		{name: "rsa-512", cert: issueKey(t, ca, "mx.weak.example", rsa512),
			// Go 1.24 refuses RSA keys under 1024 bits (rsa1024min=0 for
			// the scanner); TLS 1.3's RSA-PSS does not fit in 512 bits.
			main:    map[string]string{"smtpd_tls_protocols": "<=TLSv1.2", "tls_medium_cipherlist": "DEFAULT:@SECLEVEL=0"},
			version: "TLSv1.2", cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", keyType: "RSA", keyBits: 512, group: "X25519"},
		{name: "negative-serial", cert: negCert, key: negKey,
			// Go 1.23 refuses to parse it (x509negativeserial=1 for the
			// scanner); old self-signed certificates have them.
			version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", keyType: "RSA", keyBits: 2048, group: "X25519",
			trust: TrustSelfSigned, chain: 1},
	}
	g := &Grabber{EHLOName: "scanner.test.example", Timeout: 20 * time.Second, Roots: ca.Pool(), Dialer: &Dialer{}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := postfixtest.Options{Main: map[string]string{}}
			if c.key != "" {
				o.CertFile, o.KeyFile = c.cert, c.key
			} else {
				// A key+chain file: Postfix's way to serve a non-RSA key alone.
				o.CertFile, o.KeyFile = c.cert, c.cert
			}
			for k, v := range c.main {
				o.Main[k] = v
			}
			pf := postfixtest.Start(t, o)
			ap := netip.MustParseAddrPort(pf.Addr)
			r := g.Grab(context.Background(), ap.Addr(), int(ap.Port()))
			if r.TLS == nil {
				t.Fatalf("no TLS: %s %s\n%s", r.ErrorClass, r.Error, pf.Log())
			}
			if c.trust == "" {
				c.trust, c.chain = TrustTrusted, 2
			}
			tr := r.TLS
			if tr.Version != c.version || tr.Cipher != c.cipher || tr.KeyType != c.keyType || tr.KeyBits != c.keyBits ||
				tr.Group != c.group || tr.Trust != c.trust || tr.Chain != c.chain {
				t.Errorf("negotiated %s %s group %q key %s/%d trust %s chain %d; want %s %s group %q key %s/%d %s chain %d",
					tr.Version, tr.Cipher, tr.Group, tr.KeyType, tr.KeyBits, tr.Trust, tr.Chain,
					c.version, c.cipher, c.group, c.keyType, c.keyBits, c.trust, c.chain)
			}
			if r.Millis <= 0 {
				t.Errorf("grab took %d ms: the duration is not recorded", r.Millis)
			}
		})
	}
}

// TestGrabLegacySuites grabs Go servers pinned to one legacy suite each:
// what OpenSSL 3 builds no longer serve (3DES, RC4) still has to be
// negotiated and named.
func TestGrabLegacySuites(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "legacy", "mx.legacy.example")
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	g := &Grabber{EHLOName: "scanner.test.example", Timeout: 5 * time.Second, Roots: ca.Pool(), Dialer: &Dialer{}}
	for _, c := range []struct {
		suite   uint16
		version uint16
		name    string
	}{
		{tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, tls.VersionTLS10, "TLSv1"},
		{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, tls.VersionTLS11, "TLSv1.1"},
		{tls.TLS_RSA_WITH_RC4_128_SHA, tls.VersionTLS10, "TLSv1"},
		{tls.TLS_RSA_WITH_AES_128_CBC_SHA256, tls.VersionTLS12, "TLSv1.2"},
		{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, "TLSv1.2"},
	} {
		name := tls.CipherSuiteName(c.suite)
		s := smtpsink.StartWith(t, "127.0.0.1:0", smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp},
			CipherSuites: []uint16{c.suite}, MinVersion: c.version, MaxVersion: c.version}})
		ip, port := addrOf(t, s)
		r := g.Grab(context.Background(), ip, port)
		if r.TLS == nil || r.TLS.Cipher != name || r.TLS.Version != c.name || r.TLS.CipherID != fmt.Sprintf("0x%04x", c.suite) {
			t.Errorf("%s %s: %+v %s %s", c.name, name, r.TLS, r.ErrorClass, r.Error)
		}
	}
}

func TestMergeGODEBUG(t *testing.T) {
	for _, c := range []struct{ cur, want string }{
		{"", "tlssha1=1,x509negativeserial=1,rsa1024min=0"},
		{"tlssha1=0", "tlssha1=0,x509negativeserial=1,rsa1024min=0"},
		{"http2client=0, rsa1024min=1", "http2client=0,rsa1024min=1,tlssha1=1,x509negativeserial=1"},
	} {
		if got := mergeGODEBUG(c.cur, LegacyGODEBUG); got != c.want {
			t.Errorf("merge(%q) = %q, want %q", c.cur, got, c.want)
		}
	}
}
