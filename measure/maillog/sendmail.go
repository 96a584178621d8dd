package maillog

import (
	"regexp"
	"strconv"
	"strings"
)

// Sendmail: "STARTTLS=client, relay=mx.example.org., version=TLSv1.3,
// verify=OK, cipher=TLS_AES_256_GCM_SHA384, bits=256/256", the whole line
// in this order: the relay name is the receiver's and may not carry
// another field.
var smTLS = regexp.MustCompile(`^STARTTLS=client, relay=([^\s,]{1,257}), version=(SSLv3|TLSv1(?:\.[0-3])?), ` +
	`verify=([A-Z]{1,16}), cipher=([A-Za-z0-9_-]{1,64}), bits=(\d{1,4})/\d{1,4}$`)

// smFixed matches what Sendmail's logdelivery() writes after the
// recipients (and ctladdr=): delay=, xdelay=, mailer=, pri=, relay=,
// then fields such as dsn=, up to reply= or stat=. The reply= text (the
// receiver's words, in 8.17 on every error) and the stat= text are last
// and read by nobody but for stat='s first word when it comes first.
var smFixed = regexp.MustCompile(`^delay=(?:\d{1,5}\+)?\d\d:\d\d:\d\d, (?:xdelay=(?:\d{1,5}\+)?\d\d:\d\d:\d\d, )?` +
	`mailer=([A-Za-z0-9_*.+-]{1,32}), pri=\d{1,20}, ` +
	`(?:relay=((?:[^\s,\[\]]{1,256}|\[[0-9A-Fa-f:.IPv]{1,50}\])(?: \[(?:IPv6:)?[0-9A-Fa-f:.]{1,45}\])?), )?` +
	`((?:[a-z_]{1,20}=[^\s,()<>"]{0,64}, ){0,8})(reply|stat)=`)

var smStatWord = regexp.MustCompile(`^[A-Za-z]{1,20}`)

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
	m := smFixed.FindStringSubmatch(rest)
	if m == nil {
		return ClassBroken, nil
	}
	mailer, relay, extra, last := m[1], m[2], m[3], m[4]
	switch mailer {
	case "local", "prog", "*file*", "*include*":
		return ClassOther, nil
	}
	var dsn string
	for _, f := range strings.Split(strings.TrimSuffix(extra, ", "), ", ") {
		k, v, _ := strings.Cut(f, "=")
		if k == "reply" || k == "stat" {
			// A reply of one word ("451") looks like a field: what
			// follows it is the receiver's, so stat= is not read.
			last = "reply"
			break
		}
		if k == "dsn" {
			dsn = v
		}
	}
	stat := ""
	if last == "stat" {
		stat = smStatWord.FindString(rest[len(m[0]):])
	}
	status, class := sendmailStatus(stat, dsn)
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
	m := smTLS.FindStringSubmatch(l.Message)
	if m == nil {
		if strings.HasPrefix(l.Message, "STARTTLS=client, relay=") {
			return ClassBroken
		}
		return ClassOther // error reports, certificate details
	}
	bits, _ := strconv.Atoi(m[5])
	bound(p.smTLS)
	p.smTLS[l.PID] = tlsState{relay: relayHost(m[1]), version: m[2], cipher: m[4], bits: bits, level: sendmailLevel(m[3])}
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

func sendmailLevel(verify string) string {
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
func sendmailStatus(stat, dsn string) (status, class string) {
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
