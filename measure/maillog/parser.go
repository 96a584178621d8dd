package maillog

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Line classes the Parser counts.
const (
	ClassDelivery  = "delivery"
	ClassTLS       = "tls"
	ClassOther     = "other"     // a mail log line of no interest
	ClassMalformed = "malformed" // not a syslog record
	ClassBroken    = "broken"    // a status or TLS line we could not read
)

// Parser turns log lines into deliveries. It keeps per-process TLS state
// to join lines, so feed it one log in order.
type Parser struct {
	// Loc is the zone of classic syslog timestamps; nil means local.
	Loc *time.Location
	// Now gives the year of classic timestamps; nil means time.Now.
	Now func() time.Time

	mu     sync.Mutex // guards counts, read by metrics while Feed runs
	counts map[string]int64
	// Postfix: TLS state by smtp process, fresh until a status line uses it.
	pfFresh map[int]tlsState
	// Postfix: state in use by process and queue ID (several recipients,
	// or a reused connection, share it).
	pfUsed map[int]usedState
	// Sendmail: TLS state by process.
	smTLS map[int]tlsState
}

type usedState struct {
	queueID string
	tls     tlsState
}

// NewParser returns a Parser.
func NewParser() *Parser {
	return &Parser{counts: map[string]int64{}, pfFresh: map[int]tlsState{},
		pfUsed: map[int]usedState{}, smTLS: map[int]tlsState{}}
}

// Counts returns how many lines of each class were fed.
func (p *Parser) Counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Feed parses one line; it returns a delivery when the line completes one.
func (p *Parser) Feed(s string) (*Delivery, string) {
	class, d := p.feed(strings.TrimRight(s, "\r\n"))
	p.mu.Lock()
	p.counts[class]++
	p.mu.Unlock()
	return d, class
}

func (p *Parser) feed(s string) (string, *Delivery) {
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	loc := p.Loc
	if loc == nil {
		loc = time.Local
	}
	l, err := ParseSyslog(s, now, loc)
	if err != nil {
		return ClassMalformed, nil
	}
	switch {
	case strings.HasPrefix(l.Program, "postfix") && strings.HasSuffix(l.Program, "/smtp"):
		return p.postfix(l)
	case l.Program == "sendmail" || l.Program == "sm-mta":
		return p.sendmail(l)
	}
	return ClassOther, nil
}

// Postfix: "Trusted TLS connection established to mx.example.org[192.0.2.1]:25:
// TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange …"
var pfTLS = regexp.MustCompile(`^(Anonymous|Untrusted|Trusted|Verified) TLS connection established to (\S+?): (\S+) with cipher (\S+) \((\d+)/\d+ bits\)`)

func (p *Parser) postfix(l Line) (string, *Delivery) {
	if strings.Contains(l.Message, "TLS connection established to ") {
		m := pfTLS.FindStringSubmatch(l.Message)
		if m == nil {
			return ClassBroken, nil
		}
		bits, _ := strconv.Atoi(m[5])
		p.pfFresh[l.PID] = tlsState{relay: m[2], version: m[3], cipher: m[4], bits: bits, level: strings.ToLower(m[1])}
		return ClassTLS, nil
	}
	qid, rest, ok := strings.Cut(l.Message, ": ")
	if !ok || !strings.HasPrefix(rest, "to=") || !strings.Contains(rest, "status=") {
		return ClassOther, nil
	}
	f := fields(rest)
	d := &Delivery{Time: l.Time, MTA: "postfix", QueueID: qid, Domain: recipientDomain(f["to"]),
		DSN: f["dsn"], Level: LevelNone}
	d.Status, _, _ = strings.Cut(f["status"], " ")
	d.Delay, _ = strconv.ParseFloat(f["delay"], 64)
	d.RelayHost, d.RelayIP, d.RelayPort = splitRelay(f["relay"])
	if d.Domain == "" || d.Status == "" {
		return ClassBroken, nil
	}
	if t, ok := p.postfixTLS(l.PID, qid, f); ok {
		d.setTLS(t)
	}
	if lvl, ok := f["tls"]; ok {
		applyTLSField(d, lvl)
	}
	return ClassDelivery, d
}

// postfixTLS finds the TLS state of a status line's connection: a fresh
// handshake by the same process to the same relay, or the one an earlier
// recipient of the same message or connection (conn_use=) used.
func (p *Parser) postfixTLS(pid int, qid string, f map[string]string) (tlsState, bool) {
	relay := f["relay"]
	if t, ok := p.pfFresh[pid]; ok && t.relay == relay {
		delete(p.pfFresh, pid)
		p.pfUsed[pid] = usedState{queueID: qid, tls: t}
		return t, true
	}
	u, ok := p.pfUsed[pid]
	if ok && u.tls.relay == relay && (u.queueID == qid || f["conn_use"] != "") {
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

// Sendmail: "STARTTLS=client, relay=mx.example.org., version=TLSv1.3,
// verify=OK, cipher=TLS_AES_256_GCM_SHA384, bits=256/256"
func (p *Parser) sendmail(l Line) (string, *Delivery) {
	if strings.HasPrefix(l.Message, "STARTTLS=client") {
		f := fields(l.Message)
		if f["version"] == "" || f["cipher"] == "" {
			return ClassBroken, nil
		}
		bits, _ := strconv.Atoi(strings.SplitN(f["bits"], "/", 2)[0])
		p.smTLS[l.PID] = tlsState{relay: strings.TrimSuffix(f["relay"], "."), version: f["version"],
			cipher: f["cipher"], bits: bits, level: sendmailLevel(f["verify"])}
		return ClassTLS, nil
	}
	qid, rest, ok := strings.Cut(l.Message, ": ")
	if !ok || !strings.HasPrefix(rest, "to=") || !strings.Contains(rest, "stat=") {
		return ClassOther, nil
	}
	f := fields(rest)
	if m := f["mailer"]; m == "local" || m == "prog" || m == "*file*" {
		return ClassOther, nil
	}
	d := &Delivery{Time: l.Time, MTA: "sendmail", QueueID: qid, Domain: recipientDomain(strings.Split(f["to"], ",")[0]),
		DSN: f["dsn"], Level: LevelNone, Status: sendmailStatus(f["stat"], f["dsn"])}
	d.RelayHost, d.RelayIP, d.RelayPort = splitRelay(f["relay"])
	if d.Domain == "" {
		return ClassBroken, nil
	}
	if t, ok := p.smTLS[l.PID]; ok && strings.EqualFold(t.relay, d.RelayHost) {
		d.setTLS(t)
	}
	return ClassDelivery, d
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

func sendmailStatus(stat, dsn string) string {
	switch {
	case strings.HasPrefix(stat, "Sent"):
		return "sent"
	case strings.HasPrefix(stat, "Deferred"), strings.HasPrefix(dsn, "4"):
		return "deferred"
	}
	return "bounced"
}
