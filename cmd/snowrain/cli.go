package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one entry of the command table (commands, in main.go): main
// dispatches from it, -h prints it, and packaging/mangen builds
// snowrain(8) from what -h prints.
type command struct {
	// name is the command as typed: "report", or "report scan" for a
	// subcommand.
	name string
	// args names the positional arguments in the usage line ("DOMAIN",
	// "[FILE…]"); minArgs and maxArgs bound their number (maxArgs < 0:
	// no bound). Both 0: none.
	args             string
	minArgs, maxArgs int
	// synopsis is the line `snowrain -h` and the command's -h show.
	synopsis string
	// flags registers the command's own flags on fs and returns what runs
	// with their values once parsed. It has no other effect: -h and the
	// man page call it without running anything. Nil for a group of
	// subcommands (policy, db, scan), which does not run.
	flags func(fs *flag.FlagSet) runFunc
}

// runFunc runs a command whose flags were parsed.
type runFunc func(c *call) error

// call is what a command runs with.
type call struct {
	args   []string      // positional arguments, flags taken out
	raw    []string      // every argument after the command's name, as given
	fs     *flag.FlagSet // the parsed flags, to ask which were given
	stdin  io.Reader
	stdout io.Writer
}

// given reports whether the flag name was on the command line.
func (c *call) given(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// A usageError is a wrong command line: exit status 2, with the usage on
// standard error. Commands return one (usagef) for flag combinations
// that parse but do not go together.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// lookup finds a command of the table by name.
func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// subcommands are the entries below c ("report scan" for "report").
func subcommands(c *command) []*command {
	var out []*command
	for _, s := range commands {
		if strings.HasPrefix(s.name, c.name+" ") {
			out = append(out, s)
		}
	}
	return out
}

// runMain runs the command line argv (without the program name) and
// returns the exit status: 0, 1 when the command failed, 2 for a wrong
// command line.
func runMain(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(argv) == 0 {
		fmt.Fprint(stderr, topUsage())
		return 2
	}
	switch argv[0] {
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, topUsage())
		return 0
	case "--version", "-version":
		argv = []string{"version"}
	case "help":
		if len(argv) == 1 {
			fmt.Fprint(stdout, topUsage())
			return 0
		}
		argv = append(argv[1:], "-h")
	}
	cmd, rest, err := find(argv)
	if err != nil {
		fmt.Fprintf(stderr, "snowrain: %v\n", err)
		if cmd != nil {
			fmt.Fprint(stderr, shortUsage(cmd))
		} else {
			fmt.Fprint(stderr, topUsage())
		}
		return 2
	}
	err = parseAndRun(cmd, rest, stdin, stdout)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, help(cmd))
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "snowrain %s: %v\n", cmd.name, ue.err)
		fmt.Fprint(stderr, shortUsage(cmd))
		return 2
	}
	fmt.Fprintf(stderr, "snowrain %s: %v\n", cmd.name, err)
	return 1
}

// find picks the command argv names: a command of the table, then one of
// its subcommands when the next word is one. A group without a known
// subcommand and a word that is neither a subcommand nor an argument the
// command takes are errors.
func find(argv []string) (*command, []string, error) {
	cmd := lookup(argv[0])
	if cmd == nil || strings.HasPrefix(argv[0], "-") {
		return nil, nil, fmt.Errorf("unknown command %q", argv[0])
	}
	rest := argv[1:]
	subs := subcommands(cmd)
	if len(subs) == 0 {
		return cmd, rest, nil
	}
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		if sub := lookup(cmd.name + " " + rest[0]); sub != nil {
			return sub, rest[1:], nil
		}
		if cmd.flags == nil || cmd.maxArgs == 0 {
			return cmd, nil, fmt.Errorf("unknown subcommand %q of %s", rest[0], cmd.name)
		}
	}
	return cmd, rest, nil
}

// parseAndRun parses cmd's flags from args (flags and arguments in any
// order; "--" ends the flags) and runs it.
func parseAndRun(cmd *command, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("snowrain "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var run runFunc
	if cmd.flags != nil {
		run = cmd.flags(fs)
	}
	bad := nameErrors(fs)
	pos, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return err
	case err != nil && *bad != nil:
		return &usageError{*bad}
	case err != nil:
		return &usageError{err}
	case run == nil:
		if len(pos) > 0 {
			return usagef("unknown subcommand %q", pos[0])
		}
		return usagef("which one? %s takes a subcommand", cmd.name)
	case len(pos) < cmd.minArgs:
		return usagef("missing argument: want %s", cmd.args)
	case cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs:
		return usagef("unexpected argument %q", pos[cmd.maxArgs])
	}
	return run(&call{args: pos, raw: args, fs: fs, stdin: stdin, stdout: stdout})
}

// parseInterspersed parses flags before, between and after positional
// arguments, which it returns in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagValueError is a value a flag refused: it names the flag and says
// what the flag wants.
type flagValueError struct {
	name, value string
	err         error
}

func (e *flagValueError) Error() string {
	return fmt.Sprintf("%s %q: %v", dashed(e.name), e.value, e.err)
}

func (e *flagValueError) Unwrap() error { return e.err }

// nameErrors makes every flag of fs keep the error of a refused value
// with the flag's name, in the returned place: the flag package's own
// message puts the name first and the reason after the value.
func nameErrors(fs *flag.FlagSet) *error {
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		hook(fs, f, func(value string, err error) {
			if err != nil && bad == nil {
				bad = &flagValueError{name: f.Name, value: value, err: err}
			}
		})
	})
	return &bad
}

// hook puts f into fs (again) with a value that calls after with each
// value given and Set's error.
func hook(fs *flag.FlagSet, f *flag.Flag, after func(value string, err error)) {
	h := hookedValue{Value: f.Value, after: after}
	var v flag.Value = h
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		v = hookedBool{h}
	}
	if g := fs.Lookup(f.Name); g != nil {
		g.Value = v
		return
	}
	fs.Var(v, f.Name, f.Usage)
}

type hookedValue struct {
	flag.Value
	after func(string, error)
}

func (v hookedValue) Set(s string) error {
	err := v.Value.Set(s)
	v.after(s, err)
	return err
}

// String is called on the zero value too (flag.PrintDefaults).
func (v hookedValue) String() string {
	if v.Value == nil {
		return ""
	}
	return v.Value.String()
}

// Unwrap is the value without the hook (for help texts).
func (v hookedValue) Unwrap() flag.Value { return v.Value }

type hookedBool struct{ hookedValue }

func (hookedBool) IsBoolFlag() bool { return true }

// dashed is a flag's name as the help shows it: -o, --db.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// stdinOr opens path for reading; "-" is standard input.
func stdinOr(c *call, path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(c.stdin), nil
	}
	return os.Open(path)
}
