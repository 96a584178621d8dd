package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/audit"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
)

// auditFlags is `snowrain audit`: the local MTA's TLS configuration
// checked the way the paper checked MTAs (Table 5), and the domains it
// receives mail for.
func auditFlags(fs *flag.FlagSet) runFunc {
	format := fs.String("format", "text", "text or json")
	output := fs.String("o", "", "output file; default standard output")
	mta := fs.String("mta", "", "postfix or sendmail (default: postfix when postconf runs, else sendmail)")
	configDir := fs.String("config-dir", "", "Postfix config_directory of a non-default instance (postconf -c)")
	cf := fs.String("sendmail-cf", "", "Sendmail configuration (default /etc/mail/sendmail.cf)")
	dnsServers := fs.String("dns", "", "resolver HOST:PORT for the received domains' records (default /etc/resolv.conf); \"off\": no lookups")
	roots := fs.String("roots", "", "PEM roots a certificate chain is checked against (default: the system pool)")
	resolvConf := fs.String("resolv-conf", "", "resolv.conf the SMTP client uses (default: the chroot's or /etc/resolv.conf)")
	stsPort := fs.Int("mta-sts-port", 0, "HTTPS port for MTA-STS fetches (tests)")
	return func(c *call) error {
		if *format != audit.FormatText && *format != audit.FormatJSON {
			return fmt.Errorf("--format %q: want text or json", *format)
		}
		o := audit.Options{MTA: *mta, ConfigDir: *configDir, SendmailCF: *cf, ResolvConf: *resolvConf}
		return runAudit(c.stdout, o, *format, *output, *dnsServers, *roots, *stsPort)
	}
}

// runAudit runs the audit o describes and writes its report.
func runAudit(out io.Writer, o audit.Options, format, output, dnsServers, roots string, stsPort int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if roots != "" {
		pem, err := os.ReadFile(roots)
		if err != nil {
			return err
		}
		o.Roots = x509.NewCertPool()
		if !o.Roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--roots %s: no PEM certificate", roots)
		}
	}
	if dnsServers != "off" {
		var servers []string
		if dnsServers != "" {
			servers = strings.Split(dnsServers, ",")
		}
		res, err := resolver.New(resolver.Config{Servers: servers, Timeout: 3 * time.Second, CacheSize: 1000})
		if err != nil {
			return err
		}
		o.Resolver = res
		o.STS = &policy.STSFetcher{Resolver: res, Roots: o.Roots, Port: stsPort, Timeout: 10 * time.Second}
	}
	r, err := audit.Run(ctx, o)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := audit.Write(&b, format, r); err != nil {
		return err
	}
	if output != "" {
		return os.WriteFile(output, b.Bytes(), 0o644)
	}
	_, err = out.Write(b.Bytes())
	return err
}
