package scanner

import (
	"regexp"
	"strings"
)

// MTA software the classifier names (the paper's Table 5 and the large
// providers of Table 6).
const (
	SoftwarePostfix        = "Postfix"
	SoftwareExim           = "Exim"
	SoftwareSendmail       = "Sendmail"
	SoftwareExchange       = "Microsoft Exchange"
	SoftwareExchangeOnline = "Microsoft Exchange Online"
	SoftwareGoogle         = "Google"
	SoftwareQmail          = "qmail"
	SoftwareOpenSMTPD      = "OpenSMTPD"
	SoftwareZimbra         = "Zimbra"
	SoftwareHaraka         = "Haraka"
	SoftwareCiscoESA       = "Cisco ESA"
	SoftwareUnknown        = "unknown"
)

// Software is what a server's greeting and EHLO reply say it runs, and
// the rule that said so.
type Software struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Rule    string `json:"rule"` // a SoftwareRules ID
}

// SoftwareRule is one classification rule: what it matches, and where the
// pattern comes from.
type SoftwareRule struct {
	ID       string
	Software string
	Matches  string // in words, for the report
	Source   string // vendor documentation or source code the pattern is taken from
	match    func(g greeting) (version string, ok bool)
}

// greeting is the text a classifier looks at.
type greeting struct {
	banner string   // first line of the 220 reply, after the code
	hello  string   // first line of the EHLO reply: the server's greeting
	ext    []string // EHLO keywords, upper-cased, in order
}

func (g greeting) has(kw ...string) bool {
	for _, e := range g.ext {
		for _, k := range kw {
			if e == k {
				return true
			}
		}
	}
	return false
}

func (g greeting) last() string {
	if len(g.ext) == 0 {
		return ""
	}
	return g.ext[len(g.ext)-1]
}

// bannerRe builds a rule matching the banner, with the version in the
// first group when there is one.
func bannerRe(re string) func(greeting) (string, bool) {
	r := regexp.MustCompile(re)
	return func(g greeting) (string, bool) {
		m := r.FindStringSubmatch(g.banner)
		if m == nil {
			return "", false
		}
		if len(m) > 1 {
			return m[1], true
		}
		return "", true
	}
}

// postfixOrder is the order in which Postfix's smtpd announces its EHLO
// keywords (smtpd.c, ehlo_cmd); smtpd_discard_ehlo_keywords removes some
// but never reorders them.
var postfixOrder = []string{"PIPELINING", "SIZE", "VRFY", "ETRN", "STARTTLS", "AUTH", "XCLIENT", "XFORWARD",
	"ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"}

// inOrder reports whether every keyword of ext is in order, and in it.
func inOrder(ext, order []string) bool {
	i := 0
	for _, e := range ext {
		for i < len(order) && order[i] != e {
			i++
		}
		if i == len(order) {
			return false
		}
	}
	return true
}

var (
	exchangeKeywords = []string{"X-ANONYMOUSTLS", "X-EXPS", "XEXCH50", "XRDST", "X-LINK2STATE"}
	outlookHost      = regexp.MustCompile(`(?i)^\S+\.(protection\.outlook\.com|outlook\.com|outlook\.cn)\b`)
	bareESMTP        = regexp.MustCompile(`^(\S+ )?ESMTP$`)
)

// SoftwareRules are tried in order; the first that matches names the
// software. Banner rules come first (the software names itself), then
// the EHLO reply's structure for servers whose banner says nothing.
var SoftwareRules = []SoftwareRule{
	{ID: "exchange_online.banner", Software: SoftwareExchangeOnline,
		Matches: `"Microsoft ESMTP MAIL Service" from a *.protection.outlook.com host`,
		Source:  "Exchange Online Protection banners as received (e.g. 220 BL2NAM06FT004.mail.protection.outlook.com Microsoft ESMTP MAIL Service ready at …), testdata/software.txt",
		match: func(g greeting) (string, bool) {
			return "", strings.Contains(g.banner, "Microsoft ESMTP MAIL Service") && outlookHost.MatchString(g.banner)
		}},
	{ID: "exchange.banner", Software: SoftwareExchange, Matches: `banner "Microsoft ESMTP MAIL Service"`,
		Source: "Exchange Server 2007–2019 receive connector default banner (Microsoft Learn, \"Receive connectors\": \"<servername> Microsoft ESMTP MAIL Service ready at <RFC 2822 date>\")",
		match:  bannerRe(`Microsoft ESMTP MAIL Service`)},
	{ID: "exchange.ehlo", Software: SoftwareExchange, Matches: "EHLO keyword X-ANONYMOUSTLS, X-EXPS, XEXCH50, XRDST or X-LINK2STATE",
		Source: "Exchange Server's private ESMTP verbs (Microsoft Learn, \"Receive connectors\", EHLO response; XEXCH50 in Exchange 2003–2010)",
		match: func(g greeting) (string, bool) {
			return "", g.has(exchangeKeywords...)
		}},
	{ID: "google.banner", Software: SoftwareGoogle, Matches: `banner ending " - gsmtp"`,
		Source: "Gmail's MX greeting (220 mx.google.com ESMTP <id> - gsmtp), as received; testdata/software.txt",
		match:  bannerRe(`ESMTP \S+ - gsmtp$`)},
	{ID: "haraka.banner", Software: SoftwareHaraka, Matches: `banner "ESMTP Haraka"`,
		Source: "Haraka connection.js default greeting (\"ESMTP Haraka <version> ready\"), docs/Connection.md",
		match:  bannerRe(`ESMTP Haraka[ /]?(\d+(?:\.\d+)+)?`)},
	{ID: "haraka.ehlo", Software: SoftwareHaraka, Matches: `EHLO greeting "Haraka is at your service"`,
		Source: "Haraka connection.js cmd_ehlo (\"<host> Hello <remote> [<ip>], Haraka is at your service.\")",
		match: func(g greeting) (string, bool) {
			return "", strings.Contains(g.hello, "Haraka is at your service")
		}},
	{ID: "google.ehlo", Software: SoftwareGoogle, Matches: `EHLO greeting "at your service, [address]"`,
		Source: "Gmail's EHLO reply (250-mx.google.com at your service, [192.0.2.1]), as received; testdata/software.txt",
		match: func(g greeting) (string, bool) {
			return "", strings.Contains(g.hello, " at your service, [")
		}},
	{ID: "zimbra.banner", Software: SoftwareZimbra, Matches: `banner naming Zimbra`,
		Source: "Zimbra's MTA is Postfix (Zimbra/zm-build instructions/bundling-scripts/zimbra-mta.sh packages zm-postfix): it is Zimbra only when its banner says so, else Postfix",
		match:  bannerRe(`(?i)\bZimbra\b`)},
	{ID: "postfix.banner", Software: SoftwarePostfix, Matches: `banner "ESMTP Postfix"`,
		Source: "Postfix default smtpd_banner = $myhostname ESMTP $mail_name (postconf(5)); Debian's main.cf adds (Debian/GNU), mail_version only when configured",
		match:  bannerRe(`ESMTP Postfix(?: \((\d+\.\d+(?:\.\d+)?)\))?`)},
	{ID: "exim.banner", Software: SoftwareExim, Matches: `banner "ESMTP Exim"`,
		Source: "Exim default smtp_banner = $smtp_active_hostname ESMTP Exim $version_number $tod_full (src/src/globals.c; Exim specification, smtp_banner)",
		match:  bannerRe(`ESMTP Exim (\d+\.\d+(?:\.\d+)?)?`)},
	{ID: "sendmail.banner", Software: SoftwareSendmail, Matches: `banner "ESMTP Sendmail"`,
		Source: "Sendmail default SmtpGreetingMessage = $j Sendmail $v/$Z; $b (cf/m4/proto.m4 confSMTP_LOGIN_MSG), ESMTP inserted by srvrsmtp.c",
		match:  bannerRe(`ESMTP Sendmail (\d+\.\d+(?:\.\d+)*)?`)},
	{ID: "opensmtpd.banner", Software: SoftwareOpenSMTPD, Matches: `banner "ESMTP OpenSMTPD"`,
		Source: "OpenSMTPD smtpd.h: #define SMTPD_BANNER \"220 %s ESMTP OpenSMTPD\"",
		match:  bannerRe(`ESMTP OpenSMTPD`)},
	{ID: "qmail.banner", Software: SoftwareQmail, Matches: `banner naming qmail`,
		Source: "qmail-smtpd greetings that keep the name (control/smtpgreeting); Greenbone's SMTP detection (gb_smtp_server_detect: \"qmail\" in the banner)",
		match:  bannerRe(`(?i)\b(?:net)?qmail\b`)},
	{ID: "postfix.ehlo", Software: SoftwarePostfix,
		Matches: "EHLO greeting is the bare host name and the keywords follow Postfix's order (PIPELINING first, ETRN or VRFY, ENHANCEDSTATUSCODES … DSN)",
		Source:  "Postfix smtpd.c ehlo_cmd: PIPELINING, SIZE, VRFY, ETRN, STARTTLS, AUTH, XCLIENT, XFORWARD, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING",
		match: func(g greeting) (string, bool) {
			ok := !strings.Contains(g.hello, " ") && len(g.ext) > 0 && g.ext[0] == "PIPELINING" &&
				g.has("ETRN", "VRFY") && g.has("ENHANCEDSTATUSCODES") && inOrder(g.ext, postfixOrder)
			return "", ok
		}},
	{ID: "sendmail.ehlo", Software: SoftwareSendmail, Matches: `EHLO greeting "…, pleased to meet you" with DELIVERBY or ETRN`,
		Source: "Sendmail srvrsmtp.c: \"%s Hello %s, pleased to meet you\", then ENHANCEDSTATUSCODES … ETRN, DELIVERBY, HELP",
		match: func(g greeting) (string, bool) {
			return "", strings.HasSuffix(g.hello, "pleased to meet you") && g.has("DELIVERBY", "ETRN", "VERB")
		}},
	{ID: "opensmtpd.ehlo", Software: SoftwareOpenSMTPD, Matches: `EHLO greeting "…, pleased to meet you", 8BITMIME first, HELP last`,
		Source: "OpenSMTPD smtp_session.c smtp_proceed_ehlo: \"%s Hello %s [%s], pleased to meet you\", 8BITMIME, ENHANCEDSTATUSCODES, SIZE, DSN, …, HELP",
		match: func(g greeting) (string, bool) {
			return "", strings.HasSuffix(g.hello, "pleased to meet you") && len(g.ext) > 0 && g.ext[0] == "8BITMIME" && g.last() == "HELP"
		}},
	{ID: "exim.ehlo", Software: SoftwareExim, Matches: `EHLO greeting "Hello …" and HELP as the last keyword`,
		Source: "Exim src/src/smtp_in.c: \"%s Hello %s\" greeting, and \"Finish off the multiline reply with one that is always available\": HELP",
		match: func(g greeting) (string, bool) {
			return "", strings.Contains(g.hello, " Hello ") && !strings.HasSuffix(g.hello, "pleased to meet you") && g.last() == "HELP"
		}},
	{ID: "qmail.ehlo", Software: SoftwareQmail, Matches: `banner "<host> ESMTP" and EHLO PIPELINING, 8BITMIME (patches may add STARTTLS, AUTH, SIZE)`,
		Source: "netqmail 1.06 qmail-smtpd.c: smtp_greet(\"220 \") + \" ESMTP\"; smtp_ehlo: \"250-PIPELINING\\r\\n250 8BITMIME\"",
		match: func(g greeting) (string, bool) {
			if !bareESMTP.MatchString(g.banner) || len(g.ext) < 2 || g.ext[0] != "PIPELINING" || g.ext[1] != "8BITMIME" {
				return "", false
			}
			return "", onlyFrom(g.ext[2:], "STARTTLS", "AUTH", "SIZE")
		}},
	{ID: "cisco_esa.ehlo", Software: SoftwareCiscoESA, Matches: `banner "<host> ESMTP" and EHLO 8BITMIME, SIZE (STARTTLS, AUTH when enabled)`,
		Source: "Cisco ESA/CES listener default (Cisco TechNote 214630: 220 C680.lab.test ESMTP / 250-8BITMIME / 250 SIZE 10485760)",
		match: func(g greeting) (string, bool) {
			if !bareESMTP.MatchString(g.banner) || len(g.ext) < 2 || g.ext[0] != "8BITMIME" || g.ext[1] != "SIZE" {
				return "", false
			}
			return "", onlyFrom(g.ext[2:], "STARTTLS", "AUTH")
		}},
}

func onlyFrom(ext []string, allowed ...string) bool {
	for _, e := range ext {
		ok := false
		for _, a := range allowed {
			ok = ok || e == a
		}
		if !ok {
			return false
		}
	}
	return true
}

// NoRule is the rule of software no rule recognised.
const NoRule = "none"

// ClassifySoftware names the MTA behind a greeting: banner is the 220
// reply's text (lines joined by "\n"), ehlo the lines of the EHLO reply
// after their codes (nil when EHLO failed). It reads the first line of
// each and the keywords; a hostile server can only choose its own label.
func ClassifySoftware(banner string, ehlo []string) Software {
	g := greeting{}
	g.banner, _, _ = strings.Cut(strings.TrimSpace(banner), "\n")
	g.banner = strings.TrimSpace(g.banner)
	if len(ehlo) > 0 {
		g.hello = strings.TrimSpace(ehlo[0])
		for _, l := range ehlo[1:] {
			if k, _, _ := strings.Cut(strings.TrimSpace(l), " "); k != "" {
				k, _, _ = strings.Cut(k, "=") // AUTH=LOGIN
				g.ext = append(g.ext, strings.ToUpper(k))
			}
		}
	}
	for _, r := range SoftwareRules {
		if v, ok := r.match(g); ok {
			return Software{Name: r.Software, Version: v, Rule: r.ID}
		}
	}
	return Software{Name: SoftwareUnknown, Rule: NoRule}
}

// SoftwareRuleByID returns the rule with id.
func SoftwareRuleByID(id string) (SoftwareRule, bool) {
	for _, r := range SoftwareRules {
		if r.ID == id {
			return r, true
		}
	}
	return SoftwareRule{}, false
}

// HostSoftware is what a port-25 sweep keeps for Table 5 beside the
// STARTTLS classes: the software, and the TLS version of a completed
// handshake.
type HostSoftware struct {
	Software   *Software `json:"software,omitempty"`
	TLSVersion string    `json:"tls_version,omitempty"`
}

// softwareOf classifies a grab's greeting; an EHLO that failed leaves the
// banner alone to decide.
func softwareOf(banner, ehlo Reply, err error) *Software {
	var lines []string
	if err == nil && ehlo.Code == 250 {
		lines = ehlo.Lines
	}
	s := ClassifySoftware(banner.Text(), lines)
	return &s
}
