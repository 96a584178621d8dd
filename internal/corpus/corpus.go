// Package corpus builds the test mail corpus shared by the milter, Postfix
// and Sendmail tests and the benchmarks: DNS zones publishing SPF, DKIM and
// DMARC records, signed messages, and what each message must be recorded
// as. Every signature is real; only the keys are made up per process.
package corpus

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
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// Case is one message to send and its expected record.
type Case struct {
	Name     string
	ClientIP string // source address on 127.0.0.0/8
	Helo     string
	MailFrom string // "" for the null sender
	Rcpt     string
	TLS      string // "", "1.2" or "1.3"
	Message  []byte // CRLF

	SPF         string   // expected MAIL FROM SPF result
	SPFClass    string   // expected Table 21 class
	DKIM        string   // expected message verdict (auth.DKIMVerdict): pass, fail, permerror, temperror, none
	DKIMFails   []string // expected Table 8 class of each failing signature
	DMARC       string
	Policy      string // Table 18 class
	Auth        string // Table 17 class
	Disposition string
}

// Keys are the signing keys the zone publishes.
type Keys struct {
	RSA     *rsa.PrivateKey
	Ed25519 ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	keys     Keys
)

// TestKeys returns the process's keys, made once.
func TestKeys() Keys {
	keysOnce.Do(func() {
		var err error
		if keys.RSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if _, keys.Ed25519, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return keys
}

// Zone returns the zone text for all corpus domains.
func Zone() string {
	k := TestKeys()
	rsaDER, _ := x509.MarshalPKIXPublicKey(&k.RSA.PublicKey)
	edPub := k.Ed25519.Public().(ed25519.PublicKey)
	rsaRec := `"v=DKIM1; k=rsa; p=` + base64.StdEncoding.EncodeToString(rsaDER) + `"`
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	// SPF: the client networks are 127.0.0.0/8 addresses.
	w(`spf-pass.example. TXT "v=spf1 ip4:127.0.1.0/24 -all"`)
	w(`spf-fail.example. TXT "v=spf1 ip4:192.0.2.9 -all"`)
	w(`spf-soft.example. TXT "v=spf1 ~all"`)
	w(`spf-neutral.example. TXT "v=spf1 ?all"`)
	w(`spf-none.example. A 192.0.2.1`)
	w(`spf-perm.example. TXT "v=spf1 include:a.spf-perm.example -all"`)
	w(`a.spf-perm.example. TXT "v=spf1 include:b.spf-perm.example -all"`)
	w(`b.spf-perm.example. TXT "v=spf1 include:a.spf-perm.example -all"`)
	w(`spf-invalid.example. TXT "v=spf1 ip4:300.1.2.3 -all"`)
	w(`helo.spf-pass.example. TXT "v=spf1 ip4:127.0.1.0/24 -all"`)
	// DKIM keys, one selector per behaviour.
	for _, d := range []string{"dkim.example", "dmarc-dkim.example", "relaxed.example", "strict.example",
		"org.example", "pct.example", "dmarc-spf.example"} {
		w(`rsa._domainkey.%s. TXT %s`, d, splitTXT(rsaRec))
	}
	w(`ed._domainkey.dkim.example. TXT "v=DKIM1; k=ed25519; p=%s"`, base64.StdEncoding.EncodeToString(edPub))
	w(`weak._domainkey.dkim.example. TXT "v=DKIM1; k=rsa; p=%s"`, weakKey())
	w(`revoked._domainkey.dkim.example. TXT "v=DKIM1; k=rsa; p="`)
	w(`dkim.example. TXT "v=spf1 ip4:127.0.2.0/24 -all"`)
	// DMARC.
	w(`_dmarc.dmarc-spf.example. TXT "v=DMARC1; p=reject"`)
	w(`dmarc-spf.example. TXT "v=spf1 ip4:127.0.1.0/24 -all"`)
	w(`_dmarc.dmarc-dkim.example. TXT "v=DMARC1; p=quarantine"`)
	w(`_dmarc.relaxed.example. TXT "v=DMARC1; p=reject"`)
	w(`sub.relaxed.example. A 192.0.2.1`)
	w(`_dmarc.strict.example. TXT "v=DMARC1; p=reject; adkim=s; aspf=s"`)
	w(`sub.strict.example. A 192.0.2.1`)
	w(`_dmarc.org.example. TXT "v=DMARC1; p=reject; sp=none"`)
	w(`sub.org.example. A 192.0.2.1`)
	w(`_dmarc.pct.example. TXT "v=DMARC1; p=reject; pct=0"`)
	return b.String()
}

// splitTXT cuts a long quoted TXT string into 255-byte strings.
func splitTXT(q string) string {
	s := strings.Trim(q, `"`)
	var parts []string
	for len(s) > 200 {
		parts = append(parts, `"`+s[:200]+`"`)
		s = s[200:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

// weakKey is a 512-bit RSA public key. Go refuses to make keys that small,
// but go-msgauth rejects it by size before any arithmetic, so any odd
// modulus of that length serves.
func weakKey() string {
	n := new(big.Int).Lsh(big.NewInt(1), 511)
	n.Add(n, big.NewInt(12345))
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// message builds an unsigned message.
func message(from, to, subject, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\n", from, to, subject)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%d.%s>\r\nMIME-Version: 1.0\r\n", time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), strings.ReplaceAll(subject, " ", "-")+"@corpus.example")
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", body)
	return b.Bytes()
}

// signer describes one signature to add.
type signer struct {
	domain, selector string
	ed               bool
	canon            dkim.Canonicalization
	expire           time.Time
}

func sign(msg []byte, s signer) []byte {
	k := TestKeys()
	var key crypto.Signer = k.RSA
	if s.ed {
		key = k.Ed25519
	}
	canon := s.canon
	if canon == "" {
		canon = dkim.CanonicalizationRelaxed
	}
	opts := &dkim.SignOptions{Domain: s.domain, Selector: s.selector, Signer: key,
		HeaderCanonicalization: canon, BodyCanonicalization: canon,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}, Expiration: s.expire}
	var out bytes.Buffer
	if err := dkim.Sign(&out, bytes.NewReader(msg), opts); err != nil {
		panic(err)
	}
	return out.Bytes()
}

// rewriteSig edits the first DKIM-Signature header.
func rewriteSig(msg []byte, old, new string) []byte {
	i := bytes.Index(msg, []byte("DKIM-Signature:"))
	j := i + bytes.Index(msg[i:], []byte(old))
	if i < 0 || j < i {
		panic("corpus: cannot rewrite " + old)
	}
	return append(append(append([]byte{}, msg[:j]...), new...), msg[j+len(old):]...)
}
