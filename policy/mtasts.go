package policy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/snowrain/snowrain/resolver"
)

// MTA-STS error classes.
var (
	ErrSTSNoRecord     = errors.New("mta-sts: no _mta-sts record")
	ErrSTSRecord       = errors.New("mta-sts: invalid _mta-sts record")
	ErrSTSFetch        = errors.New("mta-sts: policy fetch failed")
	ErrSTSPolicySyntax = errors.New("mta-sts: invalid policy")
	ErrSTSTooLarge     = errors.New("mta-sts: policy too large")
)

// STSMode is the mode of an MTA-STS policy (RFC 8461 section 5).
type STSMode string

// MTA-STS policy modes.
const (
	STSEnforce STSMode = "enforce" // deliver only over TLS to a matching, valid MX (section 5.1)
	STSTesting STSMode = "testing" // deliver anyway, report failures (TLS-RPT, RFC 8460)
	STSNone    STSMode = "none"    // no policy: the domain withdraws one (section 8.3)
)

// STSPolicy is a parsed MTA-STS policy (RFC 8461 section 3.2).
type STSPolicy struct {
	Mode   STSMode
	MX     []string
	MaxAge time.Duration
	ID     string // from the _mta-sts TXT record
	Text   string
}

// ParseSTSRecord reads the id of a "v=STSv1; id=…;" TXT record.
func ParseSTSRecord(txt string) (string, error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", ErrSTSRecord
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if k == "id" {
			if v == "" || len(v) > 32 || strings.IndexFunc(v, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			}) >= 0 {
				return "", fmt.Errorf("%w: id %q", ErrSTSRecord, v)
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("%w: no id", ErrSTSRecord)
}

// maxSTSMaxAge is the largest max_age a policy may give: RFC 8461
// section 3.2 caps it at 31557600 seconds (about one year).
const maxSTSMaxAge = 31557600

// ParseSTSPolicy reads a policy file.
func ParseSTSPolicy(text string) (*STSPolicy, error) {
	p := &STSPolicy{Text: text}
	version := ""
	maxAge := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %q", ErrSTSPolicySyntax, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			version = v
		case "mode":
			p.Mode = STSMode(v)
		case "max_age":
			maxAge = v
		case "mx":
			mx, ok := CanonicalMXPattern(v)
			if !ok {
				return nil, fmt.Errorf("%w: mx %q", ErrSTSPolicySyntax, v)
			}
			p.MX = append(p.MX, mx)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSTSPolicySyntax, err)
	}
	if version != "STSv1" {
		return nil, fmt.Errorf("%w: version %q", ErrSTSPolicySyntax, version)
	}
	switch p.Mode {
	case STSEnforce, STSTesting:
		if len(p.MX) == 0 {
			return nil, fmt.Errorf("%w: no mx", ErrSTSPolicySyntax)
		}
	case STSNone:
	default:
		return nil, fmt.Errorf("%w: mode %q", ErrSTSPolicySyntax, p.Mode)
	}
	age, err := strconv.ParseInt(maxAge, 10, 64)
	if err != nil || age < 0 || age > maxSTSMaxAge {
		return nil, fmt.Errorf("%w: max_age %q", ErrSTSPolicySyntax, maxAge)
	}
	p.MaxAge = time.Duration(age) * time.Second
	return p, nil
}

// CanonicalMXPattern reads an MTA-STS "mx" value (RFC 8461 section 3.2):
// a host name, or "*." and a domain for any host one label below it, in
// canonical form (lower case, A-labels, no trailing dot). Anything else
// is refused, so that no policy file can smuggle text into a Postfix
// answer.
func CanonicalMXPattern(v string) (string, bool) {
	prefix := ""
	if rest, ok := strings.CutPrefix(v, "*."); ok {
		prefix, v = "*.", rest
	}
	d, ok := CanonicalDomain(v)
	if !ok || !IsHostname(d) {
		return "", false
	}
	return prefix + d, true
}

// MatchesMX reports whether host (canonical) matches an MTA-STS mx
// pattern: equal to it, or for "*.domain" exactly one label more
// (RFC 8461 section 4.1: "*.example.com" matches "mx.example.com", not
// "example.com" nor "a.b.example.com").
func MatchesMX(pattern, host string) bool {
	rest, wild := strings.CutPrefix(pattern, "*.")
	if !wild {
		return host == pattern
	}
	label, parent, ok := strings.Cut(host, ".")
	return ok && label != "" && parent == rest
}

// STSFetcher looks up and downloads MTA-STS policies.
type STSFetcher struct {
	Resolver resolver.Resolver
	Roots    *x509.CertPool // nil: the system roots
	Port     int            // HTTPS port; 443 unless a test says otherwise
	Timeout  time.Duration  // whole fetch; default 10 s
	MaxSize  int64          // default 64 KiB (RFC 8461 section 3.3)
	// Dial connects to one resolved address; nil: a net.Dialer. The
	// scanner passes its blocklist-checking dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// LookupID returns the policy id published at _mta-sts.domain (RFC 8461
// section 3.1).
func (f *STSFetcher) LookupID(ctx context.Context, domain string) (string, error) {
	txts, err := f.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if resolver.IsNotFound(err) {
		return "", ErrSTSNoRecord
	}
	if err != nil {
		return "", err
	}
	var ids []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1") {
			id, err := ParseSTSRecord(t)
			if err != nil {
				return "", err
			}
			ids = append(ids, id)
		}
	}
	switch len(ids) {
	case 0:
		return "", ErrSTSNoRecord
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%w: %d records", ErrSTSRecord, len(ids))
}

// Fetch downloads and parses https://mta-sts.DOMAIN/.well-known/mta-sts.txt
// (RFC 8461 section 3.3).
func (f *STSFetcher) Fetch(ctx context.Context, domain string) (*STSPolicy, error) {
	timeout, max := f.Timeout, f.MaxSize
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if max <= 0 {
		max = 64 << 10
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host := "mta-sts." + domain
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:            f.dial,
			TLSClientConfig:        &tls.Config{RootCAs: f.Roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 32 << 10, // bounded while reading, like the body
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+host+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSTSFetch, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSTSFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: HTTP %d", ErrSTSFetch, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSTSFetch, err)
	}
	if int64(len(body)) > max {
		return nil, ErrSTSTooLarge
	}
	return ParseSTSPolicy(string(body))
}

// dial resolves through the project's Resolver, so tests and admins
// choose the DNS, and connects to the configured port.
func (f *STSFetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if f.Port != 0 {
		port = strconv.Itoa(f.Port)
	}
	ips, err := f.Resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	dial := f.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var last error
	for _, ip := range ips {
		c, err := dial(ctx, "tcp", net.JoinHostPort(ip.IP.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}
