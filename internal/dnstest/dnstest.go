// Package dnstest runs an authoritative miekg/dns server on loopback that
// serves test zones, so every lookup in a test is real DNS over UDP and TCP:
// on a picked port on the machine, and, for an MTA that only asks port 53,
// on port 53 inside a network namespace the test made (ServeIn).
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/internal/testnet"
)

// Server is a loopback authoritative DNS server.
type Server struct {
	Addr string // "127.0.0.1:PORT" (or the address given to Serve), a picked port, the same for UDP and TCP

	mu       sync.RWMutex
	records  map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool     // names (and their subdomains) that SERVFAIL
	signed   map[string]bool     // names (and their subdomains) answered with AD set
	silent   map[string][]uint16 // names never answered, for these types (nil: all)
	delay    time.Duration
	drop     bool
	queries  atomic.Int64
	servers  []*dns.Server // UDP and TCP, on the machine and in namespaces
}

// Start serves zone (RFC 1035 master file text; $ORIGIN allowed, default
// TTL 300) until the test ends.
func Start(t testing.TB, zone string) *Server {
	t.Helper()
	s, err := New(zone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server without a testing.TB; Close stops it.
func New(zone string) (*Server, error) {
	s := newServer()
	if err := s.Add(zone); err != nil {
		return nil, err
	}
	// One port picked for UDP and TCP alike (the kernel's UDP port may be
	// taken for TCP).
	p, err := testnet.Listen(testnet.Request{TCP: []string{"127.0.0.1"}, UDP: []string{"127.0.0.1"}})
	if err != nil {
		return nil, fmt.Errorf("dnstest: %w", err)
	}
	s.Addr = p.Addr("127.0.0.1")
	s.serve(p.UDP[0], p.TCP[0])
	return s, nil
}

// Serve serves zone on sockets the test picked, one UDP socket and one
// TCP listener on the same address (testnet.Pick: one port on many
// addresses, a server each), until the test ends.
func Serve(t testing.TB, zone string, pc net.PacketConn, l net.Listener) *Server {
	t.Helper()
	s := newServer()
	if err := s.Add(zone); err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	s.serve(pc, l)
	t.Cleanup(s.Close)
	return s
}

// ServeIn also answers on addr inside ns, e.g. "127.53.0.1:53" for an MTA
// whose resolv.conf cannot name a port (see postfixtest's NetNS), with
// the same records, until the test ends. Addr stays the machine-side
// address, for the test's own resolvers.
func (s *Server) ServeIn(t testing.TB, ns *testnet.NS, addr string) {
	t.Helper()
	pc, err := ns.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ns.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	s.serve(pc, l)
}

func newServer() *Server {
	return &Server{records: map[string][]dns.RR{}, servfail: map[string]bool{}, signed: map[string]bool{},
		silent: map[string][]uint16{}}
}

// serve answers on pc and l until Close.
func (s *Server) serve(pc net.PacketConn, l net.Listener) {
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	udp := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	tcp := &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: notify}
	s.mu.Lock()
	s.servers = append(s.servers, udp, tcp)
	s.mu.Unlock()
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-started
	<-started
}

// Close stops the server, on every address it answers.
func (s *Server) Close() {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	for _, srv := range servers {
		srv.Shutdown()
	}
}

// Add parses more zone text into the server.
func (s *Server) Add(zone string) error {
	zp := dns.NewZoneParser(strings.NewReader(zone), "", "")
	zp.SetDefaultTTL(300)
	s.mu.Lock()
	defer s.mu.Unlock()
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("dnstest: %w", err)
	}
	return nil
}

// ServFail makes name and every name below it answer SERVFAIL.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[strings.ToLower(dns.Fqdn(name))] = true
}

// Signed makes answers for name and every name below it carry the AD bit,
// as a validating resolver would for a DNSSEC-signed zone.
func (s *Server) Signed(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signed[strings.ToLower(dns.Fqdn(name))] = true
}

// SetDelay delays every answer by d.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetDrop makes the server swallow queries without answering.
func (s *Server) SetDrop(drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = drop
}

// Queries returns how many queries the server received.
func (s *Server) Queries() int64 { return s.queries.Load() }

// ServeDNS answers from the loaded records.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	s.mu.RLock()
	delay, drop := s.delay, s.drop
	s.mu.RUnlock()
	if drop || len(req.Question) != 1 || s.isSilent(req.Question[0]) {
		return
	}
	time.Sleep(delay)
	m := s.answer(req)
	if w.RemoteAddr().Network() == "udp" {
		m.Truncate(dnsSize(req))
	}
	w.WriteMsg(m)
}

func dnsSize(req *dns.Msg) int {
	if o := req.IsEdns0(); o != nil {
		return int(o.UDPSize())
	}
	return dns.MinMsgSize
}

func (s *Server) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if under(s.servfail, name) {
		m.Rcode = dns.RcodeServerFailure
		return m
	}
	m.AuthenticatedData = under(s.signed, name)
	rrs, exists := s.records[name]
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	if len(m.Answer) == 0 {
		for _, rr := range rrs {
			if cn, ok := rr.(*dns.CNAME); ok {
				m.Answer = append(m.Answer, dns.Copy(rr))
				for _, t := range s.records[strings.ToLower(cn.Target)] {
					if t.Header().Rrtype == q.Qtype {
						m.Answer = append(m.Answer, dns.Copy(t))
					}
				}
			}
		}
	}
	if !exists && !s.hasBelow(name) {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{soa(name)}
	}
	return m
}

// under reports whether name or one of its parents (the root included) is
// in set.
func under(set map[string]bool, name string) bool {
	for n := name; ; {
		if set[n] {
			return true
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			return set["."]
		}
		n = n[i+1:]
	}
}

// hasBelow reports whether some name below name exists (an empty
// non-terminal answers NODATA, not NXDOMAIN).
func (s *Server) hasBelow(name string) bool {
	for n := range s.records {
		if strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

func soa(name string) dns.RR {
	rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60", name))
	return rr
}
