// Package packaging holds the Debian package's configuration (nfpm.yaml,
// maintainer scripts, tmpfiles.d and sysusers.d entries) and its test.
package packaging

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/testnet"
)

const sock = "/var/spool/postfix/snowrain/milter.sock"

// TestDebianPackage builds the package with `make deb`, installs it on this
// machine, runs the unit's ExecStart as its User= under the sandboxing
// scripts/unit-exec.sh can apply here, sends mail through a test Postfix
// pointed at the package's socket, finds it in /var/lib/snowrain's
// database, and purges the package: the machine is left as it was (users,
// groups, unit state, directories).
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the package test needs root: run make test as root")
	}
	for _, tool := range []string{"dpkg", "apt-get", "adduser", "setpriv", "unshare", "postfix"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: run scripts/deps-postfix.sh as root", tool)
		}
	}
	lock, err := os.OpenFile("/run/lock/snowrain-deb-test.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "snowrain").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("a snowrain package is installed on this machine (%s); the test would replace and purge it", out)
	}
	if _, err := user.Lookup("snowrain"); err == nil {
		t.Fatal("a snowrain user exists on this machine; the package test would delete it on purge")
	}
	for _, dir := range []string{"/etc/snowrain", "/var/lib/snowrain", "/var/spool/postfix/snowrain"} {
		if _, err := os.Stat(dir); err == nil {
			t.Fatalf("%s exists on this machine (a snowrain run as root outside the package?); the package's purge would delete it: move it away first", dir)
		}
	}
	before := machineState(t)

	// make deb, as a user runs it (without the race detector of make test).
	dist := t.TempDir()
	mk := exec.Command("make", "-C", "..", "deb", "DIST="+dist)
	mk.Env = withoutRace(os.Environ())
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "snowrain_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb wrote %v", debs)
	}
	deb := debs[0]
	version := field(t, deb, "Version")
	if arch := field(t, deb, "Architecture"); filepath.Base(deb) != "snowrain_"+version+"_"+arch+".deb" {
		t.Errorf("package file %s, want snowrain_%s_%s.deb", filepath.Base(deb), version, arch)
	}
	if strings.Contains(version, "dev") {
		t.Errorf("version %q", version)
	}
	listing, _ := exec.Command("dpkg-deb", "-c", deb).Output()
	t.Logf("dpkg -c %s:\n%s", filepath.Base(deb), listing)

	t.Cleanup(func() {
		if out, err := apt("purge", "snowrain"); err != nil {
			t.Errorf("purge: %v\n%s", err, out)
		}
		os.RemoveAll("/run/snowrain") // the unit's RuntimeDirectory, as systemd removes it at stop
		if after := machineState(t); after != before {
			t.Errorf("the machine changed:\n%s", diffLines(before, after))
		}
	})
	if out, err := apt("install", deb); err != nil {
		t.Fatalf("apt-get install %s: %v\n%s", deb, err, out)
	}

	// What the package set up.
	out, _ := exec.Command("/usr/bin/snowrain", "--version").CombinedOutput()
	if got := strings.TrimSpace(string(out)); got != "snowrain "+version {
		t.Errorf("snowrain --version: %q, want %q", got, "snowrain "+version)
	}
	if groups, _ := exec.Command("id", "-nG", "postfix").Output(); !strings.Contains(" "+string(groups), " snowrain") {
		t.Errorf("postfix not in group snowrain: %s", groups)
	}
	for dir, mode := range map[string]fs.FileMode{"/var/lib/snowrain": 0o750, "/var/spool/postfix/snowrain": 0o750} {
		if owner, m := ownerOf(t, dir); owner != "snowrain:snowrain" || m != mode {
			t.Errorf("%s: %s %v, want snowrain:snowrain %v", dir, owner, m, mode)
		}
	}
	if conff, _ := exec.Command("dpkg-query", "-W", "-f", "${Conffiles}", "snowrain").Output(); !strings.Contains(string(conff), "/etc/snowrain/snowrain.conf") {
		t.Errorf("conffiles: %q", conff)
	}
	if man, err := exec.Command("man", "-l", "/usr/share/man/man8/snowrain.8.gz").Output(); err != nil || !strings.Contains(string(man), "--policy-socket") {
		t.Errorf("man snowrain: %v\n%.300s", err, man)
	}

	// The unit's ExecStart, as its User=, sandboxed as far as possible
	// here. The test adds --dns (a DNS server it runs) and --metrics on a
	// port it picked: the sample configuration's 9425 is a default port.
	dns := dnstest.Start(t, corpus.Zone())
	d := exec.Command("bash", "../scripts/unit-exec.sh", "/lib/systemd/system/snowrain.service",
		"--dns", dns.Addr, "--metrics", "127.0.0.1:"+strconv.Itoa(testnet.FreePort(t, "127.0.0.1")), "--batch-interval", "100ms")
	log := &syncWriter{}
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Wait() }()
	defer d.Process.Kill()
	for i := 0; i < 400; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if owner, m := ownerOf(t, sock); owner != "snowrain:snowrain" || m != 0o660 {
		t.Fatalf("socket %s: %s %v, want snowrain:snowrain 0660\n%s", sock, owner, m, log)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.Process.Pid))
	for _, want := range []string{"NoNewPrivs:\t1", "CapBnd:\t0000000000000000", "CapEff:\t0000000000000000"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("daemon's /proc status lacks %q:\n%s", want, status)
		}
	}
	// ProtectSystem=strict: the daemon's view of /etc is read-only.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/etc/snowrain/probe", d.Process.Pid), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		os.Remove("/etc/snowrain/probe")
		t.Errorf("writing /etc in the daemon's mount namespace: %v, want EROFS", err)
	}

	// A test Postfix pointed at the package's socket: its daemons reach it
	// through postfix's membership of group snowrain.
	pf := postfixtest.Start(t, postfixtest.Options{Milter: "unix:" + sock})
	qid := sendMail(t, pf)
	for i := 0; i < 200 && !strings.Contains(pf.Log(), qid+": removed"); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(pf.Log(), "Milter service") {
		t.Errorf("Postfix could not use the milter:\n%s", pf.Log())
	}
	d.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("daemon exited: %v\n%s", err, log)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if owner, _ := ownerOf(t, "/var/lib/snowrain/snowrain.db"); owner != "snowrain:snowrain" {
		t.Errorf("database owned by %s", owner)
	}
	db, err := sql.Open("sqlite3", "file:/var/lib/snowrain/snowrain.db?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = db.QueryRow("SELECT COUNT(*) FROM messages WHERE queue_id = ?", qid).Scan(&n)
	db.Close()
	if err != nil || n != 1 {
		t.Errorf("message %s recorded %d times in /var/lib/snowrain/snowrain.db (%v)\n%s\n%s", qid, n, err, log, pf.Log())
	}
}

func apt(verb, pkg string) ([]byte, error) {
	cmd := exec.Command("apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", verb, pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}

func withoutRace(env []string) []string {
	var out []string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GOFLAGS="); ok {
			e = "GOFLAGS=" + strings.Join(strings.Fields(strings.ReplaceAll(v, "-race", "")), " ")
		}
		out = append(out, e)
	}
	return out
}

func field(t *testing.T, deb, name string) string {
	out, err := exec.Command("dpkg-deb", "-f", deb, name).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func ownerOf(t *testing.T, path string) (string, fs.FileMode) {
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return "", 0
	}
	st := fi.Sys().(*syscall.Stat_t)
	u, _ := user.LookupId(fmt.Sprint(st.Uid))
	g, _ := user.LookupGroupId(fmt.Sprint(st.Gid))
	var un, gn string
	if u != nil {
		un = u.Username
	}
	if g != nil {
		gn = g.Name
	}
	return un + ":" + gn, fi.Mode().Perm()
}

// machineState is what the package may touch and purge must restore: the
// user and group databases (their "-" backups aside, which the shadow
// tools rewrite), and the files below the directories the package and its
// scripts write to.
func machineState(t *testing.T) string {
	var b strings.Builder
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"} {
		data, _ := os.ReadFile(f)
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s %s\n", f, hex.EncodeToString(sum[:8]))
	}
	for _, root := range []string{"/etc/snowrain", "/etc/systemd/system", "/var/lib/systemd/deb-systemd-helper-enabled",
		"/var/lib/systemd/deb-systemd-helper-masked", "/var/lib/snowrain", "/var/spool/postfix/snowrain", "/run/snowrain",
		"/lib/systemd/system/snowrain.service", "/usr/bin/snowrain", "/usr/lib/tmpfiles.d/snowrain.conf"} {
		var paths []string
		filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
			if err == nil {
				paths = append(paths, p)
			}
			return nil
		})
		sort.Strings(paths)
		for _, p := range paths {
			fmt.Fprintln(&b, p)
		}
	}
	return b.String()
}

func diffLines(a, b string) string {
	in := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		in[l]--
	}
	for _, l := range strings.Split(b, "\n") {
		in[l]++
	}
	var out []string
	for l, n := range in {
		switch {
		case n < 0:
			out = append(out, "- "+l)
		case n > 0:
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// sendMail submits one message and returns Postfix's queue ID for it.
func sendMail(t *testing.T, pf *postfixtest.Instance) string {
	conn, err := net.DialTimeout("tcp", pf.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClient(conn, "mx.test.example")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgID := fmt.Sprintf("%d@package.test.example", time.Now().UnixNano())
	c.Hello("client.test.example")
	if err := c.Mail("alice@spf-pass.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@dest.example"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: <alice@spf-pass.example>\r\nTo: <bob@dest.example>\r\nSubject: package test\r\nMessage-ID: <%s>\r\n\r\nhello\r\n", msgID)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	re := regexp.MustCompile(`([0-9A-F]+): message-id=<` + regexp.QuoteMeta(msgID) + `>`)
	for i := 0; i < 200; i++ {
		if m := re.FindStringSubmatch(pf.Log()); m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no queue ID for %s:\n%s", msgID, pf.Log())
	return ""
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
