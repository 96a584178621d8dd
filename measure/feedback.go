package measure

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/measure/maillog"
)

// The records behind the reports snowrain sends to other domains
// (feedback builds them): the inbound messages a DMARC aggregate report
// lists (RFC 7489 7.2) and the outbound SMTP sessions a TLS report counts
// (RFC 8460). Both read every node's records: a domain's report covers
// the fleet's mail.

// EachDMARCMessage calls fn on every inbound message received in [since,
// until) whose DMARC verdict was pass or fail under a published record,
// with its DKIM signatures, in the order they were stored. fn may keep
// the message.
func (s *Store) EachDMARCMessage(ctx context.Context, since, until time.Time, fn func(*Message) error) error {
	var cur *Message
	var curID int64
	err := Each(ctx, s.DB, `SELECT m.id, m.received_at, COALESCE(m.client_ip, ''),
		COALESCE(m.mail_from_domain, ''), COALESCE(m.from_domain, ''), COALESCE(m.spf_result, ''),
		COALESCE(m.spf_domain, ''), COALESCE(m.dmarc_policy, ''), COALESCE(m.dmarc_disposition, ''),
		m.dmarc_record_domain, m.dmarc_published, m.spf_aligned, m.dkim_aligned, m.dmarc_result, m.action,
		s.domain, s.selector, s.result, s.class
		FROM messages m LEFT JOIN signatures s ON s.message_id = m.id
		WHERE m.direction = ? AND m.received_at >= ? AND m.received_at < ?
			AND m.dmarc_result IN (?, ?) AND COALESCE(m.dmarc_record_domain, '') <> ''
			AND m.dmarc_published IS NOT NULL
		ORDER BY m.id, s.seq`, []any{string(Inbound), since.Unix(), until.Unix(), string(auth.DMARCPass), string(auth.DMARCFail)}, func(r *sql.Rows) error {
		var id, at int64
		m := &Message{Direction: Inbound}
		var sigDomain, sigSelector, sigResult, sigClass sql.NullString
		if err := r.Scan(&id, &at, &m.ClientIP, &m.MailFromDomain, &m.FromDomain, &m.SPFResult, &m.SPFDomain,
			&m.DMARCPolicy, &m.DMARCDisposition, &m.DMARCRecord, &m.DMARCPublished, &m.SPFAligned, &m.DKIMAligned,
			&m.DMARCResult, &m.Action, &sigDomain, &sigSelector, &sigResult, &sigClass); err != nil {
			return err
		}
		if cur == nil || id != curID {
			if cur != nil {
				if err := fn(cur); err != nil {
					return err
				}
			}
			m.Received = time.Unix(at, 0)
			cur, curID = m, id
		}
		if sigResult.Valid {
			cur.Signatures = append(cur.Signatures, Signature{Domain: sigDomain.String, Selector: sigSelector.String,
				Result: auth.DKIMStatus(sigResult.String), Class: auth.DKIMClass(sigClass.String)})
		}
		return nil
	})
	if err == nil && cur != nil {
		err = fn(cur)
	}
	if err != nil {
		return fmt.Errorf("measure: dmarc messages: %w", err)
	}
	return nil
}

// TLSSession is one outbound SMTP session the MTA log showed (maillog's
// TLSTracker), as TLS reports count it: its first delivery's time and
// relay, and the RFC 8460 result type of its TLS ("" when TLS succeeded).
type TLSSession struct {
	Node               string // sessions are one node's: two nodes' logs may name two sessions alike
	Domain, Session    string
	At                 time.Time
	RelayHost, RelayIP string
	Level              maillog.Level
	Status             maillog.Status
	Result, Reason     string
}

// TLSSessions reads the sessions of the deliveries made in [since,
// until), by recipient domain, time, session and node.
func (s *Store) TLSSessions(ctx context.Context, since, until time.Time) ([]TLSSession, error) {
	// One row per domain and session: every column is grouped or
	// aggregated (the session's deliveries share relay, level and
	// result; MIN picks one the same way on both backends).
	out, err := Rows(ctx, s.DB, `SELECT d.node, d.domain, t.session, MIN(d.delivered_at), MIN(COALESCE(d.relay_host, '')),
		MIN(COALESCE(d.relay_ip, '')), MIN(d.tls_level), MIN(d.status), MIN(t.result), MIN(COALESCE(t.detail, ''))
		FROM deliveries d JOIN delivery_tls t ON t.delivery_id = d.id
		WHERE d.delivered_at >= ? AND d.delivered_at < ? AND t.session <> ''
		GROUP BY d.node, d.domain, t.session ORDER BY 2, 4, 3, 1`, []any{since.Unix(), until.Unix()},
		func(r *sql.Rows) (TLSSession, error) {
			var ts TLSSession
			var at int64
			err := r.Scan(&ts.Node, &ts.Domain, &ts.Session, &at, &ts.RelayHost, &ts.RelayIP, &ts.Level, &ts.Status, &ts.Result, &ts.Reason)
			ts.At = time.Unix(at, 0)
			return ts, err
		})
	if err != nil {
		return nil, fmt.Errorf("measure: tls sessions: %w", err)
	}
	return out, nil
}
