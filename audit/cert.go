package audit

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// certInput says where an MTA's server certificate is configured.
type certInput struct {
	CertFiles []string // PEM files holding the chain (leaf first), maybe the key
	KeyFiles  []string // PEM key files ("" entries: in the cert file)
	Where     string   // the setting naming them
	CAFile    string   // the MTA's own CA file (client certificates), extra trust
	CAPath    string   // the same, a hashed directory
	Hostname  string   // the name it greets with (myhostname, $j)
	FixFiles  string   // the line that names a certificate
}

// certChecks are the findings about a server certificate: present, chain,
// names, expiry and key (paper §3.2.1 and Table 2).
func certChecks(in certInput, roots *x509.CertPool, now time.Time) ([]Finding, *x509.Certificate, []*x509.Certificate) {
	present := Finding{ID: "certificate.present", Title: "Server certificate", Setting: in.Where}
	var chain []*x509.Certificate
	var problems []string
	for _, f := range in.CertFiles {
		certs, err := readCerts(f)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		chain = append(chain, certs...)
	}
	for i, f := range in.KeyFiles {
		if f == "" && i < len(in.CertFiles) {
			f = in.CertFiles[i]
		}
		if err := hasKey(f); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(in.CertFiles) == 0 {
		present.judge(StatusFail, "none configured", "Without a certificate the server cannot offer STARTTLS: every sender delivers in cleartext (paper §3.3: Postfix and Exchange offer it out of the box with a self-signed certificate, the others do not).", in.FixFiles)
		return []Finding{present}, nil, nil
	}
	if len(chain) == 0 || len(problems) > 0 {
		present.Status = StatusFail
		present.Value = "unusable: " + strings.Join(problems, "; ")
		if len(chain) == 0 && len(problems) == 0 {
			present.Value = "no certificate in " + strings.Join(in.CertFiles, ", ")
		}
		present.Reason = "The MTA cannot load it and gives up TLS: Postfix answers STARTTLS with \"454 4.7.0 TLS not available due to local problem\", senders fall back to cleartext (paper §4.1)."
		present.Fix = in.FixFiles
		return []Finding{present}, nil, nil
	}
	leaf := chain[0]
	present.Status = StatusOK
	present.Value = fmt.Sprintf("%s (%s)", strings.Join(in.CertFiles, ", "), plural(len(chain), "certificate"))
	present.Reason = "RFC 3207: STARTTLS needs a certificate; the paper's Table 2 judges them by trust and by name."
	out := []Finding{present, chainFinding(in, leaf, chain[1:], roots, now), nameFinding(in, leaf), expiryFinding(in, leaf, now), keyFinding(in, leaf)}
	return out, leaf, chain
}

func chainFinding(in certInput, leaf *x509.Certificate, inter []*x509.Certificate, roots *x509.CertPool, now time.Time) Finding {
	f := Finding{ID: "certificate.chain", Title: "Certificate chain", Setting: in.Where}
	pool := x509.NewCertPool()
	for _, c := range inter {
		pool.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: now}
	_, err := leaf.Verify(opts)
	if err == nil {
		f.judge(StatusOK, "valid against the public roots", "Senders that authenticate (MTA-STS, RFC 8461 §4.2; Postfix's verify and secure levels) accept it; the paper found only 52% of the Top 1M domains' servers with trusted certificates (Table 2).", "")
		return f
	}
	if own := caPool(in.CAFile, in.CAPath); own != nil {
		opts.Roots = own
		if _, err2 := leaf.Verify(opts); err2 == nil {
			f.Status = StatusWarn
			f.Value = "valid against the configured CA (" + strings.TrimSpace(in.CAFile+" "+in.CAPath) + ") only, not the public roots (" + err.Error() + ")"
			f.Reason = "Senders verify against public roots: MTA-STS (RFC 8461 §4.2) fails with this certificate; DANE-TA (2 x x) or DANE-EE (3 x x) TLSA records make it usable (RFC 7672 §3)."
			f.Fix = "use a certificate from a public CA, or publish TLSA records for it (DANE)"
			return f
		}
	}
	f.Value = trustWords(leaf, err)
	switch {
	case strings.HasPrefix(f.Value, "expired"):
		f.Status = StatusFail
		f.Reason = "The paper found 33,281 Top 1M domains with expired certificates (§3.2.1); opportunistic senders still deliver, MTA-STS and DANE-TA senders refuse (RFC 8461 §4.2)."
	default:
		f.Status = StatusWarn
		f.Reason = "Opportunistic senders accept any certificate (none of the paper's providers validated, Table 6 and §3.4), but MTA-STS senders refuse it (RFC 8461 §4.2); DANE-EE (3 1 1) TLSA records authenticate it without a CA (RFC 7672 §3.1)."
	}
	f.Fix = "use a certificate from a public CA, or publish TLSA 3 1 1 records for this one (DANE)"
	return f
}

// trustWords says why a chain did not verify, in the words of Table 2.
func trustWords(leaf *x509.Certificate, err error) string {
	var inv x509.CertificateInvalidError
	var unk x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return "expired or not yet valid: " + err.Error()
	case errors.As(err, &unk) && string(leaf.RawIssuer) == string(leaf.RawSubject):
		return "self-signed"
	case errors.As(err, &unk):
		return "issuer unknown: " + err.Error()
	case errors.As(err, &host):
		return err.Error()
	}
	return "invalid: " + err.Error()
}

func nameFinding(in certInput, leaf *x509.Certificate) Finding {
	f := Finding{ID: "certificate.names", Title: "Certificate names", Setting: in.Where}
	names := leaf.DNSNames
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = []string{leaf.Subject.CommonName + " (subject CN only)"}
	}
	f.Value = strings.Join(names, ", ")
	if f.Value == "" {
		f.Value = "none"
	}
	host := strings.TrimSuffix(in.Hostname, ".")
	if host != "" && leaf.VerifyHostname(host) == nil {
		f.Status = StatusOK
		f.Value += "; covers " + host
		f.Reason = "RFC 3207 and the paper's Table 2: a certificate should match the MX host (36.8% of the Top 1M did); MTA-STS requires it (RFC 8461 §4.2)."
		return f
	}
	f.Status = StatusWarn
	f.Value += "; does not cover " + host
	f.Reason = "The paper's Table 2: 40.98% of the Top 1M domains' certificates matched neither the domain nor the MX host; a sender checking names (MTA-STS, RFC 8461 §4.2; DANE-TA, RFC 7672 §3.2.3) refuses it."
	f.Fix = "use a certificate naming " + host + " (the MX host senders connect to)"
	return f
}

func expiryFinding(in certInput, leaf *x509.Certificate, now time.Time) Finding {
	f := Finding{ID: "certificate.expiry", Title: "Certificate expiry", Setting: in.Where}
	days := int(leaf.NotAfter.Sub(now).Hours() / 24)
	if leaf.NotAfter.Before(now) {
		days = -int(now.Sub(leaf.NotAfter).Hours()/24) - 1
	}
	f.Value = fmt.Sprintf("%s, %d days left", leaf.NotAfter.UTC().Format("2006-01-02"), days)
	switch {
	case now.After(leaf.NotAfter):
		f.judge(StatusFail, fmt.Sprintf("expired %s", leaf.NotAfter.UTC().Format("2006-01-02")), "The paper counted 33,281 Top 1M domains with expired certificates (§3.2.1); MTA-STS senders refuse them (RFC 8461 §4.2).", "renew the certificate")
	case days < 14:
		f.Status = StatusWarn
		f.Reason = "Less than two weeks left: renew now, and publish the new key's TLSA record before switching when DANE is on (RFC 7671 §8.1)."
		f.Fix = "renew the certificate"
	default:
		f.Status = StatusOK
		f.Reason = "Valid for more than two weeks (RFC 5280 §4.1.2.5)."
	}
	return f
}

func keyFinding(in certInput, leaf *x509.Certificate) Finding {
	f := Finding{ID: "certificate.key", Title: "Certificate key", Setting: in.Where}
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		f.Value = fmt.Sprintf("RSA %d bits", bits)
		if bits < 2048 {
			f.Status = StatusFail
			f.Reason = "The paper found 10% of Top 1M domains on 1024-bit RSA and 316 on 512-bit (§3.2); OpenSSL at security level 2 refuses keys under 2048 bits (SSL_CTX_set_security_level(3))."
			f.Fix = "issue a certificate with a 2048-bit or larger RSA key, or ECDSA P-256"
			return f
		}
	case *ecdsa.PublicKey:
		f.Value = "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		f.Value = "Ed25519"
	default:
		f.Value = fmt.Sprintf("%T", k)
	}
	f.Status = StatusOK
	f.Reason = "At least 112-bit security (NIST SP 800-57; 86.4% of the Top 1M used 2048-bit RSA in 2015, paper §3.2)."
	return f
}

// readCerts reads every CERTIFICATE block of a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}

// hasKey checks that a PEM file holds a private key.
func hasKey(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return fmt.Errorf("%s: no PEM private key", path)
		}
		if strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			return nil
		}
	}
}

// caPool loads a CA file and directory, or returns nil when neither is set.
func caPool(file, dir string) *x509.CertPool {
	if file == "" && dir == "" {
		return nil
	}
	pool := x509.NewCertPool()
	n := 0
	add := func(path string) {
		if certs, err := readCerts(path); err == nil {
			for _, c := range certs {
				pool.AddCert(c)
				n++
			}
		}
	}
	if file != "" {
		add(file)
	}
	if dir != "" {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !e.IsDir() {
				add(filepath.Join(dir, e.Name()))
			}
		}
	}
	if n == 0 {
		return nil
	}
	return pool
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
