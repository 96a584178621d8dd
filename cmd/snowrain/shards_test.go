package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/scanner"
)

// gate is a server's listener that counts the connections it accepts
// and, while shut, holds them unanswered: a server that hangs, so that a
// sweep probing it with one probe in flight waits there until it is
// killed.
type gate struct {
	net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	shut     bool
	held     []net.Conn
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g.accepted.Add(1)
		g.mu.Lock()
		if g.shut {
			g.held = append(g.held, c)
			g.mu.Unlock()
			continue
		}
		g.mu.Unlock()
		return c, nil
	}
}

// open lets the server answer: held connections are closed, new ones
// served.
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut = false
	for _, c := range g.held {
		c.Close()
	}
	g.held = nil
}

// serveCiscoBox answers like a Cisco ASA with ESMTP inspection: banner
// masked, STARTTLS replaced by X's in the extension list and in replies.
func serveCiscoBox(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			r := bufio.NewReader(c)
			fmt.Fprint(c, "220 ********************\r\n")
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				switch {
				case strings.HasPrefix(strings.ToUpper(line), "EHLO"):
					fmt.Fprint(c, "250-box\r\n250-XXXXXXXA\r\n250 8BITMIME\r\n")
				case strings.HasPrefix(strings.ToUpper(line), "QUIT"):
					fmt.Fprint(c, "221 bye\r\n")
					return
				default:
					fmt.Fprint(c, "500 #5.5.1 command not recognized: \"XXXXXXXX\"\r\n")
				}
			}
		}()
	}
}

// shardTest is the loopback Internet of TestScanShardsPostgres and the
// two databases it is swept into.
type shardTest struct {
	t          *testing.T
	dir, block string
	dsn, lite  string
	pg         *measure.Store // the test's own reads
	port       int            // every SMTP server's
	gates      map[string]*gate
	open       []string // the host sweep's servers
	plain      string   // a server of each kind
	starttls   string
	cisco      string
	hostStall  string // the host sweep's hanging server
	ca         *testca.CA
}

const (
	shardHosts  = "127.76.0.0/27"
	shardStall  = "127.76.1.1" // the domain sweep's hanging MX
	shardSeed   = "5"
	shardHostAt = 5 // shard 1's step where its host sweep hangs
)

// shardOrder is shard i of 2's walk over prefix under shardSeed.
func shardOrder(prefix string, i int) []string {
	targets := scanner.NewTargets([]netip.Prefix{netip.MustParsePrefix(prefix)})
	seed, _ := strconv.ParseUint(shardSeed, 10, 64)
	perm := scanner.NewPermutation(targets.Len(), seed, i, 2)
	var out []string
	for n, ok := perm.Next(); ok; n, ok = perm.Next() {
		out = append(out, targets.At(n).String())
	}
	return out
}

// TestScanShardsPostgres sweeps hosts, resolvers and domains as two
// machines would: two `snowrain scan` processes (--node m1 and m2, shards
// 0/2 and 1/2, one --seed and --run) writing one run in a PostgreSQL
// database. Of the host and the domain sweep, the second shard is killed
// (SIGKILL) while a probe hangs and continued by a third process, --node
// m3, with --resume. Every target is stored once, the JSON lines of the
// three processes hold every stored row once, and the reports of each
// joined run (and the exposure join with the mail) equal those of the
// same sweep run unsharded into SQLite.
func TestScanShardsPostgres(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	st := &shardTest{t: t, dir: t.TempDir(), dsn: c.CreateDB(t), gates: map[string]*gate{}, ca: testca.New(t)}
	st.lite = filepath.Join(st.dir, "whole.db")
	order := [2][]string{shardOrder(shardHosts, 0), shardOrder(shardHosts, 1)}
	if len(order[1]) <= shardHostAt {
		t.Fatalf("shard 1 of %s walks %d addresses", shardHosts, len(order[1]))
	}
	hostStall := order[1][shardHostAt]
	for i := range order {
		for step, ip := range order[i] {
			if step%3 == 1 || ip == hostStall {
				st.open = append(st.open, ip)
			}
		}
	}
	st.block = filepath.Join(st.dir, "block.txt")
	if err := os.WriteFile(st.block, []byte(order[0][2]+"\n"), 0o644); err != nil { // one address of shard 0, never contacted
		t.Fatal(err)
	}
	ports := testnet.Pick(t, testnet.Request{TCP: append(slices.Clone(st.open), shardStall), Closed: shardHosts})
	st.port = ports.Port
	cert, key := st.ca.Issue(t, "mx", "mx.tls.example")
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	for i, ip := range append(slices.Clone(st.open), shardStall) {
		g := &gate{Listener: ports.TCP[i], shut: ip == hostStall || ip == shardStall}
		st.gates[ip] = g
		switch {
		case ip == hostStall || ip == shardStall:
			smtpsink.Serve(t, g, smtpsink.Options{})
		case i%3 == 0:
			st.plain = ip
			smtpsink.Serve(t, g, smtpsink.Options{})
		case i%3 == 1:
			st.starttls = ip
			smtpsink.Serve(t, g, smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}}})
		default:
			st.cisco = ip
			go serveCiscoBox(g)
		}
	}
	if st.plain == "" || st.starttls == "" || st.cisco == "" {
		t.Fatal("not every kind of server is among the open addresses")
	}
	if st.pg, err = measure.OpenReadOnly(context.Background(), st.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.pg.Close() })

	st.hostStall = hostStall
	st.hosts(hostStall)
	st.domains()
	st.resolvers()
	st.exposure()
}

// scan starts `snowrain scan args…`.
func (st *shardTest) scan(args ...string) (*exec.Cmd, *bytes.Buffer) {
	st.t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(binary, append([]string{"scan"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		st.t.Fatal(err)
	}
	st.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &out
}

// finish waits for a scan process to succeed.
func (st *shardTest) finish(name string, cmd *exec.Cmd, out *bytes.Buffer) {
	st.t.Helper()
	if err := cmd.Wait(); err != nil {
		st.t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// kill ends a scan process with SIGKILL, as a machine that dies.
func (st *shardTest) kill(cmd *exec.Cmd, out *bytes.Buffer) {
	st.t.Helper()
	cmd.Process.Kill()
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		st.t.Fatalf("the shard ended by itself (%v), not by SIGKILL:\n%s", err, out)
	}
}

// await polls cond until it holds; what says what it waits for.
func (st *shardTest) await(what string, cond func() bool) {
	st.t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			st.t.Fatalf("waited in vain for %s", what)
		}
	}
}

// lines returns the "type:key" of every JSON line of the files, sorted,
// repeats kept.
func (st *shardTest) lines(files ...string) []string {
	st.t.Helper()
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(st.dir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			st.t.Fatal(err)
		}
		for dec := json.NewDecoder(bytes.NewReader(data)); dec.More(); {
			var v struct{ Type, IP, Domain string }
			if err := dec.Decode(&v); err != nil {
				st.t.Fatalf("%s: %v", f, err)
			}
			out = append(out, v.Type+":"+v.IP+v.Domain)
		}
		if n := bytes.Count(data, []byte("\n")); n != len(out) && len(files) == 1 {
			st.t.Fatalf("%s: %d lines for %d results", f, n, len(out))
		}
	}
	slices.Sort(out)
	return out
}

// stored returns the "type:key" of every row run name holds in the
// PostgreSQL database, sorted.
func (st *shardTest) stored(name string) []string {
	st.t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT 'domain:' || domain FROM scan_domains`, `SELECT 'mx_ip:' || ip FROM scan_ips`,
		`SELECT 'host:' || ip FROM scan_hosts`, `SELECT 'resolver:' || ip FROM scan_resolvers`,
	} {
		keys, err := measure.Rows(context.Background(), st.pg.DB, q+` WHERE run_id = (SELECT id FROM scan_runs WHERE name = ?)`,
			[]any{name}, measure.Column[string])
		if err != nil {
			st.t.Fatal(err)
		}
		out = append(out, keys...)
	}
	slices.Sort(out)
	return out
}

// shard reads shard i of run name: its checkpoint, node and whether it
// finished; ok is false while it is not stored.
func (st *shardTest) shard(name string, i int) (next int64, node string, finished, ok bool) {
	var fin *int64
	err := st.pg.DB.QueryRow(`SELECT s.next_step, s.node, s.finished_at FROM scan_sweeps s JOIN scan_runs r ON r.id = s.run_id
		WHERE r.name = ? AND s.shard = ?`, name, i).Scan(&next, &node, &fin)
	return next, node, fin != nil, err == nil
}

// checkRun checks that run name finished with its shards 0 on m1 and 1
// on m3, and that its stored rows are want, each once in the JSON lines
// of the three processes.
func (st *shardTest) checkRun(name string, want []string, files ...string) {
	st.t.Helper()
	if got := st.stored(name); !slices.Equal(got, want) {
		st.t.Errorf("run %s stores %v\nwant %v", name, got, want)
	}
	if got := st.lines(files...); !slices.Equal(got, want) {
		st.t.Errorf("run %s's JSON lines %v\nwant each stored row once: %v", name, got, want)
	}
	var finished *int64
	if err := st.pg.DB.QueryRow(`SELECT finished_at FROM scan_runs WHERE name = ?`, name).Scan(&finished); err != nil || finished == nil {
		st.t.Errorf("run %s not finished (%v)", name, err)
	}
	for i, node := range []string{"m1", "m3"} {
		if _, got, fin, ok := st.shard(name, i); !ok || !fin || (got != node && !(i == 1 && got == "m2")) {
			st.t.Errorf("run %s shard %d: node %q finished %v (stored %v), want on %s, finished", name, i, got, fin, ok, node)
		}
	}
}

// report runs `snowrain report args… --format json` on db and returns
// the document without what names the run and the making (title,
// heading, meta, run): the figures alone.
func (st *shardTest) report(db string, args ...string) map[string]any {
	st.t.Helper()
	out, err := exec.Command(binary, append(append([]string{"report"}, args...), "--db", db, "--format", "json")...).Output()
	if err != nil {
		st.t.Fatalf("report %v on %s: %v\n%s", args, db, err, out)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		st.t.Fatalf("report %v: %v\n%s", args, err, out)
	}
	for _, k := range []string{"title", "heading", "meta", "run"} {
		delete(doc, k)
	}
	return doc
}

// sameReport checks that report args reads the same on the joined run in
// PostgreSQL and on the unsharded run in SQLite.
func (st *shardTest) sameReport(args ...string) {
	st.t.Helper()
	a, b := st.report(st.dsn, args...), st.report(st.lite, args...)
	if len(a) == 0 || !reflect.DeepEqual(a, b) {
		ja, _ := json.MarshalIndent(a, "", " ")
		jb, _ := json.MarshalIndent(b, "", " ")
		st.t.Errorf("report %v of the joined run:\n%s\nof the unsharded run:\n%s", args, ja, jb)
	}
}

// hosts: the port-25 sweep. Shard 1 hangs at its step shardHostAt, is
// killed there and continued on m3.
func (st *shardTest) hosts(stall string) {
	t := st.t
	base := []string{"hosts", "--targets", shardHosts, "--port", strconv.Itoa(st.port), "--blocklist", st.block,
		"--timeout", "60s", "--concurrency", "1"}
	sharded := append(slices.Clone(base), "--db", st.dsn, "--run", "hosts-all", "--seed", shardSeed)
	m1, out1 := st.scan(append(slices.Clone(sharded), "--shard", "0/2", "--node", "m1", "--jsonl", filepath.Join(st.dir, "h1.jsonl"))...)
	m2, out2 := st.scan(append(slices.Clone(sharded), "--shard", "1/2", "--node", "m2", "--jsonl", filepath.Join(st.dir, "h2.jsonl"))...)
	// Shard 1 stores its checkpoint at the hanging step, and the JSON
	// lines of the servers before it.
	var before int
	for _, ip := range shardOrder(shardHosts, 1)[:shardHostAt] {
		if slices.Contains(st.open, ip) {
			before++
		}
	}
	st.await("shard 1 hanging at its step "+strconv.Itoa(shardHostAt), func() bool {
		next, _, _, ok := st.shard("hosts-all", 1)
		return ok && next == shardHostAt && st.gates[stall].accepted.Load() == 1 && len(st.lines("h2.jsonl")) == before
	})
	st.kill(m2, out2)
	st.finish("shard 0/2 on m1", m1, out1)
	st.gates[stall].open()
	m3, out3 := st.scan(append(slices.Clone(base), "--db", st.dsn, "--resume", "hosts-all", "--shard", "1/2", "--node", "m3",
		"--jsonl", filepath.Join(st.dir, "h3.jsonl"))...)
	st.finish("shard 1/2 resumed on m3", m3, out3)
	var want []string
	for _, ip := range st.open {
		want = append(want, "host:"+ip)
		if n := st.gates[ip].accepted.Load(); ip != stall && n != 1 {
			t.Errorf("%s was grabbed %d times by the shards, want once", ip, n)
		}
	}
	slices.Sort(want)
	st.checkRun("hosts-all", want, "h1.jsonl", "h2.jsonl", "h3.jsonl")
	text, err := exec.Command(binary, "report", "hosts", "--db", st.dsn, "--run", "hosts-all").CombinedOutput()
	if err != nil || !strings.Contains(string(text), "2 of 2 shards reported: 0/2 on m1 finished, 1/2 on m3 finished") {
		t.Errorf("report hosts --run hosts-all: %v\n%s", err, text)
	}
	cmd, out := st.scan(append(slices.Clone(base), "--db", st.lite, "--run", "hosts-all", "--seed", shardSeed, "--concurrency", "64")...)
	st.finish("unsharded host sweep", cmd, out)
}

// domains: the domain sweep over a list whose MX are the host sweep's
// servers. Shard 1 hangs on its third domain, whose MX hangs, is killed
// there and continued on m3.
func (st *shardTest) domains() {
	t := st.t
	// Three mail servers (plain, STARTTLS, Cisco box) for 24 domains:
	// both shards grab some of them, and the run stores each once.
	servers := []string{st.plain, st.starttls, st.cisco}
	var list, zone strings.Builder
	seed, _ := strconv.ParseUint(shardSeed, 10, 64)
	stallDomain, inShard1 := "", 0
	for i := range 24 {
		d := fmt.Sprintf("d%02d.example", i)
		fmt.Fprintf(&list, "%d,%s\n", i+1, d)
		mx := fmt.Sprintf("mx%d.example", i%len(servers))
		if scanner.DomainShard(d, seed, 2) == 1 {
			if inShard1++; inShard1 == 3 {
				stallDomain, mx = d, "mx.stall.example"
			}
		}
		fmt.Fprintf(&zone, "%s. MX 10 %s.\n", d, mx)
	}
	for i, ip := range servers {
		fmt.Fprintf(&zone, "mx%d.example. A %s\n", i, ip)
	}
	fmt.Fprintf(&zone, "mx.stall.example. A %s\n_dmarc.d00.example. TXT \"v=DMARC1; p=reject\"\n", shardStall)
	fmt.Fprintf(&list, "25,nomail.example\n")
	if stallDomain == "" {
		t.Fatal("shard 1 has fewer than 3 domains")
	}
	path := filepath.Join(st.dir, "list.csv")
	if err := os.WriteFile(path, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	dns := dnstest.Start(t, zone.String())
	base := []string{"domains", "--input", path, "--dns", dns.Addr, "--port", strconv.Itoa(st.port), "--blocklist", st.block,
		"--roots", st.ca.CAFile(), "--ehlo", "scanner.test.example", "--timeout", "60s", "--concurrency", "1"}
	sharded := append(slices.Clone(base), "--db", st.dsn, "--run", "domains-all", "--seed", shardSeed)
	m1, out1 := st.scan(append(slices.Clone(sharded), "--shard", "0/2", "--node", "m1", "--jsonl", filepath.Join(st.dir, "d1.jsonl"))...)
	m2, out2 := st.scan(append(slices.Clone(sharded), "--shard", "1/2", "--node", "m2", "--jsonl", filepath.Join(st.dir, "d2.jsonl"))...)
	st.await("shard 1 hanging on "+stallDomain, func() bool {
		n := 0
		for _, k := range st.lines("d2.jsonl") {
			if strings.HasPrefix(k, "domain:") {
				n++
			}
		}
		return n == 2 && st.gates[shardStall].accepted.Load() == 1
	})
	st.kill(m2, out2)
	st.finish("shard 0/2 on m1", m1, out1)
	st.gates[shardStall].open()
	m3, out3 := st.scan(append(slices.Clone(base), "--db", st.dsn, "--resume", "domains-all", "--shard", "1/2", "--node", "m3",
		"--jsonl", filepath.Join(st.dir, "d3.jsonl"))...)
	st.finish("shard 1/2 resumed on m3", m3, out3)
	var want []string
	for i := range 24 {
		want = append(want, fmt.Sprintf("domain:d%02d.example", i))
	}
	want = append(want, "domain:nomail.example", "mx_ip:"+shardStall)
	for _, ip := range servers {
		want = append(want, "mx_ip:"+ip)
	}
	slices.Sort(want)
	st.checkRun("domains-all", want, "d1.jsonl", "d2.jsonl", "d3.jsonl")
	cmd, out := st.scan(append(slices.Clone(base), "--db", st.lite, "--run", "domains-all", "--concurrency", "16")...)
	st.finish("unsharded domain sweep", cmd, out)
	st.sameReport("scan", "--run", "domains-all")
	st.sameReport("hosts", "--run", "hosts-all", "--domains-run", "domains-all")
}

// resolvers: the resolver sweep, honest and lying resolvers on a /28,
// both shards to the end.
func (st *shardTest) resolvers() {
	const prefix = "127.76.2.0/28"
	var ips []string
	zones := map[string]string{}
	for i := range 2 {
		for step, ip := range shardOrder(prefix, i) {
			switch step % 3 {
			case 0:
				zones[ip] = resumeProviders
			case 1:
				zones[ip] = resumeLies
			default:
				continue
			}
			ips = append(ips, ip)
		}
	}
	ports := testnet.Pick(st.t, testnet.Request{TCP: ips, UDP: ips, Closed: prefix})
	for i, ip := range ips {
		dnstest.Serve(st.t, zones[ip], ports.UDP[i], ports.TCP[i])
	}
	truth := dnstest.Start(st.t, resumeProviders)
	base := []string{"resolvers", "--targets", prefix, "--port", strconv.Itoa(ports.Port), "--dns", truth.Addr,
		"--providers", "gmail.example,yahoo.example", "--blocklist", st.block, "--per-target-rate", "1000", "--timeout", "5s",
		"--run", "resolvers-all", "--seed", shardSeed}
	m1, out1 := st.scan(append(slices.Clone(base), "--db", st.dsn, "--shard", "0/2", "--node", "m1", "--jsonl", filepath.Join(st.dir, "r1.jsonl"))...)
	m2, out2 := st.scan(append(slices.Clone(base), "--db", st.dsn, "--shard", "1/2", "--node", "m2", "--jsonl", filepath.Join(st.dir, "r2.jsonl"))...)
	st.finish("shard 0/2 on m1", m1, out1)
	st.finish("shard 1/2 on m2", m2, out2)
	var want []string
	for _, ip := range ips {
		want = append(want, "resolver:"+ip)
	}
	slices.Sort(want)
	if got := st.stored("resolvers-all"); !slices.Equal(got, want) {
		st.t.Errorf("resolver run stores %v, want %v", got, want)
	}
	if got := st.lines("r1.jsonl", "r2.jsonl"); !slices.Equal(got, want) {
		st.t.Errorf("resolver shards' JSON lines %v, want %v", got, want)
	}
	cmd, out := st.scan(append(slices.Clone(base), "--db", st.lite)...)
	st.finish("unsharded resolver sweep", cmd, out)
	st.sameReport("resolvers", "--run", "resolvers-all")
}

// exposure records the same inbound mail in both databases and joins it
// with the sweeps: from the Cisco box, from the address the lying
// resolvers point to, and from elsewhere.
func (st *shardTest) exposure() {
	at := time.Now().Add(-time.Hour)
	var evs []measure.Event
	for i, ip := range map[string]int{st.cisco: 5, "198.51.100.66": 3, "192.0.2.1": 7} {
		for n := range ip {
			evs = append(evs, &measure.Message{ConnUID: fmt.Sprintf("%s-%d", i, n), Received: at, Direction: "inbound",
				ClientIP: i, MailFromDomain: "sender.example", RcptDomains: []string{"example.net"}, RcptCount: 1,
				SPFResult: "pass", DKIMResult: "none", DMARCResult: "none", Action: "accept"})
		}
	}
	for _, db := range []string{st.dsn, st.lite} {
		s, err := measure.Open(context.Background(), db)
		if err != nil {
			st.t.Fatal(err)
		}
		w := measure.NewWriter(s, measure.WriterConfig{Node: "mx-a"})
		for _, ev := range evs {
			w.Enqueue(ev)
		}
		if err := w.Close(context.Background()); err != nil || w.Stats().Written != int64(len(evs)) {
			st.t.Fatalf("recording mail: %v %+v", err, w.Stats())
		}
		s.Close()
	}
	st.sameReport("exposure", "--hosts-run", "hosts-all", "--resolvers-run", "resolvers-all", "--since", "2d")
	doc := st.report(st.dsn, "exposure", "--hosts-run", "hosts-all", "--resolvers-run", "resolvers-all", "--since", "2d")
	js, _ := json.Marshal(doc)
	for _, want := range []string{`["??","15","5","33.33%"]`, `["??","15","3","20.00%"]`} {
		if !strings.Contains(string(js), want) {
			st.t.Errorf("exposure lacks the row %s:\n%s", want, js)
		}
	}
}

// TestScanRunRefusals: a named run refuses a shard that sweeps something
// else, and a shard started twice, with errors that say why and how to go
// on, leaving the shard's JSON lines file alone; a shard that gives no
// targets and no seed joins with the run's.
func TestScanRunRefusals(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "runs.db")
	// TEST-NET-1 is in the default blocklist: nothing is contacted.
	hosts := []string{"scan", "hosts", "--db", db, "--targets", "192.0.2.0/30", "--run", "r1"}
	run := func(args ...string) (string, int) {
		t.Helper()
		return runAs(t, -1, -1, args...)
	}
	if out, code := run(append(slices.Clone(hosts), "--seed", "1", "--shard", "0/2", "--node", "a")...); code != 0 ||
		!strings.Contains(out, "hosts run 1, shard 0/2: 0 addresses probed; tables: snowrain report hosts --run r1") {
		t.Fatalf("first shard (exit %d):\n%s", code, out)
	}
	jsonl := filepath.Join(dir, "keep.jsonl")
	if err := os.WriteFile(jsonl, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(slices.Clone(hosts), "--seed", "2", "--shard", "1/2"),
			`run "r1" sweeps 192.0.2.0/30 with seed 1 in 2 shards; this shard: 192.0.2.0/30 with seed 2 in 2: not what the run sweeps`},
		{append(slices.Clone(hosts), "--shard", "1/3"), "with seed 1 in 2 shards; this shard: 192.0.2.0/30 with seed 1 in 3"},
		{[]string{"scan", "hosts", "--db", db, "--targets", "192.0.2.0/31", "--run", "r1", "--shard", "1/2"}, "this shard: 192.0.2.0/31 with seed 1"},
		{[]string{"scan", "resolvers", "--db", db, "--targets", "192.0.2.0/30", "--run", "r1", "--dns", "127.0.0.1:1"}, `run "r1" is a hosts scan, not resolvers`},
		{[]string{"scan", "hosts", "--db", db, "--run", "r1", "--shard", "0/2", "--node", "b", "--jsonl", jsonl},
			`shard 0/2 of run "r1" was started by node a (checkpoint `},
		{[]string{"scan", "hosts", "--db", db, "--run", "r1", "--shard", "0/2", "--jsonl", jsonl},
			"shard already started; to continue it: snowrain scan hosts --resume r1 --shard 0/2"},
		{[]string{"scan", "hosts", "--db", db, "--run", "r2"}, `no run "r2": give its targets to create it`},
		{[]string{"scan", "hosts", "--db", db, "--resume", "r2"}, "--resume r2: no such run"},
	} {
		if out, code := run(c.args...); code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, want 1 and %q:\n%s", c.args, code, c.want, out)
		}
	}
	if b, _ := os.ReadFile(jsonl); string(b) != "keep\n" {
		t.Errorf("a refused shard changed its JSON lines file: %q", b)
	}
	if out, code := run("scan", "hosts", "--db", db, "--run", "r1", "--shard", "1/2", "--node", "b"); code != 0 {
		t.Fatalf("joining with the run's targets and seed (exit %d):\n%s", code, out)
	}
	out, code := run("report", "hosts", "--db", db, "--run", "r1")
	if code != 0 || !strings.Contains(out, "snowrain port-25 sweep, run 1 (r1)") ||
		!strings.Contains(out, "2 of 2 shards reported: 0/2 on a finished, 1/2 on b finished") {
		t.Errorf("report hosts --run r1 (exit %d):\n%s", code, out)
	}
}
