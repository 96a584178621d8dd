//go:build ignore

// gen writes the DKIM test cases: go run gen.go (from this directory).
// Each case is NN-name.msg (CRLF), .dns (zone text; "SERVFAIL name" lines
// too), .result (one line per signature: result class detail domain
// selector algorithm keybits) and .readme (why). Keys are made fresh; only
// their public halves are kept, in the .dns files.
package main

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

var (
	rsaKey, _   = rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ = ed25519.GenerateKey(rand.Reader)
)

func rsaRecord(pub *rsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	p := base64.StdEncoding.EncodeToString(der)
	return fmt.Sprintf(`"v=DKIM1; k=rsa; p=%s" "%s"`, p[:200], p[200:])
}

func weakRecord() string {
	n := new(big.Int).Lsh(big.NewInt(1), 511)
	n.Add(n, big.NewInt(12345))
	der, _ := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
	return fmt.Sprintf(`"v=DKIM1; k=rsa; p=%s"`, base64.StdEncoding.EncodeToString(der))
}

const base = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hello\r\n" +
	"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello Bob.\r\n"

func sign(msg, domain, sel string, key crypto.Signer, exp time.Time) string {
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader([]byte(msg)), &dkim.SignOptions{Domain: domain, Selector: sel,
		Signer: key, HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}, Expiration: exp})
	if err != nil {
		panic(err)
	}
	return out.String()
}

func replace(s, old, new string) string {
	if !bytes.Contains([]byte(s), []byte(old)) {
		panic("no " + old)
	}
	return string(bytes.Replace([]byte(s), []byte(old), []byte(new), 1))
}

func main() {
	zone := "s1._domainkey.example.org. TXT " + rsaRecord(&rsaKey.PublicKey) + "\n" +
		"ed._domainkey.example.org. TXT \"v=DKIM1; k=ed25519; p=" +
		base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey)) + "\"\n" +
		"weak._domainkey.example.org. TXT " + weakRecord() + "\n" +
		"revoked._domainkey.example.org. TXT \"v=DKIM1; k=rsa; p=\"\n"
	s1 := sign(base, "example.org", "s1", rsaKey, time.Time{})
	cases := []struct{ name, msg, dns, result, readme string }{
		{"01-rsa_pass", s1, zone, "pass - - example.org s1 rsa-sha256 2048", "A valid rsa-sha256 signature with a 2048-bit key."},
		{"02-ed25519_pass", sign(base, "example.org", "ed", edKey, time.Time{}), zone, "pass - - example.org ed ed25519-sha256 256", "A valid ed25519-sha256 signature (RFC 8463)."},
		{"03-weak_key", sign(base, "example.org", "weak", rsaKey, time.Time{}), zone, "permerror weak_key - example.org weak rsa-sha256 512", "The published key is 512 bits: Table 8's weak key (< 1024)."},
		{"04-revoked", sign(base, "example.org", "revoked", rsaKey, time.Time{}), zone, "permerror revoked - example.org revoked rsa-sha256 0", "The key record has an empty p=: revoked."},
		{"05-sha1", replace(s1, "a=rsa-sha256", "a=rsa-sha1"), zone, "permerror unsupported_algorithm sha1 example.org s1 rsa-sha1 2048", "rsa-sha1 is refused (RFC 8301): unsupported algorithm."},
		{"06-unknown_algorithm", replace(s1, "a=rsa-sha256", "a=foo-bar"), zone, "permerror unsupported_algorithm hash example.org s1 foo-bar 2048", "An algorithm nobody knows."},
		{"07-expired", sign(base, "example.org", "s1", rsaKey, time.Unix(1600000000, 0)), zone, "permerror expired - example.org s1 rsa-sha256 0", "x= lies in the past; the key is not even fetched."},
		{"08-body_hash", s1 + "Appended by a mailing list.\r\n", zone, "fail body_hash - example.org s1 rsa-sha256 2048", "The body changed after signing."},
		{"09-header_sig", replace(s1, "Subject: hello", "Subject: HELLO"), zone, "fail other header_sig example.org s1 rsa-sha256 2048", "A signed header changed: the signature itself fails."},
		{"10-version", replace(s1, "v=1;", "v=2;"), zone, "permerror version - example.org s1 rsa-sha256 0", "v=2 is not DKIM1."},
		{"11-duplicate_tags", replace(s1, "a=rsa-sha256;", "a=rsa-sha256; a=rsa-sha256;"), zone, "permerror duplicate_tags - example.org s1 rsa-sha256 0", "A tag appears twice."},
		{"12-no_key", sign(base, "example.org", "missing", rsaKey, time.Time{}), zone, "permerror other no_key example.org missing rsa-sha256 0", "The selector has no key record (NXDOMAIN)."},
		{"13-dns_servfail", s1, "SERVFAIL s1._domainkey.example.org\n", "temperror other dns_temp example.org s1 rsa-sha256 0", "The key lookup fails temporarily (SERVFAIL)."},
		{"14-two_signatures_one_fails", sign(s1, "example.org", "weak", rsaKey, time.Time{}), zone,
			"permerror weak_key - example.org weak rsa-sha256 512\npass - - example.org s1 rsa-sha256 2048", "Two signatures, the newer one fails: the message still passes."},
		{"15-malformed_tags", replace(s1, "a=rsa-sha256;", "a=rsa-sha256; =broken;"), zone, "permerror other syntax example.org s1 rsa-sha256 2048", "A tag-spec without a name."},
	}
	for _, c := range cases {
		write(c.name+".msg", c.msg)
		write(c.name+".dns", c.dns)
		write(c.name+".result", c.result+"\n")
		write(c.name+".readme", c.readme+"\n")
	}
}

func write(name, s string) {
	if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
		panic(err)
	}
}
