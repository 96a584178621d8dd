package scanner

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/snowrain/snowrain/measure"
)

// eachStored calls fn with every result run id stored in table
// (scan_domains, scan_ips, scan_hosts or scan_resolvers), decoded. A row
// that does not decode is passed over, as the tables always did; a row
// that cannot be read ends the walk with its error.
func eachStored[T any](ctx context.Context, db *sql.DB, table string, id int64, fn func(*T)) error {
	err := measure.Each(ctx, db, `SELECT result FROM `+table+` WHERE run_id = ?`, []any{id}, func(rows *sql.Rows) error {
		js, err := measure.Column[[]byte](rows)
		if err != nil {
			return err
		}
		v := new(T)
		if json.Unmarshal(js, v) == nil {
			fn(v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scanner: read %s of run %d: %w", table, id, err)
	}
	return nil
}
