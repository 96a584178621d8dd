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
	Watch func(direction measure.Direction, domain, ip string, tls bool)
	// Inbound, if set, decides at MAIL FROM as a Postfix policy service
	// would (policy.Inbound.Check): for Sendmail, which has no policy
	// delegation, the milter applies the same TLS requirements. Set it
	// before serving: each connection negotiates whether MAIL FROM waits
	// for the filter's reply.
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
		gomilter.WithProtocols(required | optional),
		gomilter.WithActions(gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine),
		gomilter.WithNegotiationCallback(f.negotiate),
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

// What the filter asks of the MTA at negotiation (milter protocol 6,
// libmilter's smfi_setsymlist and SMFIP_* flags, which Postfix 2.6+ and
// Sendmail 8.14+ implement).
//
// required: header values as they were sent (SMFIP_HDR_LEADSPC), which
// DKIM's simple header canonicalization needs (RFC 6376 3.4.1).
//
// optional, taken where the MTA offers them: the stages the filter does
// not need are not sent at all (SMFIP_NOUNKNOWN, SMFIP_NODATA: nothing is
// read at DATA, the queue ID comes at end-of-message), and the MTA does not
// wait for a reply at the stages where the filter only records and never
// acts (SMFIP_NR_CONN, _HELO, _RCPT, _DATA, _HDR, _EOH, _BODY, _UNKN):
// without them every header field and body chunk is a round trip. RCPT
// stays: the recipients' domains are recorded. MAIL FROM keeps its reply
// when the filter applies the inbound TLS requirement there (Inbound);
// otherwise it is SMFIP_NR_MAIL too. End-of-message always answers.
const (
	required = gomilter.OptHeaderLeadingSpace
	optional = gomilter.OptNoUnknown | gomilter.OptNoData | gomilter.OptNoConnReply |
		gomilter.OptNoHeloReply | gomilter.OptNoRcptReply | gomilter.OptNoDataReply | gomilter.OptNoHeaderReply |
		gomilter.OptNoEOHReply | gomilter.OptNoBodyReply | gomilter.OptNoUnknownReply
)

// protocol returns the protocol options the filter wants.
func (f *Filter) protocol() gomilter.OptProtocol {
	p := required | optional
	if f.Inbound == nil {
		p |= gomilter.OptNoMailReply
	}
	return p
}

// negotiate is go-milter's negotiation with the optional options taken
// only where the MTA offers them: an MTA of protocol 2 to 5, or one that
// offers fewer options, gets the replies and events it expects. What is
// required (the actions, SMFIP_HDR_LEADSPC) fails the negotiation as
// before when missing, and the MTA applies its default action for an
// unavailable milter.
func (f *Filter) negotiate(mtaVersion, milterVersion uint32, mtaActions, milterActions gomilter.OptAction,
	mtaProtocol, _ gomilter.OptProtocol, offered gomilter.DataSize) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	version := min(mtaVersion, milterVersion)
	if version < 2 {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: unsupported protocol version: %d", mtaVersion)
	}
	if milterActions&mtaActions != milterActions {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: MTA does not offer required actions. offered: %q requested: %q",
			mtaActions, milterActions)
	}
	if mtaProtocol&required != required {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: MTA does not offer required protocol options. offered: %q requested: %q",
			mtaProtocol, required)
	}
	p := f.protocol() & mtaProtocol
	if f.log.Enabled(context.Background(), slog.LevelDebug) {
		f.log.Debug("milter options negotiated", "version", version, "protocol", p.String(),
			"not_offered", (f.protocol() &^ mtaProtocol).String())
	}
	return version, milterActions, p, offered, nil
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
