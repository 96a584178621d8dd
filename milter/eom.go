package milter

import (
	"strings"
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

// evaluate gathers SPF (started at MAIL FROM), DKIM and DMARC. Each waits
// at most for the message's DNS budget.
func (s *session) evaluate(msg *message) auth.Results {
	res := auth.Results{AuthServID: msg.cfg.AuthServID, TLS: s.ci.TLSSummary()}
	select {
	case spf := <-msg.spf:
		res.SPF, res.Helo = spf[0], spf[1]
	case <-msg.ctx.Done():
		res.SPF = auth.SPFResult{Identity: "mailfrom", Result: "temperror", ErrorClass: auth.SPFDNSTimeout}
		s.failOpen("dns_budget")
	}
	if msg.dkim == nil { // no header at all
		msg.dkim = auth.NewDKIMVerifier(msg.ctx, s.f.resolver, msg.cfg.MaxSignatures)
	}
	res.DKIM = msg.dkim.Close(msg.dkimSigs)
	msg.dkim = nil
	from, class := auth.FromDomain(msg.froms)
	var passing []string
	for _, sig := range res.DKIM {
		if sig.Result == "pass" {
			passing = append(passing, sig.Domain)
		}
	}
	res.DMARC = s.f.dmarc.Check(msg.ctx, auth.DMARCInput{FromDomain: from, FromClass: class,
		SPF: res.SPF, DKIMDomains: passing})
	if res.DMARC.FromDomain == "" && class != "" {
		res.DMARC.FromDomain = class
	}
	return res
}

// decide applies the optional enforcement; by default everything is
// accepted.
func (s *session) decide(msg *message, res auth.Results, rec *measure.Message, m gomilter.Modifier) *gomilter.Response {
	rec.Action = "accept"
	if rec.Direction != "inbound" || !msg.cfg.enforces(res.DMARC.FromDomain) || res.DMARC.Result != "fail" {
		return gomilter.RespAccept
	}
	switch res.DMARC.Disposition {
	case auth.PolicyReject:
		rec.Action = "reject"
		r, err := gomilter.RejectWithCodeAndReason(550, "5.7.1 rejected by DMARC policy of "+res.DMARC.FromDomain)
		if err != nil {
			return gomilter.RespReject
		}
		return r
	case auth.PolicyQuarantine:
		rec.Action = "quarantine"
		if msg.cfg.QuarantineAction == "hold" {
			m.Quarantine("DMARC quarantine policy of " + res.DMARC.FromDomain)
		} else {
			m.InsertHeader(0, "X-Snowrain-Quarantine", headerValue(m, "DMARC policy of "+res.DMARC.FromDomain))
		}
	}
	return gomilter.RespAccept
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
	dir := "inbound"
	if cfg.outbound(&s.ci) {
		dir = "outbound"
	}
	rec := &measure.Message{ConnUID: s.uid, Received: msg.start, Direction: dir,
		QueueID: clean(s.queueID()), ClientIP: s.ci.ClientIP, RcptCount: len(msg.rcpts),
		MailFromDomain: domainPart(msg.from), Size: msg.size,
		TLSVersion: s.ci.TLSVersion, Cipher: s.ci.Cipher, ForwardSecret: s.ci.Suite.ForwardSecret,
		SPFResult: res.SPF.Result, SPFClass: res.SPF.ErrorClass, SPFDomain: res.SPF.Domain,
		HeloSPFResult: res.Helo.Result, HeloSPFClass: res.Helo.ErrorClass,
		DKIMResult: auth.DKIMVerdict(res.DKIM), DMARCResult: res.DMARC.Result,
		DMARCPolicy: res.DMARC.Policy, DMARCDisposition: res.DMARC.Disposition,
		DMARCRecord: res.DMARC.RecordDomain, SPFAligned: res.DMARC.SPFAligned,
		DKIMAligned: res.DMARC.DKIMAligned}
	rec.FromDomain, rec.FromClass = auth.FromDomain(msg.froms)
	rec.AuthClass = auth.AuthClass(rec.DKIMResult, rec.SPFResult)
	if cfg.StoreLocalparts {
		rec.MailFromLocal = localPart(msg.from)
	}
	seen := map[string]bool{}
	for _, r := range msg.rcpts {
		if d := domainPart(r); d != "" && !seen[d] {
			seen[d] = true
			rec.RcptDomains = append(rec.RcptDomains, d)
		}
	}
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
		rec = &measure.Message{ConnUID: s.uid, Received: msg.start, Direction: "inbound",
			ClientIP: s.ci.ClientIP, MailFromDomain: domainPart(msg.from), TLSVersion: s.ci.TLSVersion,
			Cipher: s.ci.Cipher, RcptCount: len(msg.rcpts)}
	}
	rec.Action = "accept"
	rec.FailOpen = strings.Join(msg.failOpen, ",")
	s.nmsg++
	s.count(rec)
	s.record(rec)
	s.endMessage()
}

func (s *session) count(rec *measure.Message) {
	mt := s.f.metrics
	mt.Messages.WithLabelValues(rec.Direction, rec.Action).Inc()
	mt.Verdicts.WithLabelValues("spf", rec.SPFResult).Inc()
	mt.Verdicts.WithLabelValues("dkim", rec.DKIMResult).Inc()
	mt.Verdicts.WithLabelValues("dmarc", rec.DMARCResult).Inc()
	mt.Verdicts.WithLabelValues("auth", rec.AuthClass).Inc()
	mt.Classes.WithLabelValues("dmarc_policy", rec.DMARCPolicy).Inc()
	if rec.SPFClass != "" {
		mt.Classes.WithLabelValues("spf", rec.SPFClass).Inc()
	}
	for _, sg := range rec.Signatures {
		if sg.Class != "" {
			mt.Classes.WithLabelValues("dkim", sg.Class).Inc()
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
