// Package pgtest runs throwaway PostgreSQL 15 clusters for tests: initdb
// and pg_ctl from Debian's server package (scripts/deps-postgres.sh
// installs it) in a temporary directory, as the postgres user when the
// tests run as root, listening only on a unix socket in that directory.
// The machine's own clusters (/etc/postgresql, /var/run/postgresql, port
// 5432) are never read, started, stopped or reconfigured.
//
// Start gives a test its own cluster, which the test may stop and start
// again (fault tests). DB gives a test a fresh database in its package's
// shared cluster, started on first use; a package that uses DB runs its
// tests through Main:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// A test binary that is killed before its cleanups run leaves its cluster
// behind; the next cluster started on the machine stops and removes it
// (its directory names the process that made it).
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir holds Debian's PostgreSQL 15 server programs.
const BinDir = "/usr/lib/postgresql/15/bin"

const dirPrefix = "snowrain-pgtest-"

// Options configure a cluster.
type Options struct {
	// Durable keeps fsync on (benchmarks); tests run without it, as the
	// data is thrown away.
	Durable bool
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	Dir  string // its root: data/, the socket, server.log
	Port int    // names the socket (.s.PGSQL.PORT); no TCP listener

	mu      sync.Mutex
	running bool
	dbs     atomic.Int64
}

// Start creates and starts a cluster for t; it is stopped and removed
// when t ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	c, err := create(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pgtest: server log of %s:\n%s", c.Dir, c.LogTail(40))
		}
		if err := c.destroy(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// Missing says why clusters cannot be made here ("" when they can).
func Missing() string {
	for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(BinDir, p)); err != nil {
			return fmt.Sprintf("pgtest: PostgreSQL 15 server not installed (%s/%s missing): run scripts/deps-postgres.sh as root (make test-deps)", BinDir, p)
		}
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return "pgtest: no postgres user to run the server as: run scripts/deps-postgres.sh as root (make test-deps)"
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			return "pgtest: runuser (util-linux) missing"
		}
	}
	return ""
}

func create(o Options) (*Cluster, error) {
	if why := Missing(); why != "" {
		return nil, errors.New(why)
	}
	reapOrphans()
	base := os.TempDir()
	if os.Geteuid() == 0 {
		// The postgres user must reach the directory; /tmp is 1777.
		if fi, err := os.Stat(base); err != nil || fi.Mode().Perm()&0o001 == 0 {
			base = "/tmp"
		}
	}
	dir, err := os.MkdirTemp(base, fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &Cluster{Dir: dir, Port: pickPort()}
	if err := c.init(o); err != nil {
		c.destroy()
		return nil, err
	}
	if err := c.Start(); err != nil {
		c.destroy()
		return nil, err
	}
	return c, nil
}

// pickPort names the socket with a port no loopback listener holds (never
// 5432); the server opens no TCP socket.
func pickPort() int {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 50000 + os.Getpid()%10000
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port != 5432 {
			return port
		}
	}
}

func (c *Cluster) init(o Options) error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.Dir, uid, gid); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	if err := os.Chmod(c.Dir, 0o700); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if out, err := c.run("initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--no-locale", "--no-sync", "--no-instructions"); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	fsync := "off"
	if o.Durable {
		fsync = "on"
	}
	conf := fmt.Sprintf(`
# pgtest: a throwaway cluster, reachable only through its own socket.
listen_addresses = ''
unix_socket_directories = '%s'
port = %d
fsync = %s
max_connections = 200
log_min_messages = warning
`, c.Dir, c.Port, fsync)
	f, err := os.OpenFile(filepath.Join(c.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

func (c *Cluster) data() string { return filepath.Join(c.Dir, "data") }

// LogFile is the server's log.
func (c *Cluster) LogFile() string { return filepath.Join(c.Dir, "server.log") }

// LogTail is the end of the server's log, for failure messages.
func (c *Cluster) LogTail(lines int) string {
	b, _ := os.ReadFile(c.LogFile())
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// run runs one of the server programs, as the postgres user when root,
// from the cluster's directory and without the caller's PG* variables.
func (c *Cluster) run(prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	path := filepath.Join(BinDir, prog)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = c.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Start starts the server (again, after Stop) and waits until it accepts
// connections.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil
	}
	if out, err := c.run("pg_ctl", "start", "-D", c.data(), "-l", c.LogFile(), "-w", "-t", "120"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, c.LogTail(20))
	}
	c.running = true
	return nil
}

// Stop stops the server (pg_ctl stop, fast mode: sessions are ended,
// as when an administrator restarts it) and waits until it is down.
func (c *Cluster) Stop() error {
	return c.stop("fast")
}

func (c *Cluster) stop(mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	if out, err := c.run("pg_ctl", "stop", "-D", c.data(), "-m", mode, "-w", "-t", "120"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	c.running = false
	return nil
}

func (c *Cluster) destroy() error {
	err := c.stop("immediate")
	if rerr := os.RemoveAll(c.Dir); err == nil && rerr != nil {
		err = fmt.Errorf("pgtest: %w", rerr)
	}
	return err
}

// DSN is the URL of database db on the cluster, for pgx and for
// snowrain's --db.
func (c *Cluster) DSN(db string) string {
	q := url.Values{}
	q.Set("host", c.Dir)
	q.Set("port", strconv.Itoa(c.Port))
	q.Set("sslmode", "disable")
	return "postgres://postgres@/" + url.PathEscape(db) + "?" + q.Encode()
}

// CreateDB creates an empty database for t and returns its DSN; it is
// dropped when t ends (after the test's own cleanups registered later,
// such as closing its store).
func (c *Cluster) CreateDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", c.dbs.Add(1))
	if err := c.exec(context.Background(), `CREATE DATABASE `+name); err != nil {
		t.Fatalf("pgtest: create database: %v\n%s", err, c.LogTail(20))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pgtest: server log of %s:\n%s", c.Dir, c.LogTail(40))
		}
		// A test may leave the server stopped; the cluster goes anyway.
		c.mu.Lock()
		running := c.running
		c.mu.Unlock()
		if running {
			if err := c.exec(context.Background(), `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
				t.Errorf("pgtest: drop database: %v", err)
			}
		}
	})
	return c.DSN(name)
}

func (c *Cluster) exec(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// The package's shared cluster, for DB.
var shared struct {
	sync.Mutex
	main    bool
	cluster *Cluster
	err     error
}

// Main runs the package's tests and then stops and removes the shared
// cluster, if a test started it.
func Main(m *testing.M) int {
	shared.Lock()
	shared.main = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if c := shared.cluster; c != nil {
		if err := c.destroy(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}

// DB returns the DSN of a new, empty database in the package's shared
// cluster, dropped when t ends.
func DB(t testing.TB) string {
	t.Helper()
	return Shared(t).CreateDB(t)
}

// Shared returns the package's shared cluster, starting it on first use.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.main {
		t.Fatal("pgtest: the shared cluster needs TestMain calling pgtest.Main (it stops the cluster)")
	}
	if shared.cluster == nil && shared.err == nil {
		shared.cluster, shared.err = create(Options{})
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.cluster
}

// reapOrphans stops and removes the clusters of test processes that died
// without their cleanups (a go test timeout, a kill).
func reapOrphans() {
	for _, base := range []string{os.TempDir(), "/tmp"} {
		dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
		for _, dir := range dirs {
			pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), dirPrefix), "-")
			pid, err := strconv.Atoi(pidText)
			if err != nil || pid <= 0 || alive(pid) {
				continue
			}
			c := &Cluster{Dir: dir, running: true}
			if _, err := os.Stat(filepath.Join(c.data(), "postmaster.pid")); err != nil {
				c.running = false
			}
			c.destroy()
		}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ServerCPU is the CPU time (user and system) the cluster's processes
// have used: the postmaster, its live children, and the children it has
// reaped. Benchmarks report it beside their own, as the server's work is
// not in the test process's.
func (c *Cluster) ServerCPU() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(c.data(), "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("pgtest: %w", err)
	}
	pidText, _, _ := strings.Cut(string(b), "\n")
	master, err := strconv.ParseInt(strings.TrimSpace(pidText), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("pgtest: postmaster.pid: %w", err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, p := range procs {
		f, err := procStat(p)
		if err != nil {
			continue // gone meanwhile
		}
		switch {
		case f.pid == master:
			ticks += f.utime + f.stime + f.cutime + f.cstime
		case f.ppid == master:
			ticks += f.utime + f.stime
		}
	}
	return time.Duration(ticks) * time.Second / 100, nil // USER_HZ
}

type stat struct{ pid, ppid, utime, stime, cutime, cstime int64 }

// procStat reads /proc/PID/stat (proc(5)); the command name, in
// parentheses, may hold spaces.
func procStat(path string) (stat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return stat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("no command")
	}
	pid, _ := strconv.ParseInt(strings.TrimSpace(string(b[:bytes.IndexByte(b, '(')])), 10, 64)
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, state
	if len(f) < 15 {
		return stat{}, errors.New("short stat")
	}
	n := func(field int) int64 { v, _ := strconv.ParseInt(f[field-3], 10, 64); return v }
	return stat{pid: pid, ppid: n(4), utime: n(14), stime: n(15), cutime: n(16), cstime: n(17)}, nil
}

// EachBackend runs fn as two subtests: "sqlite" with the path of a new
// SQLite file, "postgres" with the URL of a new database of the
// package's shared cluster (DB; the package's TestMain calls Main). It is
// the backend dimension of a table test: the same SQL must give the same
// answers on both.
func EachBackend(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "snowrain.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, DB(t)) })
}
