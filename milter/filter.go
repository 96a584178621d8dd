package milter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/metrics"
	"github.com/snowrain/snowrain/resolver"
)

// Recorder takes events for the store without blocking; measure.Writer is
// one.
type Recorder interface {
	Enqueue(measure.Event) bool
}

// Filter holds what all milter sessions share.
type Filter struct {
	cfg      atomic.Pointer[Config]
	resolver resolver.Resolver
	recorder Recorder
	metrics  *metrics.Metrics
	log      *slog.Logger
	spf      *auth.SPFChecker
	dmarc    *auth.DMARCChecker

	// Watch, if set, sees every recorded message's peer and TLS use
	// (downgrade detection). Set it before serving.
	Watch func(direction, domain, ip string, tls bool)
	// Inbound, if set, decides at MAIL FROM as a Postfix policy service
	// would (policy.Inbound.Check): for Sendmail, which has no policy
	// delegation, the milter applies the same TLS requirements.
	Inbound func(ctx context.Context, attrs map[string]string) string
}

// NewFilter returns a Filter. m and log may be nil.
func NewFilter(cfg Config, r resolver.Resolver, rec Recorder, m *metrics.Metrics, log *slog.Logger) *Filter {
	if m == nil {
		m = metrics.New()
	}
	if log == nil {
		log = slog.Default()
	}
	f := &Filter{resolver: r, recorder: rec, metrics: m, log: log,
		spf: &auth.SPFChecker{Resolver: r}, dmarc: &auth.DMARCChecker{Resolver: r}}
	f.SetConfig(cfg)
	return f
}

// SetConfig swaps the configuration; sessions pick it up at their next
// message (SIGHUP).
func (f *Filter) SetConfig(cfg Config) {
	cfg.Defaults()
	f.cfg.Store(&cfg)
}

// Config returns the configuration in force.
func (f *Filter) Config() *Config { return f.cfg.Load() }

// macroRequests asks both MTAs for the macros ConnInfo reads, at the
// stages where they are set. TLS macros appear at HELO after STARTTLS and
// are asked again at MAIL in case an MTA only sets them there.
var macroRequests = map[gomilter.MacroStage][]gomilter.MacroName{
	gomilter.StageConnect: {"j", "v", "_", "{daemon_name}", "{client_addr}", "{client_ptr}"},
	gomilter.StageHelo:    {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}", "{verify}"},
	gomilter.StageMail: {"{auth_authen}", "{auth_type}", "{tls_version}", "{cipher}", "{cipher_bits}",
		"{cert_subject}", "{cert_issuer}", "{verify}", "{mail_addr}"},
	gomilter.StageEOM: {"i"},
}

// NewServer returns a go-milter server running the filter, with the
// connection limits of the configuration in force. A connection that
// breaks the protocol, exceeds a limit or panics is closed, counted and
// logged; the others go on.
func (f *Filter) NewServer() *gomilter.Server {
	cfg := f.Config()
	opts := []gomilter.Option{
		gomilter.WithMilter(func() gomilter.Milter { return &guard{s: newSession(f)} }),
		gomilter.WithProtocols(gomilter.OptHeaderLeadingSpace | gomilter.OptNoUnknown),
		gomilter.WithActions(gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine),
		gomilter.WithMaxPacketSize(uint32(cfg.MaxPacket)),
		gomilter.WithReadTimeout(cfg.ReadTimeout),
		gomilter.WithIdleTimeout(cfg.IdleTimeout),
		gomilter.WithErrorHandler(f.connError),
	}
	for stage, names := range macroRequests {
		opts = append(opts, gomilter.WithMacroRequest(stage, names))
	}
	return gomilter.NewServer(opts...)
}

// connError counts and logs an error that closed one milter connection.
func (f *Filter) connError(err error) {
	reason := connErrorReason(err)
	f.metrics.MilterConnErrors.WithLabelValues(reason).Inc()
	var pe *gomilter.PanicError
	switch {
	case errors.As(err, &pe):
		f.log.Error("panic serving a milter connection; that connection is closed", "panic", fmt.Sprint(pe.Value),
			"stack", string(pe.Stack))
	case reason == "idle_timeout":
		f.log.Info("idle milter connection closed", "err", err)
	default:
		f.log.Warn("milter connection closed", "reason", reason, "err", err)
	}
}

func connErrorReason(err error) string {
	var pe *gomilter.PanicError
	switch {
	case errors.As(err, &pe):
		return "panic"
	case errors.Is(err, gomilter.ErrPacketTooLarge):
		return "too_large"
	case errors.Is(err, gomilter.ErrMalformedPacket):
		return "malformed"
	case errors.Is(err, gomilter.ErrIdleTimeout):
		return "idle_timeout"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, gomilter.ErrNegotiation):
		return "negotiation"
	}
	return "io"
}

func newUID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
