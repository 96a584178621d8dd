package unitexec

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
)

var groups = map[string][]string{
	"@default":        {"execve", "exit_group", "prlimit64"},
	"@system-service": {"execve", "read", "fchownat", "setpriority", "setuid"},
	"@chown":          {"fchownat", "chown"},
	"@privileged":     {"chown", "fchownat", "setuid", "chroot"},
	"@resources":      {"setpriority", "setrlimit"},
}

func fake(g string) ([]string, error) { return groups[g], nil }

// TestFilterSemantics follows systemd's rules: the first line's "~"
// chooses the mode, later lines add or remove in order, an empty
// assignment resets.
func TestFilterSemantics(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lines  []string
		allow  bool
		result []string
	}{
		{"allow list gets @default", []string{"@system-service"}, true,
			[]string{"execve", "exit_group", "fchownat", "prlimit64", "read", "setpriority", "setuid"}},
		{"deny line removes from an allow list", []string{"@system-service", "~@privileged @resources"}, true,
			[]string{"execve", "exit_group", "prlimit64", "read"}},
		{"a later allow line adds back", []string{"@system-service", "~@privileged @resources", "@chown"}, true,
			[]string{"chown", "execve", "exit_group", "fchownat", "prlimit64", "read"}},
		{"deny list", []string{"~@privileged", "chroot"}, false, []string{"chown", "fchownat", "setuid"}},
		{"reset", []string{"@system-service", "", "~chroot"}, false, []string{"chroot"}},
	} {
		u := &Unit{Filter: tc.lines}
		allow, names, err := u.Syscalls(fake)
		if err != nil || allow != tc.allow || !slices.Equal(names, tc.result) {
			t.Errorf("%s: allow %v %v %v, want %v %v", tc.name, allow, names, err, tc.allow, tc.result)
		}
	}
}

func TestParseUnit(t *testing.T) {
	u, err := Parse("[Unit]\nUser=wrong\n[Service]\nUser=snowrain\nGroup=postfix\nUMask=0007\n" +
		"# comment\nSystemCallFilter=@system-service\nSystemCallFilter=~@privileged\nSystemCallErrorNumber=EPERM\n" +
		"SystemCallArchitectures=native\n[Install]\nWantedBy=multi-user.target\n")
	if err != nil || u.User != "snowrain" || u.Group != "postfix" || u.UMask != "0007" ||
		!slices.Equal(u.Filter, []string{"@system-service", "~@privileged"}) || !slices.Equal(u.Architectures, []string{"native"}) {
		t.Fatalf("%+v %v", u, err)
	}
	if a, err := u.Action(); a != "errno:1" || err != nil {
		t.Errorf("action %q %v", a, err)
	}
	if a, _ := (&Unit{}).Action(); a != "kill" {
		t.Errorf("default action %q", a)
	}
}

// TestHelperEnforces is the negative control: a syscall outside the
// filter really fails (errno action) or kills (default action), and runs
// when allowed.
func TestHelperEnforces(t *testing.T) {
	helper := BuildForTest(t)
	me := Credentials{UID: os.Getuid(), GID: os.Getgid()}
	run := func(u *Unit) (string, error) {
		t.Helper()
		cmd, err := u.Command(helper, t.TempDir(), me, "/usr/bin/nice", "-n", "5", "/bin/true")
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// nice calls setpriority(2), which @resources holds.
	if out, err := run(&Unit{Filter: []string{"~@obsolete"}}); err != nil || out != "" {
		t.Errorf("setpriority allowed: %v %q", err, out)
	}
	if out, _ := run(&Unit{Filter: []string{"~@resources"}, ErrorNumber: "EPERM"}); !strings.Contains(out, "Operation not permitted") {
		t.Errorf("setpriority denied with EPERM: %q", out)
	}
	_, err := run(&Unit{Filter: []string{"~@resources"}})
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGSYS {
		t.Errorf("setpriority denied with the default action: %v, want killed by SIGSYS", err)
	}
}

func errorsAs(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}
