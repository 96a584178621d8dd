package measure

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

// TestRows: Rows and Each return every row, and every way a read can fail
// is an error, never a shorter result: a failed query, a failed scan, and
// an error that ends the iteration after some rows.
func TestRows(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	if _, err := s.DB.ExecContext(ctx, `CREATE TABLE rows_test (n INTEGER, s TEXT);
		INSERT INTO rows_test VALUES (1, 'a'), (2, 'b'), (3, 'c')`); err != nil {
		t.Fatal(err)
	}

	names, err := Rows(ctx, s.DB, `SELECT s FROM rows_test WHERE n >= ? ORDER BY n`, []any{2}, Column[string])
	if err != nil || strings.Join(names, ",") != "b,c" {
		t.Errorf("Rows(Column): %q, %v", names, err)
	}
	type pair struct {
		n int
		s string
	}
	pairs, err := Rows(ctx, s.DB, `SELECT n, s FROM rows_test ORDER BY n`, nil, func(r *sql.Rows) (pair, error) {
		var p pair
		err := r.Scan(&p.n, &p.s)
		return p, err
	})
	if err != nil || len(pairs) != 3 || pairs[2] != (pair{3, "c"}) {
		t.Errorf("Rows(pair): %v, %v", pairs, err)
	}
	none, err := Rows(ctx, s.DB, `SELECT s FROM rows_test WHERE n > 9`, nil, Column[string])
	if err != nil || len(none) != 0 {
		t.Errorf("no rows: %q, %v", none, err)
	}
	sum := 0
	if err := Each(ctx, s.DB, `SELECT n FROM rows_test`, nil, func(r *sql.Rows) error {
		var n int
		err := r.Scan(&n)
		sum += n
		return err
	}); err != nil || sum != 6 {
		t.Errorf("Each: sum %d, %v", sum, err)
	}

	// A query that does not compile.
	if _, err := Rows(ctx, s.DB, `SELECT nope FROM rows_test`, nil, Column[string]); err == nil {
		t.Error("bad query: no error")
	}
	// A value that does not scan into the type asked for.
	if got, err := Rows(ctx, s.DB, `SELECT s FROM rows_test ORDER BY n`, nil, Column[int]); err == nil || got != nil {
		t.Errorf("text into int: %v, %v", got, err)
	}
	// SQLite fails on the third row (abs of the smallest integer
	// overflows; no ORDER BY, which would compute every row before the
	// first): the two rows read before are not a result.
	rows := 0
	err = Each(ctx, s.DB, `SELECT CASE WHEN n < 3 THEN n ELSE abs(n * 0 - 9223372036854775807 - 1) END
		FROM rows_test`, nil, func(r *sql.Rows) error {
		rows++
		var n int64
		return r.Scan(&n)
	})
	if err == nil || !strings.Contains(err.Error(), "overflow") || rows != 2 {
		t.Errorf("error on row 3: %d rows read, %v", rows, err)
	}
	if got, err := Rows(ctx, s.DB, `SELECT CASE WHEN n < 3 THEN n ELSE abs(n * 0 - 9223372036854775807 - 1) END
		FROM rows_test`, nil, Column[int64]); err == nil || got != nil {
		t.Errorf("Rows with an error on row 3: %v, %v", got, err)
	}
	// A Tx is a Querier too.
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if n, err := Rows(ctx, tx, `SELECT n FROM rows_test`, nil, Column[int]); err != nil || len(n) != 3 {
		t.Errorf("in a transaction: %v, %v", n, err)
	}
}
