package scanner

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"

	"github.com/snowrain/snowrain/resolver"
)

// spfLookupLimit is how many DNS-querying terms an SPF evaluation may
// use before it is a permerror: RFC 7208 section 4.6.4.
const spfLookupLimit = 10

// SPF walk errors.
var (
	ErrSPFLoop     = errors.New("spf: include or redirect loop")
	ErrSPFLimit    = fmt.Errorf("spf: more than %d DNS-querying terms", spfLookupLimit)
	ErrSPFNone     = errors.New("spf: no record")
	ErrSPFMultiple = errors.New("spf: several records")
	ErrSPFSyntax   = errors.New("spf: invalid term")
	ErrSPFTempDNS  = errors.New("spf: temporary DNS failure")
	// ErrSPFTargetNone is an include or redirect to a name without an SPF
	// record: a permerror of the including record (RFC 7208 sections 5.2
	// and 6.1), not a domain without SPF.
	ErrSPFTargetNone = errors.New("spf: include or redirect target has no SPF record")
)

// SPFWalk is one domain's SPF policy resolved through its includes and
// redirects, for Tables 19 and 20 and Figure 4.
type SPFWalk struct {
	Record     string         `json:"record"`
	All        string         `json:"all"`       // qualifier of the top-level all: - ~ ? + or "" (none), "redirect"
	TopTypes   map[string]int `json:"top_types"` // mechanism counts in the top-level record
	Types      map[string]int `json:"types"`     // across the whole tree
	Lookups    int            `json:"lookups"`   // DNS-querying terms (RFC 7208 4.6.4)
	Addresses  *big.Int       `json:"-"`         // IPv4 addresses the pass terms allow
	Addrs4     string         `json:"ipv4_addresses"`
	ErrorClass SPFClass       `json:"error_class,omitempty"`
	Err        error          `json:"-"`
	visited    map[string]bool
}

// SPFWalker resolves SPF trees through a Resolver.
type SPFWalker struct {
	Resolver resolver.Resolver
}

// Walk resolves domain's SPF policy.
func (w *SPFWalker) Walk(ctx context.Context, domain string) *SPFWalk {
	rec, err := w.record(ctx, domain)
	if err != nil {
		s := newWalk()
		s.Err, s.ErrorClass, s.Addrs4 = err, spfClass(err), "0"
		return s
	}
	return w.WalkRecord(ctx, domain, rec)
}

func newWalk() *SPFWalk {
	return &SPFWalk{TopTypes: map[string]int{}, Types: map[string]int{}, Addresses: new(big.Int), visited: map[string]bool{}}
}

// WalkRecord resolves a record already fetched for domain.
func (w *SPFWalker) WalkRecord(ctx context.Context, domain, rec string) *SPFWalk {
	s := newWalk()
	s.Record = rec
	s.All = topAll(rec)
	err := w.walk(ctx, s, domain, rec, true)
	if err != nil {
		s.Err = err
		s.ErrorClass = spfClass(err)
	}
	s.Addrs4 = s.Addresses.String()
	return s
}

// SPFClass is why a domain's SPF walk ended in an error: the error rows
// of Table 19 ("SPF Policies for Top 1M Domains"), and "none" for a
// domain without SPF.
type SPFClass string

// SPF walk error classes (RFC 7208 sections 4.5, 4.6 and 5).
const (
	SPFNone        SPFClass = "none"             // no SPF record: not an error of a record
	SPFIncludeNone SPFClass = "include_none"     // include or redirect of a name without SPF (5.2, 6.1)
	SPFLoop        SPFClass = "loop"             // include or redirect loop
	SPFLookupLimit SPFClass = "lookup_limit"     // over 10 DNS-querying terms (4.6.4)
	SPFMultiple    SPFClass = "multiple_records" // several records (4.5)
	SPFSyntax      SPFClass = "syntax"           // an invalid term (4.6)
	SPFDNS         SPFClass = "dns"              // a DNS failure on the way
)

// spfClasses name the walk's errors as error_class stores them; the
// first that matches wins.
var spfClasses = []struct {
	err   error
	class SPFClass
}{
	{ErrSPFTargetNone, SPFIncludeNone}, {ErrSPFNone, SPFNone}, {ErrSPFLoop, SPFLoop},
	{ErrSPFLimit, SPFLookupLimit}, {ErrSPFMultiple, SPFMultiple}, {ErrSPFSyntax, SPFSyntax},
}

func spfClass(err error) SPFClass {
	for _, c := range spfClasses {
		if errors.Is(err, c.err) {
			return c.class
		}
	}
	return SPFDNS
}

func (w *SPFWalker) record(ctx context.Context, domain string) (string, error) {
	txts, err := w.Resolver.LookupTXT(ctx, domain)
	if resolver.IsNotFound(err) {
		return "", ErrSPFNone
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrSPFTempDNS, err)
	}
	var recs []string
	for _, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", ErrSPFNone
	case 1:
		return recs[0], nil
	}
	return "", ErrSPFMultiple
}

func (w *SPFWalker) walk(ctx context.Context, s *SPFWalk, domain, rec string, top bool) error {
	if s.visited[strings.ToLower(domain)] {
		return fmt.Errorf("%w at %s", ErrSPFLoop, domain)
	}
	s.visited[strings.ToLower(domain)] = true
	defer delete(s.visited, strings.ToLower(domain))
	var redirect string
	hasAll := false
	for _, term := range strings.Fields(rec)[1:] {
		qual := byte('+')
		if strings.IndexByte("+-~?", term[0]) >= 0 {
			qual, term = term[0], term[1:]
		}
		name, arg, _ := strings.Cut(term, ":")
		if k, v, ok := strings.Cut(term, "="); ok && !strings.Contains(k, ":") {
			if strings.EqualFold(k, "redirect") {
				redirect = v
				s.count("redirect", top)
			}
			continue // other modifiers (exp=) are not mechanisms
		}
		name, _, _ = strings.Cut(strings.ToLower(name), "/")
		switch name {
		case "all":
			hasAll = true
			s.count("all", top)
		case "ip4", "ip6":
			s.count(name, top)
			if qual == '+' {
				if err := s.addNetwork(arg); err != nil {
					return err
				}
			}
		case "a", "mx", "ptr", "exists":
			s.count(name, top)
			if err := s.lookup(); err != nil {
				return err
			}
			if qual == '+' && (name == "a" || name == "mx") {
				w.addHosts(ctx, s, name, orDomain(arg, domain), term)
			}
		case "include":
			s.count("include", top)
			if err := s.lookup(); err != nil {
				return err
			}
			if err := w.follow(ctx, s, arg); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %q", ErrSPFSyntax, term)
		}
	}
	if redirect != "" && !hasAll { // RFC 7208 6.1: all makes redirect void
		if err := s.lookup(); err != nil {
			return err
		}
		return w.follow(ctx, s, redirect)
	}
	return nil
}

func (w *SPFWalker) follow(ctx context.Context, s *SPFWalk, domain string) error {
	if strings.Contains(domain, "%") {
		return nil // a macro needs a sender to expand (RFC 7208 section 7): counted, not followed
	}
	rec, err := w.record(ctx, domain)
	if errors.Is(err, ErrSPFNone) {
		return fmt.Errorf("%w: %s", ErrSPFTargetNone, domain)
	}
	if err != nil {
		return err
	}
	return w.walk(ctx, s, domain, rec, false)
}

func orDomain(arg, domain string) string {
	if arg == "" {
		return domain
	}
	host, _, _ := strings.Cut(arg, "/")
	return host
}

func (s *SPFWalk) count(kind string, top bool) {
	s.Types[kind]++
	if top {
		s.TopTypes[kind]++
	}
}

func (s *SPFWalk) lookup() error {
	s.Lookups++
	if s.Lookups > spfLookupLimit {
		return ErrSPFLimit
	}
	return nil
}

// addNetwork adds the IPv4 addresses of an ip4 term (Figure 4 counts
// IPv4 space).
func (s *SPFWalk) addNetwork(arg string) error {
	if !strings.Contains(arg, "/") {
		a, err := netip.ParseAddr(arg)
		if err != nil {
			return fmt.Errorf("%w: %q", ErrSPFSyntax, arg)
		}
		if a.Is4() {
			s.Addresses.Add(s.Addresses, big.NewInt(1))
		}
		return nil
	}
	p, err := netip.ParsePrefix(arg)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrSPFSyntax, arg)
	}
	if p.Addr().Is4() {
		s.Addresses.Add(s.Addresses, new(big.Int).Lsh(big.NewInt(1), uint(32-p.Bits())))
	}
	return nil
}

// addHosts counts the addresses an a or mx term allows (with its prefix
// length, default /32).
func (w *SPFWalker) addHosts(ctx context.Context, s *SPFWalk, kind, host, term string) {
	bits := 32
	if i := strings.IndexByte(term, '/'); i >= 0 {
		fmt.Sscanf(term[i+1:], "%d", &bits)
		if bits < 0 || bits > 32 {
			bits = 32
		}
	}
	per := new(big.Int).Lsh(big.NewInt(1), uint(32-bits))
	hosts := []string{host}
	if kind == "mx" {
		hosts = nil
		mxs, err := w.Resolver.LookupMX(ctx, host)
		if err != nil {
			return
		}
		for _, mx := range mxs {
			hosts = append(hosts, mx.Host)
		}
	}
	for _, h := range hosts {
		ips, err := w.Resolver.LookupIPAddr(ctx, h)
		if err != nil {
			continue
		}
		for _, ip := range ips {
			if ip.IP.To4() != nil {
				s.Addresses.Add(s.Addresses, per)
			}
		}
	}
}

// topAll is the Table 19 class of a record: the qualifier of its all term,
// "redirect" when it hands over, "" when it has neither.
func topAll(rec string) string {
	redirect := false
	for _, term := range strings.Fields(rec)[1:] {
		qual := "+"
		if strings.IndexByte("+-~?", term[0]) >= 0 {
			qual, term = term[:1], term[1:]
		}
		if strings.EqualFold(term, "all") {
			return qual
		}
		if k, _, ok := strings.Cut(term, "="); ok && strings.EqualFold(k, "redirect") {
			redirect = true
		}
	}
	if redirect {
		return "redirect"
	}
	return ""
}
