package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/snowrain/snowrain/measure"
)

// checkDBWritable makes serve refuse to start on a database it cannot
// write (e.g. one a root-run command created), naming the files in the
// way and the fix, instead of logging "attempt to write a readonly
// database" for every batch while claiming to serve.
func checkDBWritable(ctx context.Context, store *measure.Store) error {
	err := store.CheckWritable(ctx)
	if err == nil {
		return nil
	}
	me := userName(os.Geteuid())
	var other []string
	for _, p := range []string{store.Path, store.Path + "-wal", store.Path + "-shm"} {
		if uid, ok := ownerOf(p); ok && uid != os.Geteuid() {
			other = append(other, fmt.Sprintf("%s is owned by %s", p, userName(uid)))
		}
	}
	hint := ""
	if len(other) > 0 {
		hint = "; " + strings.Join(other, ", ") + "; fix: chown " + me + " " + store.Path + "*"
	}
	return fmt.Errorf("database %s is not writable by user %s: %w%s", store.Path, me, err, hint)
}

func ownerOf(path string) (int, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), ok
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}

// instanceLock is held by a running serve: a second serve on the same
// database refuses to start. It is a separate file so that closing it
// never drops SQLite's POSIX locks on the database.
type instanceLock struct{ f *os.File }

// ErrInstanceRunning means another serve holds the database's lock.
var ErrInstanceRunning = errors.New("another snowrain serve is running on this database")

func lockInstance(db string) (*instanceLock, error) {
	if strings.Contains(db, "://") { // not a file (PostgreSQL)
		return &instanceLock{}, nil
	}
	path := db + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked)", ErrInstanceRunning, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &instanceLock{f: f}, nil
}

func (l *instanceLock) Close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}
