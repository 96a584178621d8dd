// Command mangen writes the snowrain(8) man page from the command
// definitions of a built snowrain binary: the command list of `snowrain -h`
// and each command's (and subcommand's) `-h` text, turned into roff. Run at
// build time (make man, make deb), so the page says what the binary does.
//
//	go run ./packaging/mangen ./snowrain > snowrain.8
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mangen SNOWRAIN_BINARY > snowrain.8")
		os.Exit(2)
	}
	if err := write(os.Stdout, os.Args[1], time.Now().UTC()); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}

// help runs the binary with args and returns what it printed (help goes to
// stdout or stderr, with exit status 0 or 2 depending on the command). Run
// by root, it runs the binary as nobody: a command that opens its default
// database before it looks at -h must not create /var/lib/snowrain on the
// build machine.
func help(bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Dir = os.TempDir()
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, _ := cmd.CombinedOutput()
	return normalize(string(out))
}

// private copies the binary where nobody can run it (the checkout may be
// below a 0700 home directory).
func private(bin string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "mangen")
	if err != nil {
		return "", nil, err
	}
	done := func() { os.RemoveAll(dir) }
	data, err := os.ReadFile(bin)
	if err == nil {
		os.Chmod(dir, 0o755)
		err = os.WriteFile(filepath.Join(dir, "snowrain"), data, 0o755)
	}
	if err != nil {
		done()
		return "", nil, err
	}
	return filepath.Join(dir, "snowrain"), done, nil
}

// normalize replaces what depends on the build machine (its host name, the
// default authserv-id) with words.
func normalize(s string) string {
	if h, err := os.Hostname(); err == nil && h != "" {
		s = strings.ReplaceAll(s, fmt.Sprintf("(default %q)", h), "(default: the host name)")
	}
	return s
}

// command is one entry of the top-level usage's command list.
type command struct{ name, summary string }

var commandLine = regexp.MustCompile(`^\s{2}([a-z][a-z-]*)\s{2,}(\S.*)$`)

// commands reads the "commands:" section of `snowrain -h`.
func commands(usage string) []command {
	var out []command
	in := false
	for _, l := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(strings.ToLower(strings.TrimSpace(l)), "commands:"):
			in = true
		case in && commandLine.MatchString(l):
			m := commandLine.FindStringSubmatch(l)
			out = append(out, command{m[1], m[2]})
		case in && strings.TrimSpace(l) == "":
			if len(out) > 0 {
				in = false
			}
		}
	}
	return out
}

// subcommands finds "snowrain CMD SUB" in a command's usage text.
func subcommands(name, text string) []string {
	re := regexp.MustCompile(`snowrain ` + regexp.QuoteMeta(name) + ` ([a-z][a-z-]+)`)
	seen := map[string]bool{}
	var out []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			out = append(out, m[1])
		}
	}
	return out
}

// esc escapes text for roff: backslashes, leading dots and quotes,
// hyphens in option names, and characters beyond ASCII as \[uXXXX].
func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-':
			b.WriteString(`\-`)
		case r > 0x7e || (r < 0x20 && r != '\t'):
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	s = b.String()
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// versionLine is what `snowrain version -h` printed before it had help.
var versionLine = regexp.MustCompile(`^snowrain [0-9a-z.+~-]+$`)

var flagLine = regexp.MustCompile(`^\s{2}(-{1,2}[A-Za-z0-9][A-Za-z0-9-]*)(?:\s+(\S+))?\s*$`)

// section renders one command's -h text: flags as tagged paragraphs, the
// rest (usage lines, notes) verbatim.
func section(w io.Writer, text string) {
	var verbatim []string
	flush := func() {
		if len(verbatim) == 0 {
			return
		}
		fmt.Fprintln(w, ".PP\n.nf")
		for _, l := range verbatim {
			fmt.Fprintln(w, esc(l))
		}
		fmt.Fprintln(w, ".fi")
		verbatim = nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	inFlag := false
	for sc.Scan() {
		l := strings.TrimPrefix(sc.Text(), "snowrain: ")
		switch {
		case strings.TrimSpace(l) == "" || strings.HasPrefix(l, "Usage of ") || strings.Contains(l, "help requested") ||
			strings.Contains(l, "unknown subcommand") || versionLine.MatchString(l):
			inFlag = false
		case flagLine.MatchString(l):
			flush()
			m := flagLine.FindStringSubmatch(l)
			name := "-" + strings.TrimLeft(m[1], "-")
			if len(name) > 2 {
				name = "-" + name // long options are written --name
			}
			fmt.Fprintf(w, ".TP\n.B %s", esc(name))
			if m[2] != "" {
				fmt.Fprintf(w, " \" \"\\fI%s\\fR", esc(m[2]))
			}
			fmt.Fprintln(w)
			inFlag = true
		case inFlag && strings.HasPrefix(l, "    "):
			fmt.Fprintln(w, esc(strings.TrimSpace(l)))
		default:
			inFlag = false
			verbatim = append(verbatim, strings.TrimRight(l, " "))
		}
	}
	flush()
}

func write(w io.Writer, bin string, now time.Time) error {
	bin, done, err := private(bin)
	if err != nil {
		return err
	}
	defer done()
	version := strings.TrimSpace(strings.TrimPrefix(help(bin, "version"), "snowrain "))
	usage := help(bin, "-h")
	cmds := commands(usage)
	if len(cmds) == 0 {
		return fmt.Errorf("%s -h lists no commands:\n%s", bin, usage)
	}
	fmt.Fprintf(w, `.\" Generated by packaging/mangen from %s's own -h texts; do not edit.
.TH SNOWRAIN 8 "%s" "snowrain %s" "System Administration"
.SH NAME
snowrain \- mail delivery security milter, policy service, scanner and report
.SH SYNOPSIS
`, "snowrain", now.Format("2006-01-02"), esc(version))
	for _, c := range cmds {
		fmt.Fprintf(w, ".B snowrain %s\n.RI [ flags ]\n.br\n", esc(c.name))
	}
	fmt.Fprint(w, `.SH DESCRIPTION
.B snowrain
records, for every message a Postfix or Sendmail server receives through its
milter, the TLS version and cipher of the connection and the SPF, DKIM and
DMARC verdicts, and reads the MTA log for outbound delivery TLS; it answers
Postfix's TLS policy lookups and policy delegation requests, scans domains
and hosts as in Durumeric et al., "Neither Snow Nor Rain Nor MITM" (IMC
2015), and writes the weekly report.
Every option of
.I /etc/snowrain/snowrain.conf
is also a flag of
.BR "snowrain serve" ;
flags win.
.SH COMMANDS
`)
	for _, c := range cmds {
		fmt.Fprintf(w, ".SS %s\n%s\n", esc("snowrain "+c.name), esc(c.summary))
		text := help(bin, c.name, "-h")
		section(w, text)
		for _, sub := range subcommands(c.name, text) {
			st := help(bin, c.name, sub, "-h")
			if !flagLine.MatchString(firstFlag(st)) {
				continue
			}
			fmt.Fprintf(w, ".SS %s\n", esc("snowrain "+c.name+" "+sub))
			section(w, st)
		}
	}
	fmt.Fprint(w, `.SH FILES
.TP
.I /etc/snowrain/snowrain.conf
configuration (TOML)
.TP
.I /var/lib/snowrain/snowrain.db
the SQLite store
.TP
.I /var/spool/postfix/snowrain/
the milter and policy sockets, below Postfix's queue directory so that a
chrooted smtpd, cleanup and smtp reach them
.SH SIGNALS
SIGHUP reloads the configuration; SIGTERM lets open sessions finish and
writes every queued record.
.SH SEE ALSO
.BR postconf (5),
.BR postfix (1),
.BR master (5),
.BR systemd.exec (5)
`)
	return nil
}

func firstFlag(text string) string {
	for _, l := range strings.Split(text, "\n") {
		if flagLine.MatchString(l) {
			return l
		}
	}
	return ""
}
