package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/resolver"
)

// Source says where a TLS policy came from: the source column of
// policy_decisions and of `snowrain policy list`.
type Source string

// Sources of a decision, in precedence order.
const (
	SourceOverride Source = "override" // Config.Overrides
	SourceDANE     Source = "dane"     // DNSSEC-authenticated MX and TLSA records (RFC 7672)
	SourceMTASTS   Source = "mta-sts"  // an enforced MTA-STS policy (RFC 8461)
	SourceLearned  Source = "learned"  // delivery history (LearnConfig)
	SourceNone     Source = "none"     // nothing applies: NOTFOUND
	SourceError    Source = "error"    // nothing could be decided: fail open
)

// Sources of the other answers: the inbound delegation service's and the
// entries `snowrain policy list` shows.
const (
	SourceInbound  Source = "inbound"  // a decision of the inbound policy service (inbound.go)
	SourceConfig   Source = "config"   // an override from the configuration file
	SourceImported Source = "imported" // a policy imported into the store (policy import)
)

// Config is the policy engine's behaviour.
type Config struct {
	// Overrides maps a domain, or ".parent" for every domain below it, to
	// a Postfix TLS policy: none, may, encrypt, dane, dane-only, verify or
	// secure, with options (e.g. "secure match=.example.com"); see
	// ParseTLSPolicy for the attributes allowed.
	Overrides map[string]string
	DANE      bool // answer LevelDANE where MX and TLSA records are DNSSEC-authenticated
	MTASTS    bool
	Learn     LearnConfig
	// TempOnError answers TEMP when nothing can be decided and nothing is
	// cached, deferring mail; the default NOTFOUND lets it go as usual.
	TempOnError bool
	// DecisionSample is the share of decisions recorded (0 to 1).
	DecisionSample float64
	// Budget is the longest a caller waits for a decision, DNS, HTTPS and
	// database included; default 10 s, well under Postfix's socketmap
	// timeout (100 s). Past it the answer fails open (NOTFOUND, or TEMP
	// with TempOnError) and the lookup finishes in the background for
	// the next caller.
	Budget time.Duration
	// CacheTTL keeps decisions in memory; default 5 minutes, negative: off.
	// Failed decisions are cached for a tenth of it, so an outage is
	// retried soon without hammering DNS. Changes to the store (policy
	// import, forget) and SetConfig empty the cache at once.
	CacheTTL time.Duration
}

// LearnConfig is trust on first use from delivery history (opt-in).
type LearnConfig struct {
	Enabled       bool
	MinDeliveries int64  // authenticated-TLS deliveries needed
	Days          int    // over this many days, without a plaintext one
	Answer        string // encrypt (default) or verify
}

// ConfigFrom is the engine's part of the configuration c.
func ConfigFrom(c config.Config) Config {
	p := c.Policy
	return Config{Overrides: p.Overrides, DANE: p.DANE, MTASTS: p.MTASTS,
		TempOnError: p.TempOnError, DecisionSample: p.DecisionSample, Budget: p.Budget.Duration,
		Learn: LearnConfig{Enabled: p.Learn.Enabled, MinDeliveries: p.Learn.MinDeliveries,
			Days: p.Learn.Days, Answer: p.Learn.Answer}}
}

// defaultCacheTTL keeps decisions in memory: a policy changed at the
// source takes this long to reach the answers at most.
const defaultCacheTTL = 5 * time.Minute

// Validate checks every override: keys are domain names or ".parent"
// patterns, values policies in ParseTLSPolicy's grammar.
func (c Config) Validate() error {
	_, err := c.normalized()
	return err
}

// normalized returns c with defaults filled in and override keys in
// canonical form.
func (c Config) normalized() (Config, error) {
	d := ConfigFrom(config.Default())
	config.OrDefault(&c.Budget, d.Budget)
	config.OrDefault(&c.Learn.Answer, d.Learn.Answer)
	config.OrDefault(&c.Learn.MinDeliveries, d.Learn.MinDeliveries)
	config.OrDefault(&c.Learn.Days, d.Learn.Days)
	if c.CacheTTL == 0 { // negative: off
		c.CacheTTL = defaultCacheTTL
	}
	var errs []error
	overrides := make(map[string]string, len(c.Overrides))
	for k, v := range c.Overrides {
		key, ok := CanonicalPattern(k)
		if !ok {
			errs = append(errs, fmt.Errorf("policy: override %q: not a domain or .domain", k))
			continue
		}
		p, err := ParseTLSPolicy(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: override %q: %w", k, err))
			continue
		}
		overrides[key] = p.String()
	}
	c.Overrides = overrides
	if _, err := ParseTLSPolicy(c.Learn.Answer); err != nil {
		errs = append(errs, fmt.Errorf("policy: learn answer: %w", err))
	}
	return c, errors.Join(errs...)
}

// Decision is the answer for one domain and how it was reached.
type Decision struct {
	Domain  string
	Answer  string // Postfix policy; "" means NOTFOUND
	Temp    bool   // answer TEMP
	Source  Source
	Steps   []string // what each source said, for `snowrain policy check`
	Err     error
	Cached  bool   // answered from the in-memory cache
	Class   string // error class of Err: dns_timeout, dns_temp, sts_record, sts_fetch, sts_syntax, sts_too_large, store, deadline, overload, panic, internal
	Latency time.Duration

	ttl    time.Duration // caps how long it is cached (the MX RRset's TTL), 0: no cap
	sealed bool          // Answer already passed encodeAnswer
}

// ErrStore marks a failed read of the snowrain store.
var ErrStore = errors.New("policy: store")

// Recorder takes records for the store without blocking; measure.Writer
// is one.
type Recorder interface {
	Enqueue(measure.Event) bool
}

// Engine decides TLS policies.
type Engine struct {
	cfg     atomic.Pointer[Config]
	res     resolver.Resolver
	sts     *STSFetcher
	store   *measure.Store
	log     *slog.Logger
	cache   *decisionCache
	flights flights[Decision]

	// imported is the policy_overrides table in memory, reloaded when
	// the store's policy version changes.
	imported atomic.Pointer[map[string]string]
	version  atomic.Int64 // policy_version last loaded, -1 before

	recMu sync.Mutex
	rec   Recorder
	own   *measure.Writer // when no Recorder was set

	// Classes, if set, is told about each fail-open fault: deadline,
	// overload, panic. Set it before serving.
	Classes func(class string)
}

// NewEngine returns an Engine over store (nil: no imported, cached or
// learned policies), loading the imported policies. Overrides that fail
// Config.Validate are left out and logged. A store not reachable yet
// (measure.OpenServing) is read once it is (Watch).
func NewEngine(cfg Config, r resolver.Resolver, sts *STSFetcher, store *measure.Store, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.Default()
	}
	if sts == nil {
		sts = &STSFetcher{Resolver: r}
	}
	e := &Engine{res: r, sts: sts, store: store, log: log, cache: newDecisionCache(100000)}
	e.version.Store(-1)
	empty := map[string]string{}
	e.imported.Store(&empty)
	norm, err := cfg.normalized()
	if err != nil {
		log.Error("policy: configuration entries left out", "err", err)
	}
	e.cfg.Store(&norm)
	if store != nil && store.IsReady() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Reload(ctx); err != nil {
			log.Error("policy: loading imported policies; retried by Watch", "err", err)
		}
	}
	return e
}

// SetConfig swaps the configuration (SIGHUP) and empties the decision
// cache; an invalid configuration is refused whole.
func (e *Engine) SetConfig(cfg Config) error {
	norm, err := cfg.normalized()
	if err != nil {
		return err
	}
	e.cfg.Store(&norm)
	e.cache.clear()
	return nil
}

func (e *Engine) config() *Config { return e.cfg.Load() }

// SetRecorder sends decision records and fetched MTA-STS policies to r
// (the daemon's measure.Writer) instead of a writer of the Engine's own.
// Call it before the first decision.
func (e *Engine) SetRecorder(r Recorder) {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	e.rec = r
}

func (e *Engine) recorder() Recorder {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	if e.rec == nil && e.store != nil {
		e.own = measure.NewWriter(e.store, measure.WriterConfig{Interval: 100 * time.Millisecond, Logger: e.log})
		e.rec = e.own
	}
	return e.rec
}

// Close writes what the Engine's own writer still holds; a later record
// starts a new one.
func (e *Engine) Close() {
	e.recMu.Lock()
	own := e.own
	if own != nil {
		e.own, e.rec = nil, nil
	}
	e.recMu.Unlock()
	if own != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := own.Close(ctx); err != nil {
			e.log.Warn("policy: flushing decisions", "err", err)
		}
	}
}

func (e *Engine) count(class string) {
	if e.Classes != nil && class != "" {
		e.Classes(class)
	}
}

// Decide answers for domain, source by source; the first that has an
// answer wins. It never fails and never waits past the budget: errors
// and lateness become a fail-open decision.
func (e *Engine) Decide(ctx context.Context, domain string) Decision {
	start := time.Now()
	cfg := e.config()
	key, ok := CanonicalDomain(domain)
	if !ok {
		d := Decision{Domain: clip(strings.ToLower(strings.TrimSpace(domain)), 255), Source: SourceNone,
			Steps: []string{"not a domain name: no policy"}}
		d.Latency = time.Since(start)
		e.record(d)
		return d
	}
	if d, ok := e.cache.get(key); ok {
		d.Latency = time.Since(start)
		d.Cached = true
		e.record(d)
		return d
	}
	gen := e.cache.generation()
	ctx, cancel := context.WithTimeout(ctx, cfg.Budget)
	defer cancel()
	d, err := e.flights.do(ctx, strconv.FormatUint(gen, 10)+" "+key, func() (Decision, error) {
		d := e.decide(key, cfg)
		e.seal(&d)
		e.cache.put(d, e.cacheTTL(cfg, d), gen)
		return d, nil
	}, func(p any) { e.log.Error("policy: panic deciding", "domain", key, "panic", p) })
	if err != nil {
		d = Decision{Domain: key, Source: SourceError, Err: err, Class: ErrorClass(err), Temp: cfg.TempOnError,
			Steps: []string{fmt.Sprintf("%v: failing open", err)}}
		e.count(d.Class)
	}
	d.Latency = time.Since(start)
	e.record(d)
	return d
}

// decide runs the sources for key with a little less than the budget, so
// that a lookup whose own timeouts fire still reaches its caller.
func (e *Engine) decide(key string, cfg *Config) Decision {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Budget*9/10)
	defer cancel()
	d := Decision{Domain: key, Source: SourceNone}
	for _, step := range []func(context.Context, *Config, *Decision) bool{e.override, e.dane, e.mtaSTS, e.learned} {
		if step(ctx, cfg, &d) {
			d.Class = ErrorClass(d.Err)
			return d
		}
	}
	if d.Err != nil {
		d.Source = SourceError
		d.Class = ErrorClass(d.Err)
		d.Temp = cfg.TempOnError
	}
	return d
}

// seal passes the answer through the one encoder once, before it is
// cached: what the socketmap sends is re-encoded from validated fields,
// whatever the source produced.
func (e *Engine) seal(d *Decision) {
	if d.Answer != "" {
		text, clean, ok := encodeAnswer(d.Answer)
		if !clean {
			e.count("invalid_answer")
			e.log.Error("policy: answer outside the policy grammar; invalid attributes left out",
				"domain", d.Domain, "source", d.Source, "policy", clip(d.Answer, 200), "kept", text)
		}
		d.Answer = ""
		if ok {
			d.Answer = text
		}
	}
	d.sealed = true
}

func (e *Engine) cacheTTL(cfg *Config, d Decision) time.Duration {
	ttl := cfg.CacheTTL
	if ttl <= 0 {
		return 0
	}
	if d.Err != nil {
		ttl /= 10
	}
	if d.ttl > 0 {
		ttl = min(ttl, d.ttl)
	}
	return ttl
}

// ErrorClass names the kind of failure behind a fail-open decision.
func ErrorClass(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrDeadline):
		return "deadline"
	case errors.Is(err, ErrOverload):
		return "overload"
	case errors.Is(err, ErrPanic):
		return "panic"
	case errors.Is(err, ErrStore):
		return "store"
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

// override answers from the configuration, then from imported policies:
// the domain itself first, then each ".parent", nearest first.
func (e *Engine) override(_ context.Context, cfg *Config, d *Decision) bool {
	imported := *e.imported.Load()
	for _, key := range append([]string{d.Domain}, parentKeys(d.Domain)...) {
		if p, ok := cfg.Overrides[key]; ok {
			d.Answer, d.Source = p, SourceOverride
			d.Steps = append(d.Steps, "override for "+key+": "+p)
			return true
		}
		if p, ok := imported[key]; ok {
			d.Answer, d.Source = p, SourceOverride
			d.Steps = append(d.Steps, "imported policy for "+key+": "+p)
			return true
		}
	}
	d.Steps = append(d.Steps, "override: none")
	return false
}

// dane answers "dane" when the MX records and the TLSA records of at least
// one MX host come DNSSEC-authenticated (AD bit) from the resolver, so
// that MTA-STS cannot weaken what DANE already gives (RFC 8461 section 2).
func (e *Engine) dane(ctx context.Context, cfg *Config, d *Decision) bool {
	if !cfg.DANE {
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
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		// The TLSA owner name of SMTP on port 25 (RFC 6698 section 3).
		tlsa, err := e.res.Query(ctx, "_25._tcp."+mx.Mx, dns.TypeTLSA)
		if err == nil && tlsa.Authenticated && len(tlsa.Records) > 0 {
			d.Answer, d.Source = string(LevelDANE), SourceDANE
			d.Steps = append(d.Steps, fmt.Sprintf("dane: %d authenticated TLSA records at _25._tcp.%s", len(tlsa.Records), mx.Mx))
			return true
		}
	}
	d.Steps = append(d.Steps, "dane: no authenticated TLSA record for any MX")
	return false
}

// domainForms are the spellings a domain may be stored under: the
// canonical A-label form, and the U-label form the milter and the log
// parser keep for SMTPUTF8 mail.
func domainForms(domain string) []string {
	if u := unicodeForm(domain); u != "" {
		return []string{domain, u}
	}
	return []string{domain}
}

func (e *Engine) learned(ctx context.Context, cfg *Config, d *Decision) bool {
	l := cfg.Learn
	if !l.Enabled || e.store == nil {
		return false
	}
	fail := func(err error) bool {
		d.Err = errors.Join(d.Err, fmt.Errorf("%w: %w", ErrStore, err))
		d.Steps = append(d.Steps, fmt.Sprintf("learned: %v", err))
		return false
	}
	if !e.store.IsReady() {
		return fail(measure.ErrNotReady)
	}
	fromHour := time.Now().AddDate(0, 0, -l.Days).Unix() / 3600
	forgotten, ok, err := forgottenAt(ctx, e.store, d.Domain)
	if err != nil {
		return fail(err)
	}
	if ok {
		// History is kept per hour: a forgotten domain starts over with
		// the next one.
		fromHour = max(fromHour, forgotten/3600+1)
	}
	h, err := e.store.DeliveryHistory(ctx, domainForms(d.Domain), fromHour)
	if err != nil {
		return fail(err)
	}
	d.Steps = append(d.Steps, fmt.Sprintf("learned: %d authenticated-TLS and %d plaintext deliveries in %d days (threshold %d)",
		h.Authenticated, h.Plaintext, l.Days, l.MinDeliveries))
	if h.Authenticated >= l.MinDeliveries && h.Plaintext == 0 {
		d.Answer, d.Source = l.Answer, SourceLearned
		return true
	}
	return false
}

func (e *Engine) record(d Decision) {
	if s := e.config().DecisionSample; s < 1 && rand.Float64() >= s {
		return
	}
	rec := e.recorder()
	if rec == nil {
		return
	}
	answer, errText := d.Answer, ""
	switch {
	case answer != "":
	case d.Temp:
		answer = "TEMP"
	default:
		answer = "NOTFOUND"
	}
	if d.Err != nil {
		errText = clip(d.Class+": "+d.Err.Error(), 1000)
	}
	rec.Enqueue(&measure.PolicyDecision{At: time.Now(), Domain: d.Domain, Source: string(d.Source), Answer: answer,
		Latency: d.Latency, Error: errText})
}

// Forget drops what was learned, imported and cached about domain, in the
// store and in every running daemon (through the policy version).
func (e *Engine) Forget(ctx context.Context, domain string) error {
	key, ok := CanonicalDomain(domain)
	if !ok {
		return fmt.Errorf("policy: forget: %q is not a domain name", domain)
	}
	tx, err := e.store.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("policy: forget: %w", err)
	}
	defer tx.Rollback()
	if err := forgetDomain(ctx, tx, key, time.Now()); err != nil {
		return fmt.Errorf("policy: forget: %w", err)
	}
	if err := bumpVersion(ctx, tx); err != nil {
		return fmt.Errorf("policy: forget: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("policy: forget: %w", err)
	}
	return e.Reload(ctx)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
