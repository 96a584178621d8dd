package measure

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
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
	Since    time.Time      `json:"since"`
	Until    time.Time      `json:"until"`
	Inbound  Counts         `json:"inbound"`
	Outbound Counts         `json:"outbound"`
	Delivery DeliveryCounts `json:"delivery"`
}

// Hours returns the rollup hours covering [since, until): reports count
// whole hours, so a period not on hour boundaries is widened to them.
func Hours(since, until time.Time) (from, to int64) {
	return since.Unix() / 3600, (until.Unix() + 3599) / 3600
}

// BuildReport counts the messages received in [since, until), from the
// hourly rollups.
func (s *Store) BuildReport(ctx context.Context, since, until time.Time) (*Report, error) {
	r := &Report{Since: since.UTC(), Until: until.UTC()}
	from, to := Hours(since, until)
	for dir, c := range map[Direction]*Counts{Inbound: &r.Inbound, Outbound: &r.Outbound} {
		if err := s.fill(ctx, c, string(dir), from, to); err != nil {
			return nil, err
		}
	}
	if err := s.fillDeliveries(ctx, &r.Delivery, from, to); err != nil {
		return nil, err
	}
	return r, nil
}

const deliveredInPeriod = `FROM hourly_deliveries WHERE hour >= ? AND hour < ?`

func (s *Store) fillDeliveries(ctx context.Context, c *DeliveryCounts, since, until int64) error {
	// hourly_deliveries counts status lines by status: delivered mail is
	// the 'sent' rows. (A comparison is no number in PostgreSQL: CASE.)
	err := s.DB.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN status = 'sent' THEN deliveries ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 'sent' AND tls_version <> '' THEN deliveries ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 'sent' AND forward_secret <> 0 THEN deliveries ELSE 0 END), 0),
		COALESCE(SUM(deliveries), 0),
		COALESCE(SUM(CASE WHEN tls_version <> '' THEN deliveries ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 'deferred' THEN deliveries ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 'bounced' THEN deliveries ELSE 0 END), 0) `+deliveredInPeriod, since, until).
		Scan(&c.Deliveries, &c.TLSDeliveries, &c.ForwardSecret, &c.Attempts, &c.TLSAttempts, &c.Deferred, &c.Bounced)
	if err != nil {
		return fmt.Errorf("measure: report: %w", err)
	}
	for _, g := range []struct {
		dst        *map[string]int64
		expr, cond string
	}{
		{&c.ByStatus, "status", "1 = 1"},
		{&c.ByCipher, "tls_version || ' ' || cipher", "status = 'sent' AND tls_version <> ''"},
		{&c.ByLevel, "tls_level", "status = 'sent'"},
		{&c.ByDomain, "domain", "status = 'sent'"},
		{&c.TLSByDomain, "domain", "status = 'sent' AND tls_version <> ''"},
		{&c.DeferredByDomain, "domain", "status = 'deferred'"},
	} {
		m, err := s.countMap(ctx, `SELECT `+g.expr+`, SUM(deliveries) `+deliveredInPeriod+` AND `+g.cond+` GROUP BY 1`, since, until)
		if err != nil {
			return err
		}
		*g.dst = m
	}
	return nil
}

// fill counts one direction from the hourly rollup: a few rows per hour
// however many messages there were, added up in Go into every table.
func (s *Store) fill(ctx context.Context, c *Counts, dir string, since, until int64) error {
	*c = Counts{ByCipher: map[string]int64{}, ByTLSVersion: map[string]int64{}, SPF: map[string]int64{},
		SPFErrorClass: map[string]int64{}, DKIM: map[string]int64{}, DMARC: map[string]int64{},
		DMARCPolicy: map[string]int64{}, Auth: map[string]int64{}, FailOpen: map[string]int64{}}
	rows, err := s.DB.QueryContext(ctx, `SELECT action, tls_version, cipher, forward_secret,
		spf_result, spf_class, dkim_result, dmarc_result, dmarc_policy, auth_class, fail_open, SUM(messages)
		FROM hourly_messages WHERE direction = ? AND hour >= ? AND hour < ?
		GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11`, dir, since, until)
	if err != nil {
		return fmt.Errorf("measure: report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var action, version, cipher, spf, spfClass, dkim, dmarc, policy, auth, failOpen sql.NullString
		var fs bool
		var n int64
		if err := rows.Scan(&action, &version, &cipher, &fs, &spf, &spfClass, &dkim, &dmarc, &policy,
			&auth, &failOpen, &n); err != nil {
			return fmt.Errorf("measure: report: %w", err)
		}
		c.Messages += n
		if Action(action.String) == ActionReject {
			c.Rejected += n
		}
		if version.String != "" {
			c.TLSMessages += n
			c.ByCipher[version.String+" "+cipher.String] += n
			c.ByTLSVersion[version.String] += n
		} else {
			c.ByTLSVersion["none"] += n
		}
		if fs {
			c.ForwardSecret += n
		}
		c.SPF[spf.String] += n
		if spfClass.String != "" {
			c.SPFErrorClass[spfClass.String] += n
		}
		c.DKIM[dkim.String] += n
		c.DMARC[dmarc.String] += n
		c.DMARCPolicy[policy.String] += n
		c.Auth[auth.String] += n
		for _, r := range strings.Split(failOpen.String, ",") {
			if r != "" {
				c.FailOpen[r] += n
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("measure: report: %w", err)
	}
	c.DKIMFailClass, err = s.countMap(ctx, `SELECT class, SUM(signatures) FROM hourly_dkim_failures
		WHERE direction = ? AND hour >= ? AND hour < ? GROUP BY 1`, dir, since, until)
	if err != nil {
		return err
	}
	c.DKIMResults, err = s.countMap(ctx, `SELECT result, SUM(signatures) FROM hourly_dkim_results
		WHERE direction = ? AND hour >= ? AND hour < ? GROUP BY 1`, dir, since, until)
	return err
}

func (s *Store) countMap(ctx context.Context, q string, args ...any) (map[string]int64, error) {
	rows, err := s.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("measure: report: %w", err)
	}
	defer rows.Close()
	m := map[string]int64{}
	for rows.Next() {
		var k *string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, fmt.Errorf("measure: report: %w", err)
		}
		key := ""
		if k != nil {
			key = *k
		}
		m[key] += n
	}
	return m, rows.Err()
}
