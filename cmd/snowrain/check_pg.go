package main

import (
	"context"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// postgresCheckTimeout bounds serve --check's wait for a PostgreSQL
// server that does not answer.
const postgresCheckTimeout = 15 * time.Second

// postgresWritable checks that this role may write the shared database: a
// row, or on an empty database a table, rolled back.
func (c *checker) postgresWritable(ctx context.Context, what string, store *measure.Store) {
	if err := store.CheckWritable(ctx); err != nil {
		c.line("FAIL", what, "%v", err)
		return
	}
	c.line("ok", what, "writable")
}
