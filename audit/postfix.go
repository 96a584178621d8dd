package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/snowrain/snowrain/policy"
)

// auditPostfix builds the findings of a Postfix instance.
func auditPostfix(ctx context.Context, o *Options, ossl *OpenSSL) (*Report, error) {
	c, err := LoadPostfix(ctx, o.Postconf, o.ConfigDir)
	if err != nil {
		return nil, err
	}
	r := &Report{MTA: "postfix", Version: "Postfix " + c.Main["mail_version"], Config: c.Main["config_directory"], TLSLibrary: ossl.String()}
	out := outboundService(c)
	r.Sections = append(r.Sections, Section{Name: outboundName(c, out), Findings: postfixOutbound(ctx, c, out, ossl, o)})
	listeners := inboundServices(c)
	if len(listeners) == 0 {
		r.Sections = append(r.Sections, Section{Name: "Inbound", Findings: []Finding{{ID: "inbound.listener",
			Title: "SMTP listener", Status: StatusInfo, Value: "no inet smtpd service in master.cf: this instance receives no mail from the network",
			Setting: "master.cf", Reason: "postconf -M lists the services; an MX needs an smtp inet smtpd (RFC 5321 §4.5.4)."}}})
	}
	for i := range listeners {
		s := &listeners[i]
		r.Sections = append(r.Sections, Section{Name: "Inbound: master.cf " + s.Key() + " (smtpd)", Findings: postfixInbound(ctx, c, s, ossl)})
	}
	var first *Service
	if len(listeners) > 0 {
		first = &listeners[0]
	}
	certs, leaf, chain := certChecks(postfixCert(c, first), o.Roots, o.now())
	r.Sections = append(r.Sections, Section{Name: "Server certificate", Findings: certs})
	domains, notes := postfixDomains(ctx, c, o.Postmap)
	sortDomains(domains)
	r.Domains, r.Notes = domains, notes
	r.addDomainSections(ctx, o, c.Main["myhostname"], leaf, chain)
	return r, nil
}

// outboundService is the transport default_transport names (smtp unless
// changed): the client that delivers to the Internet.
func outboundService(c *PostfixConfig) *Service {
	name, _, _ := strings.Cut(c.Main["default_transport"], ":")
	return c.Service(name, "unix")
}

func outboundName(c *PostfixConfig, s *Service) string {
	if s == nil {
		return "Outbound: default_transport = " + c.Main["default_transport"]
	}
	return fmt.Sprintf("Outbound: master.cf %s (%s), default_transport = %s", s.Key(), s.Command, c.Main["default_transport"])
}

// inboundServices are master.cf's inet smtpd services that take mail from
// other MTAs: not submission (587) nor submissions/smtps (465).
func inboundServices(c *PostfixConfig) []Service {
	var out []Service
	for _, s := range c.Services {
		if s.Type != "inet" || s.Command != "smtpd" {
			continue
		}
		port := s.Name
		if i := strings.LastIndexByte(port, ':'); i >= 0 {
			port = port[i+1:]
		}
		switch port {
		case "submission", "587", "submissions", "smtps", "465":
			continue
		}
		if yes(s.Overrides["smtpd_tls_wrappermode"]) || yes(s.Overrides["smtpd_sasl_auth_enable"]) && s.Overrides["smtpd_tls_security_level"] == "encrypt" {
			continue // a submission service under another name
		}
		out = append(out, s)
	}
	return out
}

// Postfix client security levels (postconf(5) smtp_tls_security_level).
var (
	clientEncrypts = map[policy.Level]bool{policy.LevelMay: true, policy.LevelEncrypt: true, policy.LevelDANE: true,
		policy.LevelDANEOnly: true, policy.LevelFingerprint: true, policy.LevelVerify: true, policy.LevelSecure: true}
	clientMandatory = map[policy.Level]bool{policy.LevelEncrypt: true, policy.LevelDANEOnly: true,
		policy.LevelFingerprint: true, policy.LevelVerify: true, policy.LevelSecure: true}
	clientAuthenticate = map[policy.Level]bool{policy.LevelDANEOnly: true, policy.LevelFingerprint: true,
		policy.LevelVerify: true, policy.LevelSecure: true}
)

func postfixOutbound(ctx context.Context, c *PostfixConfig, s *Service, ossl *OpenSSL, o *Options) []Finding {
	if s == nil || s.Command != "smtp" {
		return []Finding{{ID: "outbound.transport", Title: "Delivery to other domains", Status: StatusInfo,
			Value:   "default_transport = " + c.Main["default_transport"] + " is not an SMTP client: this instance delivers no mail by SMTP",
			Setting: c.Where(nil, "default_transport"), Reason: "postconf(5) default_transport: the transport for domains not handled otherwise."}}
	}
	level, where := c.levelOf(s, "smtp")
	fixLevel := func(v policy.Level) string { return c.FixLine(s, "smtp_tls_security_level", string(v)) }
	var fs []Finding

	start := Finding{ID: "outbound.starttls", Title: "Initiates STARTTLS when delivering", Setting: where}
	switch {
	case clientEncrypts[level]:
		start.judge(StatusOK, "yes (level "+string(level)+")", "Paper Table 5 and §3.3: Postfix does not initiate STARTTLS by default (Debian's package sets may); 79.8% of Gmail's outbound mail was encrypted in April 2015 (§3.1).", "")
	default:
		start.judge(StatusFail, "no: every message leaves in cleartext (level "+string(level)+")", "Paper Table 5 and §3.3: Postfix sends all mail in cleartext unless configured to use STARTTLS, which the paper blames for much of the unencrypted mail it saw (§3.5).", fixLevel(policy.LevelMay))
	}
	fs = append(fs, start)

	policyMaps := c.Param(s, "smtp_tls_policy_maps")
	fall := Finding{ID: "outbound.fallback", Title: "Falls back to cleartext", Setting: where}
	switch {
	case !clientEncrypts[level]:
		fall.judge(StatusFail, "always cleartext", "Paper §4.1: without STARTTLS there is nothing to strip; mail is readable on the path.", fixLevel(policy.LevelMay))
	case level == policy.LevelMay:
		fall.judge(StatusWarn, "yes: when STARTTLS is not offered, refused or fails, mail goes in cleartext", "Paper Table 5 and §4.1: every MTA tested falls back, so an attacker who strips STARTTLS from the EHLO reply or corrupts the handshake reads the mail (41,405 IPv4 servers showed stripping, Table 11).", fixLevel(policy.LevelDANE)+" and "+c.FixLine(s, "smtp_dns_support_level", "dnssec")+" (RFC 7672), or an MTA-STS policy map (snowrain policy socket, RFC 8461)")
	case level == policy.LevelDANE:
		fall.judge(StatusOK, "no for destinations with DNSSEC-signed TLSA records; yes for the others (opportunistic)", "RFC 7672 §2.2: DANE is mandatory where TLSA records are published and validated; elsewhere it is the paper's opportunistic STARTTLS (§4.1).", "")
	default:
		fall.judge(StatusOK, "no: mail waits in the queue rather than leave without TLS (level "+string(level)+")", "Paper §4.1: refusing cleartext defeats STARTTLS stripping; RFC 3207 §4 lets a client require TLS. Mail to servers without STARTTLS (18.2% of the Top 1M in 2015, Table 1) bounces after maximal_queue_lifetime.", "")
	}
	if policyMaps != "" {
		fall.Value += "; smtp_tls_policy_maps (" + policyMaps + ") may change it per destination"
	}
	fs = append(fs, fall)

	auth := Finding{ID: "outbound.authentication", Title: "Authenticates the receiving server", Setting: where}
	switch {
	case clientAuthenticate[level]:
		auth.judge(StatusOK, "yes, every destination (level "+string(level)+")", "Paper §3.3: Postfix is the only MTA tested that can validate server and domain; RFC 7672 and RFC 8461 make it practical.", "")
	case level == policy.LevelDANE:
		auth.judge(StatusOK, "yes where DNSSEC-signed TLSA records exist (DANE); no elsewhere", "RFC 7672 §3: TLSA records authenticate the server without depending on certificate names matching (paper §3.2.1).", "")
	default:
		auth.judge(StatusWarn, "no: any certificate is accepted (level "+string(level)+")", "Paper §3.5: none of the providers or MTAs used TLS for authentication, so an active attacker can present any certificate; Postfix logs such deliveries as Untrusted or Anonymous.", fixLevel(policy.LevelDANE)+" with smtp_dns_support_level = dnssec (RFC 7672), or MTA-STS through smtp_tls_policy_maps (RFC 8461)")
	}
	fs = append(fs, auth)

	if clientEncrypts[level] {
		p := postfixTLSParams(c, s, "smtp", clientMandatory[level], clientAuthenticate[level])
		fs = append(fs, protocolFinding("outbound.protocols", "Protocols used when delivering", ossl, p),
			cipherFinding(ctx, "outbound.ciphers", "Ciphers offered when delivering", ossl, p, true))
	}
	fs = append(fs, postfixDANE(c, s, level, o))
	logl := Finding{ID: "outbound.loglevel", Title: "Delivery TLS logged", Setting: c.Where(s, "smtp_tls_loglevel")}
	if v := c.Param(s, "smtp_tls_loglevel"); v != "" && v != "0" {
		logl.judge(StatusOK, "yes (smtp_tls_loglevel = "+v+")", "The smtp client logs \"Verified/Trusted/Untrusted/Anonymous TLS connection established\" per session: snowrain's delivery TLS figures (paper Figure 3's outbound side and Table 6) come from these lines.", "")
	} else {
		logl.judge(StatusWarn, "no (smtp_tls_loglevel = 0)", "Without \"TLS connection established\" lines snowrain counts every delivery as cleartext: the outbound side of Figure 3 and Table 6 is lost.", c.FixLine(s, "smtp_tls_loglevel", "1"))
	}
	fs = append(fs, logl)
	return fs
}

// postfixDANE says whether DANE is on: smtp_dns_support_level = dnssec
// and a dane level (or a policy map that may answer dane), and whether
// the resolver Postfix uses passes the AD bit on.
func postfixDANE(c *PostfixConfig, s *Service, level policy.Level, o *Options) Finding {
	f := Finding{ID: "outbound.dane", Title: "DANE (RFC 7672)", Setting: c.Where(s, "smtp_dns_support_level") + "; " + c.Where(s, "smtp_tls_security_level")}
	dnssec := c.Param(s, "smtp_dns_support_level") == "dnssec"
	dane := level == policy.LevelDANE || level == policy.LevelDANEOnly
	maps := c.Param(s, "smtp_tls_policy_maps") != ""
	fix := c.FixLine(s, "smtp_dns_support_level", "dnssec") + "; " + c.FixLine(s, "smtp_tls_security_level", string(policy.LevelDANE))
	switch {
	case dnssec && (dane || maps):
		f.Status = StatusOK
		f.Value = "on"
		if !dane {
			f.Value = "on for destinations smtp_tls_policy_maps gives the dane level"
		}
		f.Reason = "RFC 7672: TLSA records published under DNSSEC authenticate the server and forbid cleartext, the defence against the paper's stripping and MX forgery (§4.1, §4.2)."
		if conf, path := o.resolvConf(c, s); conf != nil && !conf.localOnly {
			f.Status = StatusWarn
			f.Value += "; but " + path + " names a resolver off this host (" + strings.Join(conf.servers, ", ") + "): its AD bit crosses the network unprotected"
			f.Reason = "Postfix trusts the AD bit of the resolver it asks (dns_lookup sets RES_TRUSTAD for DNSSEC lookups); TLS_README (DANE) wants a validating resolver on the host, or a trusted path to it."
			f.Fix = "run a validating resolver (unbound) on 127.0.0.1 and name only it in " + path
		}
	case dane && !dnssec:
		f.judge(StatusFail, "level dane but smtp_dns_support_level is not dnssec: DANE never applies, delivery is opportunistic", "postconf(5): the dane level needs smtp_dns_support_level = dnssec, else Postfix falls back to may.", c.FixLine(s, "smtp_dns_support_level", "dnssec"))
	default:
		f.judge(StatusWarn, "off", "RFC 7672: without DANE (or MTA-STS) the client cannot tell a stripped or forged server from a real one (paper §4.1 and §4.2: 2.01% of open resolvers falsified MX answers).", fix)
	}
	return f
}

// Postfix server levels (postconf(5) smtpd_tls_security_level).
var serverEncrypts = map[policy.Level]bool{policy.LevelMay: true, policy.LevelEncrypt: true}

func postfixInbound(ctx context.Context, c *PostfixConfig, s *Service, ossl *OpenSSL) []Finding {
	level, where := c.levelOf(s, "smtpd")
	cert := postfixCert(c, s)
	f := Finding{ID: "inbound.starttls", Title: "Offers STARTTLS to senders", Setting: where}
	var fs []Finding
	switch {
	case !serverEncrypts[level]:
		f.judge(StatusFail, "no (level "+string(level)+"): every sender delivers in cleartext", "Paper §3.3 and Table 5: STARTTLS inbound needs the server side configured; in 2015 only 53.7% of Gmail's inbound connections were encrypted (§3.1).", c.FixLine(s, "smtpd_tls_security_level", "may")+" with a certificate (smtpd_tls_chain_files)")
	case len(cert.CertFiles) == 0:
		f.judge(StatusFail, "no: level "+string(level)+" but no certificate, so Postfix disables TLS", "postconf(5): without smtpd_tls_cert_file or smtpd_tls_chain_files the server cannot offer STARTTLS.", cert.FixFiles)
	case level == policy.LevelEncrypt:
		f.judge(StatusWarn, "yes, and required: senders without TLS are refused", "RFC 3207 §4: a publicly-referenced SMTP server must not require STARTTLS; 18.2% of the Top 1M servers lacked it in 2015 (paper Table 1), so their mail bounces.", c.FixLine(s, "smtpd_tls_security_level", "may"))
	default:
		f.judge(StatusOK, "yes (level may)", "Paper §3.3: Postfix offers STARTTLS inbound out of the box with a self-signed certificate; RFC 3207.", "")
	}
	fs = append(fs, f)
	if serverEncrypts[level] && len(cert.CertFiles) > 0 {
		p := postfixTLSParams(c, s, "smtpd", level == policy.LevelEncrypt, false)
		fs = append(fs, protocolFinding("inbound.protocols", "Protocols accepted from senders", ossl, p),
			cipherFinding(ctx, "inbound.ciphers", "Ciphers accepted from senders", ossl, p, false))
	}
	logl := Finding{ID: "inbound.loglevel", Title: "Inbound TLS logged", Setting: c.Where(s, "smtpd_tls_loglevel")}
	if v := c.Param(s, "smtpd_tls_loglevel"); v != "" && v != "0" {
		logl.Status, logl.Value = StatusInfo, "yes (smtpd_tls_loglevel = "+v+")"
	} else {
		logl.Status, logl.Value = StatusInfo, "no (smtpd_tls_loglevel = 0): snowrain's milter still records each session's TLS"
	}
	logl.Reason = "The milter gets {tls_version} and {cipher} from Postfix whatever the log level (milter_helo_macros)."
	fs = append(fs, logl)
	return fs
}

// postfixCert reads where the server certificate is configured:
// smtpd_tls_chain_files (Postfix 3.4+) wins over the *_cert_file pairs.
func postfixCert(c *PostfixConfig, s *Service) certInput {
	in := certInput{Hostname: c.Main["myhostname"], CAFile: c.Param(s, "smtpd_tls_CAfile"), CAPath: c.Param(s, "smtpd_tls_CApath")}
	in.FixFiles = c.FixLine(s, "smtpd_tls_chain_files", "/etc/postfix/key.pem, /etc/postfix/fullchain.pem")
	if v := c.Param(s, "smtpd_tls_chain_files"); v != "" {
		in.Where = c.Where(s, "smtpd_tls_chain_files")
		in.CertFiles = append(in.CertFiles, listValues(v)...)
		in.KeyFiles = append(in.KeyFiles, in.CertFiles[0])
		// Keys and chains may be split over the files: look for both in any.
		in.CertFiles, in.KeyFiles = certsAndKeys(in.CertFiles)
		return in
	}
	for _, pair := range [][2]string{{"smtpd_tls_cert_file", "smtpd_tls_key_file"}, {"smtpd_tls_eccert_file", "smtpd_tls_eckey_file"}} {
		cert := c.Param(s, pair[0])
		if cert == "" || cert == "none" {
			continue
		}
		in.Where = strings.TrimPrefix(in.Where+"; "+c.Where(s, pair[0]), "; ")
		in.CertFiles = append(in.CertFiles, cert)
		key := c.Param(s, pair[1])
		if key == cert {
			key = ""
		}
		in.KeyFiles = append(in.KeyFiles, key)
	}
	if in.Where == "" {
		in.Where = c.Where(s, "smtpd_tls_cert_file")
	}
	return in
}

// certsAndKeys sorts smtpd_tls_chain_files into the files with
// certificates and the files with keys.
func certsAndKeys(files []string) (certs, keys []string) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			certs = append(certs, f) // reported as unreadable
			continue
		}
		if strings.Contains(string(b), "PRIVATE KEY-----") {
			keys = append(keys, f)
		}
		if strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
			certs = append(certs, f)
		}
	}
	return certs, keys
}

// resolvConf is what a resolv.conf tells glibc.
type resolvConf struct {
	servers   []string
	localOnly bool // every nameserver is on loopback
}

// resolvConf reads the resolv.conf the smtp client uses: the chroot's
// copy (queue_directory/etc) when master.cf chroots it.
func (o *Options) resolvConf(c *PostfixConfig, s *Service) (*resolvConf, string) {
	path := o.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
		if s != nil && s.Chroot {
			path = filepath.Join(c.Main["queue_directory"], "etc", "resolv.conf")
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, path
	}
	defer f.Close()
	rc := &resolvConf{localOnly: true}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			rc.servers = append(rc.servers, fields[1])
			if !strings.HasPrefix(fields[1], "127.") && fields[1] != "::1" {
				rc.localOnly = false
			}
		}
	}
	if len(rc.servers) == 0 {
		rc.localOnly = true // glibc's default is 127.0.0.1
	}
	return rc, path
}
