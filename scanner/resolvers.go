package scanner

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"

	"github.com/snowrain/snowrain/resolver"
)

// DNSClass is what an open resolver answered for a mail provider: the
// rows of Tables 7 ("Falsified DNS Responses") and 13 ("Invalid or
// Falsified MX Records").
type DNSClass string

// Answer classes of Table 13.
const (
	DNSCorrect      DNSClass = "correct"           // the trusted resolver's MX and addresses
	DNSFalseMX      DNSClass = "falsified_mx"      // other MX hosts
	DNSFalseAddress DNSClass = "falsified_address" // the right MX hosts at other public addresses
	DNSPrivate      DNSClass = "private_address"   // … at private, loopback or reserved addresses
	DNSOwnAddress   DNSClass = "own_address"       // … at the resolver's own address
	DNSRefused      DNSClass = "refused"           // REFUSED (RFC 1035 section 4.1.1)
	DNSServfail     DNSClass = "servfail"          // SERVFAIL
	DNSNoAnswer     DNSClass = "no_answer"         // no reply, another error, or no MX
)

// dnsPort is where resolvers answer: "UDP ... server port 53", RFC 1035
// section 4.2.1.
const dnsPort = 53

// DefaultProviders are the paper's Table 7 domains.
var DefaultProviders = []string{"gmail.com", "yahoo.com", "outlook.com", "qq.com", "mail.ru"}

// Truth is what a trusted resolver says about a provider.
type Truth struct {
	MX    []string            // sorted, lower-case, no trailing dot
	Addrs map[string][]string // MX host → sorted IPv4 addresses
}

// ResolverResult is one open resolver's answers for every provider.
type ResolverResult struct {
	Type      string              `json:"type"` // "resolver"
	IP        string              `json:"ip"`
	Providers map[string]DNSClass `json:"providers"` // provider → class
	Details   map[string]string   `json:"details,omitempty"`
	// FalseAddrs are the addresses the resolver's lies point to (the mail
	// servers of a falsified MX, or the falsified A records): Table 15
	// counts mail from them.
	FalseAddrs []string `json:"false_addresses,omitempty"`
}

// GroundTruth asks the trusted resolver for each provider's MX and their
// addresses.
func GroundTruth(ctx context.Context, r resolver.Resolver, providers []string) (map[string]Truth, error) {
	out := map[string]Truth{}
	for _, p := range providers {
		mxs, err := r.LookupMX(ctx, p)
		if err != nil {
			return nil, err
		}
		t := Truth{Addrs: map[string][]string{}}
		for _, mx := range mxs {
			h := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
			t.MX = append(t.MX, h)
			ips, _ := r.LookupIPAddr(ctx, h)
			for _, ip := range ips {
				if ip.IP.To4() != nil {
					t.Addrs[h] = append(t.Addrs[h], ip.IP.String())
				}
			}
			slices.Sort(t.Addrs[h])
		}
		slices.Sort(t.MX)
		out[p] = t
	}
	return out, nil
}

// ResolverProber asks open resolvers.
type ResolverProber struct {
	Port    int // 53
	Timeout time.Duration
	Dialer  *Dialer // every query's socket; nil: refuse the DefaultBlocklist
	Truth   map[string]Truth
	// PerTarget spaces the queries to one resolver (politeness).
	PerTarget rate.Limit
}

// Probe classifies what the resolver at ip answers for every provider.
func (p *ResolverProber) Probe(ctx context.Context, ip netip.Addr) ResolverResult {
	return p.probe(ctx, p.Dialer, ip)
}

func (p *ResolverProber) probe(ctx context.Context, d *Dialer, ip netip.Addr) ResolverResult {
	res := ResolverResult{Type: "resolver", IP: ip.String(), Providers: map[string]DNSClass{}, Details: map[string]string{}}
	if d.Blocked(ip) {
		return res
	}
	port := p.Port
	if port == 0 {
		port = dnsPort
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	limit := p.PerTarget
	if limit == 0 {
		limit = 20
	}
	lim := rate.NewLimiter(limit, 1)
	nd := d.Net()
	nd.Timeout = timeout
	c := &dns.Client{Net: "udp", Timeout: timeout, Dialer: nd}
	server := netip.AddrPortFrom(ip, uint16(port)).String()
	ask := func(name string, qtype uint16) (*dns.Msg, error) {
		lim.Wait(ctx)
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		m.RecursionDesired = true
		r, _, err := c.ExchangeContext(ctx, m, server)
		return r, err
	}
	for provider, truth := range p.Truth {
		class, detail := p.classify(ip, truth, provider, ask)
		res.Providers[provider] = class
		if detail != "" {
			res.Details[provider] = detail
		}
		switch class {
		case DNSFalseAddress:
			res.FalseAddrs = append(res.FalseAddrs, strings.Fields(detail)...)
		case DNSFalseMX:
			for _, h := range strings.Fields(detail) {
				if a, err := ask(h, dns.TypeA); err == nil && a != nil {
					res.FalseAddrs = append(res.FalseAddrs, addresses(a)...)
				}
			}
		}
	}
	slices.Sort(res.FalseAddrs)
	res.FalseAddrs = slices.Compact(res.FalseAddrs)
	return res
}

func (p *ResolverProber) classify(ip netip.Addr, truth Truth, provider string,
	ask func(string, uint16) (*dns.Msg, error)) (DNSClass, string) {
	r, err := ask(provider, dns.TypeMX)
	if c := failure(r, err); c != "" {
		return c, ""
	}
	mxs := mxHosts(r)
	if len(mxs) == 0 {
		return DNSNoAnswer, ""
	}
	if !slices.Equal(mxs, truth.MX) {
		return DNSFalseMX, strings.Join(mxs, " ")
	}
	for _, h := range mxs {
		a, err := ask(h, dns.TypeA)
		if c := failure(a, err); c != "" {
			return c, ""
		}
		addrs := addresses(a)
		if slices.Equal(addrs, truth.Addrs[h]) {
			continue
		}
		for _, s := range addrs {
			x, _ := netip.ParseAddr(s)
			switch {
			case x == ip:
				return DNSOwnAddress, s
			case x.IsPrivate() || x.IsLoopback() || x.IsLinkLocalUnicast() || x.IsUnspecified() || reserved(x):
				return DNSPrivate, s
			}
		}
		return DNSFalseAddress, strings.Join(addrs, " ")
	}
	return DNSCorrect, ""
}

// mxHosts returns the MX hosts an answer names, sorted, lower-case,
// without the trailing dot.
func mxHosts(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, strings.ToLower(strings.TrimSuffix(mx.Mx, ".")))
		}
	}
	slices.Sort(out)
	return out
}

// addresses returns the IPv4 addresses an answer holds, sorted.
func addresses(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if rec, ok := rr.(*dns.A); ok {
			out = append(out, rec.A.String())
		}
	}
	slices.Sort(out)
	return out
}

func failure(r *dns.Msg, err error) DNSClass {
	switch {
	case err != nil || r == nil:
		return DNSNoAnswer
	case r.Rcode == dns.RcodeRefused:
		return DNSRefused
	case r.Rcode == dns.RcodeServerFailure:
		return DNSServfail
	case r.Rcode != dns.RcodeSuccess:
		return DNSNoAnswer
	}
	return ""
}

var reservedNets = func() []netip.Prefix {
	b, _ := ParseBlocklist(strings.NewReader(DefaultBlocklist))
	return b.prefixes
}()

func reserved(a netip.Addr) bool {
	for _, p := range reservedNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// SweepResolvers probes this shard of targets.
func SweepResolvers(ctx context.Context, p *ResolverProber, t *Targets, o SweepOptions, on func(*ResolverResult)) error {
	o.Dialer = p.Dialer
	e := &Engine[*ResolverResult]{SweepOptions: o, Module: p}
	if on != nil {
		e.OnResult = func(_ Target, _ Status, r *ResolverResult) { on(r) }
	}
	return e.Sweep(ctx, t)
}

// Scan is the resolver sweep's module: t's answers for every provider,
// through d. An address where nothing answers holds no resolver: absent.
func (p *ResolverProber) Scan(ctx context.Context, d *Dialer, t Target) (Status, *ResolverResult, error) {
	r := p.probe(ctx, d, t.IP)
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	for _, class := range r.Providers {
		if class != DNSNoAnswer {
			return StatusFound, &r, nil
		}
	}
	return StatusAbsent, &r, nil
}

// ResolverSummary is Table 13 (answers by class) and Table 7 (per
// provider).
type ResolverSummary struct {
	Resolvers   int
	Classes     map[DNSClass]int            // a resolver counts once per class it showed
	PerProvider map[string]map[DNSClass]int // provider → class → resolvers
}

// SummarizeResolvers aggregates probe results.
func SummarizeResolvers(results map[string]*ResolverResult) *ResolverSummary {
	s := &ResolverSummary{Classes: map[DNSClass]int{}, PerProvider: map[string]map[DNSClass]int{}}
	for _, r := range results {
		if len(r.Providers) == 0 {
			continue
		}
		s.Resolvers++
		seen := map[DNSClass]bool{}
		for prov, class := range r.Providers {
			if s.PerProvider[prov] == nil {
				s.PerProvider[prov] = map[DNSClass]int{}
			}
			s.PerProvider[prov][class]++
			if !seen[class] {
				seen[class] = true
				s.Classes[class]++
			}
		}
	}
	return s
}
