package main

import (
	"context"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// postgresCheckTimeout bounds serve --check's wait for a PostgreSQL
// server that does not answer.
const postgresCheckTimeout = 15 * time.Second

// postgres checks a shared PostgreSQL store: the server answers, its
// schema is one this binary can migrate (an empty database is: serve
// creates the tables), and this user may write there (a row, or on an
// empty database a table, rolled back).
func (c *checker) postgres(ctx context.Context, dsn string) {
	what := "database " + measure.Redact(dsn)
	ctx, cancel := context.WithTimeout(ctx, postgresCheckTimeout)
	defer cancel()
	store, err := measure.OpenReadOnly(ctx, dsn)
	if err != nil {
		c.line("FAIL", what, "cannot connect: %v", err)
		return
	}
	defer store.Close()
	have, err := store.SchemaVersion(ctx)
	want := measure.LatestSchema()
	switch {
	case err != nil:
		c.line("FAIL", what, "schema: %v", err)
		return
	case have > want:
		c.line("FAIL", what, "schema %d is newer than this binary's %d", have, want)
		return
	case have == 0:
		c.line("ok", what, "connects; empty: serve creates schema %d", want)
	case have < want:
		c.line("ok", what, "connects; schema %d, serve migrates it to %d", have, want)
	default:
		c.line("ok", what, "connects; schema %d is current", have)
	}
	if err := store.CheckWritable(ctx); err != nil {
		c.line("FAIL", what, "%v", err)
		return
	}
	c.line("ok", what, "writable")
}
