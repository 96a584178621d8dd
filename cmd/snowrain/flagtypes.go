package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/snowrain/snowrain/config"
)

// checked is a flag value parsed and checked when the flag is parsed, so
// that a wrong value is an error naming the flag before the command
// starts.
type checked[T any] struct {
	p     *T
	parse func(string) (T, error)
	show  func(T) string
}

func (v *checked[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v *checked[T]) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return v.show(*v.p)
}

// zero is a T, for the help's placeholder word.
func (v *checked[T]) zero() any { return *new(T) }

func checkedVar[T any](fs *flag.FlagSet, name string, def T, usage string, parse func(string) (T, error), show func(T) string) *T {
	p := new(T)
	*p = def
	fs.Var(&checked[T]{p: p, parse: parse, show: show}, name, usage)
	return p
}

// stringFlag is a string flag whose values check accepts.
func stringFlag(fs *flag.FlagSet, name, def, usage string, check func(string) error) *string {
	return checkedVar(fs, name, def, usage, func(s string) (string, error) { return s, check(s) },
		func(s string) string { return s })
}

// enumFlag takes one of values.
func enumFlag(fs *flag.FlagSet, name, def, usage string, values ...string) *string {
	return stringFlag(fs, name, def, usage, func(s string) error {
		for _, v := range values {
			if s == v {
				return nil
			}
		}
		return fmt.Errorf("want %s", orList(values))
	})
}

func orList(values []string) string {
	if len(values) < 2 {
		return strings.Join(values, "")
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

// intFlag takes a whole number from lo to hi (noLimit: no bound).
func intFlag[T int | int64](fs *flag.FlagSet, name string, def, lo, hi T, usage string) *T {
	return checkedVar(fs, name, def, usage, func(s string) (T, error) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < int64(lo) || n > int64(hi) {
			if hi == noLimit {
				return 0, fmt.Errorf("want a whole number, at least %d", lo)
			}
			return 0, fmt.Errorf("want a whole number from %d to %d", lo, hi)
		}
		return T(n), nil
	}, func(n T) string { return strconv.FormatInt(int64(n), 10) })
}

// noLimit is intFlag's hi for "any number".
const noLimit = 1 << 30

// rateFlag takes a number of events per second, at least lo.
func rateFlag(fs *flag.FlagSet, name string, def, lo float64, usage string) *float64 {
	return checkedVar(fs, name, def, usage, func(s string) (float64, error) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < lo || f != f || f > 1e9 {
			return 0, fmt.Errorf("want a number of at least %g", lo)
		}
		return f, nil
	}, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) })
}

// durationFlag takes a positive Go duration (20s, 1m30s).
func durationFlag(fs *flag.FlagSet, name string, def time.Duration, usage string) *time.Duration {
	return checkedVar(fs, name, def, usage, func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, errors.New("want a positive duration such as 20s or 1m30s")
		}
		return d, nil
	}, time.Duration.String)
}

// ageFlag takes an age: a number of days (400d) or a Go duration (72h).
func ageFlag(fs *flag.FlagSet, name, def, usage string) *string {
	return stringFlag(fs, name, def, usage, func(s string) error {
		_, err := parseAge(s)
		return err
	})
}

// dbFlag is --db: every command's database.
func dbFlag(fs *flag.FlagSet) *string {
	return fs.String("db", config.Default().DB, "the database: a SQLite file `PATH`, or a postgres:// URL shared by a fleet")
}

// portFlag takes a TCP or UDP port; 0 when zeroOK (the command's
// default).
func portFlag(fs *flag.FlagSet, name string, def int, zeroOK bool, usage string) *int {
	lo := 1
	if zeroOK {
		lo = 0
	}
	return intFlag(fs, name, def, lo, 65535, usage)
}

// inputFlag names a file to read; "-" is standard input.
func inputFlag(fs *flag.FlagSet, name, usage string) *string {
	return stringFlag(fs, name, "", usage, func(s string) error {
		if s == "-" {
			return nil
		}
		if err := checkFile(s); errors.Is(err, errIsDir) {
			return fmt.Errorf("%w, or - for standard input", err)
		} else if err != nil {
			return err
		}
		return nil
	})
}

// fileFlag names a file that exists (not standard input).
func fileFlag(fs *flag.FlagSet, name, usage string) *string {
	return stringFlag(fs, name, "", usage, checkFile)
}

var errIsDir = errors.New("is a directory; want a file")

// checkFile takes the path of a file that exists.
func checkFile(s string) error {
	fi, err := os.Stat(s)
	switch {
	case err != nil:
		return errors.Unwrap(err) // "no such file or directory"
	case fi.IsDir():
		return errIsDir
	}
	return nil
}

// dirFlag names a directory that exists and holds the file inside
// (empty: any directory).
func dirFlag(fs *flag.FlagSet, name, inside, usage string) *string {
	return stringFlag(fs, name, "", usage, func(s string) error {
		fi, err := os.Stat(s)
		switch {
		case err != nil:
			return errors.Unwrap(err)
		case !fi.IsDir():
			return errors.New("not a directory")
		}
		if inside != "" {
			if err := checkFile(filepath.Join(s, inside)); err != nil {
				return fmt.Errorf("no %s in it: %w", inside, err)
			}
		}
		return nil
	})
}

// outDirFlag names a directory to write into: one that exists, or one
// to be made (its path names no file).
func outDirFlag(fs *flag.FlagSet, name, usage string) *string {
	return stringFlag(fs, name, "", usage, func(s string) error {
		if s == "" {
			return errors.New("want a directory")
		}
		if fi, err := os.Stat(s); err == nil && !fi.IsDir() {
			return errors.New("is a file; want a directory")
		}
		return nil
	})
}

// dnsListFlag takes DNS servers separated by commas, each HOST:PORT.
func dnsListFlag(fs *flag.FlagSet, name, usage string) *[]string {
	return checkedVar(fs, name, nil, usage, func(s string) ([]string, error) {
		var out []string
		for _, a := range strings.Split(s, ",") {
			if err := config.CheckDNS(strings.TrimSpace(a)); err != nil {
				return nil, err
			}
			out = append(out, strings.TrimSpace(a))
		}
		return out, nil
	}, func(l []string) string { return strings.Join(l, ",") })
}

// shard is this machine's part i of n of a sweep.
type shard struct{ i, n int }

func (s shard) String() string { return fmt.Sprintf("%d/%d", s.i, s.n) }

func shardFlag(fs *flag.FlagSet, usage string) *shard {
	return checkedVar(fs, "shard", shard{0, 1}, usage, func(s string) (shard, error) {
		a, b, ok := strings.Cut(s, "/")
		i, err1 := strconv.Atoi(a)
		n, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
			return shard{}, errors.New("want i/n with 0 ≤ i < n, e.g. 0/4")
		}
		return shard{i, n}, nil
	}, shard.String)
}
