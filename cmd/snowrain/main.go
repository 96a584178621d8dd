// Command snowrain is the mail-security daemon and scanner: `serve` runs
// the milter, `report` prints what it recorded, `db` maintains the store.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/snowrain/snowrain/config"
)

// commands is every command and subcommand of snowrain, in the order
// `snowrain -h` and snowrain(8) list them. Adding a command is one entry:
// its name ("group sub" for a subcommand), its positional arguments, a
// one-line synopsis, and a constructor that registers its flags and
// returns its run function (see command in cli.go). A group entry
// without flags only gathers subcommands.
var commands = []*command{
	{name: "serve", synopsis: "run the milter, the TLS policy services and the delivery log follower", flags: serveFlags},

	{name: "report", synopsis: "print the mail recorded in a period (default: the last full ISO week)", flags: reportFlags},
	{name: "report scan", synopsis: "print the tables of a domain scan run (Tables 4-6, 16, Figure 4)", flags: reportScanFlags},
	{name: "report hosts", synopsis: "print the tables of a port-25 sweep run (Tables 5, 9-12)", flags: reportHostsFlags},
	{name: "report resolvers", synopsis: "print the tables of a resolver sweep run (Tables 13 and 7)", flags: reportResolversFlags},
	{name: "report exposure", synopsis: "join a period's inbound mail with the two sweeps (Tables 14 and 15)", flags: reportExposureFlags},

	{name: "scan", synopsis: "scan domains, port-25 hosts or DNS resolvers as Durumeric et al. did"},
	{name: "scan domains", synopsis: "scan domains: MX, STARTTLS, certificates, SPF, DMARC, MTA-STS, DANE", flags: scanDomainsFlags},
	{name: "scan hosts", synopsis: "sweep addresses on port 25 for STARTTLS stripping", flags: scanHostsFlags},
	{name: "scan resolvers", synopsis: "sweep addresses for open DNS resolvers falsifying MX answers", flags: scanResolversFlags},

	{name: "ingest", args: "[FILE…]", maxArgs: -1, synopsis: "import MTA logs (plain or gzip) for outbound delivery TLS", flags: ingestFlags},

	{name: "policy", synopsis: "TLS policies of the socketmap: check, list, forget, export, import"},
	{name: "policy check", args: "DOMAIN", minArgs: 1, maxArgs: 1, synopsis: "show how the policy answer for DOMAIN is decided", flags: policyCheckFlags},
	{name: "policy list", synopsis: "list the configured, imported and MTA-STS policies", flags: policyListFlags},
	{name: "policy export", synopsis: "write the policies in a form policy import reads", flags: policyListFlags},
	{name: "policy forget", args: "DOMAIN", minArgs: 1, maxArgs: 1, synopsis: "delete the imported and cached policies of DOMAIN", flags: policyForgetFlags},
	{name: "policy import", args: "[FILE]", maxArgs: 1, synopsis: "import policies: CSV (domain,policy) or STARTTLS Everywhere JSON", flags: policyImportFlags},

	{name: "reports", synopsis: "DMARC aggregate (RFC 7489) and SMTP TLS (RFC 8460) reports to the domains that ask for them"},
	{name: "reports send", synopsis: "send yesterday's (UTC) DMARC aggregate and SMTP TLS reports", flags: reportsSendFlags},
	{name: "ingest-reports", args: "PATH…", minArgs: 1, maxArgs: -1, synopsis: "read the DMARC and TLS reports receivers send us (Maildir, mbox, .eml, xml/json/gz/zip)", flags: ingestReportsFlags},

	{name: "audit", synopsis: "check the local MTA's TLS settings and its domains' DNS (paper Table 5)", flags: auditFlags},

	{name: "db", synopsis: "database maintenance: prune, vacuum, copy"},
	{name: "db prune", synopsis: "delete records older than an age", flags: dbPruneFlags},
	{name: "db vacuum", synopsis: "give the space of deleted records back to the file system", flags: dbVacuumFlags},
	{name: "db copy", synopsis: "copy a store into another, SQLite or PostgreSQL (a host joining a fleet); resumable", flags: dbCopyFlags},

	{name: "version", synopsis: "print the version", flags: versionFlags},
}

var version = "dev"

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// serveFlags are serve's: --config and an option of the configuration
// each. serve reads them again over the configuration file.
func serveFlags(fs *flag.FlagSet) runFunc {
	fs.String("config", config.DefaultPath, "configuration file (TOML); flags override it")
	probe := config.Default()
	probe.Bind(fs)
	var check bool
	checkFlag(&check)(fs)
	return func(c *call) error { return serve(c.raw) }
}

func versionFlags(*flag.FlagSet) runFunc {
	return func(c *call) error {
		_, err := fmt.Fprintln(c.stdout, "snowrain", version)
		return err
	}
}
