package main

import (
	"context"
	"flag"
	"fmt"

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
		fmt.Fprintf(c.stdout, "pruned %d messages older than %s\n", n, *older)
		return nil
	}
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
