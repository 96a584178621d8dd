package milter

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/miltertest"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFoldedHeader sends messages whose header is one field folded
// into one-character lines (100, 200, 400 KB) or 40 such fields of 100 KB
// (4 MB) through the filter over a unix socket. go-msgauth v0.7.0 unfolded
// them in quadratic time (1.1 / 4.3 / 13.9 s for 100 / 200 / 400 KB); the
// cost per KB must stay flat. cpu-ms/op is the CPU of the whole test
// process: client and filter.
func BenchmarkFoldedHeader(b *testing.B) {
	for _, size := range []int{100 << 10, 200 << 10, 400 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			h := newHarness(b, Config{AuthServID: "mx.test.example", MaxHeaderBytes: 8 << 20})
			fields := miltertest.FoldedBomb(size)
			s := h.openSession(h.client(), postfixFlavor, pick(b, "spf-pass"))
			defer s.Close()
			b.SetBytes(int64(size))
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				r, err := miltertest.SendFields(s, "a@spf-pass.example", "b@dest.example", fields, strings.NewReader("hello\r\n"))
				if err != nil || r.Act.Type != gomilter.ActionAccept {
					b.Fatalf("%v %v", r.Act, err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N)/float64(size>>10), "cpu-µs/KB")
		})
	}
}
