package maillog

import (
	"strings"
	"sync"
	"time"
)

// Line classes the Parser counts.
const (
	ClassDelivery  = "delivery"
	ClassTLS       = "tls"
	ClassOther     = "other"     // a mail log line of no interest
	ClassMalformed = "malformed" // not a syslog record, or longer than MaxLine
	ClassBroken    = "broken"    // a status or TLS line we could not read, or one over a field limit
)

// MaxLine is the longest log line parsed. Postfix cuts its log records
// at about 2,000 bytes and Sendmail splits long ones, so a longer line
// is not theirs; readers drop the rest of it while reading (LineReader).
const MaxLine = 16 << 10

// maxProcs bounds the per-process TLS state kept between lines: state
// for more smtp processes than this at once is not a log Postfix writes.
const maxProcs = 10000

// Parser turns log lines into deliveries. It keeps per-process TLS state
// to join lines, so feed it one log in order.
//
// Every field a remote party controls is read where the MTA wrote it and
// nowhere else: the reply text after Postfix's status= and Sendmail's
// reply= or stat= is never looked into, addresses are read in their
// quoted external form up to their closing bracket, and the fixed fields
// between them must follow in the MTA's order with their own syntax, or
// the line is broken.
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

// Feed parses one line; it returns the deliveries the line completes:
// one per recipient (a Sendmail line may name several).
func (p *Parser) Feed(s string) ([]*Delivery, string) {
	class, ds := p.feed(strings.TrimRight(s, "\r\n"))
	p.count(class)
	return ds, class
}

// Overlong counts a line a reader cut because it was longer than
// MaxLine: it is malformed, and none of it is parsed.
func (p *Parser) Overlong() { p.count(ClassMalformed) }

func (p *Parser) count(class string) {
	p.mu.Lock()
	p.counts[class]++
	p.mu.Unlock()
}

func (p *Parser) feed(s string) (string, []*Delivery) {
	if len(s) > MaxLine {
		return ClassMalformed, nil
	}
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
		// postfix/smtp, postfix-INSTANCE/smtp and, for master.cf
		// services such as Debian's relay, postfix/relay/smtp.
		class, d := p.postfix(l)
		if d == nil {
			return class, nil
		}
		return class, []*Delivery{d}
	case l.Program == "sendmail" || l.Program == "sm-mta":
		return p.sendmail(l)
	}
	return ClassOther, nil
}

// bound keeps per-process maps from growing without limit on a log that
// is not an MTA's.
func bound[V any](m map[int]V) {
	if len(m) >= maxProcs {
		clear(m)
	}
}
