package audit

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// parsePostfixProtocols reads a *_tls_protocols value into the set of
// protocols it allows, as Postfix's tls_protocol_mask does: names
// separated by commas, spaces or colons; "!name" excludes; when some
// names are included bare, only those are allowed; and since Postfix 3.6
// ">=name" and "<=name" bound the range.
func parsePostfixProtocols(v string) ([]bool, error) {
	allow := make([]bool, len(protocols))
	var include []int
	var exclude []int
	lo, hi := 0, len(protocols)-1
	for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ':' || r == '\t' }) {
		op := ""
		for _, p := range []string{">=", "<=", "!"} {
			if strings.HasPrefix(tok, p) {
				op, tok = p, tok[len(p):]
				break
			}
		}
		i := protoIndex(tok)
		if i < 0 {
			return nil, fmt.Errorf("unknown protocol %q", tok)
		}
		switch op {
		case ">=":
			lo = max(lo, i)
		case "<=":
			hi = min(hi, i)
		case "!":
			exclude = append(exclude, i)
		default:
			include = append(include, i)
		}
	}
	for i := range allow {
		allow[i] = i >= lo && i <= hi
	}
	if len(include) > 0 {
		only := make([]bool, len(protocols))
		for _, i := range include {
			only[i] = allow[i]
		}
		allow = only
	}
	for _, i := range exclude {
		allow[i] = false
	}
	return allow, nil
}

// tlsParams is what one TLS role (the server or the client, at one
// security level) is configured to negotiate.
type tlsParams struct {
	protoParam   string   // smtpd_tls_protocols or the mandatory one
	protoValue   string   // its value
	protoWhere   string   // where it is set
	cipherList   string   // the OpenSSL list Postfix builds (grade + :!exclusions)
	gradeWhere   string   // where the grade is set
	secLevel     int      // the OpenSSL security level the MTA runs the role at
	secWhere     string   // who sets it
	exclusions   []string // the exclusion parameters in force
	fixProtocols string   // the line that allows TLS 1.2 and later only
	fixExclude   string   // the line that excludes the weak ciphers found
}

// protocolFinding judges the protocols a role allows, configured and as
// the library will really negotiate them.
func protocolFinding(id, title string, ossl *OpenSSL, p tlsParams) Finding {
	f := Finding{ID: id, Title: title, Setting: p.protoWhere}
	allow, err := parsePostfixProtocols(p.protoValue)
	if err != nil {
		f.judge(StatusFail, fmt.Sprintf("%s is invalid: %v; Postfix refuses TLS with it", p.protoParam, err), "postconf(5), "+p.protoParam, p.fixProtocols)
		return f
	}
	level := SecLevelOf(p.cipherList, p.secLevel)
	f.Setting += "; " + p.secWhere
	var on, refused []string
	for i, ok := range allow {
		if !ok {
			continue
		}
		if why := ossl.Refuses(protocols[i], level); why != "" {
			refused = append(refused, protocols[i]+" ("+why+")")
			continue
		}
		on = append(on, protocols[i])
	}
	f.Value = strings.Join(on, ", ")
	if len(on) == 0 {
		f.Value = "none"
	}
	if len(refused) > 0 {
		f.Value += "; configured but never negotiated: " + strings.Join(refused, "; ")
	}
	legacy := func(ps ...string) bool {
		for _, p := range ps {
			for _, q := range on {
				if p == q {
					return true
				}
			}
		}
		return false
	}
	switch {
	case len(on) == 0:
		f.Status = StatusFail
		f.Reason = "No protocol is left: every STARTTLS handshake fails, and opportunistic peers fall back to cleartext (paper §4.1)."
		f.Fix = p.fixProtocols
	case legacy("SSLv2", "SSLv3"):
		f.Status = StatusFail
		f.Reason = "SSLv3 is broken (POODLE; RFC 7568 forbids it); the paper saw Gmail's outbound TLS drop from 73% to 50% when servers disabled it in a hurry (§3.1)."
		f.Fix = p.fixProtocols
	case legacy("TLSv1", "TLSv1.1"):
		f.Status = StatusWarn
		f.Reason = "RFC 8996 deprecates TLS 1.0 and 1.1; in 2015 TLS 1.0 still carried 44.7% of Gmail's inbound TLS (paper Table 3)."
		f.Fix = p.fixProtocols
	default:
		f.Status = StatusOK
		f.Reason = "TLS 1.2 and later only (RFC 8996 deprecates TLS 1.0 and 1.1; RFC 7568 SSLv3)."
	}
	return f
}

// cipherFinding evaluates the cipher list with the library.
func cipherFinding(ctx context.Context, id, title string, ossl *OpenSSL, p tlsParams, client bool) Finding {
	f := Finding{ID: id, Title: title, Setting: p.gradeWhere}
	if len(p.exclusions) > 0 {
		f.Setting += "; " + strings.Join(p.exclusions, "; ")
	}
	f.Setting += "; " + p.secWhere
	cs, err := ossl.Ciphers(ctx, p.cipherList, p.secLevel)
	if err != nil {
		f.judge(StatusFail, "the cipher list is invalid: "+err.Error(), "The MTA cannot set the list and gives up TLS for the session (Postfix: \"error setting cipher grade\", tls_set_ciphers); senders fall back to cleartext (paper §4.1).", "")
		return f
	}
	weak := map[string][]string{}
	var usable, anon, noFS int
	for _, c := range cs {
		if c.PSK() {
			continue
		}
		usable++
		if w := c.Weakness(); w != "" {
			weak[w] = append(weak[w], c.Name)
		}
		if c.Anonymous() {
			anon++
		}
		if !c.ForwardSecret() {
			noFS++
		}
	}
	f.Value = fmt.Sprintf("%d suites (OpenSSL list %q)", usable, p.cipherList)
	var kinds []string
	for k := range weak {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	switch {
	case usable == 0:
		f.Status = StatusFail
		f.Value = fmt.Sprintf("no usable suite (OpenSSL list %q)", p.cipherList)
		f.Reason = "Every handshake fails; opportunistic peers fall back to cleartext (paper §4.1)."
	case len(kinds) > 0:
		f.Status = StatusFail
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s: %s", k, strings.Join(weak[k], " ")))
		}
		f.Value += "; weak: " + strings.Join(parts, "; ")
		f.Reason = "RC4 is prohibited by RFC 7465 (45.6% of Gmail's inbound TLS still used it in 2015, paper Table 3); 3DES falls to Sweet32, export and NULL suites give no confidentiality."
		f.Fix = p.fixExclude
	case noFS > 0:
		f.Status = StatusInfo
		f.Value += fmt.Sprintf("; %d without forward secrecy (RSA key exchange), used only with peers that offer nothing better", noFS)
		f.Reason = "The paper counts forward secrecy per provider (Table 6) and found it in 84.2% of Gmail's inbound TLS (§3.1); for opportunistic SMTP, RFC 7435 prefers any encryption to cleartext, so these stay enabled by Postfix's grades."
	default:
		f.Status = StatusOK
		f.Reason = "Every suite is forward secret and none is weak (RFC 7465, RFC 7525)."
	}
	if anon > 0 {
		who := "clients that ask for it"
		if client {
			who = "servers that choose it"
		}
		f.Value += fmt.Sprintf("; %d anonymous (aNULL), for %s", anon, who)
	}
	return f
}

// postfixTLSParams builds the parameters a role uses at a level: Postfix
// applies *_tls_ciphers, *_tls_exclude_ciphers and *_tls_protocols to
// opportunistic TLS, and the mandatory_* ones (plus both exclusion lists)
// from encrypt up (postconf(5); tls_set_ciphers appends ":!name" per
// excluded name to the grade's list).
//
// Postfix runs opportunistic TLS and its server at OpenSSL security level
// 0 ("backwards compatible security as a base for opportunistic TLS",
// tls_client.c), and raises it to 1 only when it authenticates the peer
// (verify, secure, fingerprint, DANE): so TLS 1.0 and 1.1 stay possible
// with OpenSSL 3 unless *_tls_protocols excludes them.
func postfixTLSParams(c *PostfixConfig, s *Service, prefix string, mandatory, authenticated bool) tlsParams {
	var p tlsParams
	p.secWhere = "OpenSSL security level 0, which Postfix sets for opportunistic TLS and its server (tls_client.c, tls_server.c)"
	if authenticated {
		p.secLevel = 1
		p.secWhere = "OpenSSL security level 1, which Postfix sets when it authenticates the server (tls_client.c)"
	}
	grade, proto := prefix+"_tls_ciphers", prefix+"_tls_protocols"
	excl := []string{prefix + "_tls_exclude_ciphers"}
	if mandatory {
		grade, proto = prefix+"_tls_mandatory_ciphers", prefix+"_tls_mandatory_protocols"
		excl = append(excl, prefix+"_tls_mandatory_exclude_ciphers")
	}
	p.protoParam, p.protoValue, p.protoWhere = proto, c.Param(s, proto), c.Where(s, proto)
	p.fixProtocols = c.FixLine(s, proto, ">=TLSv1.2")
	g := strings.ToLower(c.Param(s, grade))
	p.gradeWhere = c.Where(s, grade)
	p.cipherList = c.Main["tls_"+g+"_cipherlist"]
	if p.cipherList == "" {
		p.cipherList = g // an unknown grade: OpenSSL rejects it below
	}
	for _, e := range excl {
		v := c.Param(s, e)
		if v == "" {
			continue
		}
		p.exclusions = append(p.exclusions, c.Where(s, e))
		for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ':' || r == '\t' }) {
			p.cipherList += ":!" + tok
		}
	}
	add := []string{"aNULL", "eNULL", "EXPORT", "RC4", "3DES", "DES", "MD5"}
	if prefix == "smtpd" && !mandatory {
		add = add[1:] // keep aNULL for opportunistic clients, as Postfix does (TLS_README)
	}
	last := excl[len(excl)-1]
	p.fixExclude = c.FixLine(s, last, strings.Join(mergeNames(splitNames(c.Param(s, last)), add), ", "))
	return p
}

func splitNames(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ':' || r == '\t' })
}

// mergeNames appends the names of add not in have.
func mergeNames(have, add []string) []string {
	out := append([]string(nil), have...)
	for _, a := range add {
		found := false
		for _, h := range have {
			if strings.EqualFold(h, a) {
				found = true
			}
		}
		if !found {
			out = append(out, a)
		}
	}
	return out
}
