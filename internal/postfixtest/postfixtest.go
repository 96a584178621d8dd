// Package postfixtest runs a throwaway Postfix (Debian's package) on a
// loopback port, in its own configuration and queue directories, as a test
// fixture. It needs root; scripts/deps-postfix.sh installs Postfix.
//
// With Options.Debian the instance is laid out as Debian ships Postfix: the
// stock master.cf (/usr/share/postfix/master.cf.dist: smtpd, cleanup, smtp
// and most others chrooted in the queue directory), main.cf begun from
// Debian's main.cf.debian and main.cf.tls as its postinst does, and the
// chroot prepared by Debian's own /usr/lib/postfix/configure-instance.sh
// (etc files, resolv.conf, services, CA certificates, NSS libraries), as
// postfix@.service runs it before every start.
package postfixtest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/testnet"
)

// Options configure a throwaway Postfix.
type Options struct {
	Milter   string            // smtpd_milters value, e.g. "inet:127.0.0.1:8891"; empty: none
	CertFile string            // server certificate chain for STARTTLS; empty: no TLS
	KeyFile  string            //
	Hostname string            // myhostname; default mx.test.example
	Main     map[string]string // more main.cf settings, applied last
	// NetNS runs Postfix inside this network namespace the test made
	// (testnet.NewNS): everything Postfix reaches over IP (its name
	// server, the MX sinks) is then created inside it too, and the test
	// reaches smtpd through Dial or Send. Unix sockets (milters, socketmap
	// and policy services) work across namespaces as they are.
	NetNS *testnet.NS
	// Nameserver, when set (an IP answering on port 53 inside NetNS, e.g.
	// with dnstest's ServeIn), is the only DNS server Postfix uses: it
	// runs in a private mount namespace whose /etc/resolv.conf names it
	// (with trust-ad, for DANE). The libc resolver asks port 53 only, and
	// port 53 on the machine is not a test's to bind: Nameserver needs
	// NetNS.
	Nameserver string
	// Debian lays the instance out as Debian ships it (see the package
	// comment); main.cf then carries no milter macro or timeout settings,
	// only what a test applies.
	Debian bool
	// ChrootHosts are /etc/hosts lines added to the chroot's etc/hosts
	// (Debian layout): with smtp_dns_support_level = disabled, the chrooted
	// smtp finds destinations there, e.g. "127.0.0.1 dest.example".
	ChrootHosts []string
}

// Instance is a running throwaway Postfix.
type Instance struct {
	Addr    string // 127.0.0.1:PORT of its smtpd (inside Options.NetNS when set: use Dial)
	Dir     string // root of its config, queue and data directories
	LogFile string // its maillog_file

	t          testing.TB
	ns         *testnet.NS
	stopOnce   sync.Once
	registered bool // listed in /etc/postfix/main.cf's alternate_config_directories
}

var regMu sync.Mutex // serialises alternate_config_directories edits in-process

// Start configures and starts an instance; it stops when the test ends.
func Start(t testing.TB, o Options) *Instance {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("postfixtest: needs root: run the tests as root (make test, which runs scripts/deps-postfix.sh)")
	}
	if _, err := exec.LookPath("postfix"); err != nil {
		t.Fatal("postfixtest: postfix not installed; run scripts/deps-postfix.sh as root")
	}
	if o.Nameserver != "" && o.NetNS == nil {
		t.Fatal("postfixtest: Nameserver needs NetNS: serve port 53 inside a namespace the test made " +
			"(ns := testnet.NewNS(t); dns.ServeIn(t, ns, ip+\":53\")), never on the machine")
	}
	dir, err := os.MkdirTemp("/var/tmp", "snowrain-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	in := &Instance{Dir: dir, LogFile: filepath.Join(dir, "maillog"), t: t, ns: o.NetNS}
	t.Cleanup(in.Stop)
	port := testnet.FreePort(t, "127.0.0.1")
	in.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := in.configure(o, port); err != nil {
		t.Fatal(err)
	}
	if o.Debian {
		if err := in.prepareChroot(o); err != nil {
			t.Fatal(err)
		}
	}
	// Run as root, Postfix 3.7 starts, queues and stops an instance in any
	// config directory: the machine's /etc/postfix is not touched. Only if
	// this Postfix refuses is the instance listed in the default
	// instance's alternate_config_directories, for as long as it runs.
	out, err := in.start(o.Nameserver)
	if err != nil {
		if rerr := register(in.confDir(), true); rerr != nil {
			t.Fatal(rerr)
		}
		in.registered = true
		out, err = in.start(o.Nameserver)
	}
	if err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, in.Log())
	}
	if err := in.waitBanner(20 * time.Second); err != nil {
		t.Fatalf("postfix did not answer: %v\n%s", err, in.Log())
	}
	return in
}

func (in *Instance) confDir() string { return filepath.Join(in.Dir, "etc") }

// ConfDir is the instance's config_directory: postconf -c, or MAIL_CONFIG
// for a program that runs postconf itself.
func (in *Instance) ConfDir() string { return in.confDir() }

// QueueDir is the instance's queue_directory (the chroot of the Debian
// layout).
func (in *Instance) QueueDir() string { return filepath.Join(in.Dir, "spool") }

func (in *Instance) configure(o Options, port int) error {
	etc := in.confDir()
	for _, d := range []string{etc, filepath.Join(in.Dir, "spool"), filepath.Join(in.Dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Debian's stock master.cf, not the machine's /etc/postfix/master.cf:
	// a live server's may listen on more inet services (submission, a
	// content filter's reinjection port), which the test must not bind.
	master := "/usr/share/postfix/master.cf.dist"
	if out, err := exec.Command("cp", "-r", "/etc/postfix/dynamicmaps.cf",
		"/etc/postfix/dynamicmaps.cf.d", etc).CombinedOutput(); err != nil {
		return fmt.Errorf("copy config: %v %s", err, out)
	}
	if out, err := exec.Command("cp", master, filepath.Join(etc, "master.cf")).CombinedOutput(); err != nil {
		return fmt.Errorf("copy master.cf: %v %s", err, out)
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(in.Dir, "data")).CombinedOutput(); err != nil {
		return fmt.Errorf("chown data: %v %s", err, out)
	}
	if err := rewriteMaster(filepath.Join(etc, "master.cf"), port); err != nil {
		return err
	}
	host := o.Hostname
	if host == "" {
		host = "mx.test.example"
	}
	main := map[string]string{
		"compatibility_level":          "3.6",
		"queue_directory":              filepath.Join(in.Dir, "spool"),
		"data_directory":               filepath.Join(in.Dir, "data"),
		"maillog_file":                 in.LogFile,
		"maillog_file_prefixes":        in.Dir,
		"syslog_name":                  "postfix-" + filepath.Base(in.Dir),
		"myhostname":                   host,
		"mydomain":                     "test.example",
		"mydestination":                "",
		"relay_domains":                "",
		"inet_interfaces":              "127.0.0.1",
		"inet_protocols":               "ipv4",
		"mynetworks":                   "127.0.0.0/8",
		"smtpd_relay_restrictions":     "permit_mynetworks, reject",
		"smtpd_recipient_restrictions": "permit_mynetworks, reject",
		"default_transport":            "discard",
		"local_transport":              "discard",
		"message_size_limit":           "40000000",
		"smtpd_peername_lookup":        "no",
		"smtpd_error_sleep_time":       "0",
		"in_flow_delay":                "0",
		"biff":                         "no",
		"smtputf8_enable":              "no",
		"milter_protocol":              "6",
		"milter_default_action":        "accept",
		"milter_connect_timeout":       "10s",
		"milter_command_timeout":       "10s",
		"milter_content_timeout":       "60s",
		"milter_connect_macros":        "j {daemon_name} {daemon_addr} {daemon_port} v _ {client_addr} {client_name} {client_ptr}",
		"milter_helo_macros":           "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
		"milter_mail_macros":           "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer} {tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
		"milter_end_of_data_macros":    "i",
	}
	if o.Debian {
		// Debian's postinst sets relay restrictions only: recipient
		// restrictions stay at Postfix's default (empty).
		delete(main, "smtpd_recipient_restrictions")
		main["alias_maps"] = "" // Debian's postinst writes /etc/aliases.db; no local delivery here
		for k := range main {
			if strings.HasPrefix(k, "milter_") {
				delete(main, k)
			}
		}
		stock, err := debianMain()
		if err != nil {
			return err
		}
		for k, v := range stock {
			if _, ours := main[k]; !ours {
				main[k] = v
			}
		}
	}
	if o.Milter != "" {
		main["smtpd_milters"] = o.Milter
		main["non_smtpd_milters"] = o.Milter
	}
	if o.CertFile != "" {
		main["smtpd_tls_cert_file"] = o.CertFile
		main["smtpd_tls_key_file"] = o.KeyFile
		main["smtpd_tls_security_level"] = "may"
		main["smtpd_tls_loglevel"] = "1"
	}
	for k, v := range o.Main {
		main[k] = v
	}
	keys := make([]string, 0, len(main))
	for k := range main {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, main[k])
	}
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	if o.Debian {
		return nil
	}
	if out, err := exec.Command("postconf", "-c", etc, "-F", "*/*/chroot = n").CombinedOutput(); err != nil {
		return fmt.Errorf("postconf chroot: %v %s", err, out)
	}
	return nil
}

// debianMain reads the main.cf Debian's postinst starts from: main.cf.debian
// and main.cf.tls (a fresh install's TLS settings).
func debianMain() (map[string]string, error) {
	main := map[string]string{}
	for _, f := range []string{"/usr/share/postfix/main.cf.debian", "/usr/share/postfix/main.cf.tls"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("postfixtest: Debian layout: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, " ") {
				main[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return main, nil
}

// prepareChroot runs Debian's configure-instance.sh on the instance (it
// honours MAIL_CONFIG through postconf), as postfix@.service does before
// it starts Postfix, then adds the test's hosts and name server.
func (in *Instance) prepareChroot(o Options) error {
	cmd := exec.Command("/usr/lib/postfix/configure-instance.sh", "-")
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+in.confDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("configure-instance.sh: %v %s", err, out)
	}
	etc := filepath.Join(in.QueueDir(), "etc")
	if _, err := os.Stat(filepath.Join(etc, "services")); err != nil {
		return fmt.Errorf("configure-instance.sh did not prepare the chroot: %w", err)
	}
	if len(o.ChrootHosts) > 0 {
		f, err := os.OpenFile(filepath.Join(etc, "hosts"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, strings.Join(o.ChrootHosts, "\n"))
		if err := f.Close(); err != nil {
			return err
		}
	}
	if o.Nameserver != "" {
		return os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+o.Nameserver+"\noptions trust-ad\n"), 0o644)
	}
	return nil
}

var (
	smtpInet    = regexp.MustCompile(`^smtp\s+inet\s`)
	inetService = regexp.MustCompile(`^\S+\s+inet\s`)
)

// rewriteMaster moves the smtpd listener to 127.0.0.1:port and comments
// out every other inet service, its continuation lines too: the instance
// binds only the port the test picked.
func rewriteMaster(path string, port int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := masterOnPort(string(b), port)
	if err != nil {
		return fmt.Errorf("postfixtest: %s: %w", path, err)
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

// masterOnPort is rewriteMaster's edit of master.cf text. A logical line
// starts at a line that begins with neither whitespace nor "#"; lines
// that begin with whitespace continue it (master(5)).
func masterOnPort(master string, port int) (string, error) {
	lines := strings.SplitAfter(master, "\n")
	moved, off := 0, false
	for i, l := range lines {
		switch {
		case l == "" || l[0] == '#' || strings.TrimSpace(l) == "":
		case l[0] == ' ' || l[0] == '\t':
			if off {
				lines[i] = "#" + l
			}
		case smtpInet.MatchString(l):
			lines[i] = smtpInet.ReplaceAllString(l, fmt.Sprintf("127.0.0.1:%d inet ", port))
			moved, off = moved+1, false
		case inetService.MatchString(l):
			lines[i], off = "#"+l, true
		default:
			off = false
		}
	}
	if moved != 1 {
		return "", fmt.Errorf("%d smtp inet services, want 1", moved)
	}
	return strings.Join(lines, ""), nil
}

// register adds or removes dir in the default instance's
// alternate_config_directories, without which `postfix -c` refuses to run.
func register(dir string, add bool) error {
	regMu.Lock()
	defer regMu.Unlock()
	lock, err := os.OpenFile("/run/lock/snowrain-postfixtest.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err == nil {
		defer lock.Close()
		syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	}
	out, err := exec.Command("postconf", "-h", "alternate_config_directories").Output()
	if err != nil {
		return fmt.Errorf("postconf: %v (is /etc/postfix/main.cf there? run scripts/deps-postfix.sh)", err)
	}
	var dirs []string
	for _, d := range strings.FieldsFunc(string(out), func(r rune) bool { return r == ' ' || r == ',' || r == '\n' }) {
		if d == dir {
			continue
		}
		// Only our own entries are pruned: stale ones of killed tests.
		if _, err := os.Stat(d); err != nil && strings.HasPrefix(d, "/var/tmp/snowrain-postfix-") {
			continue
		}
		dirs = append(dirs, d)
	}
	if add {
		dirs = append(dirs, dir)
	}
	// The last instance out removes the key, leaving main.cf as it was
	// (a contributor's own Postfix may be running on it).
	cmd := exec.Command("postconf", "-X", "alternate_config_directories")
	if len(dirs) > 0 {
		cmd = exec.Command("postconf", "-e", "alternate_config_directories = "+strings.Join(dirs, " "))
	}
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("postconf: %v %s", err, o)
	}
	return nil
}

// start starts the master: inside the test's network namespace when
// there is one (the master and every daemon it forks stay there), and in
// a private mount namespace with its own resolv.conf when a nameserver is
// given.
func (in *Instance) start(nameserver string) ([]byte, error) {
	cmd := exec.Command("postfix", "-c", in.confDir(), "start")
	if nameserver != "" {
		conf := filepath.Join(in.Dir, "resolv.conf")
		if err := os.WriteFile(conf, []byte("nameserver "+nameserver+"\noptions trust-ad\n"), 0o644); err != nil {
			return nil, err
		}
		script := fmt.Sprintf("mount --bind %s /etc/resolv.conf && exec postfix -c %s start", conf, in.confDir())
		cmd = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	}
	if in.ns == nil {
		return cmd.CombinedOutput()
	}
	var out []byte
	err := in.ns.Do(func() (err error) {
		out, err = cmd.CombinedOutput()
		return err
	})
	return out, err
}

// Dial connects to the instance's smtpd, inside its network namespace if
// it has one.
func (in *Instance) Dial(ctx context.Context) (net.Conn, error) {
	if in.ns != nil {
		return in.ns.DialContext(ctx, "tcp", in.Addr)
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", in.Addr)
}

// Send submits one message over SMTP (no TLS, no AUTH), as net/smtp's
// SendMail does, through Dial.
func (in *Instance) Send(ctx context.Context, from string, to []string, msg []byte) error {
	c, err := in.Dial(ctx)
	if err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	sc, err := smtp.NewClient(c, "localhost")
	if err != nil {
		c.Close()
		return err
	}
	defer sc.Close()
	if err := sc.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := sc.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := sc.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return sc.Quit()
}

func (in *Instance) postfix(args ...string) ([]byte, error) {
	return exec.Command("postfix", append([]string{"-c", in.confDir()}, args...)...).CombinedOutput()
}

func (in *Instance) waitBanner(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := in.Dial(ctx)
		cancel()
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(line, "220") {
				return nil
			}
			last = fmt.Errorf("banner %q: %v", line, err)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// Log returns the instance's maillog so far.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.LogFile)
	return string(b)
}

// Apply runs `postconf -c DIR -e LINE` for each line, as an admin pastes
// what a program printed, then reloads.
func (in *Instance) Apply(lines ...string) error {
	for _, l := range lines {
		if out, err := exec.Command("postconf", "-c", in.confDir(), "-e", l).CombinedOutput(); err != nil {
			return fmt.Errorf("postconf -e %q: %v %s", l, err, out)
		}
	}
	return in.reload()
}

// reload runs `postfix reload` and waits until the daemons that ran with
// the old settings have exited (an idle smtpd may otherwise take one more
// connection with them).
func (in *Instance) reload() error {
	old := in.children()
	if out, err := in.postfix("reload"); err != nil {
		return fmt.Errorf("postfix reload: %v %s", err, out)
	}
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		alive := 0
		for _, pid := range old {
			if syscall.Kill(pid, 0) == nil {
				alive++
			}
		}
		if alive == 0 {
			return nil
		}
	}
	return fmt.Errorf("postfix reload: daemons of the old configuration still running")
}

// children lists the PIDs of the master's child processes.
func (in *Instance) children() []int {
	b, err := os.ReadFile(filepath.Join(in.QueueDir(), "pid", "master.pid"))
	if err != nil {
		return nil
	}
	master := strings.TrimSpace(string(b))
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, f := range stats {
		st, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces: split after ")".
		i := strings.LastIndexByte(string(st), ')')
		if i < 0 {
			continue
		}
		if fields := strings.Fields(string(st[i+1:])); len(fields) > 1 && fields[1] == master {
			var pid int
			fmt.Sscan(filepath.Base(filepath.Dir(f)), &pid)
			out = append(out, pid)
		}
	}
	return out
}

// Postconf changes main.cf settings and reloads.
func (in *Instance) Postconf(kv map[string]string) error {
	for k, v := range kv {
		if out, err := exec.Command("postconf", "-c", in.confDir(), "-e", k+" = "+v).CombinedOutput(); err != nil {
			return fmt.Errorf("postconf %s: %v %s", k, err, out)
		}
	}
	return in.reload()
}

// WaitIdle waits until the queue is empty.
func (in *Instance) WaitIdle(ctx context.Context) error {
	for {
		out, _ := exec.Command("postqueue", "-c", in.confDir(), "-j").Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postfix queue not empty: %s", out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the instance and removes its files; safe to call twice.
func (in *Instance) Stop() {
	in.stopOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(in.confDir(), "main.cf")); err == nil {
			if out, err := in.postfix("stop"); err != nil {
				in.t.Logf("postfix stop: %v %s", err, out)
				in.postfix("abort")
			}
			in.waitStopped(10 * time.Second)
			if in.registered {
				register(in.confDir(), false)
			}
		}
		os.RemoveAll(in.Dir)
	})
}

// waitStopped waits for the master's pid file to go away.
func (in *Instance) waitStopped(limit time.Duration) {
	pid := filepath.Join(in.Dir, "spool", "pid", "master.pid")
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(pid); err != nil {
			return
		}
		if out, err := in.postfix("status"); err != nil {
			_ = out
			return
		}
	}
}
