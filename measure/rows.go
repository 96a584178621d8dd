package measure

import (
	"context"
	"database/sql"
)

// Querier runs a query: *sql.DB, *sql.Conn and *sql.Tx are one.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Each runs query with args and calls fn on every row; fn reads the row
// with rows.Scan and returns its error. Each closes the rows and returns
// the first error: the query's, fn's, or the one that ended the iteration
// early (rows.Err), so that a failed scan or a read cut short is never
// taken for fewer rows.
func Each(ctx context.Context, q Querier, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

// Rows runs query with args and returns one T per row, read by scan, with
// the errors of Each.
func Rows[T any](ctx context.Context, q Querier, query string, args []any, scan func(*sql.Rows) (T, error)) ([]T, error) {
	var out []T
	err := Each(ctx, q, query, args, func(r *sql.Rows) error {
		v, err := scan(r)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Column reads a row of one column as a T: the scan function of Rows for
// a query that selects one value per row.
func Column[T any](r *sql.Rows) (T, error) {
	var v T
	err := r.Scan(&v)
	return v, err
}
