// Package milterbench measures milters side by side as Postfix drives
// them: a generated corpus of signed mail, its zones on a loopback DNS
// server, a go-milter client replaying each message through a chain of
// milters (one connection per milter per SMTP session, as smtpd_milters
// does), and the wall time, latency and per-process CPU of each chain.
// `make bench-anchors` runs snowrain against OpenDKIM + OpenDMARC with it.
package milterbench

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// Address ranges of the corpus's SMTP clients. They are documentation
// ranges (RFC 5737), never contacted: only milter macros carry them. Not
// loopback, because libspf2 (OpenDMARC's SPF) passes loopback clients
// without a lookup.
const (
	goodNet   = "198.51.100." // authorised by every sender domain's SPF
	forgerNet = "203.0.113."  // authorised by none
)

// Message is one SMTP transaction of the corpus and what a correct
// verifier concludes about it.
type Message struct {
	Kind     string // what the generator made (see kinds)
	ClientIP string
	Helo     string
	MailFrom string
	Rcpt     string
	TLS      bool   // sent over TLS (the TLS macros are set)
	Raw      []byte // CRLF, headers and body

	WantSPF   string   // MAIL FROM SPF: pass, fail, softfail, none
	WantDKIM  []string // each signature's result, top down: pass, fail, permerror (RFC 8601)
	WantDMARC string   // pass, fail, none
}

// Corpus is the generated mail and the zone publishing its senders'
// records.
type Corpus struct {
	Zone     string
	Messages []Message
	Domains  int
}

// senderDomain is one domain of the corpus and what it publishes.
type senderDomain struct {
	name   string
	spf    string // "-all", "~all", or "" for no record
	dmarc  string // p= value, "" for no record
	rsaKey *rsa.PrivateKey
	edKey  ed25519.PrivateKey
}

// Generate makes n messages from domains sender domains, deterministic in
// everything but the keys (RSA-2048 and Ed25519, made here) and the Date
// headers. Kinds follow real inbound mail loosely: most mail is signed and
// aligned, a share is dual-signed or also signed by an ESP, and a fifth is
// forged or broken in one of the ways RFC 6376 and 7489 describe.
func Generate(n, domains int) (*Corpus, error) {
	rng := mrand.New(mrand.NewPCG(15, 2026))
	// A few keys shared by many domains, as hosting providers do; making
	// one RSA-2048 key per domain would only slow the start.
	var rsaKeys []*rsa.PrivateKey
	var edKeys []ed25519.PrivateKey
	for i := 0; i < 4; i++ {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		rsaKeys = append(rsaKeys, k)
		_, e, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		edKeys = append(edKeys, e)
	}
	var zone strings.Builder
	z := func(format string, a ...any) { fmt.Fprintf(&zone, format+"\n", a...) }
	var ds []*senderDomain
	spfs := []string{"-all", "-all", "~all", "-all", ""}
	policies := []string{"reject", "quarantine", "none", "reject", ""}
	for i := 0; i < domains; i++ {
		d := &senderDomain{name: fmt.Sprintf("s%03d.example", i), spf: spfs[i%len(spfs)],
			dmarc: policies[(i/len(spfs))%len(policies)], rsaKey: rsaKeys[i%len(rsaKeys)], edKey: edKeys[i%len(edKeys)]}
		ds = append(ds, d)
		if d.spf != "" {
			z(`%s. TXT "v=spf1 ip4:%s0/24 %s"`, d.name, goodNet, d.spf)
		}
		if d.dmarc != "" {
			z(`_dmarc.%s. TXT "v=DMARC1; p=%s; rua=mailto:dmarc@%s"`, d.name, d.dmarc, d.name)
		}
		z(`rsa._domainkey.%s. TXT %s`, d.name, rsaRecord(&d.rsaKey.PublicKey))
		z(`ed._domainkey.%s. TXT "v=DKIM1; k=ed25519; p=%s"`, d.name,
			base64.StdEncoding.EncodeToString(d.edKey.Public().(ed25519.PublicKey)))
		z(`revoked._domainkey.%s. TXT "v=DKIM1; k=rsa; p="`, d.name)
		z(`mail.%s. TXT "v=spf1 ip4:%s0/24 -all"`, d.name, goodNet) // the HELO identity
	}
	// An ESP that signs its customers' mail with its own domain too.
	esp := &senderDomain{name: "espmail.example", spf: "-all", rsaKey: rsaKeys[0], edKey: edKeys[0]}
	z(`espmail.example. TXT "v=spf1 ip4:%s0/24 -all"`, goodNet)
	z(`rsa._domainkey.espmail.example. TXT %s`, rsaRecord(&esp.rsaKey.PublicKey))

	c := &Corpus{Zone: zone.String(), Domains: domains}
	for i := 0; i < n; i++ {
		d := ds[rng.IntN(len(ds))]
		c.Messages = append(c.Messages, makeMessage(rng, i, d, esp))
	}
	return c, nil
}

func rsaRecord(pub *rsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	s := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	var parts []string
	for len(s) > 200 {
		parts = append(parts, `"`+s[:200]+`"`)
		s = s[200:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

// kinds and their weights (out of 100).
var kinds = []struct {
	name   string
	weight int
}{
	{"rsa-aligned", 34},        // one aligned RSA signature, SPF pass
	{"dual-rsa-ed25519", 12},   // RSA and Ed25519 signatures of the author domain
	{"author-and-esp", 12},     // author and ESP signatures, envelope at the ESP
	{"three-signatures", 5},    // author RSA + Ed25519 and ESP
	{"unsigned-spf-pass", 12},  // DMARC passes on SPF alone
	{"forged-from", 8},         // a forger using the domain in From and MAIL FROM
	{"body-tampered", 4},       // signed, then a footer appended (bh= mismatch)
	{"header-tampered", 4},     // signed, then Subject changed (b= mismatch)
	{"no-key", 3},              // a selector with no key record
	{"revoked-key", 2},         // a selector whose record has an empty p=
	{"forged-with-esp-sig", 4}, // forged author, a valid unaligned ESP signature
}

func makeMessage(rng *mrand.Rand, i int, d, esp *senderDomain) Message {
	w := rng.IntN(100)
	kind := kinds[len(kinds)-1].name
	for _, k := range kinds {
		if w < k.weight {
			kind = k.name
			break
		}
		w -= k.weight
	}
	m := Message{Kind: kind, ClientIP: fmt.Sprintf("%s%d", goodNet, 1+rng.IntN(250)),
		Helo: "mail." + d.name, MailFrom: fmt.Sprintf("bounce-%d@%s", i, d.name),
		Rcpt: fmt.Sprintf("user%d@mx.test.example", rng.IntN(50)), TLS: rng.IntN(4) != 0}
	author := fmt.Sprintf("news%d@%s", rng.IntN(9), d.name)
	raw := body(rng, i, author, m.Rcpt, kind)
	spfDomain := d
	sig := func(s *senderDomain, selector string, ed bool) {
		var key crypto.Signer = s.rsaKey
		if ed {
			key = s.edKey
		}
		raw = sign(raw, s.name, selector, key)
	}
	dkimPass := false // an aligned signature passes
	switch kind {
	case "rsa-aligned":
		sig(d, "rsa", false)
		m.WantDKIM, dkimPass = []string{"pass"}, true
	case "dual-rsa-ed25519":
		sig(d, "rsa", false)
		sig(d, "ed", true)
		m.WantDKIM, dkimPass = []string{"pass", "pass"}, true
	case "author-and-esp":
		sig(d, "rsa", false)
		sig(esp, "rsa", false)
		m.MailFrom, spfDomain = fmt.Sprintf("bounce-%d@espmail.example", i), esp
		m.WantDKIM, dkimPass = []string{"pass", "pass"}, true
	case "three-signatures":
		sig(d, "rsa", false)
		sig(d, "ed", true)
		sig(esp, "rsa", false)
		m.MailFrom, spfDomain = fmt.Sprintf("bounce-%d@espmail.example", i), esp
		m.WantDKIM, dkimPass = []string{"pass", "pass", "pass"}, true
	case "unsigned-spf-pass":
	case "forged-from":
		m.ClientIP, m.Helo = fmt.Sprintf("%s%d", forgerNet, 129+rng.IntN(120)), "forger.invalid"
	case "body-tampered":
		sig(d, "rsa", false)
		raw = append(raw, "-- \r\nSent through a list that appends footers\r\n"...)
		m.WantDKIM = []string{"fail"}
	case "header-tampered":
		sig(d, "rsa", false)
		raw = bytes.Replace(raw, []byte("Subject: "), []byte("Subject: [EXTERNAL] "), 1)
		m.WantDKIM = []string{"fail"}
	case "no-key":
		sig(d, "missing", false) // signed with the RSA key under a selector never published
		m.WantDKIM = []string{"permerror"}
	case "revoked-key":
		sig(d, "revoked", false)
		m.WantDKIM = []string{"permerror"}
	case "forged-with-esp-sig":
		sig(esp, "rsa", false)
		m.ClientIP, m.Helo = fmt.Sprintf("%s%d", forgerNet, 129+rng.IntN(120)), "forger.invalid"
		m.WantDKIM = []string{"pass"}
	}
	m.Raw = append(received(m, i), raw...)
	good := strings.HasPrefix(m.ClientIP, goodNet)
	switch {
	case spfDomain.spf == "":
		m.WantSPF = "none"
	case good:
		m.WantSPF = "pass"
	case spfDomain.spf == "~all":
		m.WantSPF = "softfail"
	default:
		m.WantSPF = "fail"
	}
	spfAligned := m.WantSPF == "pass" && spfDomain == d
	switch {
	case d.dmarc == "":
		m.WantDMARC = "none"
	case dkimPass || spfAligned:
		m.WantDMARC = "pass"
	default:
		m.WantDMARC = "fail"
	}
	return m
}

// received is the trace header Postfix's smtpd prepends before the
// milters see the message.
func received(m Message, i int) []byte {
	tls := ""
	if m.TLS {
		tls = "\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))"
	}
	return fmt.Appendf(nil, "Received: from %s (unknown [%s])%s\r\n\tby mx.test.example (Postfix) with ESMTPS id 4Q%08X\r\n\tfor <%s>; %s\r\n",
		m.Helo, m.ClientIP, tls, i, m.Rcpt, time.Now().Format(time.RFC1123Z))
}

// body builds an unsigned message of a typical size: mostly 1 to 8 KiB of
// text, one in twenty near 40 KiB.
func body(rng *mrand.Rand, i int, from, to, kind string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Received: from internal.%s (localhost [127.0.0.1])\r\n\tby mail.%s with ESMTP id %d; %s\r\n",
		domainOf(from), domainOf(from), i, time.Now().Add(-2*time.Second).Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: Newsletter <%s>\r\nTo: <%s>\r\nSubject: Benchmark message %d (%s)\r\n", from, to, i, kind)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%d.%d@%s>\r\nMIME-Version: 1.0\r\n", time.Now().Format(time.RFC1123Z), i, rng.Uint32(), domainOf(from))
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	size := 1024 + rng.IntN(7*1024)
	if rng.IntN(20) == 0 {
		size = 40 * 1024
	}
	words := []string{"mail", "server", "transport", "security", "neither", "snow", "nor", "rain", "delivery", "report", "policy", "domain"}
	line := 0
	for b.Len() < size {
		b.WriteString(words[rng.IntN(len(words))])
		line++
		if line%12 == 0 {
			b.WriteString("\r\n")
		} else {
			b.WriteByte(' ')
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

func sign(msg []byte, domain, selector string, key crypto.Signer) []byte {
	opts := &dkim.SignOptions{Domain: domain, Selector: selector, Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}}
	var out bytes.Buffer
	if err := dkim.Sign(&out, bytes.NewReader(msg), opts); err != nil {
		panic(err) // only with a bad key, which Generate does not make
	}
	return out.Bytes()
}
