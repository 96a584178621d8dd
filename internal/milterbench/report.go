package milterbench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Agreement counts, for one chain, the messages whose Authentication-
// Results agree with what the corpus was made to show: the MAIL FROM SPF
// result, the number of DKIM signatures that pass, the DMARC result.
type Agreement struct {
	Messages, SPF, DKIMPass, DMARC int
	Wrong                          map[string]int // "kind: field got, want want" → messages
}

// Agree compares r's outcomes with msgs.
func Agree(r *Result, msgs []Message) Agreement {
	a := Agreement{Wrong: map[string]int{}}
	for i, o := range r.Outcomes {
		if o.Results == nil {
			continue // not sent or failed
		}
		m := msgs[i]
		a.Messages++
		spf, dmarc, pass := "none", "none", 0
		for _, res := range o.Results {
			method, result, _ := strings.Cut(res, "=")
			switch method {
			case "spf":
				spf = result
			case "dmarc":
				dmarc = result
			case "dkim":
				if result == "pass" {
					pass++
				}
			}
		}
		want := 0
		for _, d := range m.WantDKIM {
			if d == "pass" {
				want++
			}
		}
		check := func(n *int, field string, got, want any) {
			if got == want {
				*n++
				return
			}
			a.Wrong[fmt.Sprintf("%s: %s %v, want %v", m.Kind, field, got, want)]++
		}
		check(&a.SPF, "spf", spf, m.WantSPF)
		check(&a.DKIMPass, "dkim passes", pass, want)
		check(&a.DMARC, "dmarc", dmarc, m.WantDMARC)
	}
	return a
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

// cpuMs returns the CPU milliseconds per message of the named processes
// together.
func cpuMs(r *Result, names ...string) float64 {
	var t time.Duration
	for _, n := range names {
		t += r.CPU[n]
	}
	return float64(t.Microseconds()) / 1000 / float64(len(r.Lat))
}

// Machine describes where the run happened.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s, load average %s", runtime.NumCPU(), model,
		strings.TrimSpace(string(kernel)), runtime.Version(), LoadAvg())
}

// LoadAvg returns the 1, 5 and 15-minute load averages: the machine may
// be shared, and the figures follow the load.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Print writes one line per run (throughput, latency, CPU per message of
// the chain's daemons and of this process), the ratio of each pair of
// saturated runs, and each chain's agreement with the corpus.
func Print(w io.Writer, runs []*Result, procs map[string][]string, agree map[string]Agreement) {
	fmt.Fprintf(w, "%-20s %-14s %5s %8s %8s %8s %6s %11s %11s %9s\n", "chain", "load", "/sess", "msgs/s", "p50 ms", "p99 ms", "errors", "daemons cpu", "client+dns", "dns q/msg")
	for _, r := range runs {
		load := "saturated"
		if r.Load.Rate > 0 {
			load = fmt.Sprintf("paced %.0f/s", r.Load.Rate)
		}
		fmt.Fprintf(w, "%-20s %-14s %5d %8.0f %8s %8s %6d %8.3f ms %8.3f ms %9.2f\n", r.Chain, load, max(1, r.Load.PerSession), r.Rate(),
			ms(r.Pct(50)), ms(r.Pct(99)), r.Errors, cpuMs(r, procs[r.Chain]...), cpuMs(r, selfName), float64(r.DNSQueries)/float64(len(r.Lat)))
	}
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.Load == b.Load && a.Load.Rate == 0 {
				fmt.Fprintf(w, "%s / %s, %d per session: %.2fx msgs/s, %.2fx less daemon CPU per message\n", b.Chain, a.Chain,
					max(1, a.Load.PerSession), b.Rate()/a.Rate(), cpuMs(a, procs[a.Chain]...)/cpuMs(b, procs[b.Chain]...))
			}
		}
	}
	var names []string
	for n := range agree {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		a := agree[n]
		fmt.Fprintf(w, "%s agrees with the corpus on %d/%d SPF, %d/%d DKIM pass counts, %d/%d DMARC\n", n,
			a.SPF, a.Messages, a.DKIMPass, a.Messages, a.DMARC, a.Messages)
		var keys []string
		for k := range a.Wrong {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "    %5d × %s\n", a.Wrong[k], k)
		}
	}
}
