package maillog

import (
	"strconv"
	"strings"
)

// sendmailTLSFields reads "STARTTLS=client, relay=mx.example.org.,
// version=TLSv1.3, verify=OK, cipher=TLS_AES_256_GCM_SHA384,
// bits=256/256", the whole line in this order: the relay name is the
// receiver's and may not carry another field.
func sendmailTLSFields(msg string) (tlsState, bool) {
	c := newCursor(msg)
	c.must("STARTTLS=client, relay=")
	relay := c.span(1, maxRelay, isToken)
	c.must(", version=")
	version := c.oneOf(tlsVersions...)
	c.must(", verify=")
	verify := c.span(1, maxWord, isUpper)
	c.must(", cipher=")
	cipher := c.span(1, maxCipher, isCipher)
	c.must(", bits=")
	bits, _ := strconv.Atoi(c.span(1, 4, isDigit))
	c.must("/")
	c.span(1, 4, isDigit)
	if !c.ok || c.s != "" {
		return tlsState{}, false
	}
	return tlsState{relay: relayHost(relay), version: version, cipher: cipher, bits: bits, level: sendmailLevel(verify)}, true
}

// smFields are what Sendmail's logdelivery() writes after the recipients
// (and ctladdr=).
type smFields struct {
	mailer, relay, dsn string
	stat               string // stat='s first word, when stat= follows the fixed fields
}

// sendmailFields reads delay=, xdelay=, mailer=, pri=, relay=, then
// fields such as dsn=, up to reply= or stat=. The reply= text (the
// receiver's words, in 8.17 on every error, before stat=) and the stat=
// text are last and read by nobody, but for stat='s first word when stat=
// comes right after the fixed fields.
func sendmailFields(s string) (smFields, bool) {
	var f smFields
	c := newCursor(s)
	c.must("delay=")
	c.span(8, 16, isDelay)
	c.must(", ")
	if c.opt("xdelay=") {
		c.span(8, 16, isDelay)
		c.must(", ")
	}
	c.must("mailer=")
	f.mailer = c.span(1, 32, isMailer)
	c.must(", pri=")
	c.span(1, 20, isDigit)
	c.must(", ")
	if c.opt("relay=") {
		start := c.s
		if c.opt("[") {
			c.span(1, 50, isAddrChar)
			c.must("]")
		} else {
			c.span(1, MaxDomain+1, isHostChar)
		}
		if c.opt(" [") {
			c.span(1, 50, isAddrChar)
			c.must("]")
		}
		f.relay = start[:len(start)-len(c.s)]
		c.must(", ")
	}
	f.dsn = c.extras("reply=", "stat=")["dsn"]
	if c.opt("stat=") {
		f.stat = c.span(0, maxWord, isAlpha)
		c.ok = true // a longer word is no status word
	} else {
		c.must("reply=")
	}
	return f, c.ok
}

func isDelay(b byte) bool  { return isDigit(b) || b == ':' || b == '+' }
func isMailer(b byte) bool { return isAlpha(b) || isDigit(b) || strings.IndexByte("_*.+-", b) >= 0 }

func (p *Parser) sendmail(l Line) (string, []*Delivery) {
	if strings.HasPrefix(l.Message, "STARTTLS=client") {
		return p.sendmailTLSLine(l), nil
	}
	qid, rest, ok := strings.Cut(l.Message, ": ")
	if !ok || !strings.HasPrefix(rest, "to=") {
		return ClassOther, nil
	}
	if !validQueueID(qid) {
		return ClassBroken, nil
	}
	rcpts, rest, ok := scanList(rest[len("to="):])
	if !ok {
		return ClassBroken, nil
	}
	if r, found := strings.CutPrefix(rest, "ctladdr="); found {
		if _, rest, ok = scanList(r); !ok {
			return ClassBroken, nil
		}
	}
	f, ok := sendmailFields(rest)
	if !ok {
		return ClassBroken, nil
	}
	switch f.mailer {
	case "local", "prog", "*file*", "*include*":
		return ClassOther, nil
	}
	dsn, relay := f.dsn, f.relay
	if dsn != "" && newCursor(dsn).dsn() != dsn {
		return ClassBroken, nil
	}
	status, class := sendmailStatus(f.stat, dsn)
	if status == "" {
		return class, nil
	}
	host, ip, port := splitRelay(relay)
	var t tlsState
	hasTLS := false
	if s, ok := p.smTLS[l.PID]; ok && s.relay == host && host != "" {
		t, hasTLS = s, true
	}
	var out []*Delivery
	for _, r := range rcpts {
		domain, ok := addrDomain(strings.TrimSuffix(strings.TrimPrefix(r, "<"), ">"))
		if !ok {
			continue // "root", or an address Sendmail cut short with "..."
		}
		d := &Delivery{Time: l.Time, MTA: "sendmail", QueueID: qid, Domain: domain, Status: status, DSN: dsn,
			Level: LevelNone, RelayHost: host, RelayIP: ip, RelayPort: port}
		if hasTLS {
			d.setTLS(t)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return ClassBroken, nil
	}
	return ClassDelivery, out
}

func (p *Parser) sendmailTLSLine(l Line) string {
	t, ok := sendmailTLSFields(l.Message)
	if !ok {
		if strings.HasPrefix(l.Message, "STARTTLS=client, relay=") {
			return ClassBroken
		}
		return ClassOther // error reports, certificate details
	}
	bound(p.smTLS)
	p.smTLS[l.PID] = t
	return ClassTLS
}

// scanList reads Sendmail's comma-separated address list (to=, ctladdr=)
// up to the ", " that ends the field. Quoted strings, angle brackets and
// comments are skipped whole, so a quoted local part cannot end the list
// early. It returns the elements and what follows the ", ".
func scanList(s string) (elems []string, rest string, ok bool) {
	quoted := false
	angle, paren := 0, 0
	start := 0
	for i := 0; i < len(s) && i <= MaxLine; i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return nil, "", false
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case c == '(':
			paren++
		case c == ')' && paren > 0:
			paren--
		case c == ',' && angle == 0 && paren == 0:
			elems = append(elems, strings.TrimSpace(s[start:i]))
			if i+1 < len(s) && s[i+1] == ' ' {
				return elems, s[i+2:], true
			}
			start = i + 1
		}
	}
	return nil, "", false
}

func sendmailLevel(verify string) Level {
	switch verify {
	case "OK":
		return LevelTrusted
	case "FAIL":
		return LevelUntrusted
	}
	return LevelAnonymous // NO, NONE, NOT, …: the certificate was not checked
}

// sendmailStatus reads stat='s first word when stat= follows the fixed
// fields, else the DSN class (RFC 3463 §3.1). "queued" is no attempt.
func sendmailStatus(stat, dsn string) (status Status, class string) {
	switch stat {
	case "Sent":
		return StatusSent, ClassDelivery
	case "Deferred":
		return StatusDeferred, ClassDelivery
	case "queued", "quarantined":
		return "", ClassOther
	}
	switch {
	case strings.HasPrefix(dsn, "2."):
		return StatusSent, ClassDelivery
	case strings.HasPrefix(dsn, "4."):
		return StatusDeferred, ClassDelivery
	case strings.HasPrefix(dsn, "5."), stat != "":
		return StatusBounced, ClassDelivery
	}
	return "", ClassBroken
}
