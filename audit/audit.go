package audit

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
)

// Options say which MTA to audit and how.
type Options struct {
	// MTA is "postfix" or "sendmail"; empty: Postfix when postconf runs,
	// else Sendmail when its .cf exists.
	MTA string
	// ConfigDir is Postfix's config_directory for a non-default instance
	// (postconf -c); empty: the default one.
	ConfigDir string
	// SendmailCF is Sendmail's configuration; empty: /etc/mail/sendmail.cf.
	SendmailCF string
	// Commands; empty: found on $PATH.
	Postconf, Postmap, OpenSSL string
	// Resolver looks up the received domains; nil: they are listed but
	// not probed.
	Resolver resolver.Resolver
	// STS fetches MTA-STS policies; nil: built on Resolver with the
	// system roots.
	STS *policy.STSFetcher
	// Roots are the public roots a certificate chain is checked against;
	// nil: Mozilla's, from Debian's ca-certificates bundle. Not Go's
	// system pool, which also trusts every file in /etc/ssl/certs, the
	// self-signed snakeoil certificate included.
	Roots *x509.CertPool
	// ResolvConf is the resolv.conf the SMTP client uses; empty: the
	// chroot's copy when master.cf chroots smtp, else /etc/resolv.conf.
	ResolvConf string
	// Now is the time certificates are judged at; nil: time.Now.
	Now func() time.Time
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Run audits the MTA.
func Run(ctx context.Context, o Options) (*Report, error) {
	ossl, err := ProbeOpenSSL(ctx, o.OpenSSL)
	if err != nil {
		return nil, err
	}
	mta := o.MTA
	if mta == "" {
		mta = detect(o)
	}
	if o.Roots == nil {
		if o.Roots, err = publicRoots(); err != nil {
			return nil, err
		}
	}
	if o.Resolver != nil && o.STS == nil {
		o.STS = &policy.STSFetcher{Resolver: o.Resolver, Roots: o.Roots, Timeout: 10 * time.Second}
	}
	switch mta {
	case "postfix":
		return auditPostfix(ctx, &o, ossl)
	case "sendmail":
		return auditSendmail(ctx, &o, ossl)
	}
	return nil, fmt.Errorf("audit: MTA %q: want postfix or sendmail (neither postconf nor /etc/mail/sendmail.cf found)", mta)
}

// detect picks the MTA installed here.
func detect(o Options) string {
	if o.ConfigDir != "" {
		return "postfix"
	}
	if o.SendmailCF != "" {
		return "sendmail"
	}
	bin := o.Postconf
	if bin == "" {
		bin = "postconf"
	}
	if _, err := exec.LookPath(bin); err == nil {
		return "postfix"
	}
	if _, err := os.Stat("/etc/mail/sendmail.cf"); err == nil {
		return "sendmail"
	}
	return ""
}

// addDomainSections probes the received domains, one section each.
func (r *Report) addDomainSections(ctx context.Context, o *Options, host string, leaf *x509.Certificate, chain []*x509.Certificate) {
	if len(r.Domains) == 0 {
		r.Notes = append(r.Notes, "The configuration lists no domain this server receives mail for (beyond localhost names), so no SPF, DMARC, MTA-STS, TLS-RPT or TLSA record was checked.")
		return
	}
	if o.Resolver == nil {
		r.Notes = append(r.Notes, "DNS lookups are off: the received domains were listed, not checked.")
		return
	}
	p := &DomainProbe{Resolver: o.Resolver, STS: o.STS}
	results := p.probeDomains(ctx, r.Domains)
	for _, d := range r.Domains {
		r.Sections = append(r.Sections, Section{Name: "Domain " + d.Name + " (" + d.Source + ")",
			Findings: p.domainFindings(ctx, d, results[d.Name], host, leaf, chain)})
	}
}

// publicRootsFile is Debian's bundle of Mozilla's roots (ca-certificates).
const publicRootsFile = "/etc/ssl/certs/ca-certificates.crt"

func publicRoots() (*x509.CertPool, error) {
	certs, err := readCerts(publicRootsFile)
	if err != nil {
		return nil, fmt.Errorf("audit: public roots: %w (install ca-certificates, or give --roots)", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
