package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/miltertest"
	"github.com/snowrain/snowrain/internal/unitexec"
)

// unitCredentials are the unit's User= and Group=, or, where the package
// did not create them (it runs elsewhere in make test, and purges them
// again), nobody in the group postfix (make test-deps installs Postfix;
// not nobody's own group, so a chown is needed when socket_owner names
// only the user): the filter and the sandbox are the unit's either way.
func unitCredentials(t *testing.T, u *unitexec.Unit) (string, unitexec.Credentials) {
	t.Helper()
	name := u.User
	if _, err := user.Lookup(name); err != nil {
		t.Logf("no user %s here (the package creates it): running as nobody", name)
		name = "nobody"
	}
	if _, err := user.LookupGroup(u.Group); err != nil {
		t.Logf("no group %s here (the package creates it): running in group postfix", u.Group)
		u.Group = "postfix"
	}
	creds, err := unitexec.LookupCredentials(name, u.Group)
	if err != nil {
		t.Fatal(err)
	}
	return name, creds
}

// TestUnitSyscallFilter runs the real daemon under the syscall filter of
// contrib/systemd/snowrain.service, as its User= and Group=, with
// socket_owner set: it starts, chowns its sockets, serves and stops
// cleanly. Under the unit's old filter (@chown denied with
// @privileged, default kill action) the same daemon is killed at startup:
// the helper really enforces.
func TestUnitSyscallFilter(t *testing.T) {
	needRoot(t)
	unit, err := unitexec.Load("../../contrib/systemd/snowrain.service")
	if err != nil {
		t.Fatal(err)
	}
	helper := unitexec.BuildForTest(t)
	name, creds := unitCredentials(t, unit)
	primary, _ := user.Lookup(name)
	primaryGID, _ := strconv.Atoi(primary.Gid)
	groupName := unit.Group
	dns := dnstest.Start(t, corpus.Zone())

	run := func(t *testing.T, u *unitexec.Unit, socketOwner string) (*daemon, string) {
		state := sharedDir(t, creds.UID) // StateDirectory=, owned by User=
		runtime := filepath.Join(filepath.Dir(state), "run")
		os.Mkdir(runtime, 0o750) // RuntimeDirectory=, owned by User=:Group=
		os.Chown(runtime, creds.UID, creds.GID)
		conf := fmt.Sprintf("milter = %q\ndb = %q\nsocket_owner = %q\ndns = [%q]\nmetrics = %q\n"+
			"[policy]\nsocket = %q\n[policy.inbound]\nsocket = %q\n",
			"unix:"+filepath.Join(runtime, "milter.sock"), filepath.Join(state, "snowrain.db"), socketOwner, dns.Addr,
			freeTCP(t), "unix:"+filepath.Join(runtime, "policy.sock"), "unix:"+filepath.Join(runtime, "inbound.sock"))
		confPath := filepath.Join(state, "snowrain.conf")
		os.WriteFile(confPath, []byte(conf), 0o644)
		cmd, err := u.Command(helper, t.TempDir(), creds, binary, "serve", "--config", confPath)
		if err != nil {
			t.Fatal(err)
		}
		d := &daemon{cmd: cmd, sock: filepath.Join(runtime, "milter.sock"), db: filepath.Join(state, "snowrain.db"),
			log: &strings.Builder{}, done: make(chan error, 1)}
		cmd.Stderr = &syncWriter{w: d.log}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { d.done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
		return d, runtime
	}

	for _, tc := range []struct{ owner string }{
		{name + ":" + groupName}, // as the sample configuration suggests: no chown needed
		{name},                   // the user's own group: the daemon chowns
	} {
		t.Run("socket_owner="+tc.owner, func(t *testing.T) {
			d, runtime := run(t, unit, tc.owner)
			for _, s := range []string{"milter.sock", "policy.sock", "inbound.sock"} {
				waitFor(t, s, answers("unix", filepath.Join(runtime, s)), d)
			}
			wantGID := creds.GID
			if !strings.Contains(tc.owner, ":") {
				wantGID = primaryGID
			}
			for _, s := range []string{"milter.sock", "policy.sock", "inbound.sock"} {
				fi, err := os.Stat(filepath.Join(runtime, s))
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if int(st.Uid) != creds.UID || int(st.Gid) != wantGID || fi.Mode().Perm() != 0o660 {
					t.Errorf("%s: %d:%d %v, want %d:%d 0660", s, st.Uid, st.Gid, fi.Mode(), creds.UID, wantGID)
				}
			}
			if _, err := miltertest.SendOne(miltertest.NewClient("unix", d.sock), miltertest.Postfix, corpus.Cases()[0]); err != nil {
				t.Fatal(err)
			}
			d.cmd.Process.Signal(syscall.SIGTERM)
			if code := exitCode(t, d); code != 0 {
				t.Fatalf("exit %d under the unit's filter:\n%s", code, d.logs())
			}
			if n := countRows(t, d.db, "messages"); n != 1 {
				t.Errorf("%d messages recorded, want 1", n)
			}
			if strings.Contains(d.logs(), "operation not permitted") {
				t.Errorf("a syscall was refused:\n%s", d.logs())
			}
		})
	}

	t.Run("old filter kills", func(t *testing.T) {
		old := *unit
		old.Filter = slices.DeleteFunc(slices.Clone(unit.Filter), func(f string) bool { return f == "@chown" })
		old.ErrorNumber = ""
		if len(old.Filter) == len(unit.Filter) {
			t.Fatal("the unit no longer allows @chown on a line of its own; update this control")
		}
		d, _ := run(t, &old, name)
		var err error
		select {
		case err = <-d.done:
		case <-timeAfterMinute():
			t.Fatalf("daemon not killed under the old filter:\n%s", d.logs())
		}
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGSYS {
			t.Errorf("under the old filter: %v, want killed by SIGSYS\n%s", err, d.logs())
		}
		// The chown was the one syscall in the way: with a socket_owner
		// that needs none, the old filter lets the daemon start.
		d, runtime := run(t, &old, name+":"+groupName)
		waitFor(t, "sockets under the old filter without chown", answers("unix", filepath.Join(runtime, "inbound.sock")), d)
		d.cmd.Process.Signal(syscall.SIGTERM)
		if code := exitCode(t, d); code != 0 {
			t.Errorf("exit %d:\n%s", code, d.logs())
		}
	})
}
