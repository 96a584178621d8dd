package scanner

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/measure"
)

// middlebox is a loopback SMTP server whose STARTTLS handling imitates
// what the paper found on port 25.
type middlebox struct {
	name     string
	banner   string
	ehlo     []string                // extension lines after the greeting
	starttls func(cmd string) string // reply to what arrived; "" accepts and does TLS
	rewrite  func(cmd string) string // what the box does to the client's command
	tarpit   bool
	bare     bool // EHLO answered with a bare "250 name", no extensions
	want     StripClass
	masked   bool
}

func serveBox(t *testing.T, ln net.Listener, b middlebox, cfg *tls.Config, accepts *sync.Map) {
	addr := ln.Addr().String()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n, _ := accepts.LoadOrStore(addr, new(int))
			*n.(*int)++
			go func() {
				defer c.Close()
				if b.tarpit {
					time.Sleep(3 * time.Second)
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "%s\r\n", b.banner)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd := strings.TrimRight(line, "\r\n")
					if b.rewrite != nil {
						cmd = b.rewrite(cmd)
					}
					switch up := strings.ToUpper(cmd); {
					case strings.HasPrefix(up, "EHLO") && b.bare:
						fmt.Fprintf(c, "250 box.test\r\n")
					case strings.HasPrefix(up, "EHLO"):
						fmt.Fprintf(c, "250-box.test\r\n")
						for _, e := range b.ehlo {
							fmt.Fprintf(c, "250-%s\r\n", e)
						}
						fmt.Fprintf(c, "250 8BITMIME\r\n")
					case strings.HasPrefix(up, "QUIT"):
						fmt.Fprintf(c, "221 bye\r\n")
						return
					default:
						if reply := b.starttls(cmd); reply != "" {
							fmt.Fprintf(c, "%s\r\n", reply)
							continue
						}
						fmt.Fprintf(c, "220 go ahead\r\n")
						tc := tls.Server(c, cfg)
						if tc.Handshake() != nil {
							return
						}
						tr := bufio.NewReader(tc)
						tr.ReadString('\n')
						fmt.Fprintf(tc, "221 bye\r\n")
						return
					}
				}
			}()
		}
	}()
}

var accept = func(string) string { return "" }

var boxes = []middlebox{
	{name: "honest", banner: "220 mx.test ESMTP", ehlo: []string{"STARTTLS"}, starttls: accept, want: StripHandshake},
	{name: "pix", banner: "220 ****************************", ehlo: []string{"XXXXXXXA"},
		rewrite: func(c string) string {
			if strings.EqualFold(c, "STARTTLS") {
				return "XXXXXXXX"
			}
			return c
		},
		starttls: func(c string) string { return `500 #5.5.1 command not recognized: "` + c + `"` },
		want:     StripEchoReplaced, masked: true},
	{name: "removes-from-ehlo", banner: "220 mx.test ESMTP", ehlo: []string{"PIPELINING"}, starttls: accept, want: StripUnadvertised},
	{name: "lowercase", banner: "220 mx.test ESMTP", ehlo: []string{"STARTTLS"},
		starttls: func(c string) string { return "500 5.5.1 unrecognized command " + strings.ToLower(c) }, want: StripEchoLowercased},
	{name: "truncated", banner: "220 mx.test ESMTP", ehlo: []string{"PIPELINING"},
		starttls: func(c string) string { return "500 5.5.1 Command unrecognized: \"" + c[:4] + "\"" }, want: StripEchoTruncated},
	{name: "intact", banner: "220 mx.test ESMTP", ehlo: []string{"PIPELINING"},
		starttls: func(c string) string { return "502 5.5.2 Error: command not recognized: " + c }, want: StripEchoIntact},
	{name: "noecho", banner: "220 mx.test ESMTP", ehlo: []string{"PIPELINING"},
		starttls: func(string) string { return "454 4.7.0 TLS not available" }, want: StripNoEcho},
	{name: "tarpit", tarpit: true, want: ""},
	// A plain server with no extension to offer: not a masking box.
	{name: "bare-ehlo", banner: "220 mx.test ESMTP", bare: true,
		starttls: func(string) string { return "502 5.5.1 Error: command not implemented" }, want: StripNoEcho},
}

func TestStrippingTestBed(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "box", "box.test")
	kp, _ := tls.LoadX509KeyPair(cert, key)
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}}
	var accepts sync.Map
	// One port for the boxes and one more server, blocklisted, that must
	// never see a connection; the rest of the /28 is closed.
	var ips []string
	for i := range len(boxes) + 1 {
		ips = append(ips, fmt.Sprintf("127.64.0.%d", i+1))
	}
	ports := testnet.Pick(t, testnet.Request{TCP: ips, Closed: "127.64.0.0/28"})
	for i, b := range boxes {
		serveBox(t, ports.TCP[i], b, cfg, &accepts)
	}
	blockedIP := ips[len(boxes)]
	blockedAddr := ports.Addr(blockedIP)
	serveBox(t, ports.TCP[len(boxes)], boxes[0], cfg, &accepts)
	bl, _ := ParseBlocklist(strings.NewReader(blockedIP + "\n"))
	g := &Grabber{EHLOName: "scanner.test.example", Timeout: time.Second, Dialer: &Dialer{Blocklist: bl}}
	var mu sync.Mutex
	got := map[string]*HostResult{}
	seen := map[string]int{}
	for shard := 0; shard < 2; shard++ {
		err := SweepHosts(context.Background(), HostOptions{Grabber: g, Port: ports.Port,
			SweepOptions: SweepOptions{Workers: 8, Rate: 1000, Seed: 7, Shard: shard, Shards: 2}, OnResult: func(r *HostResult) {
				mu.Lock()
				defer mu.Unlock()
				got[r.IP] = r
				seen[r.IP]++
			}}, NewTargets([]netip.Prefix{netip.MustParsePrefix("127.64.0.0/28")}))
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range boxes {
		ip := fmt.Sprintf("127.64.0.%d", i+1)
		r := got[ip]
		if r == nil {
			t.Errorf("%s: no result", b.name)
			continue
		}
		if r.Class != b.want || r.EHLOMasked != b.masked {
			t.Errorf("%s: class %q masked %v (%s %s), want %q %v", b.name, r.Class, r.EHLOMasked, r.Reply, r.Error, b.want, b.masked)
		}
	}
	if got["127.64.0.2"].BannerESMTP {
		t.Error("the PIX banner hides ESMTP")
	}
	for ip, n := range seen {
		if n != 1 {
			t.Errorf("%s grabbed %d times", ip, n)
		}
	}
	if len(seen) != 15 { // 16 addresses, one blocklisted
		t.Errorf("%d addresses grabbed, want 15", len(seen))
	}
	if n, ok := accepts.Load(blockedAddr); ok {
		t.Errorf("the blocklisted server accepted %d connections", *n.(*int))
	}
}

func FuzzClassifyEcho(f *testing.F) {
	for _, s := range []string{`5.5.1 command not recognized: "XXXXXXXX"`, "5.5.2 Error: command not recognized",
		"unrecognized: STAR", "starttls", "TLS not available", "4.3.3 TLS not available after start", "StartTLS"} {
		f.Add(500, s)
		f.Add(454, s)
	}
	f.Fuzz(func(t *testing.T, code int, s string) {
		c := ClassifyEcho(code, s)
		if c == StripEchoIntact && !strings.Contains(strings.ToUpper(s), "STARTTLS") {
			t.Fatalf("%d %q intact without STARTTLS", code, s)
		}
		if (code == 454 || code == 501) && c != StripEchoIntact && c != StripNoEcho {
			t.Fatalf("%d %q: %s, but a %d answers a STARTTLS the server received", code, s, c, code)
		}
	})
}

// TestHostSummaryTables stores host results of a run and checks Tables
// 9–12, Table 12 holding only the AS where every server strips.
func TestHostSummaryTables(t *testing.T) {
	store, err := measure.Open(context.Background(), filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	run, _ := NewRun(context.Background(), store.DB, "hosts", "test", nil)
	for _, h := range []HostResult{
		{IP: "192.0.2.1", Banner: "220 ***", Class: StripEchoReplaced, EHLOMasked: true, ASN: 65001, Organization: "Box Corp"},
		{IP: "192.0.2.2", Banner: "220 ***", Class: StripEchoReplaced, ASN: 65001, Organization: "Box Corp"},
		{IP: "192.0.2.3", Banner: "220 x ESMTP", Class: StripHandshake, ASN: 65002, Organization: "Honest ISP"},
		{IP: "192.0.2.4", Banner: "220 x ESMTP", Class: StripUnadvertised, ASN: 65002, Organization: "Honest ISP"},
		{IP: "192.0.2.5", Banner: "220 x ESMTP", Class: StripNoEcho, ASN: 65003},
		{IP: "192.0.2.6", ErrorClass: ErrClassTimeout},
	} {
		h := h
		run.SaveHost(&h)
	}
	run.Finish()
	s, err := SummarizeHosts(context.Background(), store.DB, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Probed != 6 || s.Open != 6 || s.Responsive != 5 || s.Handshake != 2 || s.Stripping != 3 || s.CiscoTampering != 2 {
		t.Errorf("summary %+v", s)
	}
	var full []uint
	for _, a := range s.ASes {
		if a.Servers == a.Strips {
			full = append(full, a.ASN)
		}
	}
	if len(full) != 1 || full[0] != 65001 {
		t.Errorf("ASes stripping everywhere: %v (%+v)", full, s.ASes)
	}
	ips, _ := StrippingIPs(context.Background(), store.DB, run.ID)
	if len(ips) != 3 || !ips["192.0.2.4"] {
		t.Errorf("stripping IPs %v", ips)
	}
	// Join a domain scan: two domains behind stripping hosts, one not.
	drun, _ := NewRun(context.Background(), store.DB, "domains", "test", nil)
	for d, ip := range map[string]string{"a.example": "192.0.2.1", "b.example": "192.0.2.4", "c.example": "192.0.2.3"} {
		drun.SaveDomain(&DomainResult{Type: "domain", Domain: d, MX: []MX{{Host: "mx." + d, IPs: []string{ip}}}})
	}
	drun.Finish()
	if n, _ := DomainsBehind(context.Background(), store.DB, drun.ID, ips); n != 2 {
		t.Errorf("%d domains behind stripping hosts, want 2", n)
	}
}

// TestHostSweepResume interrupts a sweep and resumes it into the same run
// from its stored checkpoint: every address is counted once in Table 9's
// "addresses probed" (closed ports included, though they are not stored),
// and only grabs the interruption cut short are made again.
func TestHostSweepResume(t *testing.T) {
	store, _ := measure.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	defer store.Close()
	var ips []string
	for i := 1; i <= 8; i++ {
		ips = append(ips, fmt.Sprintf("127.67.0.%d", i*7))
	}
	ports := testnet.Pick(t, testnet.Request{TCP: ips, Closed: "127.67.0.0/26"})
	var sinks []*smtpsink.Sink
	for _, ln := range ports.TCP {
		sinks = append(sinks, smtpsink.Serve(t, ln, smtpsink.Options{}))
	}
	run, _ := NewRun(context.Background(), store.DB, "hosts", "test", nil)
	targets := NewTargets([]netip.Prefix{netip.MustParsePrefix("127.67.0.0/26")}) // 56 closed: fast refusals
	if _, err := run.StartSweep(context.Background(), SweepState{Targets: targets.String(), Seed: 1, Shards: 1}); err != nil {
		t.Fatal(err)
	}
	g := &Grabber{Timeout: 2 * time.Second, Dialer: &Dialer{}}
	ctx, cancel := context.WithCancel(context.Background())
	// Interrupted once the checkpoint has passed 20 steps: cancelling on
	// the 20th result instead left it at 0 when the first step was an
	// open server still being grabbed (the checkpoint is the completed
	// prefix, and stays behind a slow first step).
	SweepHosts(ctx, HostOptions{Grabber: g, Port: ports.Port, SweepOptions: SweepOptions{Workers: 4, Rate: 10000, Seed: 1, Shards: 1,
		OnCheckpoint: func(cp Checkpoint) {
			run.Checkpoint(cp)
			if cp.Next >= 20 {
				cancel()
			}
		}},
		OnResult: func(h *HostResult) { run.SaveHost(h) }}, targets)
	run.Flush()
	again, _ := ResumeRun(context.Background(), store.DB, run.ID, nil)
	stored := again.Sweeps()
	if len(stored) != 1 {
		t.Fatalf("stored sweeps %+v", stored)
	}
	st, err := again.StartSweep(context.Background(), stored[0])
	if err != nil || st.Next < 20 || st.Next >= 64 || st.Tried != st.Next {
		t.Fatalf("stored checkpoint %+v (%v): want part of the 64 steps, each tried", st, err)
	}
	SweepHosts(context.Background(), HostOptions{Grabber: g, Port: ports.Port, SweepOptions: SweepOptions{Workers: 4, Rate: 10000,
		Seed: st.Seed, Shard: st.Shard, Shards: st.Shards, Skip: again.Done, From: st.Checkpoint, OnCheckpoint: again.Checkpoint},
		OnResult: func(h *HostResult) { again.SaveHost(h) }}, targets)
	again.Finish()
	var rows, distinct int
	store.DB.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT ip) FROM scan_hosts WHERE run_id = ?`, run.ID).Scan(&rows, &distinct)
	if rows != 8 || distinct != 8 {
		t.Errorf("%d rows, %d distinct after resume; want the 8 open servers", rows, distinct)
	}
	// Only grabs cut short by the interruption are made again: at most
	// one per worker.
	extra := 0
	for _, s := range sinks {
		if s.Accepts() == 0 {
			t.Errorf("%s never grabbed", s.Addr)
		}
		extra += s.Accepts() - 1
	}
	if extra > 4 {
		t.Errorf("%d grabs repeated after resume, want at most the 4 in flight", extra)
	}
	sum, err := SummarizeHosts(context.Background(), store.DB, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Probed != 64 || sum.Open != 8 || sum.Responsive != 8 {
		t.Errorf("table 9: probed %d open %d responsive %d, want 64 8 8", sum.Probed, sum.Open, sum.Responsive)
	}
}
