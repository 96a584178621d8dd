package report

import (
	"fmt"

	"github.com/snowrain/snowrain/auth"
)

// The seed paper: Z. Durumeric, D. Adrian, A. Mirian, J. Kasten,
// E. Bursztein, N. Lidzborski, K. Thomas, V. Eranti, M. Bailey,
// J. A. Halderman, "Neither Snow Nor Rain Nor MITM… An Empirical Analysis
// of Mail Delivery Security", IMC 2015. Every figure below is quoted from
// its text, with the section or table it comes from, so an admin can
// place their own server next to Gmail's in 2015 and the Top 1M.
const paper = "Durumeric et al., IMC 2015"

// citation ties one of our tables to the paper's table or figure it
// reproduces, and carries the paper's headline figure for it.
type citation struct {
	ref     string // "Table 3", "Figure 3"
	section string // where the paper discusses it
	caption string // the paper's caption, bold part
	finding string // the paper's headline figure, with its date
}

func (c citation) String() string {
	s := fmt.Sprintf("%s, §%s", paper, c.section)
	if c.ref != "" {
		s = fmt.Sprintf("%s of %s, §%s (“%s”)", c.ref, paper, c.section, c.caption)
	}
	if c.finding != "" {
		s += ". " + c.finding
	}
	return s
}

// citations are keyed by our table IDs; a table listed here is one of the
// paper's, and every encoder shows the citation under its title.
var citations = map[string]citation{
	// The weekly report: Gmail's side (§3.1, §5).
	"figure3": {"Figure 3", "3.1", "Historical Gmail STARTTLS Support",
		"Gmail, weekdays 1–26 April 2015: 53.7% of inbound connections and 79.8% of outbound messages used STARTTLS; weekends 57.6% and 79.9%."},
	"table3": {"Table 3", "3.1", "Cipher Suites for Inbound Gmail Traffic",
		"Gmail, 30 April 2015: 84.2% of inbound TLS connections chose a forward-secret suite; the Gmail column is each suite's share of them."},
	"table17": {"Table 17", "5.2", "Gmail Incoming Mail Authentication",
		"Gmail, April 2015: 94.40% of incoming messages were authenticated with DKIM, SPF or both."},
	"table8": {"Table 8", "5.2", "Gmail DKIM Errors",
		"Gmail, April 2015: 83.0% of incoming messages carried a DKIM signature, and 6.14% of those failed validation."},
	"table18": {"Table 18", "5.3", "DMARC Policies",
		"Gmail, April 2015: 73.92% of incoming messages came from domains without a DMARC policy; reject covered 13.08%."},
	"table21": {"Table 21", "5.1", "SPF Errors for Incoming Gmail Traffic",
		"Gmail, April 2015: 0.42% of messages could not be validated because fetching the SPF record failed."},
	"table6": {"Table 6", "3.4", "Encryption Behavior of Mail Providers",
		"19 providers, 2015: all but Lycos accepted STARTTLS; Lycos, GoDaddy and OVH sent without it; less than half negotiated forward secrecy, and none validated the paper's self-signed certificate."},
	"full_tls": {"", "3.1", "",
		"Gmail, 26 April 2015: 58% of the 877 domains it sent mail to accepted all of it over TLS; 29% of the 26,406 domains that sent mail to it protected all of it."},

	// report scan: the Top 1M side (§3.2, §5).
	"scan_table1": {"Table 1", "3.2", "Top 1 Million Domains Scan Results",
		"Alexa Top 1M, April 2015: 81.8% of domains with an SMTP server supported STARTTLS."},
	"scan_table2": {"Table 2", "3.2.1", "Certificates for Top 1 Million Domains",
		"52% of domains' SMTP servers presented trusted certificates; 0.6% were valid for the recipient domain."},
	"scan_table5": {"Table 5", "3.3", "Popular Mail Transfer Agents",
		"Top 1M domains, April 2015: exim 34%, Postfix 18%, qmail 6%, sendmail 5%, Exchange 4%, unknown 30%; by default Postfix and qmail did not initiate STARTTLS, and all five fell back to cleartext."},
	"hosts_table5": {"Table 5", "3.3", "Popular Mail Transfer Agents",
		"Public IPv4, April 2015: exim 24%, Postfix 21%, Exchange 12%, sendmail 4%, qmail 1%, unknown 38% of SMTP servers."},
	"scan_table4": {"Table 4", "3.2", "Top Mail Providers for Top 1 Million Domains",
		"Five providers carried the mail of 24.6% of the Top 1M domains; all five supported STARTTLS."},
	"scan_table16": {"Table 16", "5.1, §5.3", "SPF and DMARC Policies",
		"Of 19 popular providers, three published an SPF hard fail and three a DMARC reject policy."},
	"scan_table19": {"Table 19", "5.1", "SPF Policies for Top 1M Domains",
		"47% of the Top 1M domains with MX records published SPF; 21.7% of those with a hard fail (-all)."},
	"scan_table20": {"Table 20", "5.1", "SPF Record Types for Top 1M Domains", ""},
	"figure4": {"Figure 4", "5.1", "Size of SPF Permitted Networks",
		"60.9% of SPF policies allowed a CIDR range larger than a /24; 0.4% more than a /8."},
	"scan_table18": {"Table 18", "5.3", "DMARC Policies",
		"Top 1M domains with MX records, 26 April 2015: 1.0% published a DMARC policy, 0.3% quarantine or reject."},

	// report hosts and resolvers: the IPv4 sweeps (§4).
	"table9": {"Table 9", "4.1", "IPv4 SMTP Scan Results",
		"IPv4, April 2015: 52% of the responsive SMTP servers completed a STARTTLS handshake."},
	"table10": {"Table 10", "4.1", "STARTTLS Manipulation",
		"14.75% of the servers that answered STARTTLS with an error echoed the command; 0.14% of those showed it replaced."},
	"table11": {"Table 11", "4.1", "Prevalence of STARTTLS Stripping",
		"41,405 IPv4 servers behind Cisco-style tampering, serving 2,563 Top 1M domains."},
	"table12": {"Table 12", "4.1.1", "ASes Stripping STARTTLS",
		"In 423 ASes (736 hosts) every SMTP server showed STARTTLS stripping."},
	"table13": {"Table 13", "4.2", "Invalid or Falsified MX Records",
		"178,439 of 8,860,639 responsive DNS servers (2.01%) gave invalid MX records or addresses."},
	"table7": {"Table 7", "4.2", "Falsified DNS Responses", ""},

	// report exposure: the sweeps joined with the mail (§4.1.1, §4.2.1).
	"table14": {"Table 14", "4.1.1", "Countries Affected By STARTTLS Stripping",
		"Gmail, 20–27 April 2015: 96.13% of the mail from Tunisia came from stripping addresses; 9 countries were over 10%."},
	"table15": {"Table 15", "4.2.1", "Countries Affected By Falsified DNS Records",
		"Gmail, 21 May 2015: at most 0.08% of a country's mail (Slovakia) came from such addresses."},
}

// cite sets each paper table's Source from citations.
func cite(tables []Table) []Table {
	for i := range tables {
		if c, ok := citations[tables[i].ID]; ok && tables[i].Source == "" {
			tables[i].Source = c.String()
		}
	}
	return tables
}

// Gmail's figures beside ours, quoted from the paper.
const (
	// §3.1: weekdays and weekends, 1–26 April 2015 (connections inbound,
	// messages outbound; spam excluded).
	gmailInboundTLS  = "53.7% weekdays, 57.6% weekends (§3.1)"
	gmailOutboundTLS = "79.8% weekdays, 79.9% weekends (§3.1)"
	// §3.1: share of inbound TLS connections on 30 April 2015.
	gmailForwardSecret = "84.2% (§3.1)"
	// §5.2 and Table 8: DKIM-signed messages failing, April 2015.
	gmailDKIMFail = "6.14% (§5.2)"
	// §5.2 and Table 17: messages authenticated by DKIM, SPF or both.
	gmailAuthenticated = "94.40% (§5.2)"
	// §5.3 and Table 18: messages from domains publishing DMARC.
	gmailDMARCPublished = "26.1% (§5.3)"
)

// gmailColumn heads the paper's figures in our tables.
const gmailColumn = "Gmail, April 2015"

// Per-class Gmail figures for April 2015, keyed as our tables key their
// classes: Table 17, Table 8, Table 18 and Table 21.
var (
	gmailTable17 = map[auth.AuthMethods]string{auth.AuthDKIMAndSPF: "81.01%", auth.AuthDKIMOnly: "1.98%",
		auth.AuthSPFOnly: "11.41%", auth.AuthNone: "5.60%"}
	gmailTable8 = map[auth.DKIMClass]string{auth.DKIMWeakKey: "15.08%", auth.DKIMRevoked: "0.01%",
		auth.DKIMUnsupportedAlg: "0.26%", auth.DKIMExpired: "0.06%", auth.DKIMBodyHash: "18.66%", auth.DKIMVersion: "3.32%",
		auth.DKIMDuplicateTags: "0.05%", auth.DKIMOther: "62.55%"}
	gmailTable18 = map[auth.DMARCPolicy]string{auth.PolicyQuarantine: "1.34%", auth.PolicyNone: "11.66%",
		auth.PolicyReject: "13.08%", auth.PolicyAbsent: "73.92%"}
	gmailTable21 = map[auth.SPFClass]string{auth.SPFClassDNSTimeout: "< 0.001%", auth.SPFClassTempError: "0.1840%",
		auth.SPFClassPermError: "0.1405%", auth.SPFClassInvalidRecord: "0.0978%"}
)

// gmailTable8Overall is Table 8's overall failure rate: DKIM-signed
// messages that failed.
const gmailTable8Overall = "6.14%"

// gmailTable3 is Table 3, inbound TLS connections on 30 April 2015, keyed
// by version, key exchange, cipher and MAC as tlsinfo names them.
var gmailTable3 = map[[4]string]string{
	{"TLSv1.2", "ECDHE", "AES-128-GCM", "SHA-256"}: "51.500%",
	{"TLSv1", "ECDHE", "RC4", "SHA-1"}:             "29.225%",
	{"TLSv1", "RSA", "RC4", "SHA-1"}:               "14.403%",
	{"TLSv1.2", "ECDHE", "AES-128", "SHA-1"}:       "1.586%",
	{"TLSv1.2", "RSA", "RC4", "SHA-1"}:             "1.147%",
	{"TLSv1", "ECDHE", "AES-128", "SHA-1"}:         "0.999%",
	{"TLSv1.1", "ECDHE", "RC4", "SHA-1"}:           "0.723%",
	{"TLSv1.2", "RSA", "AES-128-GCM", "SHA-256"}:   "0.203%",
	{"SSLv3", "RSA", "RC4", "SHA-1"}:               "0.060%",
	{"TLSv1.2", "ECDHE", "RC4", "SHA-1"}:           "0.060%",
	{"TLSv1", "RSA", "AES-128", "SHA-1"}:           "0.050%",
	{"TLSv1.1", "RSA", "RC4", "SHA-1"}:             "0.024%",
	{"TLSv1.1", "ECDHE", "AES-128", "SHA-1"}:       "0.011%",
	{"TLSv1.1", "ECDHE", "AES-256", "SHA-1"}:       "0.004%",
	{"TLSv1.2", "RSA", "AES-256", "SHA-1"}:         "0.003%",
	{"TLSv1.2", "RSA", "AES-128", "SHA-1"}:         "0.001%",
	{"TLSv1", "RSA", "RC4", "MD5"}:                 "0.001%",
}

// gmailFigure returns the paper's figure for key, or "-" when the paper
// has none (a class it did not count, a suite nobody used in 2015).
func gmailFigure[K comparable](m map[K]string, key K) string {
	if v, ok := m[key]; ok {
		return v
	}
	return "-"
}
