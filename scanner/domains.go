package scanner

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
)

// MX is one mail server of a domain, with its grabs.
type MX struct {
	Host      string   `json:"host"`
	Pref      uint16   `json:"pref"`
	IPs       []string `json:"ips"`
	TLSA      bool     `json:"tlsa"`        // TLSA records at _25._tcp.HOST
	TLSAValid bool     `json:"tlsa_dnssec"` // … with the AD bit
}

// DomainResult is everything the sweep learned about one domain.
type DomainResult struct {
	Type       string   `json:"type"` // "domain"
	Domain     string   `json:"domain"`
	Rank       int      `json:"rank,omitempty"`
	MX         []MX     `json:"mx"`
	ImplicitMX bool     `json:"implicit_mx,omitempty"` // no MX: the domain's A (RFC 5321 5.1)
	SPF        *SPFWalk `json:"spf"`
	DMARC      *DMARC   `json:"dmarc"`
	MTASTS     *MTASTS  `json:"mta_sts"`
	TLSRPT     *TLSRPT  `json:"tls_rpt,omitempty"`
	// Status is the Table 1 row; "" for a dry run that found mail servers.
	Status DomainStatus `json:"status"`
	// Derived from the grabs of the MX addresses, best MX first.
	Connected  bool      `json:"connected"`
	STARTTLS   bool      `json:"starttls"`
	Trust      Trust     `json:"trust,omitempty"`
	CertMatch  CertMatch `json:"cert_match,omitempty"`
	TLSVersion string    `json:"tls_version,omitempty"`
	Cipher     string    `json:"cipher,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// DomainStatus is the Table 1 row ("Top 1 Million Domains Scan Results")
// of a domain.
type DomainStatus string

// Table 1 rows.
const (
	DomainNoMX           DomainStatus = "no_mx"            // no MX records, nor an A (RFC 5321 section 5.1)
	DomainNoResolvableMX DomainStatus = "no_resolvable_mx" // MX hosts without IPv4 addresses
	DomainNoResponse     DomainStatus = "no_response"      // no MX host greeted
	DomainNoSTARTTLS     DomainStatus = "no_starttls"      // an SMTP server, no STARTTLS handshake
	DomainSTARTTLS       DomainStatus = "starttls"         // a STARTTLS handshake completed
)

// CertMatch is which name the certificate of a domain's best MX is valid
// for: Table 2's columns.
type CertMatch string

// Certificate name matches of Table 2.
const (
	CertMatchDomain  CertMatch = "domain"  // the recipient domain
	CertMatchMX      CertMatch = "mx"      // the MX host name only
	CertMatchNeither CertMatch = "neither" // neither
)

// DMARC is a domain's published DMARC policy (Table 18).
type DMARC struct {
	Policy auth.DMARCPolicy `json:"policy"` // reject, quarantine, none, absent, invalid
	SP     string           `json:"sp,omitempty"`
	Pct    int              `json:"pct"`
	RUA    bool             `json:"rua"`
}

// MTA-STS states of a domain besides its policy's mode (policy.STSEnforce,
// STSTesting, STSNone).
const (
	STSAbsent  policy.STSMode = "absent"  // no _mta-sts record (RFC 8461 section 3.1)
	STSError   policy.STSMode = "error"   // an invalid record, or a policy that failed to fetch or parse
	STSBlocked policy.STSMode = "blocked" // the policy host is blocklisted: not fetched, says nothing of the domain
)

// MTASTS is a domain's MTA-STS state.
type MTASTS struct {
	Mode  policy.STSMode `json:"mode"` // a policy mode, or STSAbsent, STSError, STSBlocked
	MX    []string       `json:"mx,omitempty"`
	Error string         `json:"error,omitempty"`
}

// Options shape a sweep.
type Options struct {
	Resolver   resolver.Resolver
	Grabber    *Grabber
	STS        *policy.STSFetcher
	Port       int        // SMTP port; 25
	Workers    int        // domains in flight; default 64
	Grabbers   int        // SMTP conversations in flight; default 32
	ConnRate   rate.Limit // connections per second; default 100
	DNSRate    rate.Limit // domains per second into the DNS phase; default unlimited
	DryRun     bool       // DNS only; no SMTP connection
	SkipDomain func(string) bool
	KnownGrab  func(ip string) (*Grab, bool) // grabs of an earlier run (resume)
	OnDomain   func(*DomainResult)
	OnGrab     func(*Grab)
}

// Sweep scans domains from in, calling OnDomain for each result; grabs are
// made once per distinct address and shared by every domain using it.
func Sweep(ctx context.Context, o Options, in <-chan Input) error {
	workers := o.Workers
	if workers <= 0 {
		workers = 64
	}
	e := &Engine[*DomainResult]{Module: NewDomainProbe(o),
		SweepOptions: SweepOptions{Workers: workers, Rate: o.DNSRate, Skip: o.SkipDomain, Dialer: o.dialer()}}
	if o.OnDomain != nil {
		e.OnResult = func(_ Target, _ Status, d *DomainResult) { o.OnDomain(d) }
	}
	return e.Sweep(ctx, Domains(in, 0))
}

// Input is one domain to scan.
type Input struct {
	Domain string
	Rank   int
}

// DomainProbe is the domain sweep's module (Tables 1, 2, 4, 18–20): a
// domain's MX, SPF, DMARC, MTA-STS and TLSA records, then a grab of its
// mail servers. Each address is grabbed once, at most Options.Grabbers at
// a time and Options.ConnRate a second, and shared by every domain using
// it. Options' Workers, DNSRate, SkipDomain and OnDomain belong to the
// loop (Sweep), not to the probe.
type DomainProbe struct {
	o         Options
	mu        sync.Mutex
	grabs     map[string]*grabSlot
	sem       chan struct{}
	connLimit *rate.Limiter
}

// NewDomainProbe returns the probe o describes. Its grabs dial through
// o.Grabber's Dialer, which the sweep's must be.
func NewDomainProbe(o Options) *DomainProbe {
	if o.Port == 0 {
		o.Port = smtpPort
	}
	if o.Grabbers <= 0 {
		o.Grabbers = 32
	}
	if o.ConnRate == 0 {
		o.ConnRate = 100
	}
	o.STS = stsThrough(o.STS, o.dialer())
	return &DomainProbe{o: o, grabs: map[string]*grabSlot{}, sem: make(chan struct{}, o.Grabbers),
		connLimit: rate.NewLimiter(o.ConnRate, 1)}
}

// Scan judges the domain t names.
func (s *DomainProbe) Scan(ctx context.Context, _ *Dialer, t Target) (Status, *DomainResult, error) {
	r := s.domain(ctx, Input{Domain: t.Domain, Rank: t.Rank})
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	return StatusFound, r, nil
}

type grabSlot struct {
	once sync.Once
	g    *Grab
}

// grab returns the one grab of ip, making it on first use.
func (s *DomainProbe) grab(ctx context.Context, ip string) *Grab {
	s.mu.Lock()
	slot, ok := s.grabs[ip]
	if !ok {
		slot = &grabSlot{}
		s.grabs[ip] = slot
	}
	s.mu.Unlock()
	slot.once.Do(func() {
		if s.o.KnownGrab != nil {
			if g, ok := s.o.KnownGrab(ip); ok {
				slot.g = g
				return
			}
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			slot.g = &Grab{IP: ip, ErrorClass: ErrClassConnect, Error: err.Error()}
			return
		}
		s.sem <- struct{}{}
		defer func() { <-s.sem }()
		if err := s.connLimit.Wait(ctx); err != nil {
			slot.g = &Grab{IP: ip, ErrorClass: ErrClassConnect, Error: err.Error()}
			return
		}
		g := s.o.Grabber.Grab(ctx, addr, s.o.Port)
		slot.g = &g
		if s.o.OnGrab != nil && ctx.Err() == nil {
			s.o.OnGrab(slot.g)
		}
	})
	return slot.g
}

func (s *DomainProbe) domain(ctx context.Context, item Input) *DomainResult {
	d := domainKey(item.Domain)
	r := &DomainResult{Type: "domain", Domain: d, Rank: item.Rank}
	res := s.o.Resolver
	r.MX, r.ImplicitMX = s.mxs(ctx, d)
	r.SPF = (&SPFWalker{Resolver: res}).Walk(ctx, d)
	r.DMARC = dmarcOf(ctx, res, d)
	r.MTASTS = s.mtaSTS(ctx, d)
	r.TLSRPT = tlsRPTOf(ctx, res, d)
	switch {
	case len(r.MX) == 0:
		r.Status, r.Error = DomainNoMX, "no mail server"
		return r
	case !hasAddress(r.MX):
		r.Status, r.Error = DomainNoResolvableMX, "no MX host resolves"
		return r
	case s.o.DryRun:
		return r
	}
	s.judge(ctx, r)
	switch {
	case r.STARTTLS:
		r.Status = DomainSTARTTLS
	case r.Connected:
		r.Status = DomainNoSTARTTLS
	default:
		r.Status = DomainNoResponse
	}
	return r
}

func hasAddress(mxs []MX) bool {
	for _, mx := range mxs {
		if len(mx.IPs) > 0 {
			return true
		}
	}
	return false
}

func (s *DomainProbe) mxs(ctx context.Context, d string) ([]MX, bool) {
	res := s.o.Resolver
	var out []MX
	implicit := false
	mxs, err := res.LookupMX(ctx, d)
	if err != nil || len(mxs) == 0 {
		if !resolver.IsNotFound(err) && err != nil {
			return nil, false
		}
		mxs, implicit = nil, true
		out = append(out, MX{Host: d})
	}
	for _, mx := range mxs {
		host := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
		if host == "" { // null MX (RFC 7505): no mail
			return nil, false
		}
		out = append(out, MX{Host: host, Pref: mx.Pref})
	}
	for i := range out {
		ips, _ := res.LookupIPAddr(ctx, out[i].Host)
		for _, ip := range ips {
			if ip.IP.To4() != nil { // the sweep is IPv4, as the paper's
				out[i].IPs = append(out[i].IPs, ip.IP.String())
			}
		}
		sort.Strings(out[i].IPs)
		if ans, err := res.Query(ctx, "_25._tcp."+out[i].Host, dns.TypeTLSA); err == nil && len(ans.Records) > 0 {
			out[i].TLSA, out[i].TLSAValid = true, ans.Authenticated
		}
	}
	if implicit && len(out[0].IPs) == 0 {
		return nil, true // no MX and no A: no mail
	}
	return out, implicit
}

// dmarcOf is Table 18's view of a domain: the policy the milter would
// apply to mail from it, through the same lookup (auth.LookupDMARC).
func dmarcOf(ctx context.Context, res resolver.Resolver, d string) *DMARC {
	class, rec, _, _ := (&auth.DMARCChecker{Resolver: res}).Published(ctx, d)
	out := &DMARC{Policy: class}
	if rec != nil {
		out.SP, out.Pct, out.RUA = string(rec.SubdomainPolicy), 100, len(rec.ReportURIAggregate) > 0
		if rec.Percent != nil {
			out.Pct = *rec.Percent
		}
	}
	return out
}

func (s *DomainProbe) mtaSTS(ctx context.Context, d string) *MTASTS {
	if s.o.STS == nil {
		return &MTASTS{Mode: STSAbsent}
	}
	if _, err := s.o.STS.LookupID(ctx, d); err != nil {
		if errors.Is(err, policy.ErrSTSNoRecord) {
			return &MTASTS{Mode: STSAbsent}
		}
		return &MTASTS{Mode: STSError, Error: err.Error()}
	}
	p, err := s.o.STS.Fetch(ctx, d)
	if errors.Is(err, ErrBlocked) {
		return &MTASTS{Mode: STSBlocked, Error: err.Error()} // not fetched: says nothing of the domain
	}
	if err != nil {
		return &MTASTS{Mode: STSError, Error: err.Error()}
	}
	return &MTASTS{Mode: p.Mode, MX: p.MX}
}

// judge grabs the MX addresses in preference order and describes the
// domain by the first server that answered.
func (s *DomainProbe) judge(ctx context.Context, r *DomainResult) {
	for _, mx := range r.MX {
		for _, ip := range mx.IPs {
			g := s.grab(ctx, ip)
			if g.ErrorClass != "" && g.Banner == "" {
				continue // no SMTP greeting (closed, blocked, silent, dropped, garbage): not a responding server
			}
			r.Connected = true
			if g.TLS == nil {
				return
			}
			r.STARTTLS = true
			r.Trust, r.TLSVersion, r.Cipher = g.TLS.Trust, g.TLS.Version, g.TLS.Cipher
			switch {
			case g.TLS.Matches(r.Domain):
				r.CertMatch = CertMatchDomain
			case g.TLS.Matches(mx.Host):
				r.CertMatch = CertMatchMX
			default:
				r.CertMatch = CertMatchNeither
			}
			return
		}
	}
}
