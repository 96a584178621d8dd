package scanner

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkZgrab2 runs zgrab2's smtp module (ZGRAB2_BIN; `make
// bench-zgrab2` builds it into a scratch directory when it can, and none
// of its code is committed) and then the scanner against the same
// STARTTLS server, b.N grabs each with 8 at once, and reports each one's
// CPU per successful grab. zgrab2 is asked for the same conversation:
// banner, EHLO, STARTTLS, handshake, QUIT.
func BenchmarkZgrab2(b *testing.B) {
	bin := os.Getenv("ZGRAB2_BIN")
	if bin == "" {
		b.Fatal("ZGRAB2_BIN is not set: make bench-zgrab2 builds zgrab2 when it can")
	}
	env := startBenchServers(b)
	defer env.stop()
	ap, _ := netip.ParseAddrPort(env.sinks[0])
	dir := b.TempDir()
	in := filepath.Join(dir, "targets.csv")
	os.WriteFile(in, bytes.Repeat([]byte(ap.Addr().String()+"\n"), b.N), 0o644)
	out := filepath.Join(dir, "out.json")
	cmd := exec.Command(bin, "smtp", "--starttls", "--ehlo-domain", "bench.test.example", "--send-quit",
		"-p", fmt.Sprint(ap.Port()), "--senders", "8", "-f", in, "-o", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b.ResetTimer()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("zgrab2: %v: %s", err, stderr.String())
	}
	zWall := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	zCPU := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	res, _ := os.ReadFile(out)
	zOK := strings.Count(string(res), `"status":"success"`)
	if zOK == 0 {
		b.Fatalf("no zgrab2 grab succeeded: %.300s", res)
	}
	g := &Grabber{EHLOName: "bench.test.example", Timeout: 10 * time.Second, Roots: env.roots}
	wall, cpu, ok := runParallel(b.N, func(int) bool {
		return g.Grab(context.Background(), ap.Addr(), int(ap.Port())).TLS != nil
	})
	b.StopTimer()
	b.ReportMetric(float64(zCPU.Microseconds())/1000/float64(zOK), "zgrab2-cpu-ms/grab")
	b.ReportMetric(float64(zOK)/zWall.Seconds(), "zgrab2-grabs/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(ok), "snowrain-cpu-ms/grab")
	b.ReportMetric(float64(ok)/wall.Seconds(), "snowrain-grabs/s")
}
