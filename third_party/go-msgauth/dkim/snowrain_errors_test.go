package dkim

// Tests of the exported verification errors (snowrain patch, see
// ../PATCHES.md): each failure is its sentinel under errors.Is, with the
// text v0.7.0 gave and the same IsPermFail/IsTempFail/isFail answer.

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
)

const (
	permFail = "perm"
	tempFail = "temp"
	sigFail  = "fail"
)

func failKind(err error) string {
	switch {
	case IsPermFail(err):
		return permFail
	case IsTempFail(err):
		return tempFail
	case isFail(err):
		return sigFail
	}
	return ""
}

// weakKey is a 512-bit RSA key record (RFC 8301 section 3.2 forbids it).
const weakKey = "v=DKIM1; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKfXoVDy68FV4BMvkyN0o23cbSzAUbxBYvN/wUaWBxuKcppgMSMeG47puGUADrFN3BmRdLbX3VqVIOlfGmOOP6UCAwEAAQ=="

func TestErrorsQuery(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(nil)
	edPKIX, err := x509.MarshalPKIXPublicKey(edPub)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(txts []string, err error) txtLookupFunc {
		return func(string) ([]string, error) { return txts, err }
	}
	servfail := &net.DNSError{Err: "server answered SERVFAIL", Name: "s._domainkey.example.org", IsTemporary: true}
	nxdomain := &net.DNSError{Err: "no such host", Name: "s._domainkey.example.org", IsNotFound: true}
	cases := []struct {
		lookup txtLookupFunc
		want   []error
		kind   string
		text   string
	}{
		{lookup(nil, servfail), []error{ErrKeyUnavailable}, tempFail, "dkim: key unavailable: lookup s._domainkey.example.org: server answered SERVFAIL"},
		{lookup(nil, nxdomain), []error{ErrNoKey}, permFail, "dkim: no key for signature: lookup s._domainkey.example.org: no such host"},
		{lookup(nil, nil), []error{ErrNoValidKey}, permFail, "dkim: no valid key found"},
		{lookup([]string{dnsPublicKey, dnsPublicKey}, nil), []error{ErrMultipleKeys}, permFail, "dkim: multiple TXT records found for key"},
		{lookup([]string{"v=DKIM1; p"}, nil), []error{ErrKeyRecord, ErrMalformedTagList}, permFail, "dkim: key record error: dkim: malformed header params"},
		{lookup([]string{"p=a; p=b"}, nil), []error{ErrKeyRecord, ErrDuplicateTag}, permFail, "dkim: key record error: dkim: duplicate tag name"},
		{lookup([]string{"v=DKIM2; p=AAAA"}, nil), []error{ErrKeyVersion}, permFail, "dkim: incompatible public key version"},
		{lookup([]string{"v=DKIM1"}, nil), []error{ErrKeySyntax}, permFail, "dkim: key syntax error: missing public key data"},
		{lookup([]string{"v=DKIM1; p="}, nil), []error{ErrKeyRevoked}, permFail, "dkim: key revoked"},
		{lookup([]string{"v=DKIM1; p=!!!!"}, nil), []error{ErrKeySyntax}, permFail, "dkim: key syntax error: illegal base64 data at input byte 0"},
		{lookup([]string{"v=DKIM1; p=" + base64.StdEncoding.EncodeToString(edPKIX)}, nil), []error{ErrKeySyntax}, permFail, "dkim: key syntax error: not an RSA public key"},
		{lookup([]string{weakKey}, nil), []error{ErrKeyTooShort}, permFail, "dkim: key is too short: want 1024 bits, has 512 bits"},
		{lookup([]string{"v=DKIM1; k=ed25519; p=AAAA"}, nil), []error{ErrKeySize}, permFail, "dkim: invalid Ed25519 public key size: 3 bytes"},
		{lookup([]string{"v=DKIM1; k=dsa; p=AAAA"}, nil), []error{ErrUnsupportedKeyAlgorithm}, permFail, "dkim: unsupported key algorithm"},
	}
	for _, tc := range cases {
		_, err := queryDNSTXT("example.org", "s", tc.lookup)
		checkError(t, err, tc.want, tc.kind, tc.text)
	}
	_, err = queryDNSTXT("example.org", "s", lookup(nil, servfail))
	if de := (*net.DNSError)(nil); !errors.As(err, &de) || de != servfail {
		t.Errorf("%v: the DNS error is not wrapped", err)
	}
}

func TestErrorsVerify(t *testing.T) {
	keys := map[string]string{
		"brisbane":  dnsPublicKey,
		"sha1only":  strings.Replace(dnsPublicKey, "v=DKIM1;", "v=DKIM1; h=sha1;", 1),
		"ftponly":   strings.Replace(dnsPublicKey, "v=DKIM1;", "v=DKIM1; s=ftp;", 1),
		"ed25519":   dnsEd25519PublicKey,
		"nxdomain":  "",
		"duplicate": "p=a; p=b",
	}
	saved := queryMethods[QueryMethodDNSTXT]
	queryMethods[QueryMethodDNSTXT] = queryDNSTXT
	defer func() { queryMethods[QueryMethodDNSTXT] = saved }()
	opts := &VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		sel, _, _ := strings.Cut(name, ".")
		if k := keys[sel]; k != "" {
			return []string{k}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}}
	cases := []struct {
		old, new string // edit of verifiedMailString
		want     []error
		kind     string
		text     string
	}{
		{"v=1;", "v=1; v=1;", []error{ErrSignatureTags, ErrDuplicateTag}, permFail, "dkim: malformed signature tags: dkim: duplicate tag name"},
		{"v=1;", "v=1; junk;", []error{ErrSignatureTags, ErrMalformedTagList}, permFail, "dkim: malformed signature tags: dkim: malformed header params"},
		{"v=1;", "v=2;", []error{ErrSignatureVersion}, permFail, "dkim: incompatible signature version"},
		{"bh=", "xh=", []error{ErrMissingTag}, permFail, "dkim: signature missing required tag"},
		{"i=joe@football.example.com", "i=joe@example.net", []error{ErrDomainMismatch}, permFail, "dkim: domain mismatch"},
		{"From : ", "", []error{ErrFromNotSigned}, permFail, "dkim: From field not signed"},
		{"v=1;", "v=1; t=x;", []error{ErrMalformedTime}, permFail, `dkim: malformed time: strconv.ParseInt: parsing "x": invalid syntax`},
		{"v=1;", "v=1; x=y;", []error{ErrMalformedExpiration}, permFail, `dkim: malformed expiration time: strconv.ParseInt: parsing "y": invalid syntax`},
		{"v=1;", "v=1; x=1;", []error{ErrExpired}, permFail, "dkim: signature has expired"},
		{"s=brisbane", "s=nxdomain", []error{ErrNoKey}, permFail, "dkim: no key for signature: lookup nxdomain._domainkey.example.com: no such host"},
		{"s=brisbane", "s=duplicate", []error{ErrKeyRecord, ErrDuplicateTag}, permFail, "dkim: key record error: dkim: duplicate tag name"},
		{"q=dns/txt", "q=http/well-known", []error{ErrUnsupportedQueryMethod}, permFail, "dkim: unsupported public key query method"},
		{"a=rsa-sha256", "a=rsasha256", []error{ErrMalformedAlgorithm}, permFail, "dkim: malformed algorithm name"},
		{"s=brisbane", "s=sha1only", []error{ErrInappropriateHash}, permFail, "dkim: inappropriate hash algorithm"},
		{"a=rsa-sha256", "a=rsa-sha1", []error{ErrWeakHash}, permFail, "dkim: hash algorithm too weak: sha1"},
		{"a=rsa-sha256", "a=rsa-md5", []error{ErrUnsupportedHash}, permFail, "dkim: unsupported hash algorithm"},
		{"s=brisbane", "s=ed25519", []error{ErrInappropriateKey}, permFail, "dkim: inappropriate key algorithm"},
		{"s=brisbane", "s=ftponly", []error{ErrInappropriateService}, permFail, "dkim: inappropriate service"},
		{"c=simple/simple", "c=complex/simple", []error{ErrUnsupportedHeaderCanon}, permFail, "dkim: unsupported header canonicalization algorithm"},
		{"c=simple/simple", "c=simple/complex", []error{ErrUnsupportedBodyCanon}, permFail, "dkim: unsupported body canonicalization algorithm"},
		{"v=1;", "v=1; l=10;", []error{ErrBodyLengthTag}, sigFail, "dkim: message contains an insecure body length tag"},
		{"bh=2jUSOH9N", "bh=!!!!", []error{ErrMalformedBodyHash}, permFail, "dkim: malformed body hash: illegal base64 data at input byte 0"},
		{"b=AuUoFEfD", "b=!!!!", []error{ErrMalformedSignature}, permFail, "dkim: malformed signature: illegal base64 data at input byte 0"},
		{"We lost the game.", "We won the game.", []error{ErrBodyHash}, sigFail, "dkim: body hash did not verify"},
		{"Subject: Is dinner ready?", "Subject: Dinner is ready", []error{ErrSignature}, sigFail, "dkim: signature did not verify: crypto/rsa: verification error"},
	}
	for _, tc := range cases {
		if !strings.Contains(verifiedMailString, tc.old) {
			t.Fatalf("%q not in the message", tc.old)
		}
		msg := strings.Replace(verifiedMailString, tc.old, tc.new, 1)
		verifs, err := VerifyWithOptions(newMailStringReader(msg), opts)
		if err != nil || len(verifs) != 1 {
			t.Fatalf("%q → %q: %v, %d verifications", tc.old, tc.new, err, len(verifs))
		}
		checkError(t, verifs[0].Err, tc.want, tc.kind, tc.text)
	}
	// The unedited message still verifies with this lookup.
	verifs, err := VerifyWithOptions(newMailStringReader(verifiedMailString), opts)
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil {
		t.Errorf("unedited message: %v, %+v", err, verifs)
	}
}

// checkError: err is each of want under errors.Is, of the given kind, with
// the given text.
func checkError(t *testing.T, err error, want []error, kind, text string) {
	t.Helper()
	if err == nil {
		t.Errorf("no error, want %q", text)
		return
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Errorf("%q is not %q", err, w)
		}
	}
	if got := failKind(err); got != kind {
		t.Errorf("%q: kind %q, want %q", err, got, kind)
	}
	if err.Error() != text {
		t.Errorf("text %q, want %q", err, text)
	}
}
