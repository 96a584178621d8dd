package maillog

import (
	"strconv"
	"strings"
)

// pfLevels are the first words of Postfix's TLS line, by level.
var pfLevels = []string{"Anonymous", "Untrusted", "Trusted", "Verified"}

// Limits of the fields read, beyond those of RFC 5321 (delivery.go).
const (
	maxRelay = 320 // host name, address and port
	maxWord  = 20
)

// postfixTLSFields reads "Trusted TLS connection established to
// mx.example.org[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
// (256/256 bits) key-exchange …". The host name is the receiver's (from
// its DNS); it is kept only to join the status line of the same
// connection, and may not contain a space.
func postfixTLSFields(msg string) (tlsState, bool) {
	c := newCursor(msg)
	level := c.oneOf(pfLevels...)
	c.must(" TLS connection established to ")
	relay := c.s
	c.span(1, maxRelay, isHostChar)
	c.must("[")
	c.span(1, 45, isAddrChar)
	c.must("]")
	if c.opt(":") {
		c.span(1, 5, isDigit)
	}
	relay = relay[:len(relay)-len(c.s)]
	c.must(": ")
	version := c.oneOf(tlsVersions...)
	c.must(" with cipher ")
	cipher := c.span(1, maxCipher, isCipher)
	c.must(" (")
	bits, _ := strconv.Atoi(c.span(1, 4, isDigit))
	c.must("/")
	c.span(1, 4, isDigit)
	c.must(" bits)")
	if !c.ok || c.s != "" && c.s[0] != ' ' {
		return tlsState{}, false
	}
	return tlsState{relay: relay, version: version, cipher: cipher, bits: bits, level: Level(strings.ToLower(level))}, true
}

// pfFields are the fields Postfix writes (log_adhoc.c) between the
// recipient addresses and the reply text.
type pfFields struct {
	relay, connUse, delay, tls, dsn, word string
	hasTLS                                bool // a tls= field, even empty
}

// postfixFields reads, in their order and syntax, relay=, conn_use=,
// delay=, delays=, fields of later versions such as 3.11's tls=, dsn=
// and the status word. What follows "status=WORD (" is the reply text,
// read by nobody: not even to reject the line, since an on-path attacker
// who strips STARTTLS also writes the reply and could then hide the
// plaintext delivery from downgrade detection.
//
// The addresses before it are read up to their closing bracket, which
// relies on Postfix quoting local parts with specials
// (info_log_address_format = external, the default since 3.5; Postfix
// 3.7 logs `to=<"a>, b"@example.org>`). With "internal", a local part
// chosen by a sender (or by a remote party, as a bounce address) can
// imitate these fields: keep the default.
func postfixFields(s string) (pfFields, bool) {
	var f pfFields
	c := newCursor(s)
	c.must(", relay=")
	f.relay = c.span(1, maxRelay, isToken)
	c.must(", ")
	if c.opt("conn_use=") {
		f.connUse = c.span(1, 9, isDigit)
		c.must(", ")
	}
	c.must("delay=")
	f.delay = c.span(1, 16, isNumber)
	c.must(", delays=")
	for i := 0; i < 4; i++ {
		if i > 0 {
			c.must("/")
		}
		c.span(1, 16, isNumber)
	}
	c.must(", ")
	f.tls, f.hasTLS = c.extras("dsn=")["tls"]
	c.must("dsn=")
	f.dsn = c.dsn()
	c.must(", status=")
	f.word = c.span(1, maxWord, isAlpha)
	if !c.ok || c.s != "" && !strings.HasPrefix(c.s, " (") {
		return f, false
	}
	return f, true
}

func (p *Parser) postfix(l Line) (string, *Delivery) {
	if strings.Contains(l.Message, "TLS connection established to ") {
		t, ok := postfixTLSFields(l.Message)
		if !ok {
			return ClassBroken, nil
		}
		bound(p.pfFresh)
		p.pfFresh[l.PID] = t
		return ClassTLS, nil
	}
	qid, rest, ok := strings.Cut(l.Message, ": ")
	if !ok || !strings.HasPrefix(rest, "to=<") || !validQueueID(qid) {
		if ok && strings.HasPrefix(rest, "to=<") {
			return ClassBroken, nil
		}
		return ClassOther, nil
	}
	to, rest, ok := scanAngle(rest[len("to=<"):])
	if !ok {
		return ClassBroken, nil
	}
	if r, found := strings.CutPrefix(rest, ", orig_to=<"); found {
		if _, rest, ok = scanAngle(r); !ok {
			return ClassBroken, nil
		}
	}
	f, ok := postfixFields(rest)
	if !ok {
		return ClassBroken, nil
	}
	status, class := postfixStatus(f.word)
	if status == "" {
		return class, nil
	}
	domain, ok := addrDomain(to)
	if !ok {
		return ClassBroken, nil
	}
	d := &Delivery{Time: l.Time, MTA: "postfix", QueueID: qid, Domain: domain, Status: status, DSN: f.dsn, Level: LevelNone}
	d.Delay, _ = strconv.ParseFloat(f.delay, 64)
	d.RelayHost, d.RelayIP, d.RelayPort = splitRelay(f.relay)
	d.ConnUse, _ = strconv.Atoi(f.connUse)
	if t, ok := p.postfixTLS(l.PID, qid, f.relay, f.connUse != ""); ok {
		d.setTLS(t)
	}
	if f.hasTLS {
		applyTLSField(d, f.tls)
	}
	return ClassDelivery, d
}

// postfixStatus maps Postfix's status word to a delivery status; address
// verification probes (deliverable, undeliverable) deliver nothing.
func postfixStatus(word string) (status Status, class string) {
	switch word {
	case "sent":
		return StatusSent, ClassDelivery
	case "deferred", "SOFTBOUNCE": // soft_bounce = yes turns bounces into deferrals
		return StatusDeferred, ClassDelivery
	case "bounced":
		return StatusBounced, ClassDelivery
	case "deliverable", "undeliverable", "expired":
		return "", ClassOther
	}
	return "", ClassBroken
}

// scanAngle reads an address in RFC 5321 external form from just after
// its "<" to its closing ">", as Postfix logs it: a local part with
// specials is quoted, so outside quotes there is no space, comma or
// angle bracket. It returns the address and what follows the ">".
func scanAngle(s string) (addr, rest string, ok bool) {
	quoted := false
	for i := 0; i < len(s) && i <= MaxPath; i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "", "", false
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '>':
			return s[:i], s[i+1:], true
		case c == '<' || c == ',' || c == ' ':
			return "", "", false
		}
	}
	return "", "", false
}

// postfixTLS finds the TLS state of a status line's connection: a fresh
// handshake by the same process to the same relay, or the one an earlier
// recipient of the same message or connection (conn_use=) used.
func (p *Parser) postfixTLS(pid int, qid, relay string, reused bool) (tlsState, bool) {
	if t, ok := p.pfFresh[pid]; ok && t.relay == relay {
		delete(p.pfFresh, pid)
		bound(p.pfUsed)
		p.pfUsed[pid] = usedState{queueID: qid, tls: t}
		return t, true
	}
	u, ok := p.pfUsed[pid]
	if ok && u.tls.relay == relay && (u.queueID == qid || reused) {
		u.queueID = qid
		p.pfUsed[pid] = u
		return u.tls, true
	}
	delete(p.pfUsed, pid)
	return tlsState{}, false
}

// applyTLSField reads Postfix 3.11's tls= field (smtp_log_tls_feature_status):
// the security level in force, "!level" when it was downgraded.
func applyTLSField(d *Delivery, v string) {
	level, downgrade, _ := strings.Cut(v, "!")
	level, _, _ = strings.Cut(level, ":")
	if downgrade != "" {
		level, _, _ = strings.Cut(downgrade, ":")
	}
	switch level {
	case "none", "":
		*d = Delivery{Time: d.Time, MTA: d.MTA, QueueID: d.QueueID, Domain: d.Domain, RelayHost: d.RelayHost,
			RelayIP: d.RelayIP, RelayPort: d.RelayPort, Status: d.Status, DSN: d.DSN, Delay: d.Delay, Level: LevelNone}
	case "dane", "dane-only":
		d.Level = LevelDANE
	case "verify", "secure":
		if d.Level != LevelNone {
			d.Level = LevelVerified
		}
	}
}
