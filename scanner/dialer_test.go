package scanner

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func listenCounting(t *testing.T, network, addr string) *countingListener {
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	go func() {
		for {
			c, err := cl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return cl
}

// TestDialerDefaultBlocklist dials loopback in every spelling through a
// nil Dialer (the default blocklist): the check runs on the address
// connect(2) gets, so no spelling gets through, and nothing is accepted.
func TestDialerDefaultBlocklist(t *testing.T) {
	v4 := listenCounting(t, "tcp4", "127.0.0.1:0")
	port := v4.Addr().(*net.TCPAddr).Port
	v6 := listenCounting(t, "tcp6", fmt.Sprintf("[::1]:%d", port))
	var d *Dialer
	for _, addr := range []string{
		fmt.Sprintf("127.0.0.1:%d", port),
		fmt.Sprintf("[::1]:%d", port),
		fmt.Sprintf("[::ffff:127.0.0.1]:%d", port), // IPv4-mapped
		fmt.Sprintf("localhost:%d", port),          // a name resolving to loopback
		"169.254.169.254:80",                       // cloud metadata
		"[fe80::1%lo]:80",                          // zoned link-local
		"[64:ff9b::7f00:1]:80",                     // NAT64 of 127.0.0.1
		"10.1.2.3:25",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := d.DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, ErrBlocked) {
			t.Errorf("%s: %v, want ErrBlocked", addr, err)
		}
	}
	if n := v4.n.Load() + v6.n.Load(); n != 0 {
		t.Errorf("blocked listeners accepted %d connections", n)
	}
	// A Dialer with its own list lets the rest through.
	only2, _ := ParseBlocklist(strings.NewReader("127.0.0.2\n"))
	c, err := (&Dialer{Blocklist: only2}).DialContext(context.Background(), "tcp", v4.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestDialerDNS: a DNS query to a probed resolver goes through the same
// check (miekg/dns's Client.Dialer), so a blocked resolver sees nothing.
func TestDialerDNS(t *testing.T) {
	srv := dnstest.Start(t, "x.example. A 192.0.2.1\n")
	var d *Dialer
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: time.Second, Dialer: d.Net()}
		m := new(dns.Msg)
		m.SetQuestion("x.example.", dns.TypeA)
		if _, _, err := c.Exchange(m, srv.Addr); !errors.Is(err, ErrBlocked) {
			t.Errorf("%s: %v, want ErrBlocked", network, err)
		}
	}
	if n := srv.Queries(); n != 0 {
		t.Errorf("the blocked resolver got %d queries", n)
	}
	// The prober's own path: nothing is sent to a blocked resolver.
	p := &ResolverProber{Truth: map[string]Truth{"x.example": {}}}
	ap := netip.MustParseAddrPort(srv.Addr)
	p.Port = int(ap.Port())
	if r := p.Probe(context.Background(), ap.Addr()); len(r.Providers) != 0 || srv.Queries() != 0 {
		t.Errorf("probe of a blocked resolver: %+v, %d queries", r, srv.Queries())
	}
}

// stsHost serves MTA-STS policies over HTTPS on one port of 127.0.0.1
// and ::1, counting connections and requests; "redirect" names answer
// with a redirect to another policy host.
type stsHost struct {
	port     int
	conns    []*countingListener
	requests atomic.Int64
}

func startSTSHost(t *testing.T, ca *testca.CA, names []string) *stsHost {
	cert, key := ca.Issue(t, "sts-host", names...)
	kp, _ := tls.LoadX509KeyPair(cert, key)
	h := &stsHost{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		if strings.HasPrefix(r.Host, "mta-sts.redirect.") {
			http.Redirect(w, r, "https://mta-sts.target.example/.well-known/mta-sts.txt", http.StatusMovedPermanently)
			return
		}
		fmt.Fprint(w, "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 86400\n")
	})
	v4 := listenCounting0(t, "tcp4", "127.0.0.1:0")
	h.port = v4.Addr().(*net.TCPAddr).Port
	v6 := listenCounting0(t, "tcp6", fmt.Sprintf("[::1]:%d", h.port))
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after the servers' Close (cleanups run last first)
	for _, l := range []*countingListener{v4, v6} {
		srv := &http.Server{Handler: handler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{kp}}}
		wg.Add(1)
		go func() { defer wg.Done(); srv.ServeTLS(l, "", "") }()
		t.Cleanup(func() { srv.Close() })
		h.conns = append(h.conns, l)
	}
	return h
}

// listenCounting0 is a counting listener left to its server.
func listenCounting0(t *testing.T, network, addr string) *countingListener {
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return &countingListener{Listener: ln}
}

func (h *stsHost) accepted() int64 {
	var n int64
	for _, l := range h.conns {
		n += l.n.Load()
	}
	return n
}

// TestMTASTSBlocklisted sweeps domains whose mta-sts host is on a
// blocklisted address (127.0.0.1, ::1, ::ffff:127.0.0.1, 169.254.169.254)
// with the default blocklist: no connection and no request reaches the
// policy host, and the domains say "blocked". The same sweep with nothing
// blocked fetches them, which shows the host works; a redirect is not
// followed (RFC 8461 section 3.3).
func TestMTASTSBlocklisted(t *testing.T) {
	ca := testca.New(t)
	names := []string{"mta-sts.v4.example", "mta-sts.v6.example", "mta-sts.mapped.example", "mta-sts.redirect.example",
		"mta-sts.target.example"}
	host := startSTSHost(t, ca, names)
	zone := `mta-sts.v4.example. A 127.0.0.1
mta-sts.v6.example. AAAA ::1
mta-sts.mapped.example. AAAA ::ffff:127.0.0.1
mta-sts.metadata.example. A 169.254.169.254
mta-sts.redirect.example. A 127.0.0.1
mta-sts.target.example. A 127.0.0.1
`
	domains := []string{"v4.example", "v6.example", "mapped.example", "metadata.example", "redirect.example"}
	for _, d := range domains {
		zone += fmt.Sprintf("_mta-sts.%s. TXT \"v=STSv1; id=1;\"\n", d)
	}
	srv := dnstest.Start(t, zone)
	res, _ := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: time.Second})
	sweepSTS := func(d *Dialer, domains []string) map[string]*MTASTS {
		out := map[string]*MTASTS{}
		var mu sync.Mutex
		o := Options{Resolver: res, DryRun: true, Workers: 4, Grabber: &Grabber{Dialer: d},
			STS:      &policy.STSFetcher{Resolver: res, Roots: ca.Pool(), Port: host.port, Timeout: 5 * time.Second},
			OnDomain: func(r *DomainResult) { mu.Lock(); out[r.Domain] = r.MTASTS; mu.Unlock() }}
		in := make(chan Input, len(domains))
		for _, d := range domains {
			in <- Input{Domain: d}
		}
		close(in)
		if err := Sweep(context.Background(), o, in); err != nil {
			t.Fatal(err)
		}
		return out
	}
	blocked := sweepSTS(nil, domains)
	if len(blocked) != len(domains) {
		t.Errorf("%d domains swept, want %d", len(blocked), len(domains))
	}
	for d, m := range blocked {
		if m == nil || m.Mode != "blocked" {
			t.Errorf("default blocklist, %s: %+v, want blocked", d, m)
		}
	}
	if n, r := host.accepted(), host.requests.Load(); n != 0 || r != 0 {
		t.Fatalf("the blocklisted policy host accepted %d connections and %d requests", n, r)
	}
	// Loopback only: the metadata address is never dialled for real.
	got := sweepSTS(&Dialer{}, []string{"v4.example", "v6.example", "mapped.example", "redirect.example"})
	for _, d := range []string{"v4.example", "v6.example", "mapped.example"} {
		if m := got[d]; m == nil || m.Mode != "enforce" {
			t.Errorf("nothing blocked, %s: %+v, want the policy", d, m)
		}
	}
	if m := got["redirect.example"]; m == nil || m.Mode != "error" || !strings.Contains(m.Error, "301") {
		t.Errorf("redirect: %+v, want an error naming the 301", m)
	}
	if r := host.requests.Load(); r != 4 { // v4, v6, mapped, redirect; not the redirect's target
		t.Errorf("%d policy requests, want 4", r)
	}
}
