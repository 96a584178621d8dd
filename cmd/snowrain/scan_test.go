package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/hostile"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
)

// scanRSSBound is the peak resident set a `snowrain scan` process may
// reach against the hostile servers: the binary's own baseline is about
// 25 MiB; a scanner reading what they offer would need gigabytes.
const scanRSSBound = 96 << 20

// runScanRSS runs the binary and returns its combined output and peak RSS.
// The peak is the process's own VmHWM, read while it runs: wait4's
// ru_maxrss would also count the test process's own resident set, which
// the kernel carries into a child at exec (Go starts children with
// CLONE_VM, so the child's first address space is the parent's).
func runScanRSS(t *testing.T, args ...string) ([]byte, int64) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out.Bytes())
			}
			if peak == 0 {
				t.Fatalf("%s: no VmHWM read before it exited", strings.Join(args, " "))
			}
			return out.Bytes(), peak
		case <-tick.C:
			if hwm, ok := vmHWM(cmd.Process.Pid); ok && hwm > peak {
				peak = hwm
			}
		}
	}
}

// vmHWM reads a process's peak resident set from /proc, in bytes.
func vmHWM(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// TestScanHostileServersRSS runs the real `snowrain scan hosts` and
// `snowrain scan domains` against servers sending endless lines, endless
// multi-line replies, endless EHLO replies and slow drips, and MTA-STS
// hosts sending endless headers and bodies (issue 10): every grab ends
// with its class and the process's peak RSS stays under scanRSSBound.
func TestScanHostileServersRSS(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "block.txt")
	os.WriteFile(empty, []byte("# nothing blocked on loopback for this test\n"), 0o644)
	var servers []*hostile.Server
	var zone strings.Builder
	var domains []string
	var ips []string
	for i := range hostile.SMTPKinds {
		ips = append(ips, fmt.Sprintf("127.69.1.%d", i+1))
	}
	// One SMTP port on the attackers, the rest of the swept /29 closed.
	smtpPorts := testnet.Pick(t, testnet.Request{TCP: ips, Closed: "127.69.1.0/29"})
	for i, kind := range hostile.SMTPKinds {
		ip := ips[i]
		servers = append(servers, hostile.ServeSMTP(t, smtpPorts.TCP[i], kind))
		d := fmt.Sprintf("%s.hostile.example", kind)
		fmt.Fprintf(&zone, "%s. MX 10 mx.%s.\nmx.%s. A %s\n", d, d, d, ip)
		domains = append(domains, d)
	}
	ca := testca.New(t)
	var stsNames []string
	for _, kind := range []hostile.Kind{hostile.EndlessHeader, hostile.EndlessBody} {
		stsNames = append(stsNames, "mta-sts."+string(kind)+".hostile.example")
	}
	cert, key := ca.Issue(t, "sts", stsNames...)
	kp, _ := tls.LoadX509KeyPair(cert, key)
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}}
	stsPorts := testnet.TCP(t, "127.69.2.1", "127.69.2.2")
	for i, kind := range []hostile.Kind{hostile.EndlessHeader, hostile.EndlessBody} {
		ip := fmt.Sprintf("127.69.2.%d", i+1)
		servers = append(servers, hostile.ServeHTTPS(t, stsPorts.TCP[i], cfg, kind))
		d := string(kind) + ".hostile.example"
		fmt.Fprintf(&zone, "_mta-sts.%s. TXT \"v=STSv1; id=1;\"\nmta-sts.%s. A %s\n", d, d, ip)
		domains = append(domains, d)
	}
	dns := dnstest.Start(t, zone.String())

	// The port-25 sweep.
	_, hostsRSS := runScanRSS(t, "scan", "hosts", "--targets", "127.69.1.0/29", "--port", strconv.Itoa(smtpPorts.Port),
		"--db", filepath.Join(dir, "h.db"), "--blocklist", empty, "--timeout", "3s", "--seed", "1")
	report, err := exec.Command(binary, "report", "hosts", "--db", filepath.Join(dir, "h.db")).CombinedOutput()
	if err != nil || !strings.Contains(string(report), "Addresses probed                   8") {
		t.Errorf("report hosts: %v\n%s", err, report)
	}

	// The domain scan, MTA-STS fetches included.
	list := filepath.Join(dir, "list.txt")
	os.WriteFile(list, []byte(strings.Join(domains, "\n")+"\n"), 0o644)
	jsonl := filepath.Join(dir, "out.jsonl")
	_, domainsRSS := runScanRSS(t, "scan", "domains", "--input", list, "--db", filepath.Join(dir, "d.db"),
		"--dns", dns.Addr, "--port", strconv.Itoa(smtpPorts.Port), "--mta-sts-port", strconv.Itoa(stsPorts.Port), "--blocklist", empty, "--roots", ca.CAFile(),
		"--timeout", "3s", "--jsonl", jsonl)
	want := map[string]string{ // domain or address → what its record must say
		"endless-line.hostile.example":      "no_response",
		"endless-multiline.hostile.example": "no_response",
		"endless-ehlo.hostile.example":      "no_starttls",
		"drip.hostile.example":              "no_response",
		"127.69.1.1":                        "banner",
		"127.69.1.2":                        "banner",
		"127.69.1.3":                        "ehlo",
		"127.69.1.4":                        "timeout",
		"endless-header.hostile.example":    "error",
		"endless-body.hostile.example":      "error",
	}
	f, err := os.Open(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Type, Domain, IP, Status string
			ErrorClass               string                        `json:"error_class"`
			Millis                   int64                         `json:"ms"`
			MTASTS                   *struct{ Mode, Error string } `json:"mta_sts"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		var key, got string
		switch {
		case rec.Type == "mx_ip":
			key, got = rec.IP, rec.ErrorClass
			// Whole milliseconds: a refused reply can take less than
			// one; a grab the 3 s deadline ended took at least that.
			if rec.Millis < 0 || (rec.ErrorClass == "timeout" && rec.Millis < 3000) {
				t.Errorf("%s: ms %d (%s)", rec.IP, rec.Millis, rec.ErrorClass)
			}
		case rec.MTASTS != nil && rec.MTASTS.Mode != "absent":
			key, got = rec.Domain, rec.MTASTS.Mode
		default:
			key, got = rec.Domain, rec.Status
		}
		if w, ok := want[key]; !ok || got != w {
			t.Errorf("%s: %q, want %q", key, got, w)
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Errorf("no record for %v", want)
	}
	for _, s := range servers {
		if s.Sent() >= 64<<20 {
			t.Errorf("%s pushed %d bytes before the scanner hung up", s.Addr, s.Sent())
		}
	}
	t.Logf("peak RSS: scan hosts %.1f MiB, scan domains %.1f MiB (bound %d MiB)",
		float64(hostsRSS)/(1<<20), float64(domainsRSS)/(1<<20), scanRSSBound>>20)
	if hostsRSS > scanRSSBound || domainsRSS > scanRSSBound {
		t.Errorf("peak RSS %d / %d bytes, bound %d", hostsRSS, domainsRSS, scanRSSBound)
	}
}
