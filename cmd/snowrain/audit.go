package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/audit"
	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
)

// auditFlags is `snowrain audit`: the local MTA's TLS configuration
// checked the way the paper checked MTAs (Table 5), and the domains it
// receives mail for.
func auditFlags(fs *flag.FlagSet) runFunc {
	format := enumFlag(fs, "format", audit.FormatText, "output `FORMAT`: text or json", audit.FormatText, audit.FormatJSON)
	output := fs.String("o", "", "write to `PATH`, not standard output: a file (replaced whole), or a directory (PATH/, or one that exists) "+
		"that gets a file named for the audit and the day")
	mta := enumFlag(fs, "mta", "", "`MTA` to audit: postfix or sendmail (default: postfix when postconf runs, else sendmail)", "postfix", "sendmail")
	configDir := dirFlag(fs, "config-dir", "main.cf", "Postfix config_directory `DIR` of a non-default instance (postconf -c)")
	cf := fileFlag(fs, "sendmail-cf", "Sendmail configuration `FILE` (default /etc/mail/sendmail.cf)")
	dnsServers := stringFlag(fs, "dns", "", "resolvers `HOST:PORT`, comma separated, for the received domains' records (default: /etc/resolv.conf); off: no lookups",
		func(s string) error {
			if s == "off" {
				return nil
			}
			for _, a := range strings.Split(s, ",") {
				if err := config.CheckDNS(strings.TrimSpace(a)); err != nil {
					return fmt.Errorf("%w, or off", err)
				}
			}
			return nil
		})
	roots := fileFlag(fs, "roots", "PEM roots in `FILE` a certificate chain is checked against (default: Debian's Mozilla bundle)")
	resolvConf := fileFlag(fs, "resolv-conf", "resolv.conf `FILE` the SMTP client uses (default: the chroot's or /etc/resolv.conf)")
	stsPort := portFlag(fs, "mta-sts-port", 0, true, "HTTPS port for MTA-STS fetches (tests; 0: 443)")
	return func(c *call) error {
		if *mta == "postfix" && *cf != "" || *mta == "sendmail" && *configDir != "" {
			return usagef("--mta %s with --config-dir or --sendmail-cf of the other MTA: give the one of --mta", *mta)
		}
		if *configDir != "" && *cf != "" {
			return usagef("--config-dir (Postfix) and --sendmail-cf (Sendmail): audit one MTA at a time")
		}
		o := audit.Options{MTA: *mta, ConfigDir: *configDir, SendmailCF: *cf, ResolvConf: *resolvConf}
		var servers []string
		if *dnsServers != "" && *dnsServers != "off" {
			for _, a := range strings.Split(*dnsServers, ",") {
				servers = append(servers, strings.TrimSpace(a))
			}
		}
		b, err := runAudit(o, *dnsServers != "off", servers, *roots, *stsPort, *format)
		if err != nil {
			return err
		}
		ext := map[string]string{audit.FormatText: ".txt", audit.FormatJSON: ".json"}[*format]
		return writeOutput(c, *output, b, "snowrain-audit-"+time.Now().Format("2006-01-02")+ext)
	}
}

// runAudit runs the audit o describes, looking the received domains up
// when lookups is set (servers: the resolvers, none: /etc/resolv.conf's),
// and renders its report in format.
func runAudit(o audit.Options, lookups bool, servers []string, roots string, stsPort int, format string) ([]byte, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if roots != "" {
		pem, err := os.ReadFile(roots)
		if err != nil {
			return nil, err
		}
		o.Roots = x509.NewCertPool()
		if !o.Roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--roots %s: no PEM certificate", roots)
		}
	}
	if lookups {
		res, err := resolver.New(resolver.Config{Servers: servers, Timeout: 3 * time.Second, CacheSize: 1000})
		if err != nil {
			return nil, err
		}
		o.Resolver = res
		o.STS = &policy.STSFetcher{Resolver: res, Roots: o.Roots, Port: stsPort, Timeout: 10 * time.Second}
	}
	r, err := audit.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := audit.Write(&b, format, r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
