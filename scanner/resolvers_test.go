package scanner

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/resolver"
)

const providerZone = `
gmail.example.   MX 5 in1.gmail.example.
gmail.example.   MX 10 in2.gmail.example.
in1.gmail.example. A 203.0.113.10
in2.gmail.example. A 203.0.113.11
yahoo.example.   MX 1 mta.yahoo.example.
mta.yahoo.example. A 203.0.113.20
`

// fakeResolver answers like an open resolver with one behaviour.
type fakeResolver struct {
	ip       string
	behave   string
	truth    *dnstest.Server
	accepted int
	mu       sync.Mutex
}

func (f *fakeResolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	f.mu.Lock()
	f.accepted++
	f.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	q := req.Question[0]
	switch f.behave {
	case "refuse":
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	case "servfail":
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	case "silent":
		return
	}
	// Ask the truth, then lie as configured.
	c := &dns.Client{Timeout: time.Second}
	r, _, err := c.Exchange(req, f.truth.Addr)
	if err != nil {
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	m.Answer = r.Answer
	switch {
	case f.behave == "false_mx" && q.Qtype == dns.TypeMX:
		rr, _ := dns.NewRR(q.Name + " 300 IN MX 10 mx.evil.example.")
		m.Answer = []dns.RR{rr}
	case q.Qtype == dns.TypeA && f.behave != "honest" && f.behave != "false_mx":
		addr := map[string]string{"false_a": "45.33.32.156", "private": "10.1.2.3", "own": f.ip}[f.behave]
		rr, _ := dns.NewRR(fmt.Sprintf("%s 300 IN A %s", q.Name, addr))
		m.Answer = []dns.RR{rr}
	case q.Qtype == dns.TypeA && strings.HasSuffix(q.Name, "evil.example."):
		rr, _ := dns.NewRR(q.Name + " 300 IN A 45.33.32.157")
		m.Answer = []dns.RR{rr}
	}
	w.WriteMsg(m)
}

func TestResolverSweep(t *testing.T) {
	truth := dnstest.Start(t, providerZone)
	behaviours := []struct {
		behave string
		want   DNSClass
	}{
		{"honest", DNSCorrect}, {"false_mx", DNSFalseMX}, {"false_a", DNSFalseAddress},
		{"private", DNSPrivate}, {"own", DNSOwnAddress}, {"refuse", DNSRefused},
		{"servfail", DNSServfail}, {"silent", DNSNoAnswer}, {"honest", ""}, // the last one is blocklisted
	}
	fakes := map[string]*fakeResolver{}
	var ips []string
	for i := range behaviours {
		ips = append(ips, fmt.Sprintf("127.65.0.%d", i+1))
	}
	// One UDP port on every fake; the rest of the /28 is closed.
	ports := testnet.Pick(t, testnet.Request{UDP: ips, Closed: "127.65.0.0/28"})
	for i, b := range behaviours {
		ip := ips[i]
		f := &fakeResolver{ip: ip, behave: b.behave, truth: truth}
		fakes[ip] = f
		srv := &dns.Server{PacketConn: ports.UDP[i], Handler: f}
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	res, _ := resolver.New(resolver.Config{Servers: []string{truth.Addr}, Timeout: time.Second})
	gt, err := GroundTruth(context.Background(), res, []string{"gmail.example", "yahoo.example"})
	if err != nil {
		t.Fatal(err)
	}
	blockedIP := fmt.Sprintf("127.65.0.%d", len(behaviours))
	bl, _ := ParseBlocklist(strings.NewReader(blockedIP))
	p := &ResolverProber{Port: ports.Port, Timeout: 300 * time.Millisecond, Dialer: &Dialer{Blocklist: bl}, Truth: gt, PerTarget: 1000}
	var mu sync.Mutex
	got := map[string]*ResolverResult{}
	for shard := 0; shard < 3; shard++ {
		SweepResolvers(context.Background(), p, NewTargets([]netip.Prefix{netip.MustParsePrefix("127.65.0.0/28")}),
			SweepOptions{Seed: 9, Shard: shard, Shards: 3, Workers: 16}, func(r *ResolverResult) {
				mu.Lock()
				defer mu.Unlock()
				if _, dup := got[r.IP]; dup {
					t.Errorf("%s probed twice", r.IP)
				}
				got[r.IP] = r
			})
	}
	for i, b := range behaviours[:len(behaviours)-1] {
		ip := fmt.Sprintf("127.65.0.%d", i+1)
		r := got[ip]
		if r == nil {
			t.Errorf("%s: not probed", b.behave)
			continue
		}
		for _, prov := range []string{"gmail.example", "yahoo.example"} {
			if r.Providers[prov] != b.want {
				t.Errorf("%s/%s: %s (%s), want %s", b.behave, prov, r.Providers[prov], r.Details[prov], b.want)
			}
		}
	}
	if fakes[blockedIP].accepted != 0 {
		t.Errorf("blocklisted resolver got %d queries", fakes[blockedIP].accepted)
	}
	sum := SummarizeResolvers(got)
	if sum.PerProvider["gmail.example"][DNSFalseMX] != 1 || sum.Classes[DNSCorrect] != 1 {
		t.Errorf("summary %+v", sum)
	}
}

func FuzzClassifyAnswer(f *testing.F) {
	f.Add("gmail.example. 300 IN MX 10 in1.gmail.example.", "in1.gmail.example. 300 IN A 10.0.0.1")
	f.Add("gmail.example. 300 IN MX 10 x.", "x. 300 IN A 127.0.0.1")
	truth := map[string]Truth{"gmail.example": {MX: []string{"in1.gmail.example"}, Addrs: map[string][]string{"in1.gmail.example": {"203.0.113.10"}}}}
	f.Fuzz(func(t *testing.T, mxRR, aRR string) {
		p := &ResolverProber{Truth: truth}
		ask := func(name string, qtype uint16) (*dns.Msg, error) {
			m := new(dns.Msg)
			m.SetQuestion(name, qtype)
			for _, s := range []string{mxRR, aRR} {
				if rr, err := dns.NewRR(s); err == nil && rr != nil {
					m.Answer = append(m.Answer, rr)
				}
			}
			return m, nil
		}
		class, _ := p.classify(netip.MustParseAddr("192.0.2.53"), truth["gmail.example"], "gmail.example", ask)
		if class == "" {
			t.Fatal("no class")
		}
	})
}
