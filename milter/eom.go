package milter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/measure"
)

func (s *session) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	hook("eom")
	msg := s.msg
	if msg == nil {
		return gomilter.RespAccept, nil
	}
	defer s.endMessage()
	start := time.Now()
	// The DNS budget of SPF and DKIM runs from here (see MailFrom).
	budget := time.AfterFunc(msg.cfg.DNSBudget, msg.cancel)
	defer budget.Stop()
	s.ci.Update(m)
	s.lastQueueID = m.Get("i")
	res := s.evaluate(msg)
	rec := s.newRecord(msg, res)
	msg.rec = rec
	resp := s.decide(msg, res, rec, m)
	s.modify(msg, res, m)
	rec.FailOpen = strings.Join(msg.failOpen, ",")
	s.nmsg++
	s.count(rec)
	s.record(rec)
	s.logMessage(rec)
	if s.f.Watch != nil {
		s.f.Watch(rec.Direction, measure.PeerDomain(rec), rec.ClientIP, rec.TLSVersion != "")
	}
	s.f.metrics.Latency.Observe(time.Since(start).Seconds())
	return resp, nil
}

// evaluate gathers SPF (started at MAIL FROM), DKIM and DMARC. SPF and
// DKIM together wait at most the DNS budget, DMARC has a budget of its own:
// its lookups are of the From domain, the others of names the sender
// chose, which must not be able to use up the time of the policy lookup.
func (s *session) evaluate(msg *message) auth.Results {
	res := auth.Results{AuthServID: msg.cfg.AuthServID, TLS: s.ci.TLSSummary()}
	select {
	case spf := <-msg.spf:
		res.SPF, res.Helo = spf[0], spf[1]
	case <-msg.ctx.Done():
		res.SPF = auth.SPFResult{Identity: auth.SPFMailFrom, Result: auth.SPFTempError, ErrorClass: auth.SPFClassDNSTimeout}
		s.failOpen("dns_budget")
	}
	if msg.dkim == nil { // no header at all
		msg.dkim = auth.NewDKIMVerifier(msg.ctx, s.f.resolver, msg.cfg.MaxSignatures)
	}
	msg.flushHeader() // no end of header seen: as it came
	res.DKIM = msg.dkim.Close(msg.dkimSigs)
	msg.dkim = nil
	if n := msg.dkimSeen - len(msg.dkimSigs); n > 0 {
		res.DKIM = append(res.DKIM, auth.OverLimit(n)) // one record, not n
	}
	msg.fromDomains, msg.fromClass = auth.FromDomains(msg.froms)
	if msg.fromSeen > len(msg.froms) { // fields too many or too long to keep
		msg.fromClass = auth.FromInvalid
		if msg.fromSeen > 1 {
			msg.fromClass = auth.FromMultiple
		}
		for _, d := range msg.fromMore {
			if !slices.Contains(msg.fromDomains, d) {
				msg.fromDomains = append(msg.fromDomains, d)
			}
		}
	}
	from := ""
	if msg.fromClass == "" {
		from = msg.fromDomains[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), msg.cfg.DNSBudget)
	defer cancel()
	res.DMARC = s.f.dmarc.Check(ctx, auth.DMARCInput{FromDomain: from, FromClass: msg.fromClass,
		SPF: res.SPF, DKIMDomains: passingDomains(res.DKIM)})
	if res.DMARC.FromDomain == "" && msg.fromClass != "" {
		res.DMARC.FromDomain = string(msg.fromClass)
	}
	return res
}

func passingDomains(sigs []auth.Signature) []string {
	var passing []string
	for _, sig := range sigs {
		if sig.Result == auth.DKIMPass {
			passing = append(passing, sig.Domain)
		}
	}
	return passing
}

// decide applies the optional enforcement; by default everything is
// accepted.
func (s *session) decide(msg *message, res auth.Results, rec *measure.Message, m gomilter.Modifier) *gomilter.Response {
	rec.Action = measure.ActionAccept
	if rec.Direction != measure.Inbound || !msg.cfg.EnforceDMARC {
		return gomilter.RespAccept
	}
	action, why := s.enforcement(msg, res)
	rec.Action = action
	switch action {
	case measure.ActionAccept:
	case measure.ActionReject:
		// 5.7.1: delivery not authorized, message refused (RFC 3463 section 3.8).
		r, err := gomilter.RejectWithCodeAndReason(550, "5.7.1 rejected by "+why)
		if err != nil {
			return gomilter.RespReject
		}
		return r
	case measure.ActionQuarantine:
		if msg.cfg.QuarantineAction == QuarantineHold {
			m.Quarantine("quarantined by " + why)
		} else {
			m.InsertHeader(0, "X-Snowrain-Quarantine", headerValue(m, why))
		}
	}
	return gomilter.RespAccept
}

// maxFromDomains bounds the DMARC evaluations of one message whose From
// names several domains; a message naming more is rejected outright when
// enforcing, so that the one that matters cannot hide behind the others.
const maxFromDomains = 16

// enforcement returns the strongest action any reason calls for, so that
// the sender cannot pick the branch that skips it: a DMARC fail of any
// From domain enforcement covers, and a From DMARC cannot evaluate
// (missing, repeated, several domains, unparsable: the InvalidFrom action).
func (s *session) enforcement(msg *message, res auth.Results) (action measure.Action, why string) {
	cfg := msg.cfg
	action = measure.ActionAccept
	raise := func(a measure.Action, reason string) {
		if strength(a) > strength(action) {
			action, why = a, reason
		}
	}
	results := []auth.DMARCResult{res.DMARC}
	if msg.fromClass != "" {
		if len(msg.fromDomains) > maxFromDomains {
			raise(measure.ActionReject, fmt.Sprintf("From header naming %d domains", len(msg.fromDomains)))
			return action, why
		}
		results = s.checkEach(msg, res, msg.fromDomains)
	}
	covered := false
	for _, r := range results {
		if !cfg.enforces(r.FromDomain) {
			continue
		}
		covered = true
		if r.Result == auth.DMARCFail {
			raise(actionFor(r.Disposition), "DMARC policy of "+r.FromDomain)
		}
	}
	// With enforce.domains set, a From that names none of them is someone
	// else's business; one that names no domain at all could be anyone's.
	if msg.fromClass != "" && (covered || len(msg.fromDomains) == 0) {
		raise(cfg.InvalidFrom, "DMARC: unusable From header ("+string(msg.fromClass)+")")
	}
	return action, why
}

// actionFor is the action a DMARC disposition (RFC 7489 section 6.6.4)
// calls for.
func actionFor(disposition auth.DMARCPolicy) measure.Action {
	switch disposition {
	case auth.PolicyReject:
		return measure.ActionReject
	case auth.PolicyQuarantine:
		return measure.ActionQuarantine
	case auth.PolicyNone, auth.PolicyAbsent, auth.PolicyInvalid:
	}
	return measure.ActionAccept
}

func strength(action measure.Action) int {
	switch action {
	case measure.ActionReject:
		return 2
	case measure.ActionQuarantine:
		return 1
	case measure.ActionAccept:
	}
	return 0
}

// checkEach evaluates DMARC for each From domain as if it were the only
// one, at once, each with its own budget.
func (s *session) checkEach(msg *message, res auth.Results, domains []string) []auth.DMARCResult {
	out := make([]auth.DMARCResult, len(domains))
	passing := passingDomains(res.DKIM)
	var wg sync.WaitGroup
	for i, d := range domains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					s.f.metrics.Panics.Inc()
					s.f.log.Error("panic in DMARC check", "panic", fmt.Sprint(p))
					out[i] = auth.DMARCResult{FromDomain: d, Result: auth.DMARCTempError}
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), msg.cfg.DNSBudget)
			defer cancel()
			out[i] = s.f.dmarc.Check(ctx, auth.DMARCInput{FromDomain: d, SPF: res.SPF, DKIMDomains: passing})
		}()
	}
	wg.Wait()
	return out
}

// modify removes forged Authentication-Results carrying our authserv-id
// and prepends ours.
func (s *session) modify(msg *message, res auth.Results, m gomilter.Modifier) {
	// Delete from the last occurrence so earlier indexes stay valid.
	for i := len(msg.arIndex) - 1; i >= 0; i-- {
		if err := m.ChangeHeader(msg.arIndex[i], "Authentication-Results", ""); err != nil {
			s.f.log.Warn("removing forged Authentication-Results", "err", err)
		}
	}
	if err := m.InsertHeader(0, "Authentication-Results", headerValue(m, auth.FormatAuthResults(res))); err != nil {
		s.f.log.Warn("adding Authentication-Results", "err", err)
	}
}

func (s *session) newRecord(msg *message, res auth.Results) *measure.Message {
	cfg := msg.cfg
	rec := &measure.Message{ConnUID: s.uid, Received: msg.start, Direction: cfg.direction(&s.ci),
		QueueID: clean(s.queueID()), ClientIP: s.ci.ClientIP, RcptCount: msg.rcpts,
		MailFromDomain: domainPart(msg.from), Size: msg.size,
		TLSVersion: s.ci.TLSVersion, Cipher: s.ci.Cipher, ForwardSecret: s.ci.Suite.ForwardSecret,
		SPFResult: res.SPF.Result, SPFClass: res.SPF.ErrorClass, SPFDomain: res.SPF.Domain,
		HeloSPFResult: res.Helo.Result, HeloSPFClass: res.Helo.ErrorClass,
		DKIMResult: auth.DKIMVerdict(res.DKIM), DMARCResult: res.DMARC.Result,
		DMARCPolicy: res.DMARC.Policy, DMARCDisposition: res.DMARC.Disposition,
		DMARCRecord: res.DMARC.RecordDomain, DMARCPublished: res.DMARC.Record, SPFAligned: res.DMARC.SPFAligned,
		DKIMAligned: res.DMARC.DKIMAligned}
	rec.FromClass = msg.fromClass
	if msg.fromClass == "" {
		rec.FromDomain = msg.fromDomains[0]
	}
	rec.AuthClass = auth.AuthClass(rec.DKIMResult, rec.SPFResult)
	if cfg.StoreLocalparts {
		rec.MailFromLocal = localPart(msg.from)
	}
	rec.RcptDomains = msg.rcptDoms
	for _, sg := range res.DKIM {
		rec.Signatures = append(rec.Signatures, measure.Signature{Domain: sg.Domain,
			Selector: sg.Selector, Algorithm: sg.Algorithm, KeyBits: sg.KeyBits,
			Result: sg.Result, Class: sg.Class, Detail: sg.Detail})
	}
	return rec
}

func (s *session) queueID() string { return s.lastQueueID }

// recordPanicked records a message whose end-of-message handler panicked,
// so the accepted mail is still counted.
func (s *session) recordPanicked() {
	msg := s.msg
	if msg == nil {
		return
	}
	rec := msg.rec
	if rec == nil {
		rec = &measure.Message{ConnUID: s.uid, Received: msg.start, Direction: measure.Inbound,
			ClientIP: s.ci.ClientIP, MailFromDomain: domainPart(msg.from), TLSVersion: s.ci.TLSVersion,
			Cipher: s.ci.Cipher, RcptCount: msg.rcpts}
	}
	rec.Action = measure.ActionAccept
	rec.FailOpen = strings.Join(msg.failOpen, ",")
	s.nmsg++
	s.count(rec)
	s.record(rec)
	s.endMessage()
}

func (s *session) count(rec *measure.Message) {
	mt := s.f.metrics
	mt.Messages.WithLabelValues(string(rec.Direction), string(rec.Action)).Inc()
	mt.Verdicts.WithLabelValues("spf", string(rec.SPFResult)).Inc()
	mt.Verdicts.WithLabelValues("dkim", string(rec.DKIMResult)).Inc()
	mt.Verdicts.WithLabelValues("dmarc", string(rec.DMARCResult)).Inc()
	mt.Verdicts.WithLabelValues("auth", string(rec.AuthClass)).Inc()
	mt.Classes.WithLabelValues("dmarc_policy", string(rec.DMARCPolicy)).Inc()
	if rec.SPFClass != "" {
		mt.Classes.WithLabelValues("spf", string(rec.SPFClass)).Inc()
	}
	for _, sg := range rec.Signatures {
		if sg.Class != "" {
			mt.Classes.WithLabelValues("dkim", string(sg.Class)).Inc()
		}
	}
}

func domainPart(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return clean(strings.ToLower(strings.TrimSuffix(addr[i+1:], ".")))
}

func localPart(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return clean(addr)
	}
	return clean(addr[:i])
}

// headerValue adds the space after the colon ourselves when the MTA agreed
// to pass header values verbatim (SMFIP_HDR_LEADSPC): it then writes ours
// verbatim too.
func headerValue(m gomilter.Modifier, v string) string {
	if m.Protocol()&gomilter.OptHeaderLeadingSpace != 0 {
		return " " + v
	}
	return v
}
