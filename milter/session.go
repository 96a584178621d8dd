package milter

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/measure"
)

// testHook, when set by tests, runs at the start of each handler so a test
// can make one panic.
var testHook func(stage string)

func hook(stage string) {
	if testHook != nil {
		testHook(stage)
	}
}

// session is the state of one milter connection: one SMTP connection,
// possibly several messages.
type session struct {
	f       *Filter
	uid     string
	started time.Time
	ci      ConnInfo
	helo    string
	nmsg    int
	msg     *message

	lastQueueID string
}

// message is the state of the current transaction.
type message struct {
	cfg         *Config
	ctx         context.Context
	cancel      context.CancelFunc
	start       time.Time
	from        string   // MAIL FROM address, angle brackets removed
	rcpts       int      // RCPT TO commands
	rcptDoms    []string // their distinct domains, at most maxRcptDomains
	spf         chan [2]auth.SPFResult
	dkim        *auth.DKIMVerifier
	dkimHdr     *[]byte        // header fields not yet written to dkim (see Header)
	dkimSigs    []string       // raw DKIM-Signature values, at most cfg.MaxSignatures
	dkimSeen    int            // DKIM-Signature fields
	froms       []string       // From header values, at most maxFroms of at most maxFromBytes
	fromSeen    int            // From fields
	fromMore    []string       // domains of the From fields not kept
	fromDomains []string       // every From domain (evaluate)
	fromClass   auth.FromClass // "" or why DMARC cannot evaluate the From
	arIndex     []int          // occurrence numbers of our forged A-R headers
	arSeen      int
	hdrBytes    int  // header bytes so far
	overHdr     bool // more than cfg.MaxHeaderBytes: DKIM abandoned
	overAR      bool // more than maxForgedAR forged A-R fields
	size        int64
	failOpen    []string
	rec         *measure.Message
}

// Per-message bounds on what the header fields and envelope can make us
// keep. Beyond them the fields are counted, not kept: a message with more
// From fields than maxFroms is multiple_from anyway.
const (
	maxFroms       = 16
	maxFromBytes   = 16 << 10
	maxRcptDomains = 1000
	maxForgedAR    = 10000
)

func newSession(f *Filter) *session {
	return &session{f: f, uid: newUID(), started: time.Now()}
}

func (s *session) NewConnection(m gomilter.Modifier) error { return nil }

func (s *session) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (*gomilter.Response, error) {
	hook("connect")
	s.ci.ClientIP = parseIP(addr)
	s.ci.Local = port == 0
	if h := clean(host); h != "" && !strings.HasPrefix(h, "[") && h != "unknown" {
		s.ci.ClientPTR = strings.TrimSuffix(h, ".")
	}
	s.ci.Update(m)
	return gomilter.RespContinue, nil
}

func (s *session) Helo(name string, m gomilter.Modifier) (*gomilter.Response, error) {
	hook("helo")
	s.helo = clean(name)
	s.ci.Update(m)
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from, args string, m gomilter.Modifier) (*gomilter.Response, error) {
	hook("mail")
	s.endMessage()
	s.ci.Update(m)
	if r := s.inbound(from); r != nil {
		return r, nil
	}
	cfg := s.f.Config()
	// No deadline yet: the budget runs from the end of the message
	// (EndOfMessage), so that a client slow to send its DATA cannot
	// exhaust it and turn a DMARC fail into a temperror. Every query has
	// the resolver's own timeout meanwhile.
	ctx, cancel := context.WithCancel(context.Background())
	msg := &message{cfg: cfg, ctx: ctx, cancel: cancel, start: time.Now(),
		from: strings.Trim(strings.TrimSpace(from), "<>"), spf: make(chan [2]auth.SPFResult, 1)}
	s.msg = msg
	// The goroutine gets copies: the session's fields keep changing.
	go s.f.checkSPF(msg, net.ParseIP(s.ci.ClientIP), s.helo)
	return gomilter.RespContinue, nil
}

// inbound applies the TLS requirement for the sender's domain, if any.
func (s *session) inbound(from string) *gomilter.Response {
	if s.f.Inbound == nil || s.f.Config().outbound(&s.ci) {
		return nil
	}
	// The check has a deadline like every other on the mail path: the
	// message's DNS budget (the inbound service fails open within its own).
	ctx, cancel := context.WithTimeout(context.Background(), s.f.Config().DNSBudget)
	defer cancel()
	action := s.f.Inbound(ctx, map[string]string{
		"sender": strings.Trim(strings.TrimSpace(from), "<>"), "encryption_protocol": s.ci.TLSVersion,
		"client_address": s.ci.ClientIP})
	// A transient refusal is 450, a permanent one 550 (RFC 5321 section
	// 4.2.2); the text keeps the policy's enhanced status code.
	verb, text, _ := strings.Cut(action, " ")
	code := uint16(0)
	switch verb {
	case "DEFER_IF_PERMIT", "DEFER":
		code = 450
	case "REJECT", "550", "554":
		code = 550
	default:
		return nil
	}
	r, err := gomilter.RejectWithCodeAndReason(code, text)
	if err != nil {
		return gomilter.RespTempFail
	}
	return r
}

// checkSPF runs while the client sends the message, so its DNS overlaps
// the data transfer.
func (f *Filter) checkSPF(msg *message, ip net.IP, helo string) {
	var out [2]auth.SPFResult
	defer func() {
		if p := recover(); p != nil {
			f.metrics.Panics.Inc()
			f.log.Error("panic in SPF check", "panic", p)
			out[0] = auth.SPFResult{Identity: auth.SPFMailFrom, Result: auth.SPFTempError, ErrorClass: auth.SPFClassTempError}
		}
		msg.spf <- out
	}()
	if ip == nil {
		out[0] = auth.SPFResult{Identity: auth.SPFMailFrom, Result: auth.SPFNone}
		return
	}
	out[0] = f.spf.CheckMailFrom(msg.ctx, ip, helo, msg.from)
	if msg.cfg.CheckHelo && helo != "" && msg.from != "" {
		out[1] = f.spf.CheckHelo(msg.ctx, ip, helo)
	}
}

func (s *session) RcptTo(rcpt, args string, m gomilter.Modifier) (*gomilter.Response, error) {
	hook("rcpt")
	if msg := s.msg; msg != nil {
		msg.rcpts++
		d := domainPart(strings.Trim(strings.TrimSpace(rcpt), "<>"))
		if d != "" && len(msg.rcptDoms) < maxRcptDomains && !slices.Contains(msg.rcptDoms, d) {
			msg.rcptDoms = append(msg.rcptDoms, d)
		}
	}
	return gomilter.RespContinue, nil
}

func (s *session) Data(m gomilter.Modifier) (*gomilter.Response, error) {
	hook("data")
	return gomilter.RespContinue, nil
}

func (s *session) Header(name, value string, m gomilter.Modifier) (*gomilter.Response, error) {
	hook("header")
	msg := s.msg
	if msg == nil {
		return gomilter.RespContinue, nil
	}
	if msg.dkim == nil {
		msg.dkim = auth.NewDKIMVerifier(msg.ctx, s.f.resolver, msg.cfg.MaxSignatures)
	}
	n := len(name) + len(":") + crlfLen(value) + len("\r\n")
	msg.size += int64(n)
	msg.hdrBytes += n
	if !msg.overHdr && msg.hdrBytes > msg.cfg.MaxHeaderBytes {
		// DKIM needs the whole header block: past the limit no signature
		// is verified (none passes, so DMARC cannot pass by DKIM).
		msg.overHdr = true
		msg.dropHeader()
		msg.dkim.Abandon()
		s.failOpen("header_limit")
	}
	keep := !msg.overHdr
	// From and DKIM-Signature compare as go-msgauth reads names (space
	// before the colon trimmed): a "From :" field is a From field here
	// too. Authentication-Results keeps the exact name, which the
	// occurrence numbers of ChangeHeader count by.
	switch n := strings.TrimSpace(name); {
	case strings.EqualFold(n, "DKIM-Signature"):
		msg.dkimSeen++
		if keep && len(msg.dkimSigs) < msg.cfg.MaxSignatures {
			msg.dkimSigs = append(msg.dkimSigs, value)
		}
	case strings.EqualFold(n, "From"):
		// Kept whatever the header size: enforcement must see every From.
		msg.fromSeen++
		if len(msg.froms) < maxFroms && len(value) <= maxFromBytes {
			msg.froms = append(msg.froms, value)
		} else if len(msg.fromMore) <= maxFromDomains {
			more, _ := auth.FromDomains([]string{value})
			msg.fromMore = append(msg.fromMore, more...)
		}
	case strings.EqualFold(name, "Authentication-Results"):
		msg.arSeen++
		if auth.IsOurs(value, msg.cfg.AuthServID) {
			if len(msg.arIndex) < maxForgedAR {
				msg.arIndex = append(msg.arIndex, msg.arSeen)
			} else if !msg.overAR {
				msg.overAR = true // the rest stay below ours
				s.failOpen("forged_ar_limit")
			}
		}
	}
	if keep {
		msg.writeHeader(name, value)
	}
	return gomilter.RespContinue, nil
}

// dkimFlushAt is how many bytes of header fields are collected before they
// are written to the DKIM verifier. Each write hands the bytes to the
// verifier's goroutine and waits until it has read them: one write per
// header block instead of one per field spares a dozen such handoffs per
// message, now that the MTA does not wait for replies to header fields.
const dkimFlushAt = 32 << 10

var dkimHdrPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// writeHeader adds one field, as it was sent, to the header block for DKIM:
// "name:value" CRLF, with the CRLF line ends that MTAs turn into LF inside
// folded values restored (DKIM's simple canonicalization needs the bytes
// as sent).
func (msg *message) writeHeader(name, value string) {
	if msg.dkimHdr == nil {
		msg.dkimHdr = dkimHdrPool.Get().(*[]byte)
	}
	b := append(*msg.dkimHdr, name...)
	b = append(b, ':')
	b = appendCRLF(b, value)
	*msg.dkimHdr = append(b, '\r', '\n')
	if len(*msg.dkimHdr) >= dkimFlushAt {
		msg.flushHeader()
	}
}

// endHeader writes the header block with the empty line that ends it.
func (msg *message) endHeader() {
	if msg.dkimHdr == nil {
		msg.dkimHdr = dkimHdrPool.Get().(*[]byte)
	}
	*msg.dkimHdr = append(*msg.dkimHdr, '\r', '\n')
	msg.flushHeader()
}

// flushHeader writes the collected header fields to the DKIM verifier.
func (msg *message) flushHeader() {
	if msg.dkimHdr == nil {
		return
	}
	if len(*msg.dkimHdr) > 0 {
		msg.dkim.Write(*msg.dkimHdr)
	}
	msg.dropHeader()
}

// dropHeader gives the header buffer back unwritten.
func (msg *message) dropHeader() {
	if msg.dkimHdr == nil {
		return
	}
	if cap(*msg.dkimHdr) <= 2*dkimFlushAt { // not one held after a huge field
		*msg.dkimHdr = (*msg.dkimHdr)[:0]
		dkimHdrPool.Put(msg.dkimHdr)
	}
	msg.dkimHdr = nil
}

// appendCRLF appends v with every LF not preceded by CR made CRLF.
func appendCRLF(b []byte, v string) []byte {
	for {
		i := strings.IndexByte(v, '\n')
		if i < 0 {
			return append(b, v...)
		}
		b = append(b, v[:i]...)
		if i == 0 || v[i-1] != '\r' {
			b = append(b, '\r')
		}
		b = append(b, '\n')
		v = v[i+1:]
	}
}

// crlfLen is the length of appendCRLF's output for v.
func crlfLen(v string) int {
	n := len(v)
	for i := 0; i < len(v); i++ {
		if v[i] == '\n' && (i == 0 || v[i-1] != '\r') {
			n++
		}
	}
	return n
}

func (s *session) Headers(m gomilter.Modifier) (*gomilter.Response, error) {
	hook("eoh")
	if msg := s.msg; msg != nil {
		if msg.dkim == nil {
			msg.dkim = auth.NewDKIMVerifier(msg.ctx, s.f.resolver, msg.cfg.MaxSignatures)
		}
		msg.endHeader()
	}
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, m gomilter.Modifier) (*gomilter.Response, error) {
	hook("body")
	if msg := s.msg; msg != nil && msg.dkim != nil {
		msg.size += int64(len(chunk))
		msg.flushHeader() // no end of header seen (an MTA's bug): as it came
		msg.dkim.Write(chunk)
	}
	return gomilter.RespContinue, nil
}

func (s *session) Abort(m gomilter.Modifier) error {
	hook("abort")
	s.endMessage()
	return nil
}

func (s *session) Cleanup(m gomilter.Modifier) {
	s.endMessage()
	ci := s.ci
	s.f.record(&measure.Connection{UID: s.uid, Started: s.started, Ended: time.Now(), Direction: s.f.Config().direction(&ci),
		MTA: ci.MTAVersion, Daemon: ci.Daemon, ClientIP: ci.ClientIP, ClientPTR: ci.ClientPTR,
		Helo: s.helo, TLSVersion: ci.TLSVersion, Cipher: ci.Cipher, CipherBits: ci.CipherBits,
		KeyExchange: ci.Suite.KeyExchange, BulkCipher: ci.Suite.Cipher, MAC: ci.Suite.MAC,
		ForwardSecret: ci.Suite.ForwardSecret, ClientCert: ci.CertSubj != "", CertVerify: ci.Verify,
		Authenticated: ci.AuthUser != "", Messages: s.nmsg})
}

// endMessage drops an unfinished transaction (RSET, abort, disconnect).
func (s *session) endMessage() {
	msg := s.msg
	if msg == nil {
		return
	}
	s.msg = nil
	msg.cancel()
	msg.dropHeader()
	if msg.dkim != nil {
		go msg.dkim.Close(nil) // ends the verifier goroutine
	}
}

func (s *session) failOpen(reason string) {
	s.f.metrics.FailOpen.WithLabelValues(reason).Inc()
	if s.msg != nil {
		s.msg.failOpen = append(s.msg.failOpen, reason)
	}
}

func (s *session) record(ev measure.Event) { s.f.record(ev) }

func (f *Filter) record(ev measure.Event) {
	if f.recorder != nil && !f.recorder.Enqueue(ev) {
		f.metrics.FailOpen.WithLabelValues("store_queue_full").Inc()
	}
}
