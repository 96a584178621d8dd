package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPostfixSnippets applies contrib/postfix/ to a copy of Debian's stock
// configuration that already has a milter, a TLS policy map and recipient
// restrictions: every part appends, no key ends up set twice (postconf
// would warn), running a part again changes nothing, and the inbound
// service fails open.
func TestPostfixSnippets(t *testing.T) {
	if _, err := exec.LookPath("postconf"); err != nil {
		t.Fatal("postconf missing: run scripts/deps-postfix.sh as root")
	}
	dir := t.TempDir()
	stock, err := os.ReadFile("/usr/share/postfix/main.cf.debian")
	if err != nil {
		t.Fatal(err)
	}
	tlsPart, _ := os.ReadFile("/usr/share/postfix/main.cf.tls")
	mainCF := string(stock) + string(tlsPart) + "smtpd_milters = unix:opendkim/opendkim.sock\n" +
		"smtp_tls_policy_maps = hash:/etc/postfix/tls_policy\n" +
		"smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644)
	master, _ := os.ReadFile("/usr/share/postfix/master.cf.dist")
	os.WriteFile(filepath.Join(dir, "master.cf"), master, 0o644)
	env := append(os.Environ(), "MAIL_CONFIG="+dir)
	postconf := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("postconf", append([]string{"-c", dir}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("postconf %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	// Part 1: the three lines, applied one by one (with the append form
	// the comment gives for an existing smtpd_milters).
	milter, err := os.ReadFile("../contrib/postfix/main.cf.milter")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(milter), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("main.cf.milter has %d settings, want 3: %q", len(lines), lines)
	}
	sh := exec.Command("sh", "-c", `postconf -e "smtpd_milters = $(postconf -h smtpd_milters) unix:snowrain/milter.sock"`)
	sh.Env = env
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, l := range lines[1:] {
		postconf("-e", l)
	}
	// Parts 2 and 3, twice each.
	for i := 0; i < 2; i++ {
		for _, part := range []string{"tls-policy.sh", "inbound-policy.sh"} {
			cmd := exec.Command("sh", "../contrib/postfix/"+part)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", part, err, out)
			}
		}
	}
	want := map[string]string{
		"smtpd_milters":                "unix:opendkim/opendkim.sock unix:snowrain/milter.sock",
		"non_smtpd_milters":            "$smtpd_milters",
		"milter_default_action":        "accept",
		"smtp_tls_policy_maps":         "hash:/etc/postfix/tls_policy proxy:socketmap:unix:/var/spool/postfix/snowrain/policy.sock:tls",
		"smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination, check_policy_service { unix:snowrain/inbound.sock, default_action=DUNNO, timeout=10s }",
		"smtp_tls_security_level":      "may",
	}
	for k, v := range want {
		if got := strings.TrimSpace(postconf("-h", k)); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if out := postconf("-n"); strings.Contains(out, "warning") {
		t.Errorf("postconf warns:\n%s", out)
	}
	if x := postconf("-xh", "proxy_read_maps"); !strings.Contains(x, "proxy:socketmap:unix:/var/spool/postfix/snowrain/policy.sock:tls") {
		t.Errorf("proxy_read_maps does not cover the map: %s", x)
	}
	cf, _ := os.ReadFile(filepath.Join(dir, "main.cf"))
	seen := map[string]bool{}
	for _, l := range strings.Split(string(cf), "\n") {
		if k, _, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			k = strings.TrimSpace(k)
			if seen[k] {
				t.Errorf("main.cf sets %s twice", k)
			}
			seen[k] = true
		}
	}
}

// TestMakeInstall stages `make install` in a DESTDIR: the files land under
// PREFIX, the units start PREFIX/bin/snowrain, and the binary says its
// version.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	mk := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/opt/sr")
	mk.Env = withoutRace(os.Environ())
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"opt/sr/bin/snowrain", "opt/sr/share/man/man8/snowrain.8", "opt/sr/lib/systemd/system/snowrain.service",
		"opt/sr/lib/tmpfiles.d/snowrain.conf", "opt/sr/lib/sysusers.d/snowrain.conf", "etc/snowrain/snowrain.conf"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "opt/sr/lib/systemd/system/snowrain.service"))
	if !strings.Contains(string(unit), "\nExecStart=/opt/sr/bin/snowrain serve ") {
		t.Errorf("unit:\n%s", unit)
	}
	out, err := exec.Command(filepath.Join(dest, "opt/sr/bin/snowrain"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "snowrain ") || strings.Contains(string(out), "dev") {
		t.Errorf("snowrain --version: %q %v", out, err)
	}
}
