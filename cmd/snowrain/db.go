package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/snowrain/snowrain/measure"
)

func db(args []string, out io.Writer) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: snowrain db prune --older-than 400d | db vacuum [--db PATH]")
	}
	sub := args[0]
	fs := flag.NewFlagSet("db "+sub, flag.ContinueOnError)
	dbPath := fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path")
	older := fs.String("older-than", "400d", "prune: delete records older than this age")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx := context.Background()
	store, err := measure.Open(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	switch sub {
	case "prune":
		age, err := parseAge(*older)
		if err != nil {
			return err
		}
		n, err := store.Prune(ctx, age)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "pruned %d messages older than %s\n", n, *older)
		return nil
	case "vacuum":
		return store.Vacuum(ctx)
	}
	return fmt.Errorf("db: unknown subcommand %q", sub)
}
