package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/resolver"
)

// cachedSTS reads the cached MTA-STS policy of domain and whether it is
// still fresh; none is no error, a failed read is.
func (e *Engine) cachedSTS(ctx context.Context, domain string) (*CachedSTS, bool, error) {
	if e.store == nil {
		return nil, false, nil
	}
	if !e.store.IsReady() {
		return nil, false, measure.ErrNotReady
	}
	c, ok, err := LoadCachedSTS(ctx, e.store, domain)
	if err != nil || !ok {
		return nil, false, err
	}
	// The row was validated when fetched; patterns that fail now (a
	// store written by hand) are dropped: fewer allowed MX hosts, never
	// more.
	mx := c.MX
	c.MX = nil
	for _, m := range mx {
		if p, ok := CanonicalMXPattern(m); ok {
			c.MX = append(c.MX, p)
		}
	}
	return c, time.Now().Before(c.Expires), nil
}

// storeSTS caches p through the asynchronous writer: the lookup path
// never writes to the store itself.
func (e *Engine) storeSTS(domain string, p *STSPolicy) {
	if rec := e.recorder(); rec != nil {
		rec.Enqueue(&measure.MTASTSPolicy{Domain: domain, ID: p.ID, Mode: string(p.Mode), MX: p.MX, MaxAge: p.MaxAge,
			Fetched: time.Now(), Text: p.Text})
	}
}

// stsPolicy follows RFC 8461 section 5: a cached, unexpired policy stays
// in force while the TXT record is missing or unchanged and while fetches
// fail; a new id means a new fetch.
func (e *Engine) stsPolicy(ctx context.Context, d *Decision) (*STSPolicy, error) {
	cached, fresh, err := e.cachedSTS(ctx, d.Domain)
	if err != nil {
		// Without the cache the policy is fetched as for a first
		// contact; the decision says the store failed.
		d.Err = errors.Join(d.Err, fmt.Errorf("%w: mta-sts cache: %w", ErrStore, err))
		d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: cache read: %v", err))
	}
	id, err := e.sts.LookupID(ctx, d.Domain)
	switch {
	case err != nil && fresh:
		d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: TXT lookup: %v; using the cached policy (id %s, until %s)",
			err, cached.ID, cached.Expires.UTC().Format(time.RFC3339)))
		return &cached.STSPolicy, nil
	case errors.Is(err, ErrSTSNoRecord):
		d.Steps = append(d.Steps, "mta-sts: no _mta-sts record")
		return nil, nil
	case err != nil:
		return nil, err
	case fresh && cached.ID == id:
		d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: id %s unchanged; cached policy until %s", id, cached.Expires.UTC().Format(time.RFC3339)))
		return &cached.STSPolicy, nil
	}
	p, err := e.sts.Fetch(ctx, d.Domain)
	if err != nil {
		if fresh {
			d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: fetch of id %s failed (%v); using the cached policy", id, err))
			return &cached.STSPolicy, nil
		}
		return nil, err
	}
	p.ID = id
	e.storeSTS(d.Domain, p)
	d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: fetched policy id %s:\n%s", id, indent(p.Text)))
	return p, nil
}

func (e *Engine) mtaSTS(ctx context.Context, cfg *Config, d *Decision) bool {
	if !cfg.MTASTS {
		return false
	}
	p, err := e.stsPolicy(ctx, d)
	if err != nil {
		d.Err = errors.Join(d.Err, err)
		d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: %v", err))
		return false
	}
	if p == nil {
		return false
	}
	switch p.Mode {
	case STSEnforce:
		d.Source = SourceMTASTS
		d.Steps = append(d.Steps, "mta-sts: mode enforce")
		hosts := e.stsMatch(ctx, d, p.MX)
		if len(hosts) == 0 {
			d.Temp = true
			d.Steps = append(d.Steps, "mta-sts: no MX host matches the policy: TEMP (RFC 8461 section 5.1: do not deliver)")
			return true
		}
		d.Answer = TLSPolicy{Level: LevelSecure, Match: hosts, ServerName: "hostname"}.String()
		return true
	case STSTesting:
		d.Steps = append(d.Steps, "mta-sts: mode testing: reported, not enforced")
	default: // STSNone: ParseSTSPolicy admits no other mode
		d.Steps = append(d.Steps, "mta-sts: mode none")
	}
	return false
}

// stsMatch turns the policy's mx patterns into Postfix match names.
// Postfix's ".example.com" matches any depth below example.com, wider
// than MTA-STS's "*.example.com" (exactly one label, RFC 8461 section
// 4.1), so a wildcard becomes the hosts of the domain's MX RRset that it
// matches, and the decision is cached no longer than that RRset. Only
// when the MX lookup fails does a wildcard fall back to Postfix's wider
// form: TLS and a certificate under the domain are still required, and
// the error is recorded. The list is cut to fit a socketmap answer.
func (e *Engine) stsMatch(ctx context.Context, d *Decision, patterns []string) []string {
	var hosts, wild []string
	seen := map[string]bool{}
	add := func(h string) {
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	for _, p := range patterns {
		if strings.HasPrefix(p, "*.") {
			wild = append(wild, p)
		} else {
			add(p)
		}
	}
	if len(wild) > 0 {
		mxHosts, err := e.mxHosts(ctx, d)
		if err != nil {
			d.Err = errors.Join(d.Err, err)
			d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: MX lookup for %s failed (%v): %s allowed at any depth",
				strings.Join(wild, " "), err, strings.Join(wild, " ")))
			for _, w := range wild {
				add(strings.TrimPrefix(w, "*"))
			}
		}
		for _, h := range mxHosts {
			for _, w := range wild {
				if MatchesMX(w, h) {
					add(h)
					d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: MX host %s matches %s", h, w))
				}
			}
		}
	}
	// "secure match=" + names + " servername=hostname" within MaxAnswer.
	room := MaxAnswer - len("secure match= servername=hostname")
	for i, h := range hosts {
		if room -= len(h) + 1; room < 0 {
			d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: %d of %d names left out to fit a socketmap answer", len(hosts)-i, len(hosts)))
			return hosts[:i]
		}
	}
	return hosts
}

// mxHosts returns the domain's MX host names in canonical form: the
// domain itself when it has no MX (RFC 5321 section 5.1, implicit MX).
// Names that are not LDH host names are skipped.
func (e *Engine) mxHosts(ctx context.Context, d *Decision) ([]string, error) {
	if e.res == nil {
		return nil, errors.New("policy: no resolver")
	}
	ans, err := e.res.Query(ctx, d.Domain, dns.TypeMX)
	if resolver.IsNotFound(err) {
		return []string{d.Domain}, nil
	}
	if err != nil {
		return nil, err
	}
	if ans.TTL > 0 {
		d.ttl = ans.TTL
	}
	var hosts []string
	for _, rr := range ans.Records {
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		if h, ok := CanonicalDomain(mx.Mx); ok && IsHostname(h) {
			hosts = append(hosts, h)
		}
	}
	return hosts, nil
}

// RefreshSTS refetches cached policies that expire within ahead, so that a
// policy never lapses while its domain is unreachable.
func (e *Engine) RefreshSTS(ctx context.Context, ahead time.Duration) (int, error) {
	domains, err := expiringSTS(ctx, e.store, time.Now().Add(ahead))
	if err != nil {
		return 0, fmt.Errorf("policy: refresh: %w", err)
	}
	n := 0
	for _, domain := range domains {
		p, err := e.sts.Fetch(ctx, domain)
		if err != nil {
			e.log.Info("policy: MTA-STS refresh failed; cached policy kept until it expires", "domain", domain, "err", err)
			continue
		}
		if id, err := e.sts.LookupID(ctx, domain); err == nil {
			p.ID = id
		}
		e.storeSTS(domain, p)
		n++
	}
	return n, nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
