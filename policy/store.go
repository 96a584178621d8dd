package policy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// The policy tables are this package's, and their queries are here:
// policy_overrides (policy import), policy_forgotten (policy forget),
// policy_version (bumped by both), and the two the daemon's writer fills
// for it without blocking a lookup, mta_sts_policies (the MTA-STS cache,
// measure.MTASTSPolicy) and policy_decisions (measure.PolicyDecision).
// Each query runs unchanged on SQLite and PostgreSQL (measure's rules).
// What the policies learn from, the rollups, measure reads
// (measure.Store.DeliveryHistory, InboundHistory, LearnableDomains).

// CachedSTS is an MTA-STS policy from the cache table.
type CachedSTS struct {
	STSPolicy
	Domain           string
	Fetched, Expires time.Time
}

const cachedSTSColumns = `domain, policy_id, mode, mx, max_age, fetched_at, expires_at, text`

func scanCachedSTS(r interface{ Scan(...any) error }) (CachedSTS, error) {
	var c CachedSTS
	var mx string
	var maxAge, fetched, expires int64
	if err := r.Scan(&c.Domain, &c.ID, &c.Mode, &mx, &maxAge, &fetched, &expires, &c.Text); err != nil {
		return c, err
	}
	c.MX = strings.Fields(mx)
	c.MaxAge = time.Duration(maxAge) * time.Second
	c.Fetched, c.Expires = time.Unix(fetched, 0), time.Unix(expires, 0)
	return c, nil
}

// LoadCachedSTS reads the cached MTA-STS policy of domain; ok is false
// when none is cached.
func LoadCachedSTS(ctx context.Context, st *measure.Store, domain string) (c *CachedSTS, ok bool, err error) {
	v, err := scanCachedSTS(st.DB.QueryRowContext(ctx, `SELECT `+cachedSTSColumns+` FROM mta_sts_policies WHERE domain = ?`, domain))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("policy: mta-sts cache: %w", err)
	}
	return &v, true, nil
}

// cachedSTSList reads every cached MTA-STS policy, by domain.
func cachedSTSList(ctx context.Context, st *measure.Store) ([]CachedSTS, error) {
	out, err := measure.Rows(ctx, st.DB, `SELECT `+cachedSTSColumns+` FROM mta_sts_policies ORDER BY domain`, nil,
		func(r *sql.Rows) (CachedSTS, error) { return scanCachedSTS(r) })
	if err != nil {
		return nil, fmt.Errorf("policy: mta-sts cache: %w", err)
	}
	return out, nil
}

// expiringSTS lists the domains whose cached policy expires before t.
func expiringSTS(ctx context.Context, st *measure.Store, t time.Time) ([]string, error) {
	out, err := measure.Rows(ctx, st.DB, `SELECT domain FROM mta_sts_policies WHERE expires_at < ? ORDER BY domain`,
		[]any{t.Unix()}, measure.Column[string])
	if err != nil {
		return nil, fmt.Errorf("policy: mta-sts cache: %w", err)
	}
	return out, nil
}

// Decisions reads the decisions recorded for domain in [since, until),
// by every node of a fleet, oldest first.
func Decisions(ctx context.Context, st *measure.Store, domain string, since, until time.Time) ([]measure.PolicyDecision, error) {
	out, err := measure.Rows(ctx, st.DB, `SELECT decided_at, domain, source, answer, latency_us, COALESCE(error, '')
		FROM policy_decisions WHERE domain = ? AND decided_at >= ? AND decided_at < ? ORDER BY decided_at, id`,
		[]any{domain, since.Unix(), until.Unix()}, func(r *sql.Rows) (measure.PolicyDecision, error) {
			var d measure.PolicyDecision
			var at, us int64
			err := r.Scan(&at, &d.Domain, &d.Source, &d.Answer, &us, &d.Error)
			d.At, d.Latency = time.Unix(at, 0), time.Duration(us)*time.Microsecond
			return d, err
		})
	if err != nil {
		return nil, fmt.Errorf("policy: decisions: %w", err)
	}
	return out, nil
}

// forgottenAt reads when domain was last forgotten; ok is false if never.
func forgottenAt(ctx context.Context, st *measure.Store, domain string) (at int64, ok bool, err error) {
	err = st.DB.QueryRowContext(ctx, `SELECT forgotten_at FROM policy_forgotten WHERE domain = ?`, domain).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return at, err == nil, err
}

// importedEntries reads the imported overrides, by domain.
func importedEntries(ctx context.Context, st *measure.Store) ([]Entry, error) {
	return measure.Rows(ctx, st.DB, `SELECT domain, policy, origin FROM policy_overrides ORDER BY domain`, nil,
		func(r *sql.Rows) (Entry, error) {
			en := Entry{Source: "imported"}
			err := r.Scan(&en.Domain, &en.Policy, &en.Note)
			return en, err
		})
}

// eachOverride calls fn on every imported override, as stored.
func eachOverride(ctx context.Context, q measure.Querier, fn func(domain, pol string)) error {
	return measure.Each(ctx, q, `SELECT domain, policy FROM policy_overrides`, nil, func(r *sql.Rows) error {
		var domain, pol string
		if err := r.Scan(&domain, &pol); err != nil {
			return err
		}
		fn(domain, pol)
		return nil
	})
}

// execer runs a statement: *sql.DB and *sql.Tx are one.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// storeOverride writes an imported policy.
func storeOverride(ctx context.Context, tx execer, domain, pol, origin string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO policy_overrides (domain, policy, origin, imported_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (domain) DO UPDATE SET policy = excluded.policy, origin = excluded.origin, imported_at = excluded.imported_at`,
		domain, pol, origin, at.Unix())
	return err
}

// forgetDomain marks domain forgotten at t and deletes its imported and
// cached policies (both its forms).
func forgetDomain(ctx context.Context, tx execer, domain string, t time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO policy_forgotten (domain, forgotten_at) VALUES (?, ?)
		ON CONFLICT (domain) DO UPDATE SET forgotten_at = excluded.forgotten_at`, domain, t.Unix()); err != nil {
		return err
	}
	forms := domainForms(domain)
	args := make([]any, len(forms))
	for i, f := range forms {
		args[i] = f
	}
	in := strings.TrimSuffix(strings.Repeat("?, ", len(args)), ", ")
	for _, table := range []string{"mta_sts_policies", "policy_overrides"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE domain IN (`+in+`)`, args...); err != nil {
			return err
		}
	}
	return nil
}

// bumpVersion tells running daemons that the policy tables changed.
func bumpVersion(ctx context.Context, tx execer) error {
	_, err := tx.ExecContext(ctx, `UPDATE policy_version SET version = version + 1 WHERE id = 1`)
	return err
}

// querier reads: *sql.DB and *sql.Tx are one.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// policyVersion reads the policy version.
func policyVersion(ctx context.Context, q querier) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, `SELECT version FROM policy_version WHERE id = 1`).Scan(&v)
	return v, err
}
