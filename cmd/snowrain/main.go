// Command snowrain is the mail-security daemon and scanner: `serve` runs
// the milter, `report` prints what it recorded, `db` maintains the store.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: snowrain <command> [flags]

commands:
  serve     run the milter (flags: snowrain serve -h)
  report    print the recorded counts for a period
  scan      scan domains: STARTTLS, certificates, SPF, DMARC, MTA-STS, DANE
  ingest    import MTA logs (plain or gzip) for outbound delivery TLS
  policy    TLS policies: check DOMAIN, list, forget DOMAIN, export, import FILE
  reports   send DMARC aggregate and SMTP TLS reports: reports send [--dry-run DIR] [--period DAY]
  ingest-reports  read the DMARC and TLS reports receivers send us (Maildir, mbox, .eml, xml/json/gz/zip)
  audit     check the local MTA's TLS settings and its domains' DNS (paper Table 5)
  db        database maintenance: prune, vacuum
  version   print the version
`

var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "report":
		err = runReport(args, os.Stdout)
	case "scan":
		err = runScan(args, os.Stdout)
	case "ingest":
		err = ingest(args, os.Stdout)
	case "policy":
		err = runPolicy(args, os.Stdout)
	case "reports":
		err = runReports(args, os.Stdout)
	case "ingest-reports":
		err = runIngestReports(args, os.Stdout)
	case "audit":
		err = runAudit(args, os.Stdout)
	case "db":
		err = db(args, os.Stdout)
	case "version", "--version":
		fmt.Println("snowrain", version)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "snowrain: unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "snowrain:", err)
		os.Exit(1)
	}
}
