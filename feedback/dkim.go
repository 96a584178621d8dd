package feedback

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIM signs report mail: RFC 8460 5.3 wants TLS reports signed by the
// reporting domain, and receivers trust signed DMARC reports more. Leave
// it unset when the MTA signs locally submitted mail itself.
type DKIM struct {
	Domain, Selector string
	Signer           crypto.Signer
}

// reportHeaders are the fields signed (RFC 6376 5.4.1, and RFC 8460's).
var reportHeaders = []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
	"TLS-Report-Domain", "TLS-Report-Submitter", "Auto-Submitted"}

// sign prepends a DKIM-Signature (relaxed/relaxed, SHA-256).
func (d *DKIM) sign(msg []byte) ([]byte, error) {
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{Domain: d.Domain, Selector: d.Selector,
		Signer: d.Signer, HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization: dkim.CanonicalizationRelaxed, HeaderKeys: reportHeaders})
	if err != nil {
		return nil, fmt.Errorf("feedback: dkim: %w", err)
	}
	return out.Bytes(), nil
}

// LoadDKIMKey reads a PEM private key (PKCS#1 or PKCS#8; RSA or Ed25519).
func LoadDKIMKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("feedback: dkim key: no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("feedback: dkim key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("feedback: dkim key: unsupported %T", k)
}
