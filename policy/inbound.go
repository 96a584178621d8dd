package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
)

// InboundAction is what the inbound service answers for mail that must
// come over TLS and did not.
type InboundAction string

// Inbound actions.
const (
	InboundDefer  InboundAction = "defer"  // DEFER_IF_PERMIT 4.7.10: the sender may retry over STARTTLS (the default)
	InboundReject InboundAction = "reject" // 550 5.7.10 (RFC 5248's "Encryption Needed")
	InboundRecord InboundAction = "record" // DUNNO: only recorded
)

// InboundConfig is what an Inbound requires; SetConfig swaps it whole.
type InboundConfig struct {
	RequireTLS []string // sender domains, or ".parent" for all below it
	Learned    bool
	MinSeen    int64 // messages over TLS, none in plaintext, before a domain is learned
	Days       int
	Action     InboundAction
	// Budget is the longest one decision waits (for the database, when
	// Learned); far under Postfix's smtpd_policy_service_timeout (100 s).
	// Past it: DUNNO, counted.
	Budget time.Duration
}

// InboundConfigFrom is the delegation service's part of the
// configuration c; its zero fields are c's defaults (config.Default):
// the learning thresholds are the outbound ones (policy.learn), the
// budget 2 s.
func InboundConfigFrom(c config.Config) InboundConfig {
	in := c.Policy.Inbound
	return InboundConfig{RequireTLS: in.RequireTLS, Learned: in.Learned, Action: InboundAction(in.Action),
		MinSeen: c.Policy.Learn.MinDeliveries, Days: c.Policy.Learn.Days, Budget: in.Budget.Duration}
}

// Inbound is a Postfix policy delegation service (check_policy_service)
// that requires TLS from chosen sender domains: listed ones, and, when
// Learned is set, domains whose mail always arrived over TLS.
//
// The exported configuration fields are read at the first request;
// SetConfig replaces them while serving.
type Inbound struct {
	RequireTLS []string // sender domains, or ".parent" for all below it
	Learned    bool
	MinSeen    int64 // messages over TLS, none in plaintext, before a domain is learned
	Days       int
	Action     InboundAction // InboundDefer (default), InboundReject or InboundRecord
	Budget     time.Duration

	IdleTimeout time.Duration // close connections idle between requests; default 5 min (Postfix's max_idle is 300 s)
	ReadTimeout time.Duration // longest to read one request once it started; default 10 s
	MaxRequest  int           // longest request; default 64 KiB
	MaxConns    int           // connections served at once; default 1000

	Store    *measure.Store // for Learned
	Recorder Recorder       // decision records (measure.Writer); nil: none
	Log      *slog.Logger
	// OnDecision, if set, is told about every requirement applied.
	OnDecision func(domain, action string)
	// Classes, if set, counts faults by class: deadline, overload,
	// panic, malformed, read_timeout, too_many_connections, accept_error.
	Classes func(class string)

	once    sync.Once
	cfg     atomic.Pointer[inboundState]
	conns   connServer
	flights flights[bool]
	learned *decisionCache // learned lookups, a minute each
}

// inboundState is an InboundConfig in canonical form.
type inboundState struct {
	InboundConfig
	keys []string
}

// SetConfig swaps the requirements (SIGHUP); invalid domains refuse the
// whole configuration.
func (p *Inbound) SetConfig(c InboundConfig) error {
	st, err := newInboundState(c)
	if err != nil {
		return err
	}
	p.init()
	p.cfg.Store(st)
	p.learned.clear()
	return nil
}

func newInboundState(c InboundConfig) (*inboundState, error) {
	st := &inboundState{InboundConfig: c}
	d := InboundConfigFrom(config.Default())
	config.OrDefault(&st.MinSeen, d.MinSeen)
	config.OrDefault(&st.Days, d.Days)
	config.OrDefault(&st.Budget, d.Budget)
	var errs []error
	for _, d := range c.RequireTLS {
		key, ok := CanonicalPattern(d)
		if !ok {
			errs = append(errs, fmt.Errorf("policy: require_tls %q: not a domain or .domain", d))
			continue
		}
		st.keys = append(st.keys, key)
	}
	switch c.Action {
	case "", InboundDefer, InboundReject, InboundRecord:
	default:
		errs = append(errs, fmt.Errorf("policy: inbound action %q: want defer, reject or record", c.Action))
	}
	return st, errors.Join(errs...)
}

func (p *Inbound) init() {
	p.once.Do(func() {
		if p.Log == nil {
			p.Log = slog.Default()
		}
		p.learned = newDecisionCache(10000)
		if p.cfg.Load() != nil {
			return
		}
		st, err := newInboundState(InboundConfig{RequireTLS: p.RequireTLS, Learned: p.Learned, MinSeen: p.MinSeen,
			Days: p.Days, Action: p.Action, Budget: p.Budget})
		if err != nil {
			p.Log.Error("policy: inbound requirements left out", "err", err)
		}
		p.cfg.CompareAndSwap(nil, st)
	})
}

func (p *Inbound) state() *inboundState {
	p.init()
	return p.cfg.Load()
}

func (p *Inbound) count(class string) {
	if p.Classes != nil {
		p.Classes(class)
	}
}

// Serve answers policy requests until ln is closed. Accept errors such as
// running out of descriptors are logged, counted and retried.
func (p *Inbound) Serve(ln net.Listener) error {
	p.init()
	return p.conns.serve(ln, "inbound", p.MaxConns, p.Log, p.count, p.session)
}

// Close ends every connection and waits for the sessions.
func (p *Inbound) Close() { p.conns.close() }

// session answers attribute blocks over a persistent connection.
func (p *Inbound) session(c net.Conn) {
	idle, read, max := p.IdleTimeout, p.ReadTimeout, p.MaxRequest
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	if read <= 0 {
		read = defaultReadTimeout
	}
	if max <= 0 {
		max = 64 << 10
	}
	r := bufio.NewReaderSize(c, 4096)
	for {
		if err := awaitRequest(c, func() error { _, err := r.Peek(1); return err }, idle, read); err != nil {
			return
		}
		attrs, err := ReadAttributes(r, max)
		switch {
		case errors.Is(err, ErrAttributes):
			p.count("malformed")
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.count("read_timeout")
			return
		case err != nil:
			return
		}
		action := p.Check(context.Background(), attrs)
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.Write([]byte("action=" + action + "\n\n")); err != nil {
			return
		}
	}
}

// ErrAttributes marks a policy request that is too long, has a name
// twice, or is not "name=value" lines.
var ErrAttributes = errors.New("policy: malformed policy request")

// ReadAttributes reads one Postfix policy request: "name=value" lines
// ended by an empty line, at most max bytes in all. The limit holds while
// reading: an endless line costs max bytes, not its length.
func ReadAttributes(r *bufio.Reader, max int) (map[string]string, error) {
	attrs := map[string]string{}
	size := 0
	for {
		line, err := readLine(r, max-size)
		if err != nil {
			return nil, err
		}
		size += len(line)
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			return attrs, nil
		}
		k, v, ok := strings.Cut(line, "=")
		if _, dup := attrs[k]; !ok || k == "" || dup {
			return nil, ErrAttributes
		}
		attrs[k] = v
	}
}

// readLine reads through the next "\n", failing with ErrAttributes as
// soon as more than limit bytes came without one.
func readLine(r *bufio.Reader, limit int) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > limit {
			return "", ErrAttributes
		}
		buf = append(buf, frag...)
		switch {
		case err == nil:
			return string(buf), nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return "", err
		}
	}
}

// Check returns the action for one request's attributes; DUNNO lets the
// other restrictions decide. It fails open: a panic, a database slower
// than the budget or a lookup queue full of them gives DUNNO, counted.
func (p *Inbound) Check(ctx context.Context, attrs map[string]string) (action string) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			p.count("panic")
			p.Log.Error("policy: panic in inbound check; DUNNO", "panic", r)
			action = "DUNNO"
		}
	}()
	st := p.state()
	if attrs["encryption_protocol"] != "" {
		return "DUNNO"
	}
	domain, ok := SenderDomain(attrs["sender"])
	if !ok {
		return "DUNNO"
	}
	required, err := p.required(ctx, st, domain)
	if err != nil {
		class := ErrorClass(err)
		p.count(class)
		p.Log.Warn("policy: inbound check failed open", "domain", domain, "class", class, "err", err)
		p.record(domain, "DUNNO", class+": "+err.Error(), start)
		return "DUNNO"
	}
	if !required {
		return "DUNNO"
	}
	action = "DUNNO"
	// X.7.10 is "Encryption Needed" in the IANA registry of enhanced
	// status codes (RFC 5248).
	switch st.Action {
	case InboundReject:
		action = "550 5.7.10 TLS required for mail from " + domain
	case InboundRecord:
	default: // InboundDefer
		action = "DEFER_IF_PERMIT 4.7.10 TLS required for mail from " + domain + ", try again over STARTTLS"
	}
	if p.OnDecision != nil {
		p.OnDecision(domain, action)
	}
	p.record(domain, action, "", start)
	return action
}

// required tells whether domain must use TLS: listed, or learned within
// the budget.
func (p *Inbound) required(ctx context.Context, st *inboundState, domain string) (bool, error) {
	for _, key := range st.keys {
		if matchesKey(domain, key) {
			return true, nil
		}
	}
	if !st.Learned || p.Store == nil {
		return false, nil
	}
	if d, ok := p.learned.get(domain); ok {
		return d.Answer != "", nil
	}
	gen := p.learned.generation()
	ctx, cancel := context.WithTimeout(ctx, st.Budget)
	defer cancel()
	return p.flights.do(ctx, domain, func() (bool, error) {
		ok, err := p.learnedTLS(st, domain)
		if err == nil {
			d := Decision{Domain: domain}
			if ok {
				d.Answer = string(SourceLearned) // any answer: the sender has a TLS history
			}
			p.learned.put(d, time.Minute, gen)
		}
		return ok, err
	}, func(r any) { p.Log.Error("policy: panic in learned lookup", "domain", domain, "panic", r) })
}

// learnedTLS reads the sender domain's history: at least MinSeen messages
// in Days, every one over TLS.
func (p *Inbound) learnedTLS(st *inboundState, domain string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), st.Budget*9/10)
	defer cancel()
	if !p.Store.IsReady() {
		return false, fmt.Errorf("%w: learned inbound: %w", ErrStore, measure.ErrNotReady)
	}
	msgs, tls, err := p.Store.InboundHistory(ctx, domainForms(domain), time.Now().AddDate(0, 0, -st.Days).Unix()/3600)
	if err != nil {
		return false, fmt.Errorf("%w: learned inbound: %w", ErrStore, err)
	}
	return msgs >= st.MinSeen && tls == msgs, nil
}

func (p *Inbound) record(domain, action, errText string, start time.Time) {
	if p.Recorder == nil {
		return
	}
	p.Recorder.Enqueue(&measure.PolicyDecision{At: time.Now(), Domain: domain, Source: string(SourceInbound), Answer: action,
		Latency: time.Since(start), Error: errText})
}
