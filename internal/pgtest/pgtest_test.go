package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func query(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// A cluster of its own: a socket in its directory and no TCP listener,
// stopped and started again, gone after the test.
func TestClusterStopStart(t *testing.T) {
	var dir string
	t.Run("cluster", func(t *testing.T) {
		c := Start(t, Options{})
		dir = c.Dir
		dsn := c.CreateDB(t)
		if v := query(t, dsn, `SHOW server_version`); v[:3] != "15." {
			t.Errorf("server_version %q, want 15.x", v)
		}
		if v := query(t, dsn, `SHOW listen_addresses`); v != "" {
			t.Errorf("listen_addresses %q, want none (socket only)", v)
		}
		if v := query(t, dsn, `SHOW unix_socket_directories`); v != c.Dir {
			t.Errorf("unix_socket_directories %q, want %q", v, c.Dir)
		}
		if c.Port == 5432 {
			t.Error("the default port")
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := pgx.Connect(context.Background(), dsn); err == nil {
			t.Fatal("connected to a stopped cluster")
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		query(t, dsn, `SELECT 'again'`)
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", dir, err)
	}
}

// Each DB call is a new, empty database of the shared cluster.
func TestSharedDatabases(t *testing.T) {
	a, b := DB(t), DB(t)
	if a == b {
		t.Fatalf("same database twice: %s", a)
	}
	conn, err := pgx.Connect(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `CREATE TABLE x (n int)`); err != nil {
		t.Fatal(err)
	}
	if n := query(t, b, `SELECT count(*)::text FROM pg_tables WHERE tablename = 'x'`); n != "0" {
		t.Errorf("table of one database seen in the other")
	}
}

// A cluster whose test process died is stopped and removed by the next.
func TestReapOrphans(t *testing.T) {
	c, err := create(Options{})
	if err != nil {
		t.Fatal(err)
	}
	// As if a process that no longer exists had made it: 4194305 is
	// beyond the largest pid_max, so no process has it.
	orphan := filepath.Join(filepath.Dir(c.Dir), dirPrefix+"4194305-x")
	if err := os.Rename(c.Dir, orphan); err != nil {
		c.destroy()
		t.Fatal(err)
	}
	// The server still runs; the reaper stops it through the renamed
	// directory's postmaster.pid.
	reapOrphans()
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan %s not removed: %v", orphan, err)
	}
}
