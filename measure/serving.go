package measure

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Ready is closed once the store is connected and its schema current:
// at once for a store Open or OpenReadOnly returned, later for one of
// OpenServing whose server was not reachable. Until then the Writer keeps
// what it queues (dropping and counting beyond its queue) and reads fail.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// IsReady reports whether Ready is closed.
func (s *Store) IsReady() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

func (s *Store) setReady() { s.readyOnce.Do(func() { close(s.ready) }) }

// ErrNotReady is a read of a store OpenServing returned before its
// server could be reached.
var ErrNotReady = errors.New("measure: database not reachable yet")

// OpenServing opens the store for the daemon, which must serve mail
// whether or not its database answers (mail always flows): a SQLite file
// as Open does; a PostgreSQL database is connected to and migrated once,
// and if its server cannot be reached then, the store is returned all the
// same, not ready, while a goroutine keeps connecting (backing off from
// pgBackoffMin to pgBackoffMax) and migrating until it can or ctx ends.
// An error the server gave (a schema newer than this binary, a role
// without rights) is returned: that is configuration, not an outage.
func OpenServing(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	if !IsPostgres(dsn) {
		return Open(ctx, dsn)
	}
	if log == nil {
		log = slog.Default()
	}
	s, err := newPostgres(dsn, false)
	if err != nil {
		return nil, err
	}
	err = s.bringUp(ctx, false)
	switch {
	case err == nil:
		s.setReady()
		return s, nil
	case !unreachable(err):
		s.Close()
		return nil, err
	}
	log.Warn("database unreachable: serving mail and queuing records; connecting again in the background",
		"db", s.Path, "err", err)
	go s.keepConnecting(ctx, log)
	return s, nil
}

// unreachable tells an outage (no connection, no answer in time) from an
// answer of the server.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	return !errors.As(err, &pe) && !errors.Is(err, errSchemaNewer)
}

func (s *Store) keepConnecting(ctx context.Context, log *slog.Logger) {
	wait := pgBackoffMin
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closed:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, pgBackoffMax)
		try, cancel := context.WithTimeout(ctx, 2*pgConnectTimeout)
		err := s.bringUp(try, false)
		cancel()
		if err == nil {
			s.setReady()
			log.Info("database reachable: schema current, writing queued records", "db", s.Path)
			return
		}
		select {
		case <-s.closed:
			return
		default:
		}
		if msg := err.Error(); msg != last && ctx.Err() == nil {
			last = msg
			log.Warn("database still unreachable; mail flows, records beyond the queue are dropped and counted",
				"db", s.Path, "err", err)
		}
	}
}
