package corpus

import (
	"bytes"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// ServFail lists names the test DNS server must answer with SERVFAIL.
var ServFail = []string{"spf-temp.example"}

const rcpt = "user@dest.example"

// Cases returns the corpus. Messages carry fresh Date and Message-ID
// headers, so call it once per run.
func Cases() []Case {
	var cs []Case
	add := func(c Case) {
		if c.Rcpt == "" {
			c.Rcpt = rcpt
		}
		if c.Helo == "" {
			c.Helo = "client.example"
		}
		if c.DKIM == "" {
			c.DKIM = "none"
		}
		if c.DMARC == "" {
			c.DMARC, c.Policy = "none", "absent"
		}
		if c.Disposition == "" {
			c.Disposition = "none"
		}
		c.TLS = []string{"", "1.2", "1.3"}[len(cs)%3]
		cs = append(cs, c)
	}
	spfOnly := func(name, domain, ip, result, class, auth string) {
		add(Case{Name: name, ClientIP: ip, MailFrom: "a@" + domain,
			Message: message("a@"+domain, rcpt, name, "spf case"), SPF: result, SPFClass: class, Auth: auth})
	}
	spfOnly("spf-pass", "spf-pass.example", "127.0.1.10", "pass", "", "spf_only")
	spfOnly("spf-fail", "spf-fail.example", "127.0.1.11", "fail", "", "none")
	spfOnly("spf-softfail", "spf-soft.example", "127.0.1.12", "softfail", "", "none")
	spfOnly("spf-neutral", "spf-neutral.example", "127.0.1.13", "neutral", "", "none")
	spfOnly("spf-none", "spf-none.example", "127.0.1.14", "none", "", "none")
	spfOnly("spf-permerror-loop", "spf-perm.example", "127.0.1.15", "permerror", "permerror", "none")
	spfOnly("spf-invalid-record", "spf-invalid.example", "127.0.1.16", "permerror", "invalid_record", "none")
	spfOnly("spf-temperror-servfail", "spf-temp.example", "127.0.1.17", "temperror", "temperror", "none")
	cs[len(cs)-1].DMARC = "temperror" // its _dmarc lookup fails too

	dk := func(name string, msg []byte, ip, verdict string, fails []string, auth string) {
		add(Case{Name: name, ClientIP: ip, MailFrom: "a@dkim.example", Message: msg,
			SPF: spfFor(ip), DKIM: verdict, DKIMFails: fails, Auth: auth})
	}
	base := func(name string) []byte { return message("a@dkim.example", rcpt, name, "dkim case body") }
	rsaSig := signer{domain: "dkim.example", selector: "rsa"}
	dk("dkim-rsa-pass", sign(base("dkim-rsa-pass"), rsaSig), "127.0.2.10", "pass", nil, "dkim_and_spf")
	dk("dkim-ed25519-pass", sign(base("dkim-ed25519-pass"), signer{domain: "dkim.example", selector: "ed", ed: true}),
		"127.0.1.21", "pass", nil, "dkim_only")
	dk("dkim-simple-pass", sign(base("dkim-simple-pass"), signer{domain: "dkim.example", selector: "rsa",
		canon: dkim.CanonicalizationSimple}), "127.0.2.11", "pass", nil, "dkim_and_spf")
	dk("dkim-weak-key", sign(base("dkim-weak-key"), signer{domain: "dkim.example", selector: "weak"}),
		"127.0.2.12", "permerror", []string{"weak_key"}, "spf_only")
	dk("dkim-revoked", sign(base("dkim-revoked"), signer{domain: "dkim.example", selector: "revoked"}),
		"127.0.2.13", "permerror", []string{"revoked"}, "spf_only")
	dk("dkim-unsupported-algorithm", rewriteSig(sign(base("dkim-unsupported-algorithm"), rsaSig), "a=rsa-sha256", "a=rsa-sha1"),
		"127.0.2.14", "permerror", []string{"unsupported_algorithm"}, "spf_only")
	dk("dkim-expired", sign(base("dkim-expired"), signer{domain: "dkim.example", selector: "rsa",
		expire: time.Now().Add(-time.Hour)}), "127.0.2.15", "permerror", []string{"expired"}, "spf_only")
	dk("dkim-body-hash", append(sign(base("dkim-body-hash"), rsaSig), "tampered line\r\n"...),
		"127.0.2.16", "fail", []string{"body_hash"}, "spf_only")
	dk("dkim-version", rewriteSig(sign(base("dkim-version"), rsaSig), "v=1", "v=2"),
		"127.0.2.17", "permerror", []string{"version"}, "spf_only")
	dk("dkim-duplicate-tags", rewriteSig(sign(base("dkim-duplicate-tags"), rsaSig), "a=rsa-sha256;", "a=rsa-sha256; a=rsa-sha256;"),
		"127.0.2.18", "permerror", []string{"duplicate_tags"}, "spf_only")
	dk("dkim-header-changed", bytes.Replace(sign(base("dkim-header-changed"), rsaSig),
		[]byte("Subject: dkim-header-changed"), []byte("Subject: dkim-header-CHANGED"), 1),
		"127.0.2.19", "fail", []string{"other"}, "spf_only")
	dk("dkim-no-key", sign(base("dkim-no-key"), signer{domain: "dkim.example", selector: "missing"}),
		"127.0.2.20", "permerror", []string{"other"}, "spf_only")
	dk("dkim-two-one-fails", sign(sign(base("dkim-two-one-fails"), rsaSig), signer{domain: "dkim.example", selector: "weak"}),
		"127.0.2.21", "pass", []string{"weak_key"}, "dkim_and_spf")

	dm := func(name, from, mailFrom, ip string, sig *signer, c Case) {
		msg := message(from, rcpt, name, "dmarc case")
		if sig != nil {
			msg = sign(msg, *sig)
			c.DKIM = "pass"
		}
		c.Name, c.ClientIP, c.MailFrom, c.Message = name, ip, mailFrom, msg
		add(c)
	}
	dm("dmarc-pass-spf-only", "a@dmarc-spf.example", "a@dmarc-spf.example", "127.0.1.40", nil,
		Case{SPF: "pass", DMARC: "pass", Policy: "reject", Auth: "spf_only"})
	dm("dmarc-pass-dkim-only", "a@dmarc-dkim.example", "bounce@spf-fail.example", "127.0.1.41",
		&signer{domain: "dmarc-dkim.example", selector: "rsa"},
		Case{SPF: "fail", DMARC: "pass", Policy: "quarantine", Auth: "dkim_only"})
	dm("dmarc-relaxed-subdomain", "a@sub.relaxed.example", "bounce@spf-fail.example", "127.0.1.42",
		&signer{domain: "relaxed.example", selector: "rsa"},
		Case{SPF: "fail", DMARC: "pass", Policy: "reject", Auth: "dkim_only"})
	dm("dmarc-strict-subdomain", "a@sub.strict.example", "bounce@spf-fail.example", "127.0.1.43",
		&signer{domain: "strict.example", selector: "rsa"},
		Case{SPF: "fail", DMARC: "fail", Policy: "reject", Disposition: "reject", Auth: "dkim_only"})
	dm("dmarc-sp-none", "a@sub.org.example", "bounce@spf-fail.example", "127.0.1.44", nil,
		Case{SPF: "fail", DMARC: "fail", Policy: "none", Auth: "none"})
	dm("dmarc-pct-zero", "a@pct.example", "bounce@spf-fail.example", "127.0.1.45", nil,
		Case{SPF: "fail", DMARC: "fail", Policy: "reject", Disposition: "quarantine", Auth: "none"})
	add(Case{Name: "null-sender", ClientIP: "127.0.1.50", Helo: "helo.spf-pass.example", MailFrom: "",
		Message: message("mailer-daemon@helo.spf-pass.example", rcpt, "null-sender", "bounce"),
		SPF:     "pass", Auth: "spf_only"})
	return cs
}

// spfFor is the SPF result of MAIL FROM a@dkim.example from ip.
func spfFor(ip string) string {
	if len(ip) > 8 && ip[:8] == "127.0.2." {
		return "pass"
	}
	return "fail"
}
