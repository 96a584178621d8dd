package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/snowrain/snowrain/measure"
)

// dbPruneFlags is `snowrain db prune`.
func dbPruneFlags(fs *flag.FlagSet) runFunc {
	dbPath := dbFlag(fs)
	older := ageFlag(fs, "older-than", "400d", "delete records older than this `AGE`: days such as 400d, or a duration such as 72h")
	return func(c *call) error {
		age, _ := parseAge(*older) // checked when parsed
		ctx := context.Background()
		store, err := measure.Open(ctx, *dbPath)
		if err != nil {
			return err
		}
		defer store.Close()
		n, err := store.Prune(ctx, age)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("pruned %d messages older than %s", n["messages"], *older)
		if rest := byTable(n, "messages"); rest != "" {
			line += "; other tables: " + rest
		}
		fmt.Fprintln(c.stdout, line)
		return nil
	}
}

// byTable lists the tables with rows, but skip: "table n, …".
func byTable(n map[string]int64, skip string) string {
	var parts []string
	for t, k := range n {
		if t != skip && k > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, k))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// dbVacuumFlags is `snowrain db vacuum`.
func dbVacuumFlags(fs *flag.FlagSet) runFunc {
	dbPath := dbFlag(fs)
	return func(c *call) error {
		ctx := context.Background()
		store, err := measure.Open(ctx, *dbPath)
		if err != nil {
			return err
		}
		defer store.Close()
		return store.Vacuum(ctx)
	}
}

// dbCopyFlags is `snowrain db copy`: a store into another, SQLite and
// PostgreSQL either way (measure.Copy).
func dbCopyFlags(fs *flag.FlagSet) runFunc {
	from := stringFlag(fs, "from", "", "copy from the store at `PATH|URL`: a SQLite file or a postgres:// URL (read only)", checkDSN)
	to := stringFlag(fs, "to", "", "copy into the store at `PATH|URL`, created or migrated as needed; its rows are kept", checkDSN)
	node := stringFlag(fs, "node", "", "name the copied rows that name no node (written before snowrain knew nodes) `NAME`",
		func(s string) error {
			if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != "" {
				return errors.New("want letters, digits, dots, hyphens or underscores")
			}
			return nil
		})
	maxRows := intFlag(fs, "max-rows", int64(0), 0, 1<<62, "stop after about `N` rows (0: copy everything); the next run goes on")
	return func(c *call) error {
		if *from == "" || *to == "" {
			return usagef("want both --from and --to")
		}
		src, dst := absDSN(*from), absDSN(*to)
		if src == dst {
			return usagef("--from and --to name the same store")
		}
		if !measure.IsPostgres(src) {
			if _, err := os.Stat(src); err != nil {
				return usagef("--from %q: %v", src, errors.Unwrap(err))
			}
		}
		ctx := context.Background()
		in, err := measure.OpenReadOnly(ctx, src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := measure.Open(ctx, dst)
		if err != nil {
			return err
		}
		defer out.Close()
		st, err := measure.Copy(ctx, out, in, measure.CopyOptions{Node: *node, MaxRows: *maxRows})
		if st != nil {
			var total int64
			for _, n := range st.Rows {
				total += n
			}
			state := "complete"
			if !st.Done {
				state = "stopped at --max-rows; run it again to go on"
			}
			line := fmt.Sprintf("copied %d rows from %s to %s (%s)", total, in.Path, out.Path, state)
			if rows := byTable(st.Rows, ""); rows != "" {
				line += ": " + rows
			}
			fmt.Fprintln(c.stdout, line)
		}
		return err
	}
}

// checkDSN takes a SQLite path or a postgres:// URL.
func checkDSN(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("want a SQLite file path or a postgres:// URL")
	}
	if strings.Contains(s, "://") && !measure.IsPostgres(s) {
		return errors.New("want a SQLite file path or a postgres:// (postgresql://) URL")
	}
	return nil
}

// absDSN makes a SQLite path absolute: a copy's progress names its
// source by path, whatever directory it was run from.
func absDSN(s string) string {
	if measure.IsPostgres(s) {
		return s
	}
	if a, err := filepath.Abs(s); err == nil {
		return a
	}
	return s
}
