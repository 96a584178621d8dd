package audit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
)

// SendmailConfig is what a sendmail.cf sets for TLS: its options (O
// lines), its daemons, the classes of local and relay domains, the
// access map and the STARTTLS rulesets present.
type SendmailConfig struct {
	Path     string
	Version  string            // DZ
	Hostname string            // Dj, when set
	Options  map[string]string // O Name=value (the last one wins)
	Daemons  []SendmailDaemon
	Client   map[string]string // ClientPortOptions fields
	Local    []string          // class w (Cw lines), and Fw files read
	Relay    []string          // class R (CR lines), and FR files read
	Files    map[string]string // class → file it is read from (Fw, FR)
	Access   string            // the access map's source file, when FEATURE(access_db)
	Rulesets map[string]bool   // S lines: tls_server, try_tls, tls_rcpt …
}

// SendmailDaemon is one DaemonPortOptions line.
type SendmailDaemon struct {
	Name, Port, Addr, Modifiers string
}

// maxCFLine bounds one line of a .cf (sendmail's own MAXLINE is 2048).
const maxCFLine = 64 << 10

// ParseSendmailCF reads a sendmail.cf.
func ParseSendmailCF(r io.Reader) (*SendmailConfig, error) {
	c := &SendmailConfig{Options: map[string]string{}, Client: map[string]string{}, Files: map[string]string{},
		Rulesets: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxCFLine)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		switch line[0] {
		case 'O':
			c.option(strings.TrimSpace(line[1:]))
		case 'D':
			switch {
			case strings.HasPrefix(line, "DZ"):
				c.Version = line[2:]
			case strings.HasPrefix(line, "Dj"):
				c.Hostname = line[2:]
			}
		case 'C':
			if len(line) > 2 && (line[1] == 'w' || line[1] == 'R') {
				for _, n := range strings.Fields(line[2:]) {
					c.addClass(line[1], n)
				}
			}
		case 'F':
			if len(line) > 2 && (line[1] == 'w' || line[1] == 'R') {
				fields := strings.Fields(line[2:])
				if len(fields) > 0 {
					c.Files[string(line[1])] = fields[len(fields)-1]
				}
			}
		case 'K':
			f := strings.Fields(line[1:])
			if len(f) >= 3 && f[0] == "access" {
				c.Access = f[len(f)-1]
			}
		case 'S':
			name := strings.Fields(line[1:])
			if len(name) > 0 {
				c.Rulesets[strings.Trim(name[0], `"`)] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: sendmail.cf: %w", err)
	}
	return c, nil
}

func (c *SendmailConfig) addClass(class byte, name string) {
	if class == 'w' {
		c.Local = append(c.Local, name)
	} else {
		c.Relay = append(c.Relay, name)
	}
}

// option reads "Name=value" (a long option; single-letter options are
// not TLS-related).
func (c *SendmailConfig) option(s string) {
	name, value, _ := strings.Cut(s, "=")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	switch name {
	case "DaemonPortOptions":
		d := SendmailDaemon{}
		for k, v := range portFields(value) {
			switch strings.ToLower(k) {
			case "name", "n":
				d.Name = v
			case "port", "p":
				d.Port = v
			case "addr", "a":
				d.Addr = v
			case "modifiers", "m":
				d.Modifiers = v
			}
		}
		c.Daemons = append(c.Daemons, d)
	case "ClientPortOptions":
		for k, v := range portFields(value) {
			c.Client[strings.ToLower(k)] = v
		}
	default:
		c.Options[name] = value
	}
}

// portFields splits "Port=587, Name=MSA, M=E".
func portFields(v string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Split(v, ",") {
		if k, val, ok := strings.Cut(strings.TrimSpace(f), "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
	}
	return out
}

// accessEntries reads the access map's source text for TLS entries
// (Try_TLS:, TLS_Srv:, TLS_Rcpt:, TLS_Clt:), keyed by tag.
func accessEntries(path string) map[string][]string {
	out := map[string][]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxCFLine)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, _, _ := strings.Cut(line, ":")
		switch key {
		case "Try_TLS", "TLS_Srv", "TLS_Rcpt", "TLS_Clt":
			out[key] = append(out[key], line)
		}
	}
	return out
}

// sslNoProtocols reads "+SSL_OP_NO_SSLv3 +SSL_OP_NO_TLSv1 …" into the set
// of protocols left (SSLv2 is always off in OpenSSL 1.1+).
func sslNoProtocols(v string) []bool {
	allow := []bool{false, true, true, true, true, true}
	for _, tok := range strings.Fields(v) {
		on := !strings.HasPrefix(tok, "-")
		tok = strings.TrimLeft(tok, "+-")
		if !strings.HasPrefix(tok, "SSL_OP_NO_") {
			continue
		}
		p := strings.TrimPrefix(tok, "SSL_OP_NO_")
		p = strings.Replace(p, "_", ".", 1) // TLSv1_1 → TLSv1.1
		if i := protoIndex(p); i >= 0 {
			allow[i] = !on
		}
	}
	return allow
}

func auditSendmail(ctx context.Context, o *Options, ossl *OpenSSL) (*Report, error) {
	path := o.SendmailCF
	if path == "" {
		path = "/etc/mail/sendmail.cf"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	c, err := ParseSendmailCF(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	c.Path = path
	host := c.Hostname
	if host == "" || strings.Contains(host, "$") {
		host, _ = os.Hostname()
	}
	r := &Report{MTA: "sendmail", Version: "Sendmail " + c.Version, Config: path, TLSLibrary: ossl.String()}
	access := accessEntries(c.Access)
	r.Sections = append(r.Sections, Section{Name: "Outbound: the smtp/esmtp mailers", Findings: sendmailOutbound(ctx, c, access, ossl)})
	for _, d := range c.Daemons {
		if d.Port == "587" || d.Port == "submission" || d.Port == "465" || strings.EqualFold(d.Name, "MSA") {
			continue
		}
		r.Sections = append(r.Sections, Section{Name: fmt.Sprintf("Inbound: DaemonPortOptions Name=%s Port=%s", d.Name, orDefault(d.Port, "25")),
			Findings: sendmailInbound(ctx, c, d, ossl)})
	}
	in := certInput{CertFiles: nonEmpty(c.Options["ServerCertFile"]), KeyFiles: nonEmpty(c.Options["ServerKeyFile"]),
		Where: "sendmail.cf: O ServerCertFile=" + c.Options["ServerCertFile"], CAFile: c.Options["CACertFile"],
		CAPath: c.Options["CACertPath"], Hostname: host,
		FixFiles: "define(`confSERVER_CERT', `/etc/mail/tls/cert.pem')dnl and define(`confSERVER_KEY', `/etc/mail/tls/key.pem')dnl in sendmail.mc"}
	certs, leaf, chain := certChecks(in, o.Roots, o.now())
	r.Sections = append(r.Sections, Section{Name: "Server certificate", Findings: certs})
	r.Domains, r.Notes = sendmailDomains(c)
	sortDomains(r.Domains)
	r.addDomainSections(ctx, o, host, leaf, chain)
	return r, nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func sendmailOutbound(ctx context.Context, c *SendmailConfig, access map[string][]string, ossl *OpenSSL) []Finding {
	var fs []Finding
	noTLS := strings.Contains(c.Client["m"]+c.Client["modifiers"], "S")
	start := Finding{ID: "outbound.starttls", Title: "Initiates STARTTLS when delivering", Setting: "sendmail.cf: O ClientPortOptions; the try_tls ruleset (access map Try_TLS:)"}
	switch {
	case noTLS:
		start.judge(StatusFail, "no: ClientPortOptions has Modifiers=S", "Paper Table 5: Sendmail initiates STARTTLS by default; M=S turns it off, so every message leaves in cleartext.", "remove S from confCLIENT_OPTIONS' Modifiers in sendmail.mc")
	default:
		start.Status, start.Value = StatusOK, "yes, when the server offers it"
		if n := len(access["Try_TLS"]); n > 0 {
			start.Value += fmt.Sprintf(" (except %d Try_TLS: entries of %s)", n, c.Access)
		}
		start.Reason = "Paper Table 5 and §3.3: Sendmail initiates STARTTLS by default (the try_tls ruleset can skip hosts)."
	}
	fs = append(fs, start)

	require := append(append([]string(nil), access["TLS_Srv"]...), access["TLS_Rcpt"]...)
	fall := Finding{ID: "outbound.fallback", Title: "Falls back to cleartext", Setting: "the tls_server and tls_rcpt rulesets (access map TLS_Srv:, TLS_Rcpt:); O TLSFallbacktoClear"}
	fall.Status, fall.Value = StatusWarn, "yes: when the server does not offer STARTTLS or refuses it"
	if yes(c.Options["TLSFallbacktoClear"]) {
		fall.Value += ", and after a failed handshake (TLSFallbacktoClear=True)"
	}
	if len(require) > 0 {
		fall.Value += fmt.Sprintf("; %d access entries require TLS for their destinations: %s", len(require), strings.Join(require, "; "))
	}
	fall.Reason = "Paper Table 5 and §4.1: Sendmail falls back to cleartext; an attacker who strips STARTTLS reads the mail. Only TLS_Srv:/TLS_Rcpt: entries (ENCR:bits, VERIFY) or DANE refuse it."
	fall.Fix = "define(`confDANE', `true')dnl in sendmail.mc, and TLS_Srv:domain ENCR:128 (or VERIFY) entries in the access map for partners"
	fs = append(fs, fall)

	auth := Finding{ID: "outbound.authentication", Title: "Authenticates the receiving server", Setting: "the tls_server ruleset (access map TLS_Srv:); O CACertFile"}
	verify := 0
	for _, e := range require {
		if strings.Contains(e, "VERIFY") {
			verify++
		}
	}
	switch {
	case verify > 0:
		auth.Status, auth.Value = StatusWarn, fmt.Sprintf("for %d access entries requiring VERIFY only; any certificate elsewhere", verify)
	default:
		auth.Status, auth.Value = StatusWarn, "no: ${verify} is logged (OK, FAIL, NO) but no ruleset acts on it"
	}
	auth.Reason = "Paper §3.3: Sendmail cannot validate the destination domain; §3.5: no provider or MTA tested used TLS for authentication. Sendmail 8.16+ can use DANE (RFC 7672)."
	auth.Fix = "define(`confDANE', `true')dnl in sendmail.mc (with a DNSSEC-validating resolver)"
	fs = append(fs, auth)

	if !noTLS {
		p := sendmailTLSParams(c, ossl, "ClientSSLOptions", "confCLIENT_SSL_OPTIONS")
		fs = append(fs, sendmailProtocols("outbound.protocols", "Protocols used when delivering", ossl, p),
			cipherFinding(ctx, "outbound.ciphers", "Ciphers offered when delivering", ossl, p.tlsParams, true))
	}
	dane := Finding{ID: "outbound.dane", Title: "DANE (RFC 7672)", Setting: "sendmail.cf: O DANE"}
	if v := c.Options["DANE"]; yes(v) || strings.EqualFold(v, "always") {
		dane.judge(StatusOK, "on (DANE="+v+")", "RFC 7672: TLSA records under DNSSEC authenticate the server and forbid cleartext, the defence against the paper's stripping and MX forgery (§4.1, §4.2).", "")
	} else {
		dane.judge(StatusWarn, "off", "RFC 7672: without DANE the client cannot tell a stripped or forged server from a real one (paper §4.1 and §4.2).", "define(`confDANE', `true')dnl in sendmail.mc")
	}
	fs = append(fs, dane)
	logl := Finding{ID: "outbound.loglevel", Title: "Delivery TLS logged", Setting: "sendmail.cf: O LogLevel=" + c.Options["LogLevel"]}
	level := 0
	fmt.Sscan(c.Options["LogLevel"], &level)
	if level >= 9 {
		logl.judge(StatusOK, fmt.Sprintf("yes (LogLevel %d)", level), "Sendmail logs \"STARTTLS=client, relay=…, version=…, verify=…, cipher=…\" from LogLevel 9: snowrain's delivery TLS figures and Table 6's certificate status come from these lines.", "")
	} else {
		logl.judge(StatusWarn, fmt.Sprintf("no (LogLevel %d)", level), "Below LogLevel 9 Sendmail does not log STARTTLS=client lines: snowrain counts every delivery as cleartext.", "define(`confLOG_LEVEL', `9')dnl in sendmail.mc")
	}
	fs = append(fs, logl)
	return fs
}

func sendmailInbound(ctx context.Context, c *SendmailConfig, d SendmailDaemon, ossl *OpenSSL) []Finding {
	f := Finding{ID: "inbound.starttls", Title: "Offers STARTTLS to senders", Setting: "sendmail.cf: O ServerCertFile, O ServerKeyFile; DaemonPortOptions Modifiers"}
	var fs []Finding
	switch {
	case strings.Contains(d.Modifiers, "S"):
		f.judge(StatusFail, "no: DaemonPortOptions Modifiers=S", "Paper Table 5: STARTTLS inbound needs the server configured; M=S turns it off for this daemon.", "remove S from this DAEMON_OPTIONS' Modifiers in sendmail.mc")
	case c.Options["ServerCertFile"] == "" || c.Options["ServerKeyFile"] == "":
		f.judge(StatusFail, "no: no ServerCertFile/ServerKeyFile", "Paper §3.3 and Table 5: Sendmail does not accept TLS without manual configuration; every sender delivers in cleartext.", "define(`confSERVER_CERT', …) and define(`confSERVER_KEY', …) in sendmail.mc")
	default:
		f.judge(StatusOK, "yes", "RFC 3207; paper §3.3: Sendmail offers STARTTLS once given a certificate.", "")
	}
	fs = append(fs, f)
	if f.Status == StatusOK {
		p := sendmailTLSParams(c, ossl, "ServerSSLOptions", "confSERVER_SSL_OPTIONS")
		fs = append(fs, sendmailProtocols("inbound.protocols", "Protocols accepted from senders", ossl, p),
			cipherFinding(ctx, "inbound.ciphers", "Ciphers accepted from senders", ossl, p.tlsParams, false))
	}
	return fs
}

// sendmailParams is a role's TLS parameters in Sendmail: the cipher list
// (O CipherList, else OpenSSL's DEFAULT) and SSL options that switch
// protocols off.
type sendmailParams struct {
	tlsParams
	allow []bool
}

func sendmailTLSParams(c *SendmailConfig, ossl *OpenSSL, sslOpt, macro string) sendmailParams {
	p := sendmailParams{}
	p.cipherList = c.Options["CipherList"]
	p.gradeWhere = "sendmail.cf: O CipherList=" + p.cipherList
	if p.cipherList == "" {
		p.cipherList, p.gradeWhere = "DEFAULT", "sendmail.cf: no CipherList (OpenSSL's DEFAULT list)"
	}
	p.fixExclude = "define(`confCIPHER_LIST', `" + p.cipherList + ":!aNULL:!eNULL:!EXPORT:!RC4:!3DES:!DES:!MD5')dnl in sendmail.mc"
	p.protoWhere = fmt.Sprintf("sendmail.cf: O %s=%s", sslOpt, c.Options[sslOpt])
	p.fixProtocols = fmt.Sprintf("define(`%s', `+SSL_OP_NO_SSLv3 +SSL_OP_NO_TLSv1 +SSL_OP_NO_TLSv1_1')dnl in sendmail.mc", macro)
	p.allow = sslNoProtocols(c.Options[sslOpt])
	p.secLevel = ossl.SecLevel
	p.secWhere = fmt.Sprintf("OpenSSL security level %d, the library's default (%s): Sendmail does not change it", ossl.SecLevel, ossl.SecLevelSource)
	return p
}

// sendmailProtocols renders the SSL options' protocols as Postfix syntax
// and judges them with protocolFinding.
func sendmailProtocols(id, title string, ossl *OpenSSL, p sendmailParams) Finding {
	var parts []string
	for i, ok := range p.allow {
		if !ok {
			parts = append(parts, "!"+protocols[i])
		}
	}
	p.protoValue = strings.Join(parts, ", ")
	p.protoParam = "SSL options"
	return protocolFinding(id, title, ossl, p.tlsParams)
}

// sendmailDomains lists class w (local) and class R (relay) domains,
// reading the files the .cf loads them from.
func sendmailDomains(c *SendmailConfig) ([]Domain, []string) {
	seen := map[string]bool{}
	var out []Domain
	var notes []string
	add := func(n, source string) {
		n = normalDomain(n)
		if n != "" && !seen[n] && !localName(n) {
			seen[n] = true
			out = append(out, Domain{Name: n, Source: source})
		}
	}
	for _, n := range c.Local {
		add(n, "class w (Cw)")
	}
	for _, n := range c.Relay {
		add(n, "class R (CR)")
	}
	for class, file := range map[string]string{"w": c.Files["w"], "R": c.Files["R"]} {
		if file == "" {
			continue
		}
		names, err := readNames(file)
		if err != nil && !os.IsNotExist(err) {
			notes = append(notes, fmt.Sprintf("class %s: %v", class, err))
		}
		for _, n := range names {
			add(n, "class "+class+" ("+file+")")
		}
	}
	return out, notes
}
