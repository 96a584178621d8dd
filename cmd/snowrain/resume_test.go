package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/scanner"
)

const resumeProviders = `
gmail.example.     MX 5 in1.gmail.example.
in1.gmail.example. A 203.0.113.10
yahoo.example.     MX 1 mta.yahoo.example.
mta.yahoo.example. A 203.0.113.20
`

const resumeLies = `
gmail.example.     MX 10 mx.evil.example.
yahoo.example.     MX 10 mx.evil.example.
mx.evil.example.   A 198.51.100.66
`

// TestResolverSweepKilledAndResumed kills `snowrain scan resolvers` with
// SIGKILL while a probe hangs, and resumes the run with --resume: the run
// holds every resolver once, in the store and in its JSON lines file, and
// no address the stored checkpoint covers is asked again.
func TestResolverSweepKilledAndResumed(t *testing.T) {
	const prefix, seed, stall = "127.73.0.0/26", 11, 20
	truth := dnstest.Start(t, resumeProviders)
	// The permutation the sweep walks: the test places its resolvers by
	// step, so the hanging one sits at step stall.
	targets := scanner.NewTargets([]netip.Prefix{netip.MustParsePrefix(prefix)})
	perm := scanner.NewPermutation(targets.Len(), seed, 0, 1)
	var order []string
	for i, ok := perm.Next(); ok; i, ok = perm.Next() {
		order = append(order, targets.At(i).String())
	}
	zones := map[string]string{}
	want := map[string]scanner.DNSClass{} // resolver → its class for gmail.example
	var ips []string
	for step, ip := range order {
		switch {
		case step == stall: // swallows queries until the first process is dead, then honest
			zones[ip] = resumeProviders
			want[ip] = scanner.DNSCorrect
		case step == 7: // answers NXDOMAIN: no resolver, so not stored
			zones[ip] = "other.example. A 192.0.2.1\n"
		case step%5 == 1:
			zones[ip] = resumeProviders
			want[ip] = scanner.DNSCorrect
		case step%5 == 3:
			zones[ip] = resumeLies
			want[ip] = scanner.DNSFalseMX
		default:
			continue
		}
		ips = append(ips, ip)
	}
	// One port picked on every resolver's address, the rest of the swept
	// range reserved closed on it.
	ports := testnet.Pick(t, testnet.Request{TCP: ips, UDP: ips, Closed: prefix})
	servers := map[string]*dnstest.Server{}
	for i, ip := range ips {
		servers[ip] = dnstest.Serve(t, zones[ip], ports.UDP[i], ports.TCP[i])
	}
	servers[order[stall]].SetDrop(true)
	dir := t.TempDir()
	block := filepath.Join(dir, "block.txt")
	os.WriteFile(block, []byte("# nothing blocked on loopback for this test\n"), 0o644)
	db, jsonl := filepath.Join(dir, "r.db"), filepath.Join(dir, "r.jsonl")
	args := []string{"scan", "resolvers", "--port", strconv.Itoa(ports.Port), "--dns", truth.Addr, "--providers", "gmail.example,yahoo.example",
		"--db", db, "--jsonl", jsonl, "--blocklist", block, "--concurrency", "1", "--per-target-rate", "1000", "--timeout", "60s"}

	first := exec.Command(binary, append(args, "--targets", prefix, "--seed", fmt.Sprint(seed))...)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	killed := make(chan error, 1)
	kill := func() {
		first.Process.Kill()
		killed <- first.Wait()
	}
	t.Cleanup(func() {
		if first.ProcessState == nil {
			kill()
		}
	})
	// One probe in flight, hanging at step stall: the checkpoint the run
	// stores reaches it and stays.
	if next := waitCheckpoint(t, db, stall); next != stall {
		t.Fatalf("stored checkpoint %d, want %d", next, stall)
	}
	kill()
	var exit *exec.ExitError
	if err := <-killed; !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the first sweep ended by itself (%v), not by SIGKILL", err)
	}
	before := map[string]int64{}
	for ip, s := range servers {
		before[ip] = s.Queries()
	}
	stored := storedResolvers(t, db)
	if lines := jsonLines(t, jsonl); !slices.Equal(lines, stored) || !slices.Equal(stored, resolversBefore(order, want, stall)) {
		t.Fatalf("killed at step %d: stored %v, JSON lines %v; want the resolvers of the steps before", stall, stored, lines)
	}

	servers[order[stall]].SetDrop(false)
	if out, err := exec.Command(binary, append(args, "--resume", "1")...).CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	var all []string
	for ip := range want {
		all = append(all, ip)
	}
	slices.Sort(all)
	if got := storedResolvers(t, db); !slices.Equal(got, all) {
		t.Errorf("resumed run stores %v, want %v", got, all)
	}
	if lines := jsonLines(t, jsonl); !slices.Equal(lines, all) {
		t.Errorf("JSON lines after resume %v, want each resolver once: %v", lines, all)
	}
	for step, ip := range order[:stall] {
		if s := servers[ip]; s != nil && s.Queries() != before[ip] {
			t.Errorf("step %d (%s), below the checkpoint, was asked again", step, ip)
		}
	}
	store, err := measure.OpenReadOnly(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, sum, err := scanner.FalsifiedIPs(context.Background(), store.DB, 1)
	if err != nil {
		t.Fatal(err)
	}
	classes := map[scanner.DNSClass]int{}
	for _, class := range want {
		classes[class]++
	}
	if got := sum.PerProvider["gmail.example"]; !maps.Equal(got, classes) {
		t.Errorf("Table 7, gmail.example: %v, want %v", got, classes)
	}
}

// waitCheckpoint polls the run's stored checkpoint until it reaches step
// (or the sweep ends) and returns it.
func waitCheckpoint(t *testing.T, db string, step uint64) uint64 {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		store, err := measure.OpenReadOnly(context.Background(), db)
		if err != nil {
			continue // not created yet
		}
		var next uint64
		err = store.DB.QueryRow(`SELECT next_step FROM scan_sweeps WHERE run_id = 1`).Scan(&next)
		store.Close()
		if err == nil && next >= step {
			return next
		}
	}
	t.Fatalf("the checkpoint never reached step %d", step)
	return 0
}

func storedResolvers(t *testing.T, db string) []string {
	t.Helper()
	store, err := measure.OpenReadOnly(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rows, err := store.DB.Query(`SELECT ip FROM scan_resolvers WHERE run_id = 1 ORDER BY ip`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			t.Fatal(err)
		}
		out = append(out, ip)
	}
	slices.Sort(out) // as strings, like the expectations
	return out
}

// resolversBefore returns the resolvers of the steps before step, sorted.
func resolversBefore(order []string, want map[string]scanner.DNSClass, step int) []string {
	var out []string
	for _, ip := range order[:step] {
		if _, ok := want[ip]; ok {
			out = append(out, ip)
		}
	}
	slices.Sort(out)
	return out
}

// jsonLines returns the resolvers of a JSON lines file, sorted, repeats
// kept.
func jsonLines(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	data, err := os.ReadFile(path)
	for dec := json.NewDecoder(bytes.NewReader(data)); err == nil && dec.More(); {
		var r scanner.ResolverResult
		if err = dec.Decode(&r); err == nil && r.Type != "resolver" {
			err = fmt.Errorf("a %q line", r.Type)
		}
		out = append(out, r.IP)
	}
	if n := bytes.Count(data, []byte("\n")); err != nil || n != len(out) {
		t.Fatalf("%s: %v; %d lines for %d results:\n%s", path, err, n, len(out), data)
	}
	slices.Sort(out)
	return out
}
