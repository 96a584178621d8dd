package report

import (
	"os"
	"testing"

	"github.com/snowrain/snowrain/internal/pgtest"
)

// The reports are built from SQLite and from a throwaway PostgreSQL
// (pgtest.EachBackend) and must read the same.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
