package feedback

import (
	"os"
	"testing"

	"github.com/snowrain/snowrain/internal/pgtest"
)

// The tests that read and write the store run on SQLite and on a
// throwaway PostgreSQL (pgtest.EachBackend).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
