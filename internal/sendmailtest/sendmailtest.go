// Package sendmailtest runs a throwaway Sendmail (Debian's package,
// unpacked by scripts/deps-sendmail.sh rather than installed, because
// installing it removes Postfix) on a loopback port, as a test fixture.
package sendmailtest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/testnet"
)

// Options configure a throwaway Sendmail.
type Options struct {
	Milter   string // INPUT_MAIL_FILTER socket, e.g. "inet:8891@127.0.0.1"
	CertFile string // STARTTLS certificate chain; empty: no TLS
	KeyFile  string
	CAFile   string
	Hostname string // default mx.test.example
	Root     string // unpacked tree; default $SENDMAIL_ROOT or /opt/snowrain-test/sendmail

	// SmartHost, when set ("127.0.0.1:PORT"), makes Sendmail deliver
	// everything there at once instead of only queueing it.
	SmartHost string
	// Syslog collects Sendmail's log lines (it logs nowhere else) on a
	// datagram socket of the test's own, which Sendmail sees as /dev/log in
	// its private /dev: the machine's /dev/log (a syslog daemon's) is
	// neither used nor touched, and tests run side by side.
	Syslog bool
}

// Instance is a running throwaway Sendmail.
type Instance struct {
	Addr string // 127.0.0.1:PORT
	Dir  string

	cmd      *exec.Cmd
	out      *strings.Builder
	mu       sync.Mutex
	stopOnce sync.Once
	syslog   *net.UnixConn
	lines    []string
}

// Start builds a .cf with m4, starts Sendmail in the foreground inside a
// private mount and UTS namespace (so its host name resolves without
// touching the machine's /etc/hosts, and its /dev is a private one whose
// log is the test's socket), and waits for its banner.
func Start(t testing.TB, o Options) *Instance {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("sendmailtest: needs root: run the tests as root (make test, which runs scripts/deps-sendmail.sh)")
	}
	if o.Root == "" {
		o.Root = os.Getenv("SENDMAIL_ROOT")
	}
	if o.Root == "" {
		o.Root = "/opt/snowrain-test/sendmail"
	}
	bin := filepath.Join(o.Root, "usr/libexec/sendmail/sendmail")
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("sendmailtest: no Sendmail tree; run scripts/deps-sendmail.sh as root")
	}
	if o.Hostname == "" {
		o.Hostname = "mx.test.example"
	}
	dir, err := os.MkdirTemp("/var/tmp", "snowrain-sendmail-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // Sendmail's children, not root, reach dir/log
	in := &Instance{Dir: dir, out: &strings.Builder{}}
	t.Cleanup(in.Stop)
	if o.Syslog {
		if err := in.listenSyslog(); err != nil {
			t.Fatal(err)
		}
	}
	port := testnet.FreePort(t, "127.0.0.1")
	in.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	cf, err := in.buildCF(o, port)
	if err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte(fmt.Sprintf("127.0.0.1 localhost\n127.0.1.1 %s %s\n", o.Hostname,
		strings.SplitN(o.Hostname, ".", 2)[0])), 0o644)
	script := fmt.Sprintf("set -e; mount --bind %s /etc/hosts; hostname %s; %s; exec %s -bD -C %s -L sendmail",
		hosts, o.Hostname, privateDev(filepath.Join(dir, "dev"), in.syslog != nil, filepath.Join(dir, "log")), bin, cf)
	in.cmd = exec.Command("unshare", "-m", "-u", "--propagation", "private", "sh", "-c", script)
	in.cmd.Stdout, in.cmd.Stderr = in, in
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := in.waitBanner(30 * time.Second); err != nil {
		t.Fatalf("sendmail did not answer: %v\n%s", err, in.Output())
	}
	return in
}

// Write collects Sendmail's output.
func (in *Instance) Write(p []byte) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.out.Write(p)
}

// Output returns what Sendmail printed.
func (in *Instance) Output() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.out.String()
}

func (in *Instance) buildCF(o Options, port int) (string, error) {
	queue := filepath.Join(in.Dir, "mqueue")
	if err := os.MkdirAll(queue, 0o700); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("divert(-1)")
	w("divert(0)dnl")
	w("OSTYPE(`linux')dnl")
	w("define(`QUEUE_DIR', `%s')dnl", queue)
	w("define(`STATUS_FILE', `%s')dnl", filepath.Join(in.Dir, "statistics"))
	w("define(`confPID_FILE', `%s')dnl", filepath.Join(in.Dir, "sendmail.pid"))
	w("define(`ALIAS_FILE', `')dnl")
	w("define(`HELP_FILE', `')dnl")
	if o.SmartHost != "" {
		host, port, _ := net.SplitHostPort(o.SmartHost)
		w("define(`confDELIVERY_MODE', `background')dnl")
		w("define(`SMART_HOST', `esmtp:[%s]')dnl", host)
		w("define(`ESMTP_MAILER_ARGS', `TCP $h %s')dnl", port)
		w("define(`confLOG_LEVEL', `9')dnl")
	} else {
		w("define(`confDELIVERY_MODE', `queueonly')dnl")
	}
	w("define(`confDOMAIN_NAME', `%s')dnl", o.Hostname)
	w("define(`confMAX_MESSAGE_SIZE', `40000000')dnl")
	w("define(`confDONT_PROBE_INTERFACES', `True')dnl")
	w("define(`confTO_IDENT', `0s')dnl")
	w("define(`confCON_EXPENSIVE', `True')dnl")
	w("define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl")
	w("define(`confREFUSE_LA', `999')dnl")
	w("define(`confQUEUE_LA', `999')dnl")
	w("define(`confMAX_DAEMON_CHILDREN', `0')dnl")
	w("define(`confCONNECTION_RATE_THROTTLE', `0')dnl")
	// Sendmail refuses key files in unsafe paths (/var/tmp is world
	// writable): trust the sticky bit, and keep copies in a 0700 dir.
	w("define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl")
	if o.CertFile != "" {
		ca := o.CAFile
		if ca == "" {
			ca = o.CertFile
		}
		tlsDir := filepath.Join(in.Dir, "tls")
		os.MkdirAll(tlsDir, 0o700)
		files := map[string]string{"cert.pem": o.CertFile, "key.pem": o.KeyFile, "ca.pem": ca}
		for name, src := range files {
			data, err := os.ReadFile(src)
			if err != nil {
				return "", err
			}
			if err := os.WriteFile(filepath.Join(tlsDir, name), data, 0o600); err != nil {
				return "", err
			}
		}
		w("define(`confSERVER_CERT', `%s')dnl", filepath.Join(tlsDir, "cert.pem"))
		w("define(`confSERVER_KEY', `%s')dnl", filepath.Join(tlsDir, "key.pem"))
		w("define(`confCACERT', `%s')dnl", filepath.Join(tlsDir, "ca.pem"))
		w("define(`confCACERT_PATH', `%s')dnl", tlsDir)
	}
	// Without it Sendmail also opens its MSA on port 587: a test must bind
	// only the port it picked.
	w("FEATURE(`no_default_msa')dnl")
	w("FEATURE(`promiscuous_relay')dnl")
	w("FEATURE(`accept_unresolvable_domains')dnl")
	w("FEATURE(`accept_unqualified_senders')dnl")
	w("DAEMON_OPTIONS(`Port=%d, Addr=127.0.0.1, Name=MTA')dnl", port)
	if o.Milter != "" {
		w("INPUT_MAIL_FILTER(`snowrain', `S=%s, F=, T=S:10s;R:10s;E:5m')dnl", o.Milter)
		w("define(`confMILTER_MACROS_CONNECT', `j, _, {daemon_name}, {if_name}, {if_addr}, {client_addr}, {client_name}, {client_ptr}')dnl")
		w("define(`confMILTER_MACROS_HELO', `{tls_version}, {cipher}, {cipher_bits}, {cert_subject}, {cert_issuer}, {verify}')dnl")
		w("define(`confMILTER_MACROS_ENVFROM', `i, {auth_type}, {auth_authen}, {auth_ssf}, {auth_author}, {mail_mailer}, {mail_host}, {mail_addr}')dnl")
		w("define(`confMILTER_MACROS_EOM', `{msg_id}, i')dnl")
	}
	w("MAILER(`smtp')dnl")
	mc := filepath.Join(in.Dir, "test.mc")
	if err := os.WriteFile(mc, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	cfDir := filepath.Join(o.Root, "usr/share/sendmail/cf")
	out, err := exec.Command("m4", "-D_CF_DIR_="+cfDir+"/", filepath.Join(cfDir, "m4/cf.m4"), mc).Output()
	if err != nil {
		return "", fmt.Errorf("m4: %w", err)
	}
	cf := filepath.Join(in.Dir, "test.cf")
	return cf, os.WriteFile(cf, out, 0o644)
}

func (in *Instance) waitBanner(limit time.Duration) error {
	var last error
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", in.Addr, time.Second)
		if err != nil {
			last = err
			continue
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err == nil && strings.HasPrefix(line, "220") {
			return nil
		}
		last = fmt.Errorf("banner %q: %v", line, err)
	}
	return last
}

// QueueFiles returns the contents of the queued header files (qf*), where
// the milter's header changes land.
func (in *Instance) QueueFiles() []string {
	files, _ := filepath.Glob(filepath.Join(in.Dir, "mqueue", "qf*"))
	var out []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		out = append(out, string(b))
	}
	return out
}

// Stop stops Sendmail and removes its files; safe to call twice.
func (in *Instance) Stop() {
	in.stopOnce.Do(func() {
		if in.cmd != nil && in.cmd.Process != nil {
			in.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { in.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				in.cmd.Process.Kill()
				<-done
			}
		}
		if in.syslog != nil {
			in.syslog.Close()
		}
		os.RemoveAll(in.Dir)
	})
}

// privateDev is the shell that mounts a private /dev in Sendmail's mount
// namespace: a tmpfs with the devices it uses bound in, and log, when
// wanted, a link to the test's syslog socket. Nothing outside changes.
func privateDev(dev string, withLog bool, sock string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mkdir -p %[1]s; mount -t tmpfs -o mode=0755,nosuid tmpfs %[1]s; ", dev)
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		fmt.Fprintf(&b, "touch %[1]s/%[2]s; mount --bind /dev/%[2]s %[1]s/%[2]s; ", dev, n)
	}
	fmt.Fprintf(&b, "ln -s /proc/self/fd %[1]s/fd; ln -s /proc/self/fd/0 %[1]s/stdin; ln -s /proc/self/fd/1 %[1]s/stdout; ln -s /proc/self/fd/2 %[1]s/stderr; ", dev)
	if withLog {
		fmt.Fprintf(&b, "ln -s %s %s/log; ", sock, dev)
	}
	fmt.Fprintf(&b, "mount --move %s /dev", dev)
	return b.String()
}

// listenSyslog binds the test's syslog socket (dir/log) and keeps what
// arrives, rewritten as a syslog file line ("Mon _2 15:04:05 host tag[pid]:
// msg").
func (in *Instance) listenSyslog() error {
	path := filepath.Join(in.Dir, "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	os.Chmod(path, 0o666)
	in.syslog = c
	go func() {
		buf := make([]byte, 8192)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			line := string(buf[:n])
			if i := strings.IndexByte(line, '>'); strings.HasPrefix(line, "<") && i > 0 {
				line = line[i+1:]
			}
			if len(line) > 16 {
				line = line[:16] + "localhost " + line[16:]
			}
			in.mu.Lock()
			in.lines = append(in.lines, strings.TrimRight(line, "\n"))
			in.mu.Unlock()
		}
	}()
	return nil
}

// Syslog returns the log lines received so far (with Options.Syslog).
func (in *Instance) Syslog() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.lines...)
}
