package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/report"
)

// cliResult is what a run of the real binary showed.
type cliResult struct {
	code           int
	stdout, stderr string
}

// cli runs the binary with args and stdin.
func cli(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("snowrain %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{code, out.String(), errb.String()}
}

// TestCLIHelp: -h and --help exit 0 for the top level, every command and
// every subcommand of the table, print on standard output the usage
// line, the synopsis and exactly the command's own flags, and touch no
// database; a group lists its subcommands.
func TestCLIHelp(t *testing.T) {
	top := cli(t, "", "-h")
	if top.code != 0 || top.stderr != "" {
		t.Fatalf("snowrain -h: exit %d\n%s", top.code, top.stderr)
	}
	for _, c := range commands {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c.name) + `  +` + regexp.QuoteMeta(c.synopsis) + `$`).MatchString(top.stdout) {
			t.Errorf("snowrain -h does not list %q with its synopsis", c.name)
		}
		for _, h := range []string{"-h", "--help"} {
			args := append(strings.Fields(c.name), h)
			r := cli(t, "", args...)
			if r.code != 0 || r.stderr != "" {
				t.Errorf("snowrain %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
				continue
			}
			if !regexp.MustCompile(`^usage: snowrain `+regexp.QuoteMeta(c.name)+`[ \n]`).MatchString(r.stdout) ||
				!strings.Contains(r.stdout, "\n"+c.synopsis+"\n") {
				t.Errorf("snowrain %s: no usage line or synopsis:\n%s", strings.Join(args, " "), r.stdout)
			}
			if got, want := helpFlags(r.stdout), ownFlags(t, c); !slices.Equal(got, want) {
				t.Errorf("snowrain %s lists flags %v, want %v", strings.Join(args, " "), got, want)
			}
			for _, sub := range subcommands(c) {
				if !strings.Contains(r.stdout, "\n  "+strings.TrimPrefix(sub.name, c.name+" ")+" ") {
					t.Errorf("snowrain %s does not list %q", strings.Join(args, " "), sub.name)
				}
			}
		}
	}
	if r := cli(t, "", "help", "db", "prune"); r.code != 0 || !strings.HasPrefix(r.stdout, "usage: snowrain db prune [flags]") {
		t.Errorf("snowrain help db prune: %d %s", r.code, r.stdout)
	}
}

// helpFlags are the flag names a -h text lists, in order.
func helpFlags(text string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^  --?([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// ownFlags are the flags c's constructor registers, in name order.
func ownFlags(t *testing.T, c *command) []string {
	var out []string
	if c.flags != nil {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		fs.VisitAll(func(f *flag.Flag) { out = append(out, f.Name) })
		for _, name := range out {
			if !regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`).MatchString(name) {
				t.Errorf("%s: flag name %q", c.name, name)
			}
		}
	}
	return out
}

// TestCLIVersion: both forms print the version the build stamped, as
// make stamps it (scripts/version.sh through -ldflags).
func TestCLIVersion(t *testing.T) {
	stamp, err := exec.Command("sh", "../../scripts/version.sh").Output()
	v := strings.TrimSpace(string(stamp))
	if err != nil || v == "" || v == "dev" {
		t.Fatalf("scripts/version.sh: %q %v", stamp, err)
	}
	bin := filepath.Join(t.TempDir(), "snowrain")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || string(out) != "snowrain "+v+"\n" {
			t.Errorf("snowrain %s: %v %q, want %q", args[0], err, out, "snowrain "+v)
		}
	}
}

// TestCLIUsageErrors: unknown commands and subcommands, extra or missing
// arguments and every kind of wrong flag value exit 2 with an error
// naming what is wrong, the usage on standard error and nothing on
// standard output, before anything is opened: the database named is not
// created.
func TestCLIUsageErrors(t *testing.T) {
	dir := t.TempDir() // holds no main.cf
	db := filepath.Join(dir, "never.db")
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "postfix") // a config_directory
	os.Mkdir(pf, 0o755)
	if err := os.WriteFile(filepath.Join(pf, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format("2006-01-02") // not ended whenever the binary runs
	for _, c := range []struct {
		args []string
		want string // in the first line of standard error
	}{
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"--nosuch"}, `unknown command "--nosuch"`},
		{[]string{"db", "nosuch"}, `unknown subcommand "nosuch" of db`},
		{[]string{"policy", "nosuch", "example.org"}, `unknown subcommand "nosuch" of policy`},
		{[]string{"scan", "nosuch"}, `unknown subcommand "nosuch" of scan`},
		{[]string{"report", "nosuch"}, `unknown subcommand "nosuch" of report`},
		{[]string{"policy"}, "policy takes a subcommand"},
		{[]string{"db", "--db", db}, "flag provided but not defined: -db"},
		{[]string{"db", "prune", "extra"}, `unexpected argument "extra"`},
		{[]string{"db", "vacuum", "--db", db, "extra"}, `unexpected argument "extra"`},
		{[]string{"report", "scan", "--db", db, "extra"}, `unexpected argument "extra"`},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "--db", db, "extra"}, `unexpected argument "extra"`},
		{[]string{"policy", "check", "--db", db}, "missing argument: want DOMAIN"},
		{[]string{"policy", "check", "a.example", "b.example", "--db", db}, `unexpected argument "b.example"`},
		{[]string{"policy", "forget", "--db", db}, "missing argument: want DOMAIN"},
		{[]string{"report", "--nosuch"}, "flag provided but not defined: -nosuch"},

		// Values checked when the flags are parsed.
		{[]string{"serve", "--db", db, "--dns", "nonsense:abc"}, `--dns "nonsense:abc": port "abc": want 1 to 65535`},
		{[]string{"serve", "--db", db, "--dns", "192.0.2.1:99999"}, `--dns "192.0.2.1:99999": port "99999": want 1 to 65535`},
		{[]string{"serve", "--db", db, "--dns", "bad host:53"}, `--dns "bad host:53": host "bad host" is neither an IP address nor a host name`},
		{[]string{"serve", "--db", db, "--dns", ""}, `--dns "": want HOST:PORT`},
		{[]string{"serve", "--db", db, "--milter", "tcp"}, `--milter "tcp": want unix:/PATH, inet:HOST:PORT or inet6:[HOST]:PORT`},
		{[]string{"serve", "--db", db, "--milter", "unix:milter.sock"}, `--milter "unix:milter.sock": want unix:/PATH, inet:HOST:PORT or inet6:[HOST]:PORT: the socket path must be absolute`},
		{[]string{"serve", "--db", db, "--milter", "inet:127.0.0.1"}, `--milter "inet:127.0.0.1": want unix:/PATH`},
		{[]string{"serve", "--db", db, "--milter", "inet6:[::1]:0"}, `--milter "inet6:[::1]:0": port "0": want 1 to 65535`},
		{[]string{"serve", "--db", db, "--policy-socket", "socketmap:x"}, `--policy-socket "socketmap:x": want unix:/PATH`},
		{[]string{"serve", "--db", db, "--metrics", "9425"}, `--metrics "9425": want HOST:PORT`},
		{[]string{"serve", "--db", db, "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"serve", "--db", db, "--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"serve", "--db", db, "--quarantine", "drop"}, `--quarantine "drop": want header or hold`},
		{[]string{"serve", "--db", db, "--socket-mode", "rw"}, `--socket-mode "rw": want an octal mode such as 0660`},
		{[]string{"serve", "--db", db, "--internal-network", "10.0.0.0/33"}, `--internal-network "10.0.0.0/33": want a CIDR prefix`},
		{[]string{"serve", "--db", db, "--dns-budget", "fast"}, `--dns-budget "fast": want a duration such as 5s or 1m30s`},
		{[]string{"serve", "--db", db, "--max-signatures", "many"}, `--max-signatures "many"`},
		{[]string{"policy", "check", "a.example", "--db", db, "--dns", "::1:x:y"}, `--dns "::1:x:y": want HOST:PORT`},
		{[]string{"policy", "list", "--db", db, "--format", "xml"}, `--format "xml": want csv or json`},
		{[]string{"policy", "import", "--db", db, "--input", "/nonexistent/list.csv"}, `--input "/nonexistent/list.csv": no such file or directory`},
		{[]string{"policy", "import", "--db", db}, "nothing to import: give FILE, or --input - for standard input"},
		{[]string{"report", "--db", db, "--format", "pdf"}, `--format "pdf": want text, md, json, csv or html`},
		{[]string{"report", "--db", db, "--format", "csv"}, "--format csv writes one file per table: give -o DIR/"},
		{[]string{"report", "--db", db, "--tz", "Mars/Olympus"}, `--tz "Mars/Olympus": want a time zone name`},
		{[]string{"report", "--db", db, "--mail-to", "a@example.org\r\nBcc: b@example.org"}, `--mail-to "a@example.org\r\nBcc: b@example.org": want a mail address`},
		{[]string{"report", "--db", db, "--mail-to", "a@example.org", "-o", "x.txt"}, "--mail-to and -o: give one"},
		{[]string{"report", "scan", "--db", db, "--run", "-1"}, `--run "-1": want a whole number, at least 0`},
		{[]string{"report", "hosts", "--db", db, "--domains-run", "x/y"}, `--domains-run "x/y": want a run ID or name`},
		{[]string{"report", "exposure", "--db", db, "--hosts-run", "-2"}, `--hosts-run "-2": want a whole number, at least 0`},
		{[]string{"scan", "hosts", "--db", db, "--targets", "192.0.2.0/24", "--run", "42"}, `--run "42": "42" is a run ID, not a name`},
		{[]string{"scan", "hosts", "--db", db, "--targets", "192.0.2.0/24", "--run", "a b"}, `--run "a b": a run name is letters, digits`},
		{[]string{"scan", "hosts", "--db", db, "--run", "survey", "--resume", "survey"}, "--run creates or joins a run, --resume continues one: give one"},
		{[]string{"scan", "domains", "--db", db, "--input", "-", "--node", "m 1"}, `--node "m 1": config: node "m 1": want 1 to 253 letters`},
		{[]string{"db", "prune", "--db", db, "--older-than", "7x"}, `--older-than "7x": want an age: days such as 400d, or a duration such as 72h`},
		{[]string{"db", "prune", "--db", db, "--older-than", "-1h"}, `--older-than "-1h": want an age`},
		{[]string{"db", "copy"}, "want both --from and --to"},
		{[]string{"db", "copy", "--from", file}, "want both --from and --to"},
		{[]string{"db", "copy", "--from", db, "--to", db}, "--from and --to name the same store"},
		{[]string{"db", "copy", "--from", "mysql://h/db", "--to", db}, `--from "mysql://h/db": want a SQLite file path or a postgres:// (postgresql://) URL`},
		{[]string{"db", "copy", "--from", "/nonexistent/a.db", "--to", db}, `--from "/nonexistent/a.db": no such file or directory`},
		{[]string{"db", "copy", "--from", file, "--to", db, "--max-rows", "-1"}, `--max-rows "-1": want a whole number`},
		{[]string{"db", "copy", "--from", file, "--to", db, "--node", "a b"}, `--node "a b": want letters, digits, dots, hyphens or underscores`},
		{[]string{"db", "copy", "--from", file, "--to", db, "extra"}, `unexpected argument "extra"`},
		{[]string{"report", "--db", db, "--node", ""}, `--node "": want a node name`},
		{[]string{"scan", "domains", "--db", db}, "nothing to scan: give --input FILE (- for standard input) or --from-db"},
		{[]string{"scan", "domains", "--db", db, "--input", "-", "--from-db"}, "--input and --from-db: give one"},
		{[]string{"scan", "domains", "--db", db, "--input", "-", "--dns", "127.0.0.1:53,x y"}, `--dns "127.0.0.1:53,x y": host "x y"`},
		{[]string{"scan", "domains", "--db", db, "--input", "-", "--rate", "0"}, `--rate "0": want a number of at least 0.001`},
		{[]string{"scan", "domains", "--db", db, "--input", "-", "--concurrency", "0"}, `--concurrency "0": want a whole number from 1 to`},
		{[]string{"scan", "domains", "--db", db, "--input", "-", "--timeout", "-5s"}, `--timeout "-5s": want a positive duration`},
		{[]string{"scan", "domains", "--db", db, "--input", "-", "--port", "70000"}, `--port "70000": want a whole number from 1 to 65535`},
		{[]string{"scan", "hosts", "--db", db, "--targets", "192.0.2.0/24", "--shard", "2/2"}, `--shard "2/2": want i/n with 0 ≤ i < n`},
		{[]string{"scan", "hosts", "--db", db, "--targets", "192.0.2.0/24", "--shard", "x"}, `--shard "x": want i/n`},
		{[]string{"scan", "hosts", "--db", db, "--targets", "192.0.2.0/33"}, `--targets "192.0.2.0/33": "192.0.2.0/33" is neither a CIDR prefix nor an address`},
		{[]string{"scan", "hosts", "--db", db}, "nothing to sweep: give --targets"},
		{[]string{"scan", "resolvers", "--db", db, "--targets", "192.0.2.1", "--providers", "gmail.com,not a domain"}, `--providers "gmail.com,not a domain": "not a domain" is not a domain name`},
		{[]string{"ingest", "--db", db}, "nothing to read: give FILE arguments, or --input - for standard input"},
		{[]string{"serve", "--db", db, "--check", "extra"}, `unexpected argument "extra"`},

		// The reports, ingest-reports and audit commands.
		{[]string{"reports"}, "reports takes a subcommand"},
		{[]string{"reports", "nosuch"}, `unknown subcommand "nosuch" of reports`},
		{[]string{"reports", "send", "--db", db, "extra"}, `unexpected argument "extra"`},
		{[]string{"reports", "send", "--db", db, "--period", "2026-13-01"}, `--period "2026-13-01": want a UTC day YYYY-MM-DD, e.g. 2026-11-16`},
		{[]string{"reports", "send", "--db", db, "--period", "yesterday"}, `--period "yesterday": want a UTC day YYYY-MM-DD`},
		{[]string{"reports", "send", "--db", db, "--period", tomorrow}, "--period " + tomorrow + " has not ended (UTC): want an earlier day, or --dry-run DIR"},
		{[]string{"reports", "send", "--db", db, "--kind", "dmarc,arf"}, `--kind "dmarc,arf": "arf": want dmarc or tlsrpt`},
		{[]string{"reports", "send", "--db", db, "--kind", ""}, `--kind "": "": want dmarc or tlsrpt`},
		{[]string{"reports", "send", "--db", db, "--format", "xml"}, `--format "xml": want text or json`},
		{[]string{"reports", "send", "--db", db, "--dry-run", file}, `--dry-run "` + file + `": is a file; want a directory`},
		{[]string{"reports", "send", "--db", db, "--dry-run", ""}, `--dry-run "": want a directory`},
		{[]string{"reports", "send", "--db", db, "--dns", "192.0.2.1:0"}, `--dns "192.0.2.1:0": port "0": want 1 to 65535`},
		{[]string{"reports", "send", "--db", db, "--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"ingest-reports", "--db", db}, "missing argument: want PATH…"},
		{[]string{"ingest-reports", "--db", db, "--format", "xml", file}, `--format "xml": want text or json`},
		{[]string{"ingest-reports", "--db", db, "/nonexistent/Maildir"}, `"/nonexistent/Maildir": no such file or directory`},
		{[]string{"audit", "extra"}, `unexpected argument "extra"`},
		{[]string{"audit", "--format", "xml"}, `--format "xml": want text or json`},
		{[]string{"audit", "--mta", "exim"}, `--mta "exim": want postfix or sendmail`},
		{[]string{"audit", "--config-dir", "/nonexistent/postfix"}, `--config-dir "/nonexistent/postfix": no such file or directory`},
		{[]string{"audit", "--config-dir", file}, `--config-dir "` + file + `": not a directory`},
		{[]string{"audit", "--config-dir", dir}, `--config-dir "` + dir + `": no main.cf in it`},
		{[]string{"audit", "--sendmail-cf", "/nonexistent/sendmail.cf"}, `--sendmail-cf "/nonexistent/sendmail.cf": no such file or directory`},
		{[]string{"audit", "--config-dir", pf, "--sendmail-cf", file}, "--config-dir (Postfix) and --sendmail-cf (Sendmail): audit one MTA at a time"},
		{[]string{"audit", "--mta", "sendmail", "--config-dir", pf}, "--mta sendmail with --config-dir or --sendmail-cf of the other MTA"},
		{[]string{"audit", "--dns", "x:y"}, `--dns "x:y": port "y": want 1 to 65535, or off`},
		{[]string{"audit", "--dns", "127.0.0.1:53,bad host"}, `--dns "127.0.0.1:53,bad host": host "bad host" is neither`},
		{[]string{"audit", "--roots", dir}, `--roots "` + dir + `": is a directory; want a file`},
		{[]string{"audit", "--resolv-conf", "/nonexistent/resolv.conf"}, `--resolv-conf "/nonexistent/resolv.conf": no such file`},
		{[]string{"audit", "--mta-sts-port", "70000"}, `--mta-sts-port "70000": want a whole number from 0 to 65535`},

		// Periods: the flag that is wrong, and the form it wants.
		{[]string{"report", "--db", db, "--since", "yesterday"}, `--since "yesterday": want an RFC 3339 time (2026-11-16T08:00:00Z), a date (2026-11-16) or an age (7d, 24h)`},
		{[]string{"report", "--db", db, "--since", "7d", "--until", "tomorrow"}, `--until "tomorrow": want an RFC 3339 time`},
		{[]string{"report", "--db", db, "--week", "2026-47"}, `--week "2026-47": want an ISO week YYYY-Www, e.g. 2026-W47`},
		{[]string{"report", "--db", db, "--week", "2025-W53"}, `--week "2025-W53": 2025 has weeks W01 to W52`},
		{[]string{"report", "--db", db, "--until", "2026-01-01"}, "--until 2026-01-01 needs --since: the start of the period"},
		{[]string{"report", "--db", db, "--since", "2026-02-01", "--until", "2026-01-01"}, "--until 2026-01-01 is not after --since 2026-02-01: want an end later than the start"},
		{[]string{"report", "--db", db, "--since", "2999-01-01"}, "--since 2999-01-01 is in the future"},
		{[]string{"report", "--db", db, "--week", "2026-W47", "--since", "7d"}, "--week and --since/--until: give a week or a start and end, not both"},
		{[]string{"report", "exposure", "--db", db, "--week", "W47"}, `--week "W47": want an ISO week YYYY-Www`},
	} {
		r := cli(t, "", c.args...)
		first, _, _ := strings.Cut(r.stderr, "\n")
		if r.code != 2 || !strings.Contains(first, c.want) || !strings.Contains(r.stderr, "\nusage: snowrain ") || r.stdout != "" {
			t.Errorf("snowrain %q: exit %d, want 2 and %q first, then the usage; stderr:\n%s\nstdout:\n%s",
				c.args, r.code, c.want, r.stderr, r.stdout)
		}
	}
	if _, err := os.Stat(db); err == nil {
		t.Errorf("a wrong command line created the database %s", db)
	}
}

// TestCLIStdin: --input - (and a FILE argument -) reads standard input
// wherever a command reads a file: ingest, policy import, scan domains.
func TestCLIStdin(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "s.db")
	log, err := os.ReadFile("../../measure/maillog/testdata/postfix37.log")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--input", "-"}, {"-"}} {
		r := cli(t, string(log), append([]string{"ingest", "--db", db}, args...)...)
		if r.code != 0 || !regexp.MustCompile(`^standard input: [1-9][0-9]* deliver`).MatchString(r.stdout) {
			t.Errorf("ingest %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	dns := dnstest.Start(t, "one.example. MX 10 mx.one.example.\nmx.one.example. A 127.0.0.1\n")
	list := "domain,policy\nbank.example,verify\n.corp.example,encrypt\n"
	for _, args := range [][]string{{"--input", "-"}, {"-"}} {
		r := cli(t, list, append([]string{"policy", "import", "--db", db, "--dns", dns.Addr}, args...)...)
		if r.code != 0 || r.stdout != "imported 2 policies from standard input\n" {
			t.Errorf("policy import %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := cli(t, "", "policy", "list", "--db", db, "--dns", dns.Addr); !strings.Contains(r.stdout, "bank.example,verify,imported,standard input") {
		t.Errorf("policy list after import from stdin:\n%s%s", r.stdout, r.stderr)
	}
	r := cli(t, "1,one.example\n2,two.example\n", "scan", "domains", "--input", "-", "--db", db, "--dns", dns.Addr,
		"--dry-run", "--jsonl", "-", "--mta-sts-port", "1")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, `"one.example"`) ||
		!strings.Contains(r.stderr, ": 2 domains probed;") {
		t.Errorf("scan domains --input -: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestCLIOutput: -o FILE writes that file and replaces an existing one
// whole; -o DIR/ (a trailing slash, or a directory that exists) writes a
// file named for the report and period into it and prints its path;
// CSV writes one file per table into the directory.
func TestCLIOutput(t *testing.T) {
	db := storeWith(t, time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	week := []string{"report", "--db", db, "--tz", "UTC", "--week", "2026-W47"}

	file := filepath.Join(dir, "weekly.md")
	os.WriteFile(file, []byte("an older report, much longer than the new one would ever be"+strings.Repeat(".", 1<<16)), 0o640)
	r := cli(t, "", append(week, "--format", "md", "-o", file)...)
	got, _ := os.ReadFile(file)
	if r.code != 0 || r.stdout != "" || !strings.HasPrefix(string(got), "# snowrain report") || strings.Contains(string(got), "older report") {
		t.Errorf("-o FILE: exit %d %q %s\n%.200s", r.code, r.stdout, r.stderr, got)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Errorf("replaced file has mode %v, want its old 0640", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("-o FILE left files beside it: %v", entries)
	}

	for _, c := range []struct{ o, format, want string }{
		{filepath.Join(dir, "new") + "/", "md", filepath.Join(dir, "new", "snowrain-report-2026-W47.md")},
		{dir, "json", filepath.Join(dir, "snowrain-report-2026-W47.json")},
		{dir + "/", "html", filepath.Join(dir, "snowrain-report-2026-W47.html")},
	} {
		r := cli(t, "", append(week, "--format", c.format, "-o", c.o)...)
		if r.code != 0 || r.stdout != c.want+"\n" {
			t.Errorf("-o %s: exit %d, printed %q, want %q; %s", c.o, r.code, r.stdout, c.want, r.stderr)
		}
		if data, err := os.ReadFile(c.want); err != nil || !strings.Contains(string(data), "snowrain report") {
			t.Errorf("-o %s: %v", c.o, err)
		}
	}
	r = cli(t, "", "report", "--db", db, "--tz", "UTC", "--since", "2026-11-16", "--until", "2026-11-18", "-o", dir)
	if want := filepath.Join(dir, "snowrain-report-2026-11-16_2026-11-17.txt"); r.code != 0 || r.stdout != want+"\n" {
		t.Errorf("-o DIR for two days: %q, want %q; %s", r.stdout, want, r.stderr)
	}
	r = cli(t, "", "report", "scan", "--db", db, "-o", dir, "--format", "md")
	if want := filepath.Join(dir, "snowrain-scan-norun.md"); r.code != 0 || r.stdout != want+"\n" {
		t.Errorf("report scan -o DIR: %q, want %q; %s", r.stdout, want, r.stderr)
	}

	csv := filepath.Join(dir, "csv") + "/"
	if r := cli(t, "", append(week, "--format", "csv", "-o", csv)...); r.code != 0 {
		t.Fatalf("csv: %d %s", r.code, r.stderr)
	}
	for _, name := range []string{"meta.csv", "tables.csv", "table3.csv"} {
		if _, err := os.Stat(filepath.Join(csv, name)); err != nil {
			t.Errorf("csv: %v", err)
		}
	}
	if meta, _ := os.ReadFile(filepath.Join(csv, "meta.csv")); !strings.Contains(string(meta), "2026-11-16") {
		t.Errorf("meta.csv:\n%s", meta)
	}
}

// TestCLIEmptyPeriod: the default report over a period without mail
// exits 0, says so and names the week that holds mail.
func TestCLIEmptyPeriod(t *testing.T) {
	at := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	r := cli(t, "", "report", "--db", storeWith(t, at), "--tz", "UTC")
	if r.code != 0 || !strings.Contains(r.stdout, "No mail was recorded in this period") ||
		!strings.Contains(r.stdout, "snowrain report --week 2026-W10") {
		t.Errorf("report over an empty period: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestPeriodName names files by ISO week, days or minutes.
func TestPeriodName(t *testing.T) {
	utc := func(d ...int) time.Time { return time.Date(d[0], time.Month(d[1]), d[2], d[3], d[4], 0, 0, time.UTC) }
	for _, c := range []struct {
		since, until time.Time
		want         string
	}{
		{utc(2026, 11, 16, 0, 0), utc(2026, 11, 23, 0, 0), "2026-W47"},
		{utc(2026, 12, 28, 0, 0), utc(2027, 1, 4, 0, 0), "2026-W53"},
		{utc(2026, 11, 17, 0, 0), utc(2026, 11, 24, 0, 0), "2026-11-17_2026-11-23"},
		{utc(2026, 11, 17, 0, 0), utc(2026, 11, 18, 0, 0), "2026-11-17"},
		{utc(2026, 11, 17, 8, 30), utc(2026, 11, 18, 8, 30), "20261117T0830_20261118T0830"},
	} {
		if got := periodName(report.Period{Since: c.since, Until: c.until}); got != c.want {
			t.Errorf("periodName(%v, %v) = %q, want %q", c.since, c.until, got, c.want)
		}
	}
}
