package unitexec

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildForTest compiles the helper for a test, failing it with the fix
// when gcc, libseccomp-dev or systemd-analyze is missing (make test-deps
// installs them). The helper's directory is readable by every user.
func BuildForTest(t testing.TB) string {
	t.Helper()
	for _, need := range []string{"gcc", "systemd-analyze"} {
		if _, err := exec.LookPath(need); err != nil {
			t.Fatalf("%s missing: run scripts/deps-seccomp.sh (make test-deps)", need)
		}
	}
	if _, err := os.Stat("/usr/include/seccomp.h"); err != nil {
		t.Fatal("libseccomp-dev missing: run scripts/deps-seccomp.sh (make test-deps)")
	}
	helper, err := Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(helper), 0o755)
	return helper
}
