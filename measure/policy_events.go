package measure

import (
	"database/sql/driver"
	"strings"
	"time"
)

// PolicyDecision is one answer of the TLS policy services (the socketmap
// for outbound mail, the delegation service and the milter's MAIL FROM
// check for inbound), recorded through the Writer so that a decision
// never waits for the disk.
type PolicyDecision struct {
	At      time.Time
	Domain  string
	Source  string // override, dane, mta-sts, learned, none, error, inbound
	Answer  string // the policy or action; "NOTFOUND" for none
	Latency time.Duration
	Error   string // "class: message" of a fail-open decision
}

const insertPolicyDecision = `INSERT INTO policy_decisions (decided_at, domain, source, answer, latency_us, error, node)
	VALUES (?, ?, ?, ?, ?, ?, ?)`

func (p *PolicyDecision) apply(b *batch) error {
	st, err := b.policyStmt(insertPolicyDecision)
	if err != nil {
		return err
	}
	b.args = p.values(b.args[:0], b.node)
	_, err = b.exec(st, b.args...)
	return err
}

// values appends the row of insertPolicyDecision.
func (p *PolicyDecision) values(args []driver.Value, node string) []driver.Value {
	return append(args, p.At.Unix(), p.Domain, p.Source, p.Answer, p.Latency.Microseconds(), p.Error, node)
}

// MTASTSPolicy is a fetched MTA-STS policy (RFC 8461 section 3.2) for the
// policy cache table; a newer one replaces the domain's row.
type MTASTSPolicy struct {
	Domain  string
	ID      string
	Mode    string
	MX      []string
	MaxAge  time.Duration
	Fetched time.Time
	Text    string
}

const upsertMTASTSPolicy = `INSERT INTO mta_sts_policies VALUES (?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT(domain) DO UPDATE SET policy_id = excluded.policy_id, mode = excluded.mode,
	mx = excluded.mx, max_age = excluded.max_age, fetched_at = excluded.fetched_at,
	expires_at = excluded.expires_at, text = excluded.text`

func (p *MTASTSPolicy) apply(b *batch) error {
	st, err := b.policyStmt(upsertMTASTSPolicy)
	if err != nil {
		return err
	}
	b.args = p.values(b.args[:0])
	_, err = b.exec(st, b.args...)
	return err
}

// values appends the row of upsertMTASTSPolicy.
func (p *MTASTSPolicy) values(args []driver.Value) []driver.Value {
	return append(args, p.Domain, p.ID, p.Mode, strings.Join(p.MX, " "), int64(p.MaxAge/time.Second),
		p.Fetched.Unix(), p.Fetched.Add(p.MaxAge).Unix(), p.Text)
}

// policyStmt prepares q once per batch.
func (b *batch) policyStmt(q string) (driver.Stmt, error) {
	if st, ok := b.stmts[q]; ok {
		return st, nil
	}
	st, err := b.c.Prepare(q)
	if err != nil {
		return nil, err
	}
	b.stmts[q] = st
	return st, nil
}
