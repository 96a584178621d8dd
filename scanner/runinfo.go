package scanner

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// RunInfo is what a report heading says about a stored run.
type RunInfo struct {
	ID       int64
	Kind     string    // domains, hosts, resolvers
	Input    string    // what was scanned, as the command described it
	Started  time.Time // UTC
	Finished time.Time // zero while running, or when interrupted
}

// LatestRun returns the newest run of kind; ok is false when there is none.
func LatestRun(ctx context.Context, db *sql.DB, kind string) (RunInfo, bool, error) {
	var id int64
	err := db.QueryRowContext(ctx, `SELECT id FROM scan_runs WHERE kind = ? ORDER BY id DESC LIMIT 1`, kind).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return RunInfo{}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, fmt.Errorf("scanner: latest %s run: %w", kind, err)
	}
	return LoadRun(ctx, db, id)
}

// LoadRun reads run id; ok is false when it does not exist.
func LoadRun(ctx context.Context, db *sql.DB, id int64) (RunInfo, bool, error) {
	r := RunInfo{ID: id}
	var started int64
	var finished sql.NullInt64
	err := db.QueryRowContext(ctx, `SELECT kind, input, started_at, finished_at FROM scan_runs WHERE id = ?`, id).
		Scan(&r.Kind, &r.Input, &started, &finished)
	if errors.Is(err, sql.ErrNoRows) {
		return RunInfo{ID: id}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, fmt.Errorf("scanner: run %d: %w", id, err)
	}
	r.Started = time.Unix(started, 0).UTC()
	if finished.Valid {
		r.Finished = time.Unix(finished.Int64, 0).UTC()
	}
	return r, true, nil
}
