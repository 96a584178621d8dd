// Command mangen writes the snowrain(8) man page from the command
// definitions of a built snowrain binary: the command list of `snowrain -h`
// (every command and subcommand of cmd/snowrain's command table) and each
// one's `-h` text, turned into roff. Run at build time (make man, make deb),
// so the page says what the binary does; nothing here lists commands.
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

// help runs the binary with args (ending in -h) and returns what it
// printed on standard output; every -h exits 0, so anything else is an
// error. Run by root, it runs the binary as nobody: nothing a help text
// needs may touch the build machine.
func help(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Dir = os.TempDir()
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("snowrain %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return normalize(string(out)), nil
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
		s = strings.ReplaceAll(s, fmt.Sprintf("(default %s)\n", h), "(default: the host name)\n")
	}
	return s
}

// command is one entry of the top-level usage's command list: a command
// ("report") or a subcommand ("report scan").
type command struct{ name, summary string }

var commandLine = regexp.MustCompile(`^\s{2}([a-z][a-z-]*(?: [a-z][a-z-]*)*)\s{2,}(\S.*)$`)

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

var flagLine = regexp.MustCompile(`^\s{2}(-{1,2}[A-Za-z0-9][A-Za-z0-9-]*)(?:\s+(\S+))?\s*$`)

// section renders one command's -h text: flags as tagged paragraphs, the
// rest (usage lines, subcommand lists) verbatim; the synopsis, already
// under the heading, and the "flags:" heading are left out.
func section(w io.Writer, text, synopsis string) {
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
		l := sc.Text()
		switch {
		case strings.TrimSpace(l) == "" || l == synopsis || l == "flags:":
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
	v, err := help(bin, "version")
	if err != nil {
		return err
	}
	version := strings.TrimSpace(strings.TrimPrefix(v, "snowrain "))
	usage, err := help(bin, "-h")
	if err != nil {
		return err
	}
	cmds := commands(usage)
	if len(cmds) == 0 {
		return fmt.Errorf("%s -h lists no commands:\n%s", bin, usage)
	}
	texts := make([]string, len(cmds))
	for i, c := range cmds {
		if texts[i], err = help(bin, append(strings.Fields(c.name), "-h")...); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, `.\" Generated by packaging/mangen from %s's own -h texts; do not edit.
.TH SNOWRAIN 8 "%s" "snowrain %s" "System Administration"
.SH NAME
snowrain \- mail delivery security milter, policy service, scanner and report
.SH SYNOPSIS
`, "snowrain", now.Format("2006-01-02"), esc(version))
	for i, c := range cmds {
		for _, l := range usageLines(texts[i]) {
			name := "snowrain " + c.name
			fmt.Fprintf(w, ".B %s\n", esc(name))
			if rest := strings.TrimSpace(strings.TrimPrefix(l, name)); rest != "" {
				fmt.Fprintln(w, esc(rest))
			}
			fmt.Fprintln(w, ".br")
		}
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
Flags and arguments may come in any order;
.B \-h
shows a command's own flags.
A file argument or
.B \-\-input
of
.B \-
reads standard input.
Exit status: 0 on success, 1 when the command failed, 2 for a wrong command line.
.SH COMMANDS
`)
	for i, c := range cmds {
		fmt.Fprintf(w, ".SS %s\n%s\n", esc("snowrain "+c.name), esc(c.summary))
		section(w, texts[i], c.summary)
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

// usageLines are a -h text's usage lines of a command that runs
// ("snowrain db prune [flags]"), without the "usage:" word; a group's
// "SUBCOMMAND" line is left out.
func usageLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "usage: ") && !strings.HasPrefix(l, "       snowrain ") {
			continue
		}
		if l = strings.TrimSpace(strings.TrimPrefix(l, "usage:")); !strings.Contains(l, "SUBCOMMAND") {
			out = append(out, l)
		}
	}
	return out
}
