//go:build ignore

//go:debug rsa1024min=0

// gen writes the DKIM corpus read by TestDKIMCorpus. Run it from this
// directory:
//
//	go run gen.go
//
// Each case is NN-name.msg (CRLF), .dns (zone text served by dnstest, plus
// "SERVFAIL name" lines), .result (one line per DKIM-Signature, in header
// order: result class detail domain selector algorithm keybits) and .readme
// (why the case exists).
//
// The keys are fixed test keys, so that a rerun changes only the t= tags and
// the signatures over them. The 512-bit key needs GODEBUG rsa1024min=0 (set
// above): Go refuses to generate or use RSA keys under 1024 bits otherwise.
// Valid signatures carry no x=, so the corpus never expires; the expired
// case has an x= fixed in 2020.
package main

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// rsa2048PEM and rsa512PEM are test keys made once for this corpus. Never
// use them for anything else.
const rsa2048PEM = `-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDDI+pi3ZAM9Mbx
jKC64Yu6R1JA3TyzKHh5L/2N8HPpb/I64H+tPsUm7Vfb1ryniZ1LAYgvgQBf0iKw
zkhZ99KcYv+bDxcyerrFq1kcEx8WEEhm6Yi6SwUubQOGVOGwnO35AYkx8/Xhlwqj
j3FPSDZbkaql/VL+8QWMG05gCrRbZZO4QdgwB2URJFOvZyCdj6lQLgRm2jah9YXD
5xF/YDzHZurdDuFdtgTR8G2qhiuciqVR2VCu35W5ey02Xalv6VtDG2iq2stzCuoA
4sUwJ84xylanU8UNubrQo5Y+cQbFSqNN6huCibxqj4DaAPkt20BqHdhd6MQbW4mZ
BdCqkMH7AgMBAAECggEACVoUf+O8icpqu8oMB+Z4QJd//7aDuGhQwbxXQjoUUJRM
f1UhsCcEvaMO9+zPQnLHZqTAy2xNU+7XFXup6CMG0vcfVK7TY0YAB5fURFvQzskZ
IFKdjMiYC54J+2tOHC/FtLLqW+62gEkfTAvNl9vhTnJEw5QjvFNZaOxNOwuBbarz
FfkgMDqAnpcgzj6l48toIN519dFZuxWYtvOMbJqkeNBhhBbLnZew+vvQlnESejQe
xNHh0tyqPhw3wkTdNXGeRVkXBZ6e7eQsVHFoQ5db6MGnbECi+iWxMKoxLvDsIjkS
/jDxfD/34bUT/5XC7l/6AcAMM6aJNCL+IxnubNKCzQKBgQDJxGu8zqf9w4mJ7SPp
FG1+gSMdniO+Xq4XGc/unmvhL6taWfd3cYN/GoUzm2ssJz2S9aIp+oVU+I+w4m/y
79Vb4bJ07wiNaBXITdFfEJNiCDEdSp3coL+HUPpi5bUqSqDz0xJpGZxXzVhqYJny
Zp0NtATV1RBqHlAM1FsPZjGKXwKBgQD3l35YJR9csBfQFIyHSlYWpGCcFo6URCYh
FoKFmhbb04N1vTLt7biS/m9gvi2SJo5eL20NJ7GIsPoBOmgNg6807al/8J8EKMf+
MvDgsccyQMtL2U7/JLNdxDyIh4RLrfSRchpkJupL8A9aa95NBX/f0P8ueASACG2q
QPqgBSfl5QKBgB9vtiWVwUDdjXlq9FRldWXncvQzZnhLwi4hPG9+SWqthbIvIEqA
6i8Mj8JprboUZxiVou2Ndea2T5UMwsqEKacGNErZz2hQ1kv+K+f26i+0/QoGTTBJ
722C5XAxQBfVxtwWf+DWN7DKcsMoR/QnnsK60KIMb2FJVcmZ8JImpwNbAoGBANIg
XDXqq4c6W7tY9TsMt6tXrjZKXo8ulz2VoQhKEgRWqkcOX17WVcNK9LOiM4LJ/iGp
FmAHxABCUqsgKpbtn5DH8waF7C7XfYQbL5tCxc+8dczVjNm1CBUYKleky35/EAUw
VX2SGV6BSkZvLacod7I36ZpCeW8/t/K6Wvnb5lSRAoGAbTzYcFNgs2H16Vhgcd67
WN/xyiuDDVtMfc8DeHiC/0DmaFp9X0UKFUbvwV+qphidqFGyr7jmW7y+6afSm6C5
SWKC1qxjV7A1GvnIII1x6PQVuUB1U68D9zdGI5t23xyuLbIeaZIi64VRCl8LmxbY
IOJZ6CdibrzPk/bzAIGjb9c=
-----END PRIVATE KEY-----
`

const rsa512PEM = `-----BEGIN PRIVATE KEY-----
MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAp9ehUPLrwVXgEy+T
I3SjbdxtLMBRvEFi83/BRpYHG4pymmAxIx4bjum4ZQAOsU3cGZF0ttfdWpUg6V8a
Y44/pQIDAQABAkBSVVQERg3BGtOfBbzrbRmIWFNT2wmdTAPyx64zZoAZES9QabTl
SII9qeK1KJ+McTHoSH+osa4leSplxcK5klhHAiEAzGFrb3Oa1XXJicxe3xvqR7Fi
LxKs3lm1XLOnQSPZCXMCIQDSO8RRoz0POTIkyQ7pOLeTO4tor2OgZ7nuWcwmgvus
hwIhALMmxgz48gUg7Zu7qIG7r35Oj/khTqTNT/vFgtvHt4zfAiA2knUfi/Qpo3s0
uUw5lhNxEJ/biMufs8075etsg8u4uQIhAJ4c5NqFYh3vRi0Zil/cTUsrDbn9Yckq
SR4WmU8xTi3u
-----END PRIVATE KEY-----
`

var (
	rsaKey  = parseKey(rsa2048PEM)
	weakKey = parseKey(rsa512PEM)
	edKey   = ed25519.NewKeyFromSeed(seed("snowrain dkim corpus ed25519"))
)

func seed(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func parseKey(s string) *rsa.PrivateKey {
	b, _ := pem.Decode([]byte(s))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		panic(err)
	}
	return k.(*rsa.PrivateKey)
}

// txt renders a TXT record, split into character-strings of at most 250
// bytes.
func txt(name, value string) string {
	var parts []string
	for len(value) > 250 {
		parts = append(parts, `"`+value[:250]+`"`)
		value = value[250:]
	}
	parts = append(parts, `"`+value+`"`)
	return name + ". 300 IN TXT " + strings.Join(parts, " ") + "\n"
}

func rsaRecord(sel string, k *rsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		panic(err)
	}
	return txt(sel+"._domainkey.example.org", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der))
}

func edRecord(sel string) string {
	return txt(sel+"._domainkey.example.org", "v=DKIM1; k=ed25519; p="+
		base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey)))
}

var body = "Hello Bob,\r\n\r\n" + strings.Repeat("This line is here so that the body spans many chunks.\r\n", 12) +
	"\r\n-- \r\nAlice\r\n"

var base = "Received: from mail.example.org (mail.example.org [192.0.2.25])\r\n\tby mx.example.net; Wed, 25 Nov 2026 10:00:01 +0000\r\n" +
	"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hello\r\n" +
	"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body

type signOpt func(*dkim.SignOptions)

func simple(o *dkim.SignOptions) {
	o.HeaderCanonicalization, o.BodyCanonicalization = dkim.CanonicalizationSimple, dkim.CanonicalizationSimple
}

func expires(t time.Time) signOpt { return func(o *dkim.SignOptions) { o.Expiration = t } }

// sign prepends a DKIM-Signature by sel to msg.
func sign(msg, sel string, key crypto.Signer, opts ...signOpt) string {
	o := &dkim.SignOptions{Domain: "example.org", Selector: sel, Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}}
	for _, f := range opts {
		f(o)
	}
	var out bytes.Buffer
	if err := dkim.Sign(&out, strings.NewReader(msg), o); err != nil {
		panic(err)
	}
	return out.String()
}

// replace changes the first old to new, which must be there.
func replace(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic("no " + old)
	}
	return strings.Replace(s, old, new, 1)
}

func main() {
	s1 := sign(base, "s1", rsaKey)
	s1Zone := rsaRecord("s1", rsaKey)
	cases := []struct{ name, msg, dns, result, readme string }{
		{"01-rsa_pass", s1, s1Zone,
			"pass - - example.org s1 rsa-sha256 2048",
			"A valid rsa-sha256 signature (relaxed/relaxed) with a 2048-bit key."},
		{"02-ed25519_pass", sign(base, "ed", edKey, simple), edRecord("ed"),
			"pass - - example.org ed ed25519-sha256 256",
			"A valid ed25519-sha256 signature (RFC 8463), simple/simple canonicalization."},
		{"03-weak_key", sign(base, "weak", weakKey), rsaRecord("weak", weakKey),
			"permerror weak_key - example.org weak rsa-sha256 512",
			"A real signature by a 512-bit RSA key, which RFC 8301 forbids verifiers to accept: weak_key."},
		{"04-revoked", sign(base, "revoked", rsaKey), txt("revoked._domainkey.example.org", "v=DKIM1; k=rsa; p="),
			"permerror revoked - example.org revoked rsa-sha256 0",
			"The key record has an empty p= tag, which RFC 6376 3.6.1 defines as a revoked key."},
		{"05-rsa_sha1", replace(s1, "a=rsa-sha256", "a=rsa-sha1"), s1Zone,
			"permerror unsupported_algorithm sha1 example.org s1 rsa-sha1 2048",
			"a=rsa-sha1 is refused (RFC 8301): unsupported_algorithm, found after the key was fetched."},
		{"06-unknown_algorithm", replace(s1, "a=rsa-sha256", "a=foo-bar"), s1Zone,
			"permerror unsupported_algorithm hash example.org s1 foo-bar 2048",
			"a=foo-bar names an algorithm nobody knows: unsupported_algorithm."},
		{"07-expired", sign(base, "s1", rsaKey, expires(time.Date(2020, 9, 13, 12, 26, 40, 0, time.UTC))), s1Zone,
			"permerror expired - example.org s1 rsa-sha256 0",
			"x= lies in 2020, so the signature has expired and its key is not even fetched."},
		{"08-body_hash", s1 + "Appended by a mailing list.\r\n", s1Zone,
			"fail body_hash - example.org s1 rsa-sha256 2048",
			"A line was added to the body after signing: the body hash fails."},
		{"09-header_sig", replace(s1, "Subject: hello", "Subject: HELLO again"), s1Zone,
			"fail other header_sig example.org s1 rsa-sha256 2048",
			"A signed header (Subject) changed after signing: the body hash holds but the signature fails."},
		{"10-version", replace(s1, "v=1;", "v=2;"), s1Zone,
			"permerror version - example.org s1 rsa-sha256 0",
			"v=2 is not a DKIM signature version this verifier knows."},
		{"11-duplicate_tags", replace(s1, "d=example.org;", "d=example.org; d=example.net;"), s1Zone,
			"permerror duplicate_tags - example.org s1 rsa-sha256 0",
			"The d= tag appears twice, which RFC 6376 3.2 makes a permanent error."},
		{"12-no_key", sign(base, "missing", rsaKey), s1Zone,
			"permerror other no_key example.org missing rsa-sha256 0",
			"The selector has no key record (NXDOMAIN)."},
		{"13-dns_servfail", s1, s1Zone + "SERVFAIL s1._domainkey.example.org\n",
			"temperror other dns_temp example.org s1 rsa-sha256 0",
			"The key lookup answers SERVFAIL: a temporary error, not a missing key."},
		{"14-two_signatures_one_fails", sign(s1, "weak", weakKey), s1Zone + rsaRecord("weak", weakKey),
			"permerror weak_key - example.org weak rsa-sha256 512\npass - - example.org s1 rsa-sha256 2048",
			"Two signatures, the newer one by a weak key: one passes, so the message's DKIM verdict is pass."},
		{"15-over_limit", sign(sign(s1, "ed", edKey), "weak", weakKey), s1Zone + edRecord("ed") + rsaRecord("weak", weakKey),
			"permerror weak_key - example.org weak rsa-sha256 512\npass - - example.org ed ed25519-sha256 256\npolicy - over_limit example.org s1 rsa-sha256 0",
			"Three signatures with the cap at two: the bottom one, though valid, is neither looked up nor verified."},
		{"16-malformed_tags", replace(s1, "a=rsa-sha256;", "a=rsa-sha256; =broken;"), s1Zone,
			"permerror other syntax example.org s1 rsa-sha256 2048",
			"A tag-spec without a tag name: the tag-list is malformed (RFC 6376 3.2)."},
		{"17-selector_named_like_an_error", sign(base, "canonicalization", rsaKey), s1Zone,
			"permerror other no_key example.org canonicalization rsa-sha256 0",
			"The missing key's selector quotes a go-msgauth error text; the error wrapping the DNS answer must not decide the class."},
		{"18-key_type_mismatch", sign(base, "ed", rsaKey), edRecord("ed"),
			"permerror unsupported_algorithm key_hash example.org ed rsa-sha256 256",
			"An rsa-sha256 signature whose selector publishes an ed25519 key: inappropriate key algorithm."},
	}
	for _, c := range cases {
		write(c.name+".msg", c.msg)
		write(c.name+".dns", c.dns)
		write(c.name+".result", c.result+"\n")
		write(c.name+".readme", c.readme+"\n")
	}
	fmt.Println(len(cases), "cases")
}

func write(name, s string) {
	if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
		panic(err)
	}
}
