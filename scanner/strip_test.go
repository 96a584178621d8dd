package scanner

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/testca"
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
	want     string
	masked   bool
}

func serveBox(t *testing.T, addr string, b middlebox, cfg *tls.Config, accepts *sync.Map) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
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
}

func TestStrippingTestBed(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "box", "box.test")
	kp, _ := tls.LoadX509KeyPair(cert, key)
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}}
	var accepts sync.Map
	for i, b := range boxes {
		serveBox(t, fmt.Sprintf("127.64.0.%d:2525", i+1), b, cfg, &accepts)
	}
	// One more server, blocklisted: it must never see a connection.
	blockedAddr := fmt.Sprintf("127.64.0.%d:2525", len(boxes)+1)
	serveBox(t, blockedAddr, boxes[0], cfg, &accepts)
	bl, _ := ParseBlocklist(strings.NewReader(strings.Split(blockedAddr, ":")[0] + "\n"))
	g := &Grabber{EHLOName: "scanner.test.example", Timeout: time.Second, Blocklist: bl}
	var mu sync.Mutex
	got := map[string]*HostResult{}
	seen := map[string]int{}
	for shard := 0; shard < 2; shard++ {
		err := SweepHosts(context.Background(), HostOptions{Grabber: g, Port: 2525, Workers: 8, Rate: 1000,
			Seed: 7, Shard: shard, Shards: 2, OnResult: func(r *HostResult) {
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
	for _, s := range []string{`500 #5.5.1 command not recognized: "XXXXXXXX"`, "502 5.5.2 Error: command not recognized",
		"500 unrecognized: STAR", "500 starttls", "454 TLS not available"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := ClassifyEcho(s)
		if c == StripEchoIntact && !strings.Contains(s, "STARTTLS") {
			t.Fatalf("%q intact without STARTTLS", s)
		}
	})
}
