package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/resolver"
)

// checker prints one line per check, as `postfix check` and
// `opendkim -n` report: "ok", "warn" (serve would start, but look) or
// "FAIL" (serve would not start, or would not work).
type checker struct {
	out    io.Writer
	failed int
}

func (c *checker) line(status, what, format string, args ...any) {
	if status == "FAIL" {
		c.failed++
	}
	fmt.Fprintf(c.out, "%-5s %s: %s\n", status, what, fmt.Sprintf(format, args...))
}

// runCheck is `snowrain serve --check`: the configuration (already parsed
// and validated by the caller), the database and every socket, checked as
// the user running it, without changing anything.
func runCheck(ctx context.Context, cfg config.Config, path string, out io.Writer) error {
	c := &checker{out: out}
	if _, err := os.Stat(path); err == nil {
		c.line("ok", "configuration", "%s: every option valid", path)
	} else {
		c.line("ok", "configuration", "%s absent: built-in defaults and flags, every option valid", path)
	}
	c.line("ok", "user", "checked as %s (uid %d); the daemon runs as its unit's User=", userName(os.Geteuid()), os.Geteuid())
	c.database(ctx, cfg.DB)
	c.socket("milter", cfg.Milter)
	if cfg.Policy.Socket != "" {
		c.socket("policy.socket", cfg.Policy.Socket)
	}
	if cfg.Policy.Inbound.Socket != "" {
		c.socket("policy.inbound.socket", cfg.Policy.Inbound.Socket)
	}
	if cfg.Metrics != "" {
		c.socket("metrics", "inet:"+cfg.Metrics)
	}
	if r, err := resolver.New(resolver.Config{Servers: append([]string(nil), cfg.DNS...)}); err != nil {
		c.line("FAIL", "dns", "%v", err)
	} else {
		c.line("ok", "dns", "servers %v", r.Servers())
	}
	if p := cfg.Policy.MTASTSRoots; p != "" {
		if _, err := os.ReadFile(p); err != nil {
			c.line("FAIL", "policy.mta_sts_roots", "%v", err)
		}
	}
	if p := cfg.Maillog; p != "" {
		if f, err := os.Open(p); err != nil {
			c.line("warn", "maillog", "%v (followed once it appears)", err)
		} else {
			f.Close()
			c.line("ok", "maillog", "%s readable", p)
		}
	}
	if c.failed > 0 {
		return fmt.Errorf("check: %d problem(s)", c.failed)
	}
	return nil
}

// database checks that the file opens, its schema is one this binary can
// migrate, and that it (and its directory, for -wal and -shm) can be
// written; a missing file needs a directory it can be created in. A
// PostgreSQL URL is checked the same way (check_pg.go).
func (c *checker) database(ctx context.Context, path string) {
	pg := measure.IsPostgres(path)
	what := "database " + measure.Redact(path)
	if pg {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, postgresCheckTimeout)
		defer cancel()
	} else if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		dir := existingParent(filepath.Dir(path))
		if err := syscall.Access(dir, 2); err != nil { // W_OK
			c.line("FAIL", what, "does not exist and %s is not writable: %v", dir, err)
			return
		}
		c.line("ok", what, "does not exist; serve creates it (in %s)", dir)
		return
	}
	store, err := measure.OpenReadOnly(ctx, path)
	if err != nil {
		c.line("FAIL", what, "%v", err)
		return
	}
	defer store.Close()
	have, err := store.SchemaVersion(ctx)
	want := measure.LatestSchema()
	switch {
	case err != nil:
		c.line("FAIL", what, "not a snowrain database: %v", err)
		return
	case have > want:
		c.line("FAIL", what, "schema %d is newer than this binary's %d", have, want)
		return
	case have == 0 && pg:
		c.line("ok", what, "opens; empty: serve creates schema %d", want)
	case have < want:
		c.line("ok", what, "opens; schema %d, serve migrates it to %d", have, want)
	default:
		c.line("ok", what, "opens; schema %d is current", have)
	}
	if pg {
		c.postgresWritable(ctx, what, store)
		return
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", filepath.Dir(path)} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := syscall.Access(p, 2); err != nil {
			c.line("FAIL", what, "%s is not writable: %v", p, err)
			return
		}
	}
	if os.Geteuid() == 0 {
		if dirUID, ok := ownerOf(filepath.Dir(path)); ok && dirUID != 0 {
			if uid, _ := ownerOf(path); uid != dirUID {
				c.line("warn", what, "owned by %s but its directory by %s: the daemon may not write it; chown %s %s*",
					userName(uid), userName(dirUID), userName(dirUID), path)
				return
			}
		}
	}
	c.line("ok", what, "writable")
}

// socket checks a listen address: for unix, a directory that exists (or
// can be created) and is writable, and a path that is free or stale; for
// TCP, that it can be bound.
func (c *checker) socket(what, addr string) {
	what += " " + addr
	network, a, err := config.SplitListen(addr)
	if err != nil {
		c.line("FAIL", what, "%v", err)
		return
	}
	if network == "tcp" {
		ln, err := net.Listen("tcp", a)
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			c.line("warn", what, "in use (a running snowrain serve?); serve could not bind it now")
		case err != nil:
			c.line("FAIL", what, "cannot bind: %v", err)
		default:
			ln.Close()
			c.line("ok", what, "free")
		}
		return
	}
	dir := filepath.Dir(a)
	if fi, err := os.Stat(dir); err != nil {
		parent := existingParent(dir)
		if err := syscall.Access(parent, 2); err != nil {
			c.line("FAIL", what, "directory %s missing and %s not writable", dir, parent)
			return
		}
		c.line("ok", what, "directory %s missing; serve creates it", dir)
		return
	} else if !fi.IsDir() {
		c.line("FAIL", what, "%s is not a directory", dir)
		return
	}
	if err := syscall.Access(dir, 2); err != nil {
		c.line("FAIL", what, "directory %s not writable: %v", dir, err)
		return
	}
	fi, err := os.Lstat(a)
	switch {
	case errors.Is(err, os.ErrNotExist):
		c.line("ok", what, "free; directory %s writable", dir)
	case err != nil:
		c.line("FAIL", what, "%v", err)
	case fi.Mode()&os.ModeSocket == 0:
		c.line("FAIL", what, "exists and is not a socket")
	case probeUnix(a) == nil:
		c.line("warn", what, "in use by a running process (a running snowrain serve?); a second serve would refuse it")
	default:
		c.line("ok", what, "stale socket file; serve replaces it")
	}
}

// existingParent is dir or its nearest ancestor that exists.
func existingParent(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil || dir == filepath.Dir(dir) {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}
