package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/snowrain/snowrain/config"
)

// The help texts are read by packaging/mangen to write snowrain(8): keep
// their layout (a "commands:" list of two-space-indented names, two or
// more spaces, a synopsis; flags as "  --name PLACEHOLDER" with the
// description indented below) when changing them.

// topUsage is `snowrain -h`: every command and subcommand of the table.
func topUsage() string {
	var b strings.Builder
	b.WriteString("usage: snowrain COMMAND [flags] [arguments]\n\ncommands:\n")
	listCommands(&b, commands, "")
	b.WriteString("\nsnowrain COMMAND -h shows a command's flags; snowrain --version the version.\n")
	return b.String()
}

// listCommands writes "  name   synopsis" lines, the names without
// prefix.
func listCommands(w io.Writer, cmds []*command, prefix string) {
	width := 0
	for _, c := range cmds {
		width = max(width, len(strings.TrimPrefix(c.name, prefix)))
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-*s  %s\n", width, strings.TrimPrefix(c.name, prefix), c.synopsis)
	}
}

// usageLines are the command's usage: one line, or one per subcommand
// for a group.
func usageLines(c *command) []string {
	var lines []string
	if c.flags != nil {
		l := "snowrain " + c.name
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		if countFlags(fs) > 0 {
			l += " [flags]"
		}
		lines = append(lines, strings.TrimSpace(l+" "+c.args))
	}
	if subs := subcommands(c); len(subs) > 0 {
		lines = append(lines, "snowrain "+c.name+" SUBCOMMAND [flags] [arguments]")
	}
	return lines
}

// writeUsage writes the usage lines, the first after "usage:".
func writeUsage(w io.Writer, c *command) {
	for i, l := range usageLines(c) {
		if i == 0 {
			fmt.Fprintf(w, "usage: %s\n", l)
		} else {
			fmt.Fprintf(w, "       %s\n", l)
		}
	}
}

// shortUsage follows an error on standard error: the usage lines and
// where the rest is.
func shortUsage(c *command) string {
	var b strings.Builder
	writeUsage(&b, c)
	if subs := subcommands(c); len(subs) > 0 {
		b.WriteString("subcommands:\n")
		listCommands(&b, subs, c.name+" ")
	}
	if c.flags != nil {
		fmt.Fprintf(&b, "(snowrain %s -h shows the flags)\n", c.name)
	} else {
		fmt.Fprintf(&b, "(snowrain %s SUBCOMMAND -h shows a subcommand's flags)\n", c.name)
	}
	return b.String()
}

// help is the command's -h: usage, synopsis, its own flags and its
// subcommands.
func help(c *command) string {
	var b strings.Builder
	writeUsage(&b, c)
	b.WriteString("\n" + c.synopsis + "\n")
	if c.flags != nil {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		if n := countFlags(fs); n > 0 {
			b.WriteString("\nflags:\n")
			printFlags(&b, fs)
		}
	}
	if subs := subcommands(c); len(subs) > 0 {
		b.WriteString("\nsubcommands (snowrain " + c.name + " SUBCOMMAND -h shows one's flags):\n")
		listCommands(&b, subs, c.name+" ")
	}
	return b.String()
}

// placeholder is the word for a flag's value when its description names
// none: N for numbers, DURATION for durations, else VALUE.
func placeholder(v flag.Value) string {
	var x any
	if g, ok := v.(flag.Getter); ok {
		x = g.Get()
	}
	if c, ok := v.(interface{ zero() any }); ok {
		x = c.zero()
	}
	switch x.(type) {
	case int, int64, uint, uint64, float64:
		return "N"
	case time.Duration, *config.Duration:
		return "DURATION"
	}
	return "VALUE"
}

func countFlags(fs *flag.FlagSet) int {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n
}

// printFlags lists fs's flags in name order: "  --name PLACEHOLDER", then
// the description and default indented. The placeholder is the
// back-quoted word of the description, or a word for the value's type.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		inner := *f
		for {
			u, ok := inner.Value.(interface{ Unwrap() flag.Value })
			if !ok {
				break
			}
			inner.Value = u.Unwrap()
		}
		name, usage := flag.UnquoteUsage(&inner)
		if name != "" && !strings.Contains(f.Usage, "`") {
			name = placeholder(inner.Value)
		}
		fmt.Fprintf(w, "  %s", dashed(f.Name))
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintf(w, "\n      %s", usage)
		switch d := f.DefValue; {
		case d == "", d == "false", d == "0", d == "0s", d == "[]":
		case strings.ContainsAny(d, " \t"):
			fmt.Fprintf(w, " (default %q)", d)
		default:
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	})
}
