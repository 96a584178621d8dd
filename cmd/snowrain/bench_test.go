package main

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/miltertest"
)

// peakRSS reads the resident set high-water mark of pid, in MiB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkDaemon50Conns runs the real binary and 50 concurrent milter
// connections sending the mixed corpus; it reports throughput and the
// daemon's peak RSS.
func BenchmarkDaemon50Conns(b *testing.B) {
	dns := dnstest.Start(b, corpus.Zone())
	d := startDaemonB(b, b.TempDir(), dns.Addr)
	cases := corpus.Cases()
	const conns = 50
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := miltertest.Open(miltertest.NewClient("unix", d.sock), miltertest.Postfix, cases[0])
			if err != nil {
				b.Error(err)
				return
			}
			defer s.Close()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if _, err := miltertest.Send(s, cases[i%int64(len(cases))]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(peakRSS(d.cmd.Process.Pid), "peak-RSS-MiB")
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
}
