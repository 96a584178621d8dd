package main

import (
	"os"
	"runtime/debug"
)

// The daemon's live heap is a few MiB (a milter session holds one
// message's headers and verdicts), under the runtime's 4 MiB minimum
// heap goal, so with GOGC=100 the collector ran some 50 times a second at
// 1,000 messages/s and stretched the latency tail (BENCHMARKS.md, issue 15
// step 2: GOGC=400 cut CPU per message by a sixth and brought p99 at
// 1,000 msgs/s under 5 ms on a quiet machine). A soft memory limit well
// under the unit's MemoryMax=512M keeps the larger goal from growing the
// process when a burst holds many messages at once. GOGC and GOMEMLIMIT
// in the environment win.
const (
	serveGCPercent   = 400
	serveMemoryLimit = 384 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
}
