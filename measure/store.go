package measure

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/mattn/go-sqlite3" // the SQLite driver

	"github.com/snowrain/snowrain/config"
)

// Store is an open snowrain database, SQLite or PostgreSQL.
type Store struct {
	// DB takes the same SQL on both backends: ? placeholders and Go
	// booleans are translated for PostgreSQL (see the package comment
	// for what else a query must do to run on both).
	DB *sql.DB
	// Path is the SQLite file, or the PostgreSQL URL without its
	// password.
	Path string
	// Node is the name written into every record (config's node,
	// default the host name), so that a fleet's rows stay apart.
	Node string

	dialect   Dialect
	pool      *pgxpool.Pool // PostgreSQL: the writer's COPY and upserts
	ready     chan struct{} // closed once connected and migrated (OpenServing)
	readyOnce sync.Once
	closed    chan struct{} // closed by Close: stops OpenServing's connecting
	closeOnce sync.Once
}

// Dialect is the store's backend.
func (s *Store) Dialect() Dialect { return s.dialect }

// defaultNode is config's node default, the host name.
func defaultNode() string { return config.Hostname() }

// Open opens the store named by dsn, a postgres:// URL or a SQLite file
// path, and brings its schema up to date.
//
// A SQLite file is created if needed and opened in WAL mode. Run as root,
// it creates a new database with the owner of its directory
// (/var/lib/snowrain belongs to the daemon's user), never as root: a
// root-owned file would leave the daemon unable to write. SQLite itself
// gives the -wal and -shm files it creates as root the owner of the
// database.
func Open(ctx context.Context, dsn string) (*Store, error) {
	if IsPostgres(dsn) {
		return openPostgres(ctx, dsn, false)
	}
	path := dsn
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("measure: %w", err)
		}
	}
	if err := createOwned(path); err != nil {
		return nil, fmt.Errorf("measure: %w", err)
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
	s := &Store{DB: db, Path: path, Node: defaultNode(), dialect: SQLite, ready: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s.setReady()
	return s, nil
}

// createOwned creates an empty database file (SQLite takes an empty file
// as an empty database) owned like its directory, when run as root, the
// file is missing and the directory belongs to another user.
func createOwned(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return err
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// CheckWritable writes a row and rolls it back: it fails ("attempt to
// write a readonly database") when the file, its -wal or -shm, or its
// directory cannot be written by this process. (BEGIN IMMEDIATE alone
// succeeds on a read-only file in WAL mode; only a write tells.) On an
// empty PostgreSQL database it creates a table, rolled back as well.
func (s *Store) CheckWritable(ctx context.Context) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("measure: %s: %w", s.Path, err)
	}
	defer tx.Rollback()
	q := `INSERT INTO schema_migrations VALUES (-1, 0)`
	if s.dialect == Postgres { // a read-only store's sessions default to read-only
		if _, err := tx.ExecContext(ctx, `SET TRANSACTION READ WRITE`); err != nil {
			return fmt.Errorf("measure: %s: %w", s.Path, err)
		}
		if v, err := s.SchemaVersion(ctx); err == nil && v == 0 {
			// An empty database: serve will create the tables.
			q = `CREATE TABLE snowrain_write_check (x BIGINT)`
		}
	}
	if _, err := tx.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("measure: %s is not writable: %w", s.Path, err)
	}
	return nil
}

// LatestSchema is the schema version this binary migrates to.
func LatestSchema() int { return len(migrations) }

// OpenReadOnly opens an existing database for reports without migrating
// it and without ever writing to it (commands that only read use it, so a
// root-run report never creates or changes the daemon's files). On
// PostgreSQL its sessions default to read-only transactions.
func OpenReadOnly(ctx context.Context, dsn string) (*Store, error) {
	if IsPostgres(dsn) {
		return openPostgres(ctx, dsn, true)
	}
	path := dsn
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
	s := &Store{DB: db, Path: path, Node: defaultNode(), dialect: SQLite, ready: make(chan struct{})}
	s.setReady()
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if s.closed != nil {
		s.closeOnce.Do(func() { close(s.closed) })
	}
	err := s.DB.Close()
	if s.pool != nil {
		s.pool.Close()
	}
	return err
}

// Vacuum checkpoints the WAL and rebuilds the file to return free pages;
// on PostgreSQL it vacuums (autovacuum does so too).
func (s *Store) Vacuum(ctx context.Context) error {
	if s.dialect == Postgres {
		if _, err := s.DB.ExecContext(ctx, `VACUUM`); err != nil {
			return fmt.Errorf("measure: vacuum: %w", err)
		}
		return nil
	}
	if _, err := s.DB.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("measure: checkpoint: %w", err)
	}
	if _, err := s.DB.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("measure: vacuum: %w", err)
	}
	return nil
}
