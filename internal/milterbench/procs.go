package milterbench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a filter daemon started for a run, measured from /proc.
type Proc struct {
	Name string
	Sock string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil // enough to tell what went wrong
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs argv and waits until sock accepts connections.
func start(name, sock string, argv ...string) (*Proc, error) {
	p := &Proc{Name: name, Sock: sock, cmd: exec.Command(argv[0], argv[1:]...), log: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("%s exited before listening (%v): %s", name, err, p.log)
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return p, nil
		}
	}
	p.Stop()
	return nil, fmt.Errorf("%s did not listen on %s: %s", name, sock, p.log)
}

// Stop ends the process: SIGTERM, then SIGKILL after 5 s.
func (p *Proc) Stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Log returns what the process wrote.
func (p *Proc) Log() string { return p.log.String() }

// CPU returns the user+system time of the process and all its threads,
// exited ones included, from /proc/PID/stat (clock ticks of 10 ms).
func (p *Proc) CPU() time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / clockTicks)
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go runs on.
const clockTicks = 100

// Env is the directory and DNS server the daemons of a run share.
type Env struct {
	Dir     string
	DNSAddr string // host:53 on loopback, so that /etc/resolv.conf can name it
}

// StartOpenDKIM runs OpenDKIM as a verifier. It has no storage and no
// SPF or DMARC: it verifies up to three signatures per message
// (MaximumSignaturesToVerify's default; the corpus has at most three),
// fetching keys over DNS through its libunbound resolver (forwarding to
// the test server, with its own cache, and QueryCache on), and adds an
// Authentication-Results field to every message.
func StartOpenDKIM(e Env) (*Proc, error) {
	host, _, _ := net.SplitHostPort(e.DNSAddr)
	sock := filepath.Join(e.Dir, "opendkim.sock")
	unbound := filepath.Join(e.Dir, "unbound.conf")
	// libunbound refuses to send queries to loopback unless told.
	if err := os.WriteFile(unbound, []byte("server:\n\tdo-not-query-localhost: no\n"), 0o644); err != nil {
		return nil, err
	}
	conf := filepath.Join(e.Dir, "opendkim.conf")
	err := os.WriteFile(conf, []byte(strings.Join([]string{
		"Mode v",
		"Socket local:" + sock,
		"Background no",
		"Syslog no",
		"AuthservID mx.test.example",
		"AlwaysAddARHeader yes", // as snowrain, a result for unsigned mail too
		"Nameservers " + host,
		// "ResolverConfiguration " + unbound,
		"QueryCache yes",
		"DNSTimeout 2",
		"MinimumKeyBits 1024",
		"RequireSafeKeys no",
		"UMask 000",
	}, "\n")+"\n"), 0o644)
	if err != nil {
		return nil, err
	}
	return start("opendkim", sock, "opendkim", "-f", "-x", conf)
}

// StartOpenDMARC runs OpenDMARC in a mount namespace of its own whose
// /etc/resolv.conf names the test DNS server: OpenDMARC has no option for
// its resolver (DMARC records through res_query, SPF through libspf2's).
// It reads DKIM results from OpenDKIM's Authentication-Results field
// (TrustedAuthservIDs), checks SPF itself (SPFSelfValidate, ignoring any
// SPF result in the header), finds organisational domains with the
// Public Suffix List, writes a line per message to its history file (the
// record aggregate reports are made from, as snowrain's store is) and
// adds Authentication-Results. It neither rejects nor reports.
func StartOpenDMARC(e Env) (*Proc, error) {
	host, _, _ := net.SplitHostPort(e.DNSAddr)
	sock := filepath.Join(e.Dir, "opendmarc.sock")
	resolv := filepath.Join(e.Dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+host+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		return nil, err
	}
	conf := filepath.Join(e.Dir, "opendmarc.conf")
	err := os.WriteFile(conf, []byte(strings.Join([]string{
		"Socket local:" + sock,
		"Background false",
		"Syslog false",
		"AuthservID mx.test.example",
		"TrustedAuthservIDs mx.test.example",
		"PublicSuffixList " + publicSuffixList,
		"SPFSelfValidate true",
		"SPFIgnoreResults true",
		"HistoryFile " + filepath.Join(e.Dir, "opendmarc.history"),
		"RejectFailures false",
		"FailureReports false",
		"UMask 000",
	}, "\n")+"\n"), 0o644)
	if err != nil {
		return nil, err
	}
	// unshare makes the mount private to the new namespace (util-linux's
	// default propagation), so the machine's resolv.conf is untouched.
	script := fmt.Sprintf("mount --bind %q /etc/resolv.conf && exec opendmarc -f -c %q", resolv, conf)
	return start("opendmarc", sock, "unshare", "--mount", "--", "sh", "-c", script)
}

// publicSuffixList is Debian's copy (package publicsuffix, which
// opendmarc depends on).
const publicSuffixList = "/usr/share/publicsuffix/public_suffix_list.dat"

// StartSnowrain runs `snowrain serve` from bin with its defaults, the
// store in e.Dir and the test DNS server.
func StartSnowrain(e Env, bin string) (*Proc, error) {
	sock := filepath.Join(e.Dir, "snowrain.sock")
	conf := filepath.Join(e.Dir, "snowrain.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		return nil, err
	}
	return start("snowrain", sock, bin, "serve", "--config", conf, "--milter", "unix:"+sock,
		"--db", filepath.Join(e.Dir, "snowrain.db"), "--dns", e.DNSAddr, "--authserv-id", "mx.test.example")
}

// Available reports which anchor binaries are missing from PATH.
func Available() error {
	var missing []string
	for _, b := range []string{"opendkim", "opendmarc", "unshare"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if _, err := os.Stat(publicSuffixList); err != nil {
		missing = append(missing, publicSuffixList)
	}
	if len(missing) > 0 {
		return errors.New("missing " + strings.Join(missing, ", ") + " (scripts/deps-anchors.sh installs them)")
	}
	return nil
}

// Record runs `perf record` on p until the returned function is called,
// writing dir/NAME.perf.data: where a daemon's CPU goes under the
// benchmark's load (`perf report -i`).
func (p *Proc) Record(dir string) (stop func(), err error) {
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(p.cmd.Process.Pid),
		"-o", filepath.Join(dir, p.Name+".perf.data"))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}, nil
}
