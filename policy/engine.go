package policy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/resolver"
)

// Sources of a decision, in precedence order.
const (
	SourceOverride = "override"
	SourceDANE     = "dane"
	SourceMTASTS   = "mta-sts"
	SourceLearned  = "learned"
	SourceNone     = "none"
	SourceError    = "error"
)

// Config is the policy engine's behaviour.
type Config struct {
	// Overrides maps a domain, or ".parent" for every domain below it, to
	// a Postfix TLS policy: none, may, encrypt, dane, dane-only, verify or
	// secure, with options (e.g. "secure match=.example.com").
	Overrides map[string]string
	DANE      bool // answer "dane" where MX and TLSA records are DNSSEC-authenticated
	MTASTS    bool
	Learn     LearnConfig
	// TempOnError answers TEMP when nothing can be decided and nothing is
	// cached, deferring mail; the default NOTFOUND lets it go as usual.
	TempOnError bool
	// DecisionSample is the share of decisions recorded (0 to 1).
	DecisionSample float64
	// Budget bounds one decision's DNS and HTTPS; default 10 s.
	Budget time.Duration
	// CacheTTL keeps decisions in memory; default 5 minutes, negative: off.
	// Failed decisions are cached for a tenth of it, so an outage is
	// retried soon without hammering DNS.
	CacheTTL time.Duration
}

// LearnConfig is trust on first use from delivery history (opt-in).
type LearnConfig struct {
	Enabled       bool
	MinDeliveries int64  // authenticated-TLS deliveries needed
	Days          int    // over this many days, without a plaintext one
	Answer        string // encrypt (default) or verify
}

// Decision is the answer for one domain and how it was reached.
type Decision struct {
	Domain  string
	Answer  string // Postfix policy; "" means NOTFOUND
	Temp    bool   // answer TEMP
	Source  string
	Steps   []string // what each source said, for `snowrain policy check`
	Err     error
	Cached  bool   // answered from the in-memory cache
	Class   string // error class of Err: dns_timeout, dns_temp, sts_record, sts_fetch, sts_syntax, sts_too_large, internal
	Latency time.Duration
}

// Engine decides TLS policies.
type Engine struct {
	cfg   Config
	res   resolver.Resolver
	sts   *STSFetcher
	db    *sql.DB
	log   *slog.Logger
	cache *decisionCache
	rec   *recorder
}

// NewEngine returns an Engine over db (the snowrain store).
func NewEngine(cfg Config, r resolver.Resolver, sts *STSFetcher, db *sql.DB, log *slog.Logger) *Engine {
	if cfg.Budget <= 0 {
		cfg.Budget = 10 * time.Second
	}
	if cfg.Learn.Answer == "" {
		cfg.Learn.Answer = "encrypt"
	}
	if cfg.Learn.MinDeliveries <= 0 {
		cfg.Learn.MinDeliveries = 10
	}
	if cfg.Learn.Days <= 0 {
		cfg.Learn.Days = 30
	}
	if log == nil {
		log = slog.Default()
	}
	if sts == nil {
		sts = &STSFetcher{Resolver: r}
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	e := &Engine{cfg: cfg, res: r, sts: sts, db: db, log: log, cache: newDecisionCache(100000)}
	if db != nil {
		e.rec = newRecorder(db, log)
	}
	return e
}

// Close writes the decisions still queued.
func (e *Engine) Close() {
	if e.rec != nil {
		e.rec.close()
	}
}

// Decide answers for domain, source by source; the first that has an
// answer wins. It never fails: errors become a fail-open decision.
func (e *Engine) Decide(ctx context.Context, domain string) Decision {
	start := time.Now()
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if d, ok := e.cache.get(domain); ok {
		d.Latency = time.Since(start)
		d.Cached = true
		e.record(d)
		return d
	}
	d := Decision{Domain: domain, Source: SourceNone}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Budget)
	defer cancel()
	if _, ok := dns.IsDomainName(domain); !ok || domain == "" || strings.HasPrefix(domain, "[") {
		d.Steps = append(d.Steps, "not a domain name: no policy")
		return e.finish(d, start)
	}
	for _, step := range []func(context.Context, *Decision) bool{e.override, e.dane, e.mtaSTS, e.learned} {
		if step(ctx, &d) {
			return e.finish(d, start)
		}
	}
	if d.Err != nil {
		d.Source = SourceError
		d.Class = ErrorClass(d.Err)
		d.Temp = e.cfg.TempOnError
	}
	return e.finish(d, start)
}

// ErrorClass names the kind of failure behind a fail-open decision.
func ErrorClass(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrSTSTooLarge):
		return "sts_too_large"
	case errors.Is(err, ErrSTSPolicySyntax):
		return "sts_syntax"
	case errors.Is(err, ErrSTSRecord):
		return "sts_record"
	case resolver.IsTimeout(err):
		return "dns_timeout"
	case resolver.IsTemporary(err):
		return "dns_temp"
	case errors.Is(err, ErrSTSFetch), errors.Is(err, context.DeadlineExceeded):
		return "sts_fetch"
	}
	return "internal"
}

func (e *Engine) finish(d Decision, start time.Time) Decision {
	d.Latency = time.Since(start)
	if ttl := e.cfg.CacheTTL; ttl > 0 {
		if d.Err != nil {
			ttl /= 10
		}
		e.cache.put(d, ttl)
	}
	e.record(d)
	return d
}

func (e *Engine) override(_ context.Context, d *Decision) bool {
	if p, ok := e.cfg.Overrides[d.Domain]; ok {
		d.Answer, d.Source = p, SourceOverride
		d.Steps = append(d.Steps, "override for "+d.Domain+": "+p)
		return true
	}
	for parent := d.Domain; ; {
		i := strings.IndexByte(parent, '.')
		if i < 0 {
			break
		}
		parent = parent[i+1:]
		if p, ok := e.cfg.Overrides["."+parent]; ok {
			d.Answer, d.Source = p, SourceOverride
			d.Steps = append(d.Steps, "override for ."+parent+": "+p)
			return true
		}
	}
	if e.db != nil {
		var p, origin string
		for _, key := range lookupKeys(d.Domain) {
			if err := e.db.QueryRowContext(context.Background(), `SELECT policy, origin FROM policy_overrides
				WHERE domain = ?`, key).Scan(&p, &origin); err == nil {
				d.Answer, d.Source = p, SourceOverride
				d.Steps = append(d.Steps, "imported policy for "+key+" ("+origin+"): "+p)
				return true
			}
		}
	}
	d.Steps = append(d.Steps, "override: none")
	return false
}

// lookupKeys are domain, then ".parent" for each parent.
func lookupKeys(domain string) []string {
	keys := []string{domain}
	for p := domain; ; {
		i := strings.IndexByte(p, '.')
		if i < 0 {
			return keys
		}
		p = p[i+1:]
		keys = append(keys, "."+p)
	}
}

// dane answers "dane" when the MX records and the TLSA records of at least
// one MX host come DNSSEC-authenticated (AD bit) from the resolver, so
// that MTA-STS cannot weaken what DANE already gives (RFC 8461 section 2).
func (e *Engine) dane(ctx context.Context, d *Decision) bool {
	if !e.cfg.DANE {
		return false
	}
	mx, err := e.res.Query(ctx, d.Domain, dns.TypeMX)
	if err != nil {
		if !resolver.IsNotFound(err) {
			d.Err = errors.Join(d.Err, err)
		}
		d.Steps = append(d.Steps, fmt.Sprintf("dane: MX lookup: %v", err))
		return false
	}
	if !mx.Authenticated {
		d.Steps = append(d.Steps, "dane: MX answer not DNSSEC-authenticated")
		return false
	}
	for _, rr := range mx.Records {
		host := rr.(*dns.MX).Mx
		tlsa, err := e.res.Query(ctx, "_25._tcp."+host, dns.TypeTLSA)
		if err == nil && tlsa.Authenticated && len(tlsa.Records) > 0 {
			d.Answer, d.Source = "dane", SourceDANE
			d.Steps = append(d.Steps, fmt.Sprintf("dane: %d authenticated TLSA records at _25._tcp.%s", len(tlsa.Records), host))
			return true
		}
	}
	d.Steps = append(d.Steps, "dane: no authenticated TLSA record for any MX")
	return false
}

func (e *Engine) learned(ctx context.Context, d *Decision) bool {
	l := e.cfg.Learn
	if !l.Enabled || e.db == nil {
		return false
	}
	fromHour := time.Now().AddDate(0, 0, -l.Days).Unix() / 3600
	var forgotten sql.NullInt64
	e.db.QueryRowContext(ctx, `SELECT forgotten_at FROM policy_forgotten WHERE domain = ?`, d.Domain).Scan(&forgotten)
	if forgotten.Valid {
		// History is kept per hour: a forgotten domain starts over with
		// the next one.
		fromHour = max(fromHour, forgotten.Int64/3600+1)
	}
	var good, plain sql.NullInt64
	err := e.db.QueryRowContext(ctx, `SELECT
		SUM(deliveries * (tls_level IN ('trusted', 'verified', 'dane'))), SUM(deliveries * (tls_version = ''))
		FROM hourly_deliveries WHERE domain = ? AND hour >= ? AND status = 'sent'`, d.Domain, fromHour).Scan(&good, &plain)
	if err != nil {
		d.Steps = append(d.Steps, fmt.Sprintf("learned: %v", err))
		return false
	}
	d.Steps = append(d.Steps, fmt.Sprintf("learned: %d authenticated-TLS and %d plaintext deliveries in %d days (threshold %d)",
		good.Int64, plain.Int64, l.Days, l.MinDeliveries))
	if good.Int64 >= l.MinDeliveries && plain.Int64 == 0 {
		d.Answer, d.Source = l.Answer, SourceLearned
		return true
	}
	return false
}

func (e *Engine) record(d Decision) {
	if e.rec == nil || (e.cfg.DecisionSample < 1 && rand.Float64() >= e.cfg.DecisionSample) {
		return
	}
	e.rec.add(d)
}

// Forget drops what was learned and cached about domain.
func (e *Engine) Forget(ctx context.Context, domain string) error {
	e.cache.clear()
	if _, err := e.db.ExecContext(ctx, `INSERT INTO policy_forgotten VALUES (?, ?) ON CONFLICT(domain)
		DO UPDATE SET forgotten_at = excluded.forgotten_at`, domain, time.Now().Unix()); err != nil {
		return fmt.Errorf("policy: forget: %w", err)
	}
	for _, t := range []string{"mta_sts_policies", "policy_overrides"} {
		if _, err := e.db.ExecContext(ctx, `DELETE FROM `+t+` WHERE domain = ?`, domain); err != nil {
			return fmt.Errorf("policy: forget: %w", err)
		}
	}
	return nil
}
