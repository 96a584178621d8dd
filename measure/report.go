package measure

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/snowrain/snowrain/measure/maillog"
)

// Counts are the per-direction figures of a report. The JSON names are a
// contract that scripts and later reports keep.
type Counts struct {
	Messages      int64            `json:"messages"`
	Rejected      int64            `json:"rejected"`
	TLSMessages   int64            `json:"tls_messages"`
	ForwardSecret int64            `json:"forward_secret_messages"`
	ByCipher      map[string]int64 `json:"by_cipher"`
	ByTLSVersion  map[string]int64 `json:"by_tls_version"`
	SPF           map[string]int64 `json:"spf"`
	SPFErrorClass map[string]int64 `json:"spf_error_class"`
	DKIM          map[string]int64 `json:"dkim"`
	DKIMFailClass map[string]int64 `json:"dkim_fail_class"`
	// DKIMResults counts signatures by their RFC 8601 result, as the
	// Authentication-Results header writes them (one dkim= per
	// signature); DKIM counts messages by auth.DKIMVerdict.
	DKIMResults map[string]int64 `json:"dkim_signature_results"`
	DMARC       map[string]int64 `json:"dmarc"`
	DMARCPolicy map[string]int64 `json:"dmarc_policy"`
	Auth        map[string]int64 `json:"auth"`
	FailOpen    map[string]int64 `json:"fail_open"`
}

// DeliveryCounts are the outbound figures read from the MTA log, per
// recipient (Postfix writes one status line per recipient, Sendmail one
// per recipient list; both are split per recipient). The paper's
// outbound TLS share (Section 4, Figure 3) is TLSDeliveries out of
// Deliveries: delivered mail only. A deferral is one attempt of mail that
// may be delivered later, so a recipient deferred three times and then
// delivered is one delivery and four attempts; a bounce is final but
// delivered nothing, so it is counted apart and not in the share.
type DeliveryCounts struct {
	// Deliveries are recipients delivered (status sent). Earlier versions
	// counted every status line here, deferrals included.
	Deliveries    int64 `json:"deliveries"`
	TLSDeliveries int64 `json:"tls_deliveries"` // of Deliveries, over TLS
	ForwardSecret int64 `json:"forward_secret_deliveries"`
	Attempts      int64 `json:"attempts"`     // every status line: sent, deferred and bounced
	TLSAttempts   int64 `json:"tls_attempts"` // of Attempts, over TLS
	Deferred      int64 `json:"deferred"`     // attempts deferred
	Bounced       int64 `json:"bounced"`      // recipients bounced
	// ByStatus counts attempts by status; the other maps count
	// deliveries only.
	ByStatus         map[string]int64 `json:"by_status"`
	ByCipher         map[string]int64 `json:"by_cipher"`
	ByLevel          map[string]int64 `json:"by_tls_level"`
	ByDomain         map[string]int64 `json:"by_domain"`
	TLSByDomain      map[string]int64 `json:"tls_by_domain"`
	DeferredByDomain map[string]int64 `json:"deferred_by_domain"` // attempts
}

// Report is what the milter and the MTA log recorded in a period.
type Report struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Node is the fleet node the figures are narrowed to; empty (and
	// left out of the JSON) for every node.
	Node     string         `json:"node,omitempty"`
	Inbound  Counts         `json:"inbound"`
	Outbound Counts         `json:"outbound"`
	Delivery DeliveryCounts `json:"delivery"`
}

// Hours returns the rollup hours covering [since, until): reports count
// whole hours, so a period not on hour boundaries is widened to them.
func Hours(since, until time.Time) (from, to int64) {
	return since.Unix() / 3600, (until.Unix() + 3599) / 3600
}

// BuildReport counts the messages received and the deliveries made in
// the scope, from the hourly rollups: every node's rows summed, or one
// node's.
func (s *Store) BuildReport(ctx context.Context, sc Scope) (*Report, error) {
	r := &Report{Since: sc.Since.UTC(), Until: sc.Until.UTC(), Node: sc.Node}
	for dir, c := range map[Direction]*Counts{Inbound: &r.Inbound, Outbound: &r.Outbound} {
		if err := s.fill(ctx, c, string(dir), sc); err != nil {
			return nil, fmt.Errorf("measure: report: %w", err)
		}
	}
	if err := s.fillDeliveries(ctx, &r.Delivery, sc); err != nil {
		return nil, fmt.Errorf("measure: report: %w", err)
	}
	return r, nil
}

func (s *Store) fillDeliveries(ctx context.Context, c *DeliveryCounts, sc Scope) error {
	*c = DeliveryCounts{ByStatus: map[string]int64{}, ByCipher: map[string]int64{}, ByLevel: map[string]int64{},
		ByDomain: map[string]int64{}, TLSByDomain: map[string]int64{}, DeferredByDomain: map[string]int64{}}
	where, args := sc.rollup()
	// One pass over the period's rows, every figure added up in Go:
	// hourly_deliveries counts status lines by status; delivered mail is
	// the sent rows.
	return Each(ctx, s.DB, `SELECT domain, status, tls_version, cipher, tls_level, forward_secret, SUM(deliveries)
		FROM hourly_deliveries WHERE `+where+` GROUP BY 1, 2, 3, 4, 5, 6`, args, func(r *sql.Rows) error {
		var domain, status, version, cipher, level string
		var fs bool
		var n int64
		if err := r.Scan(&domain, &status, &version, &cipher, &level, &fs, &n); err != nil {
			return err
		}
		tls := version != ""
		c.Attempts += n
		c.ByStatus[status] += n
		if tls {
			c.TLSAttempts += n
		}
		switch maillog.Status(status) {
		case maillog.StatusDeferred:
			c.Deferred += n
			c.DeferredByDomain[domain] += n
		case maillog.StatusBounced:
			c.Bounced += n
		case maillog.StatusSent:
			c.Deliveries += n
			c.ByLevel[level] += n
			c.ByDomain[domain] += n
			if tls {
				c.TLSDeliveries += n
				c.ByCipher[version+" "+cipher] += n
				c.TLSByDomain[domain] += n
			}
			if fs {
				c.ForwardSecret += n
			}
		}
		return nil
	})
}

// fill counts one direction from the hourly rollup: a few rows per hour
// however many messages there were, added up in Go into every table.
func (s *Store) fill(ctx context.Context, c *Counts, dir string, sc Scope) error {
	*c = Counts{ByCipher: map[string]int64{}, ByTLSVersion: map[string]int64{}, SPF: map[string]int64{},
		SPFErrorClass: map[string]int64{}, DKIM: map[string]int64{}, DMARC: map[string]int64{},
		DMARCPolicy: map[string]int64{}, Auth: map[string]int64{}, FailOpen: map[string]int64{}}
	where, args := sc.rollup()
	args = append([]any{dir}, args...)
	err := Each(ctx, s.DB, `SELECT action, tls_version, cipher, forward_secret,
		spf_result, spf_class, dkim_result, dmarc_result, dmarc_policy, auth_class, fail_open, SUM(messages)
		FROM hourly_messages WHERE direction = ? AND `+where+`
		GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11`, args, func(rows *sql.Rows) error {
		var action, version, cipher, spf, spfClass, dkim, dmarc, policy, auth, failOpen string
		var fs bool
		var n int64
		if err := rows.Scan(&action, &version, &cipher, &fs, &spf, &spfClass, &dkim, &dmarc, &policy,
			&auth, &failOpen, &n); err != nil {
			return err
		}
		c.Messages += n
		if Action(action) == ActionReject {
			c.Rejected += n
		}
		if version != "" {
			c.TLSMessages += n
			c.ByCipher[version+" "+cipher] += n
			c.ByTLSVersion[version] += n
		} else {
			c.ByTLSVersion["none"] += n
		}
		if fs {
			c.ForwardSecret += n
		}
		c.SPF[spf] += n
		if spfClass != "" {
			c.SPFErrorClass[spfClass] += n
		}
		c.DKIM[dkim] += n
		c.DMARC[dmarc] += n
		c.DMARCPolicy[policy] += n
		c.Auth[auth] += n
		for _, r := range strings.Split(failOpen, ",") {
			if r != "" {
				c.FailOpen[r] += n
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.DKIMFailClass, err = s.countMap(ctx, `SELECT class, SUM(signatures) FROM hourly_dkim_failures
		WHERE direction = ? AND `+where+` GROUP BY 1`, args)
	if err != nil {
		return err
	}
	c.DKIMResults, err = s.countMap(ctx, `SELECT result, SUM(signatures) FROM hourly_dkim_results
		WHERE direction = ? AND `+where+` GROUP BY 1`, args)
	return err
}

// countMap reads (key, count) rows into a map.
func (s *Store) countMap(ctx context.Context, q string, args []any) (map[string]int64, error) {
	m := map[string]int64{}
	err := Each(ctx, s.DB, q, args, func(rows *sql.Rows) error {
		var k sql.NullString
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		m[k.String] += n
		return nil
	})
	return m, err
}
