package scanner

import (
	"fmt"
	"io"
	"time"
)

// Progress is a sweep's progress line, rewritten in place once a second
// on a terminal: targets done (skipped and blocklisted ones too, and
// those of the run before a resume) of the total, the rate of this
// process and the time left at that rate.
type Progress struct {
	W    io.Writer
	Noun string // what the targets are: "domains", "addresses"
}

// show writes the line; a nil Progress shows nothing.
func (p *Progress) show(c *counter, elapsed time.Duration) {
	if p == nil {
		return
	}
	fmt.Fprintf(p.W, "\r%s   ", progressLine(c.base+c.finished.Load(), c.total, c.finished.Load(), elapsed, p.Noun))
}

// end writes the last line and ends it.
func (p *Progress) end(c *counter, elapsed time.Duration) {
	if p == nil {
		return
	}
	p.show(c, elapsed)
	fmt.Fprintln(p.W)
}

// progressLine says "done/total noun (pct), rate/s, ETA left"; without a
// total (a list still being read), "done noun, rate/s".
func progressLine(done, total, mine uint64, elapsed time.Duration, noun string) string {
	rate := 0.0
	if elapsed > 0 {
		rate = float64(mine) / elapsed.Seconds()
	}
	if total == 0 {
		return fmt.Sprintf("%d %s, %.0f/s", done, noun, rate)
	}
	total = max(total, done) // a shard's length is estimated
	eta := "?"
	switch {
	case done >= total:
		eta = "0s"
	case rate > 0:
		eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("%d/%d %s (%.1f%%), %.0f/s, ETA %s", done, total, noun, 100*float64(done)/float64(total), rate, eta)
}
