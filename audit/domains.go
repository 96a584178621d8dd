package audit

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
	"github.com/snowrain/snowrain/scanner"
)

// postfixDomains expands the lists of domains Postfix receives mail for:
// mydestination, virtual_alias_domains, virtual_mailbox_domains and
// relay_domains (postconf(5)). Entries are names, /file names (read, one
// or more per line) or type:table lookups (listed with postmap -s); a
// table that cannot be listed (regexp, pcre, sql…) is noted.
func postfixDomains(ctx context.Context, c *PostfixConfig, postmap string) ([]Domain, []string) {
	if postmap == "" {
		postmap = "postmap"
	}
	seen := map[string]bool{}
	var out []Domain
	var notes []string
	add := func(name, source string) {
		name = normalDomain(name)
		if name == "" || seen[name] || localName(name) {
			return
		}
		seen[name] = true
		out = append(out, Domain{Name: name, Source: source})
	}
	for _, param := range []string{"mydestination", "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains"} {
		for _, e := range listValues(c.Main[param]) {
			switch {
			case strings.HasPrefix(e, "/"):
				names, err := readNames(e)
				if err != nil {
					notes = append(notes, fmt.Sprintf("%s: %v", param, err))
				}
				for _, n := range names {
					add(n, param+" ("+e+")")
				}
			case strings.Contains(e, ":"):
				args := []string{"-s", e}
				if c.Dir != "" {
					args = append([]string{"-c", c.Dir}, args...)
				}
				listing, err := run(ctx, postmap, args...)
				if err != nil {
					notes = append(notes, fmt.Sprintf("%s: the table %s cannot be listed (%v); its domains were not checked", param, e, err))
					continue
				}
				for _, line := range strings.Split(listing, "\n") {
					if k, _, _ := strings.Cut(line, "\t"); k != "" && !strings.HasPrefix(k, ".") {
						add(k, param+" ("+e+")")
					}
				}
			default:
				add(e, param)
			}
		}
	}
	return out, notes
}

// readNames reads a Postfix list file: names separated by white space or
// commas, # comments.
func readNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		out = append(out, listValues(line)...)
	}
	return out, sc.Err()
}

// normalDomain lower-cases, drops one trailing dot and converts to
// A-labels; "" for anything that is not a host name.
func normalDomain(s string) string {
	s = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
	a, err := idna.Lookup.ToASCII(s)
	if err != nil || a == "" || strings.ContainsAny(a, "$@[]/:") || !strings.Contains(a, ".") {
		return ""
	}
	return a
}

// localName is a name that never receives mail from outside.
func localName(n string) bool {
	return n == "localhost" || strings.HasPrefix(n, "localhost.") || strings.HasSuffix(n, ".localdomain") ||
		strings.HasSuffix(n, ".local") || strings.HasSuffix(n, ".localhost")
}

// DomainProbe looks up what a domain publishes.
type DomainProbe struct {
	Resolver resolver.Resolver
	STS      *policy.STSFetcher
}

// probeDomains runs the scanner's domain sweep in DNS-only mode (MX, SPF,
// DMARC, MTA-STS, TLS-RPT, TLSA) over the domains: the same lookups and
// verdicts as snowrain scan domains.
func (p *DomainProbe) probeDomains(ctx context.Context, domains []Domain) map[string]*scanner.DomainResult {
	in := make(chan scanner.Input, len(domains))
	for _, d := range domains {
		in <- scanner.Input{Domain: d.Name}
	}
	close(in)
	results := map[string]*scanner.DomainResult{}
	done := make(chan *scanner.DomainResult)
	go func() {
		scanner.Sweep(ctx, scanner.Options{Resolver: p.Resolver, STS: p.STS, Grabber: &scanner.Grabber{Dialer: &scanner.Dialer{}}, DryRun: true,
			Workers: 8, OnDomain: func(r *scanner.DomainResult) { done <- r }}, in)
		close(done)
	}()
	for r := range done {
		results[r.Domain] = r
	}
	return results
}

// domainFindings judges what one received domain publishes. leaf and
// chain are the server's certificate, for comparing TLSA records with
// it; host is the server's own name (myhostname).
func (p *DomainProbe) domainFindings(ctx context.Context, d Domain, r *scanner.DomainResult, host string,
	leaf *x509.Certificate, chain []*x509.Certificate) []Finding {
	if r == nil {
		return []Finding{{ID: "domain.lookup", Title: "DNS lookups", Status: StatusFail, Value: "no answer",
			Reason: "The domain could not be looked up.", Setting: d.Source}}
	}
	return []Finding{mxFinding(d, r, host), spfFinding(d, r), dmarcFinding(d, r), stsFinding(d, r), tlsrptFinding(d, r),
		p.tlsaFinding(ctx, d, r, host, leaf, chain)}
}

func mxFinding(d Domain, r *scanner.DomainResult, host string) Finding {
	f := Finding{ID: "domain.mx", Title: "MX records", Setting: "listed in " + d.Source}
	var hosts []string
	ours := false
	for _, mx := range r.MX {
		h := mx.Host
		if r.ImplicitMX {
			h += " (no MX: the domain's address, RFC 5321 §5.1)"
		}
		hosts = append(hosts, h)
		if strings.EqualFold(mx.Host, strings.TrimSuffix(host, ".")) {
			ours = true
		}
	}
	switch {
	case len(r.MX) == 0:
		f.judge(StatusFail, "none: "+r.Error, "Senders find no server for the domain (RFC 5321 §5.1); Table 1 of the paper counts such domains apart.", fmt.Sprintf("%s. MX 10 %s.", d.Name, host))
	case ours:
		f.judge(StatusOK, strings.Join(hosts, ", "), "Senders reach this server by these names; its certificate and TLSA records are checked against them (RFC 7672 §2.2.2).", "")
	default:
		f.judge(StatusInfo, strings.Join(hosts, ", ")+"; none is "+host, "Mail for the domain reaches another server first (a filter or backup MX): its STARTTLS is what senders see (paper Table 4 groups domains by such providers).", "")
	}
	return f
}

func spfFinding(d Domain, r *scanner.DomainResult) Finding {
	f := Finding{ID: "domain.spf", Title: "SPF", Setting: "TXT at " + d.Name}
	w := r.SPF
	fix := fmt.Sprintf("%s. TXT \"v=spf1 mx -all\"", d.Name)
	switch {
	case w == nil || w.Record == "" && (w.ErrorClass == "" || w.ErrorClass == scanner.SPFNone):
		f.judge(StatusFail, "not published", "RFC 7208: receivers cannot tell forged senders; the paper found SPF on only 47% of the Top 1M domains with MX records (§5.1, Table 19).", fix)
	case w.ErrorClass != "":
		f.Status, f.Value = StatusFail, fmt.Sprintf("%q: error %s", w.Record, w.ErrorClass)
		if w.Record == "" {
			f.Value = "error " + string(w.ErrorClass)
		}
		f.Reason = "An SPF error is a permerror or temperror for receivers (RFC 7208 §2.6), as if none were published (paper Table 21)."
		f.Fix = fix
	case w.All == "-":
		f.judge(StatusOK, fmt.Sprintf("%q (hard fail)", w.Record), "RFC 7208 §2.6.4: -all tells receivers to reject other senders (21.7% of SPF domains in the paper's Table 19).", "")
	case w.All == "~" || w.All == "redirect":
		f.judge(StatusOK, fmt.Sprintf("%q", w.Record), "RFC 7208: a policy is published; ~all (soft fail) was the paper's most common one (Table 19).", "")
	default:
		f.judge(StatusWarn, fmt.Sprintf("%q (all is %q)", w.Record, w.All), "RFC 7208 §5.1: +all, ?all or no all authorises any sender, which is no policy.", fix)
	}
	return f
}

func dmarcFinding(d Domain, r *scanner.DomainResult) Finding {
	f := Finding{ID: "domain.dmarc", Title: "DMARC", Setting: "TXT at _dmarc." + d.Name}
	fix := fmt.Sprintf("_dmarc.%s. TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc@%s\"", d.Name, d.Name)
	pol := auth.PolicyAbsent
	if r.DMARC != nil {
		pol = r.DMARC.Policy
	}
	switch pol {
	case auth.PolicyReject, auth.PolicyQuarantine:
		f.Status, f.Value = StatusOK, "p="+string(pol)
		if r.DMARC.RUA {
			f.Value += ", aggregate reports requested"
		}
		f.Reason = "RFC 7489: receivers act on unauthenticated mail; the paper found 0.3% of the Top 1M with such a policy (Table 18)."
	case auth.PolicyNone:
		f.judge(StatusWarn, "p=none", "RFC 7489 §6.3: p=none only asks for reports; the paper found it the most common policy among providers that publish one (§5.3).", fix)
	default: // absent, invalid
		f.judge(StatusFail, string(pol), "RFC 7489: without DMARC receivers apply no policy to mail forging the domain; 73.92% of Gmail's inbound mail came from such domains (paper Table 18).", fix)
	}
	return f
}

func stsFinding(d Domain, r *scanner.DomainResult) Finding {
	f := Finding{ID: "domain.mta_sts", Title: "MTA-STS", Setting: "TXT at _mta-sts." + d.Name + " and https://mta-sts." + d.Name + "/.well-known/mta-sts.txt"}
	fix := fmt.Sprintf("_mta-sts.%s. TXT \"v=STSv1; id=1\" and a policy file (mode: testing, then enforce)", d.Name)
	m := r.MTASTS
	switch {
	case m == nil || m.Mode == scanner.STSAbsent:
		f.judge(StatusWarn, "not published", "RFC 8461: without MTA-STS (or DANE) senders fall back to cleartext when STARTTLS is stripped (paper §4.1 found stripping on 41,405 IPv4 servers, Table 11).", fix)
	case m.Mode == policy.STSEnforce:
		f.judge(StatusOK, "enforce, mx: "+strings.Join(m.MX, " "), "RFC 8461 §5: senders that support MTA-STS refuse cleartext and unauthenticated TLS to this domain.", "")
	case m.Mode == policy.STSTesting || m.Mode == policy.STSNone:
		f.judge(StatusWarn, string(m.Mode)+", mx: "+strings.Join(m.MX, " "), "RFC 8461 §5: testing and none only report failures (with TLS-RPT); nothing is enforced.", "mode: enforce in the policy file, with a new id in the TXT record")
	default:
		f.judge(StatusFail, string(m.Mode)+": "+m.Error, "RFC 8461 §3: a broken record or policy is as if none were published; senders cache nothing.", fix)
	}
	return f
}

func tlsrptFinding(d Domain, r *scanner.DomainResult) Finding {
	f := Finding{ID: "domain.tls_rpt", Title: "TLS-RPT", Setting: "TXT at _smtp._tls." + d.Name}
	fix := fmt.Sprintf("_smtp._tls.%s. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@%s\"", d.Name, d.Name)
	t := r.TLSRPT
	if t == nil {
		t = &scanner.TLSRPT{Status: scanner.TLSRPTAbsent}
	}
	switch t.Status {
	case scanner.TLSRPTValid:
		f.judge(StatusOK, "rua="+strings.Join(t.RUA, ","), "RFC 8460 §3: senders send daily reports of TLS successes and failures.", "")
	case scanner.TLSRPTAbsent:
		f.judge(StatusWarn, "not published", "RFC 8460: senders report failed TLS sessions (stripping, bad certificates) only to domains that ask; without it the paper's §4 attacks go unseen.", fix)
	default: // invalid, multiple, or the lookup failed
		f.judge(StatusFail, string(t.Status)+": "+t.Error, "RFC 8460 §3: an invalid record is ignored; no report is sent.", fix)
	}
	return f
}

// tlsaFinding checks DANE TLSA records at each MX (RFC 7672 §2.2) and,
// for the MX that is this server, whether they match its certificate.
func (p *DomainProbe) tlsaFinding(ctx context.Context, d Domain, r *scanner.DomainResult, host string,
	leaf *x509.Certificate, chain []*x509.Certificate) Finding {
	f := Finding{ID: "domain.tlsa", Title: "DANE TLSA", Setting: "TLSA at _25._tcp.<MX host>"}
	var with, unsigned, mismatch, matched []string
	for _, mx := range r.MX {
		switch {
		case mx.TLSA && mx.TLSAValid:
			with = append(with, mx.Host)
			if leaf != nil && strings.EqualFold(mx.Host, strings.TrimSuffix(host, ".")) {
				ok, err := p.tlsaMatches(ctx, mx.Host, leaf, chain)
				switch {
				case err != nil:
					mismatch = append(mismatch, mx.Host+" ("+err.Error()+")")
				case ok:
					matched = append(matched, mx.Host)
				default:
					mismatch = append(mismatch, mx.Host)
				}
			}
		case mx.TLSA:
			unsigned = append(unsigned, mx.Host)
		}
	}
	fix := fmt.Sprintf("_25._tcp.%s. TLSA 3 1 1 <SHA-256 of the certificate's public key>, in a DNSSEC-signed zone", host)
	switch {
	case len(mismatch) > 0:
		f.judge(StatusFail, "published, but no record matches the server's certificate at "+strings.Join(mismatch, ", "), "RFC 7672 §2.2: a DANE sender finds no usable match and defers all mail to the domain.", fix)
	case len(with) > 0 && len(with) == len(r.MX):
		f.Status, f.Value = StatusOK, "DNSSEC-validated at "+strings.Join(with, ", ")
		if len(matched) > 0 {
			f.Value += "; matches the server's certificate at " + strings.Join(matched, ", ")
		}
		f.Reason = "RFC 7672: DANE senders authenticate the server and never fall back to cleartext, the defence against the paper's STARTTLS stripping (§4.1)."
	case len(with) > 0:
		f.judge(StatusWarn, "DNSSEC-validated at "+strings.Join(with, ", ")+" only, not every MX", "RFC 7672 §2.2.1: an MX without usable TLSA records gets opportunistic TLS, which an attacker can strip (paper §4.1).", fix)
	case len(unsigned) > 0:
		f.judge(StatusWarn, "records at "+strings.Join(unsigned, ", ")+" without DNSSEC validation (no AD bit)", "RFC 7672 §2.1.1: TLSA records are used only when DNSSEC-authenticated.", "sign the zone with DNSSEC")
	default:
		f.judge(StatusWarn, "none", "RFC 7672: without DANE (or MTA-STS) a man in the middle can strip STARTTLS or present any certificate (paper §4.1, §3.2.1).", fix)
	}
	return f
}

// tlsaMatches reports whether one TLSA record of _25._tcp.host matches the
// certificate: usage 3 (DANE-EE) the leaf, usage 2 (DANE-TA) a CA of the
// chain; selector 0 full certificate, 1 public key; matching 0 exact, 1
// SHA-256, 2 SHA-512 (RFC 6698 §2.1; RFC 7672 §3.1 drops usages 0 and 1).
func (p *DomainProbe) tlsaMatches(ctx context.Context, host string, leaf *x509.Certificate, chain []*x509.Certificate) (bool, error) {
	ans, err := p.Resolver.Query(ctx, "_25._tcp."+host, dns.TypeTLSA)
	if err != nil {
		return false, err
	}
	for _, rr := range ans.Records {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			continue
		}
		var certs []*x509.Certificate
		switch t.Usage {
		case 3:
			certs = []*x509.Certificate{leaf}
		case 2:
			if len(chain) > 1 {
				certs = chain[1:]
			}
		}
		for _, c := range certs {
			if tlsaDigest(c, t.Selector, t.MatchingType) == strings.ToLower(t.Certificate) {
				return true, nil
			}
		}
	}
	return false, nil
}

func tlsaDigest(c *x509.Certificate, selector, matching uint8) string {
	data := c.Raw
	if selector == 1 {
		data = c.RawSubjectPublicKeyInfo
	}
	switch matching {
	case 1:
		s := sha256.Sum256(data)
		return hex.EncodeToString(s[:])
	case 2:
		s := sha512.Sum512(data)
		return hex.EncodeToString(s[:])
	}
	return hex.EncodeToString(data)
}

// TLSARecord is the DANE-EE record for a certificate: "3 1 1 <digest>".
func TLSARecord(c *x509.Certificate) string { return "3 1 1 " + tlsaDigest(c, 1, 1) }

func sortDomains(ds []Domain) {
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
}
