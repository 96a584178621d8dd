// Package resolver holds the one DNS client every part of snowrain uses:
// SPF, DKIM, DMARC, MTA-STS, policy and the scanner all ask their questions
// through a Resolver, so tests point everything at one loopback server.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/config"
)

// Resolver answers DNS questions. Its method set matches what
// blitiri.com.ar/go/spf needs, plus Query for callers that need raw records
// (TLSA, the AD bit).
//
// Errors are always *net.DNSError: IsNotFound for NXDOMAIN and NODATA,
// IsTimeout for timeouts, IsTemporary for SERVFAIL, REFUSED and transport
// failures. Libraries such as go-msgauth and spf tell temporary from
// permanent failures only that way.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	Query(ctx context.Context, name string, qtype uint16) (*Answer, error)
}

// Answer is the useful part of a DNS response.
type Answer struct {
	Records       []dns.RR
	Authenticated bool // AD bit set by a validating resolver
	TTL           time.Duration

	txt []string // TXT answers: the records as LookupTXT returns them
}

// Config sets up a Client.
type Config struct {
	// Servers are "host:port" addresses asked in order. Empty means the
	// nameservers of /etc/resolv.conf.
	Servers []string
	// Timeout bounds one query to one server.
	Timeout time.Duration
	// CacheSize bounds the number of cached answers; 0 disables caching.
	CacheSize int
	// MaxTTL caps how long any answer is cached.
	MaxTTL time.Duration
	// Observe, if set, is told about every query sent on the wire.
	Observe func(qtype uint16, result string, d time.Duration)
}

// ConfigFrom is the resolver's part of the configuration c: its servers
// (none: /etc/resolv.conf), the timeout of one query and the cache size.
func ConfigFrom(c config.Config) Config {
	return Config{Servers: slices.Clone(c.DNS), Timeout: c.DNSTimeout.Duration, CacheSize: c.DNSCacheSize}
}

// Client is the miekg/dns-backed Resolver.
type Client struct {
	cfg   Config
	udp   *dns.Client
	tcp   *dns.Client
	cache *cache
}

// ednsUDPSize is the UDP payload size advertised in EDNS(0) (RFC 6891
// section 6.2.5 leaves it to the requestor): 1232 bytes, DNS Flag Day
// 2020's value, fits the IPv6 minimum MTU of 1280 less IP and UDP headers,
// so answers are not fragmented; a larger one comes truncated and is
// asked again over TCP.
const ednsUDPSize = 1232

// maxTTL is the largest TTL a record can carry (RFC 2181 section 8:
// 2^31 - 1 seconds).
const maxTTL = 1<<31 - 1

// New returns a Client for cfg, filling in defaults.
func New(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		servers, err := systemServers("/etc/resolv.conf")
		if err != nil {
			return nil, err
		}
		cfg.Servers = servers
	}
	for i, s := range cfg.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			cfg.Servers[i] = net.JoinHostPort(s, "53")
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = time.Hour
	}
	return &Client{
		cfg:   cfg,
		udp:   &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: ednsUDPSize},
		tcp:   &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		cache: newCache(cfg.CacheSize),
	}, nil
}

// Servers returns the addresses the client asks.
func (c *Client) Servers() []string { return c.cfg.Servers }

func systemServers(path string) ([]string, error) {
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("resolver: reading %s: %w", path, err)
	}
	var out []string
	for _, s := range conf.Servers {
		out = append(out, net.JoinHostPort(s, conf.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolver: no nameserver in %s", path)
	}
	return out, nil
}

// Query asks for name/qtype, from the cache when it can.
func (c *Client) Query(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	name = dns.Fqdn(strings.ToLower(name))
	if !validName(name) {
		return nil, invalidName(name)
	}
	key := cacheKey{name, qtype}
	if e, ok := c.cache.get(key); ok {
		return e.answer, e.err
	}
	ans, ttl, err := c.exchange(ctx, name, qtype)
	if ttl > 0 {
		c.cache.put(key, ans, err, min(ttl, c.cfg.MaxTTL))
	}
	return ans, err
}

// exchange asks the servers in turn and returns the answer, how long the
// outcome (answer or error) may be cached (0: not at all) and the error.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*Answer, time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsUDPSize, false)
	m.AuthenticatedData = true
	var lastErr error
	for _, server := range c.cfg.Servers {
		if err := ctx.Err(); err != nil {
			return nil, 0, dnsError(name, server, err)
		}
		r, err := c.ask(ctx, m, server)
		if err != nil {
			lastErr = dnsError(name, server, err)
			continue
		}
		ans, ttl, err := interpret(name, server, r)
		if isTemporary(err) {
			lastErr = err
			continue
		}
		return ans, ttl, err
	}
	return nil, 0, lastErr
}

func (c *Client) ask(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	start := time.Now()
	r, _, err := c.udp.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		r, _, err = c.tcp.ExchangeContext(ctx, m, server)
	}
	c.observe(m.Question[0].Qtype, r, err, time.Since(start))
	return r, err
}

func (c *Client) observe(qtype uint16, r *dns.Msg, err error, d time.Duration) {
	if c.cfg.Observe == nil {
		return
	}
	result := "error"
	switch {
	case err != nil && isTimeoutErr(err):
		result = "timeout"
	case err == nil:
		result = strings.ToLower(dns.RcodeToString[r.Rcode])
	}
	c.cfg.Observe(qtype, result, d)
}

// interpret turns a response into records or a classified error.
func interpret(name, server string, r *dns.Msg) (*Answer, time.Duration, error) {
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, negativeTTL(r), notFound(name, server, "no such host")
	default:
		return nil, 0, &net.DNSError{Err: "server answered " + dns.RcodeToString[r.Rcode],
			Name: name, Server: server, IsTemporary: true}
	}
	qtype := r.Question[0].Qtype
	ans := &Answer{Authenticated: r.AuthenticatedData}
	ttl := uint32(maxTTL)
	for _, rr := range r.Answer {
		h := rr.Header()
		if h.Rrtype != qtype {
			continue // CNAME chain links; the target records follow
		}
		ans.Records = append(ans.Records, rr)
		ttl = min(ttl, h.Ttl)
	}
	if len(ans.Records) == 0 {
		return nil, negativeTTL(r), notFound(name, server, "no records of that type")
	}
	ans.TTL = time.Duration(ttl) * time.Second
	if qtype == dns.TypeTXT {
		// Decoded here, once, rather than at every cache hit.
		ans.txt = decodeTXT(ans.Records)
	}
	return ans, ans.TTL, nil
}

// negativeTTL is how long a name error or empty answer may be cached:
// the smaller of the SOA record's TTL and its MINIMUM field (RFC 2308
// section 5), or a minute when the server sent no SOA.
func negativeTTL(r *dns.Msg) time.Duration {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
		}
	}
	return time.Minute
}

func notFound(name, server, msg string) *net.DNSError {
	return &net.DNSError{Err: msg, Name: name, Server: server, IsNotFound: true}
}

func dnsError(name, server string, err error) *net.DNSError {
	return &net.DNSError{Err: err.Error(), Name: name, Server: server,
		IsTimeout: isTimeoutErr(err), IsTemporary: true}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func isTemporary(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && (de.IsTemporary || de.IsTimeout)
}

// ErrInvalidName is wrapped by the error for a name that cannot be asked
// about: an empty label, a label over 63 octets, a name over 253. No such
// name can exist, so the error also says IsNotFound: RFC 7208 4.3 makes a
// malformed SPF domain "none", and a DKIM key or DMARC record at one is
// absent, never a temporary failure. Callers that must tell it apart from
// NXDOMAIN use errors.Is.
var ErrInvalidName = errors.New("invalid domain name")

func invalidName(name string) *net.DNSError {
	return &net.DNSError{Err: ErrInvalidName.Error(), Name: name, IsNotFound: true, UnwrapErr: ErrInvalidName}
}

// validName reports whether the FQDN name can be sent in a query
// (RFC 1035 2.3.4: labels of 1 to 63 octets, 255 octets on the wire, which
// is 253 characters without the final dot).
func validName(fqdn string) bool {
	if fqdn == "." {
		return true
	}
	if len(fqdn) > 254 {
		return false
	}
	_, ok := dns.IsDomainName(fqdn)
	if !ok {
		return false
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(fqdn, "."), ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// IsInvalidName reports whether err is about a name that cannot exist.
func IsInvalidName(err error) bool { return errors.Is(err, ErrInvalidName) }

// IsNotFound reports whether err says the name or record does not exist.
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// IsTemporary reports whether err is a failure worth retrying later:
// a timeout, SERVFAIL, REFUSED or a transport error.
func IsTemporary(err error) bool { return isTemporary(err) }

// IsTimeout reports whether err is a timeout.
func IsTimeout(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsTimeout
}
