// Package measure holds snowrain's SQLite store: the schema and its
// migrations, the batching writer that records events without ever
// blocking mail, and the queries behind the reports.
package measure

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver
)

// Store is an open snowrain database.
type Store struct {
	DB   *sql.DB
	Path string
}

// Open opens (creating if needed) the database at path in WAL mode and
// brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("measure: %w", err)
		}
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_synchronous", "NORMAL")
	q.Set("_mutex", "no")          // database/sql never shares a connection; the locks cost 10% of ingest
	q.Set("_cache_size", "-32000") // KiB: keeps index pages of a week in memory
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("measure: open %s: %w", path, err)
	}
	s := &Store{DB: db, Path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// OpenReadOnly opens an existing database for reports without migrating it.
func OpenReadOnly(ctx context.Context, path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return nil, fmt.Errorf("measure: open %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("measure: open %s: %w", path, err)
	}
	return &Store{DB: db, Path: path}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.DB.Close() }

// Prune deletes records older than age and returns how many messages went.
func (s *Store) Prune(ctx context.Context, age time.Duration) (int64, error) {
	cut := time.Now().Add(-age).Unix()
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM signatures WHERE message_id IN
		(SELECT id FROM messages WHERE received_at <= ?)`, cut); err != nil {
		return 0, fmt.Errorf("measure: prune: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE received_at <= ?`, cut)
	if err != nil {
		return 0, fmt.Errorf("measure: prune: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM connections WHERE started_at <= ?`, cut); err != nil {
		return 0, fmt.Errorf("measure: prune: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM deliveries WHERE delivered_at <= ?`, cut); err != nil {
		return 0, fmt.Errorf("measure: prune: %w", err)
	}
	// Rollup hours wholly before the cut go with the records.
	for _, t := range []string{"hourly_messages", "hourly_dkim_failures", "hourly_dkim_results", "hourly_peers", "hourly_clients", "hourly_deliveries", "hourly_providers"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+t+` WHERE hour < ?`, cut/3600); err != nil {
			return 0, fmt.Errorf("measure: prune: %w", err)
		}
	}
	n, _ := res.RowsAffected()
	return n, tx.Commit()
}

// Vacuum checkpoints the WAL and rebuilds the file to return free pages.
func (s *Store) Vacuum(ctx context.Context) error {
	if _, err := s.DB.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("measure: checkpoint: %w", err)
	}
	if _, err := s.DB.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("measure: vacuum: %w", err)
	}
	return nil
}
