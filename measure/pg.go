package measure

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgConnectTimeout bounds a connection attempt when the URL sets none
// (connect_timeout=): a PostgreSQL that does not answer must not hold the
// writer, whose queue meanwhile fills and drops.
const pgConnectTimeout = 5 * time.Second

// openPostgres opens the PostgreSQL database at dsn: one pgx pool, used
// directly by the writer (COPY) and through database/sql by everything
// else. readOnly sessions default to read-only transactions and skip the
// migrations.
func openPostgres(ctx context.Context, dsn string, readOnly bool) (*Store, error) {
	s, err := newPostgres(dsn, readOnly)
	if err != nil {
		return nil, err
	}
	if err := s.bringUp(ctx, readOnly); err != nil {
		s.Close()
		return nil, err
	}
	s.setReady()
	return s, nil
}

// newPostgres makes the store of dsn without connecting: pgx's pool
// connects on first use.
func newPostgres(dsn string, readOnly bool) (*Store, error) {
	name := Redact(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("measure: %s: %w", name, err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	rp := cfg.ConnConfig.RuntimeParams
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = "snowrain"
	}
	if readOnly {
		rp["default_transaction_read_only"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("measure: %s: %w", name, err)
	}
	db := sql.OpenDB(pgConnector{stdlib.GetPoolConnector(pool)})
	// Idle connections belong to the pool, not to database/sql, or the
	// writer could find none (stdlib.GetPoolConnector).
	db.SetMaxIdleConns(0)
	return &Store{DB: db, Path: name, Node: defaultNode(), dialect: Postgres, pool: pool, ready: make(chan struct{}),
		closed: make(chan struct{})}, nil
}

// bringUp connects and, unless readOnly, migrates.
func (s *Store) bringUp(ctx context.Context, readOnly bool) error {
	if err := s.DB.PingContext(ctx); err != nil {
		return fmt.Errorf("measure: %s: %w", s.Path, err)
	}
	if readOnly {
		return nil
	}
	return s.migrate(ctx)
}

// Redact returns dsn with any password replaced, for logs and messages.
func Redact(dsn string) string {
	if !IsPostgres(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// pgConnector hands database/sql connections that take SQLite's ?
// placeholders and Go booleans (stored as 0/1 on both backends), so that
// one text of each query serves both.
type pgConnector struct{ driver.Connector }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{conn.(*stdlib.Conn)}, nil
}

type pgConn struct{ *stdlib.Conn }

func (c *pgConn) Prepare(q string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(context.Background(), Rebind(q))
}

func (c *pgConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, Rebind(q))
}

func (c *pgConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, Rebind(q), args)
}

func (c *pgConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, Rebind(q), args)
}

// CheckNamedValue passes every value to pgx as it is, but booleans as 0
// or 1 (the columns are integers on both backends, so that SUM counts)
// and text as PostgreSQL takes it (pgText: valid UTF-8, no NUL).
func (c *pgConn) CheckNamedValue(nv *driver.NamedValue) error {
	switch v := nv.Value.(type) {
	case bool:
		nv.Value = b2i(v)
	case string:
		nv.Value = pgText(v)
	}
	return nil
}
