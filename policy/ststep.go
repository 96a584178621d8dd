package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// cachedSTS is a policy from the mta_sts_policies table.
type cachedSTS struct {
	STSPolicy
	Expires time.Time
}

func (e *Engine) cachedSTS(ctx context.Context, domain string) (*cachedSTS, bool) {
	if e.db == nil {
		return nil, false
	}
	c := &cachedSTS{}
	var mx string
	var maxAge, expires int64
	err := e.db.QueryRowContext(ctx, `SELECT policy_id, mode, mx, max_age, expires_at, text
		FROM mta_sts_policies WHERE domain = ?`, domain).Scan(&c.ID, &c.Mode, &mx, &maxAge, &expires, &c.Text)
	if err != nil {
		return nil, false
	}
	c.MX = strings.Fields(mx)
	c.MaxAge = time.Duration(maxAge) * time.Second
	c.Expires = time.Unix(expires, 0)
	return c, time.Now().Before(c.Expires)
}

func (e *Engine) storeSTS(ctx context.Context, domain string, p *STSPolicy) {
	if e.db == nil {
		return
	}
	now := time.Now()
	_, err := e.db.ExecContext(ctx, `INSERT INTO mta_sts_policies VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(domain) DO UPDATE SET policy_id = excluded.policy_id, mode = excluded.mode,
		mx = excluded.mx, max_age = excluded.max_age, fetched_at = excluded.fetched_at,
		expires_at = excluded.expires_at, text = excluded.text`,
		domain, p.ID, p.Mode, strings.Join(p.MX, " "), int64(p.MaxAge/time.Second), now.Unix(),
		now.Add(p.MaxAge).Unix(), p.Text)
	if err != nil {
		e.log.Warn("policy: caching MTA-STS policy", "domain", domain, "err", err)
	}
}

// stsPolicy follows RFC 8461 section 5: a cached, unexpired policy stays
// in force while the TXT record is missing or unchanged and while fetches
// fail; a new id means a new fetch.
func (e *Engine) stsPolicy(ctx context.Context, d *Decision) (*STSPolicy, error) {
	cached, fresh := e.cachedSTS(ctx, d.Domain)
	id, err := e.sts.LookupID(ctx, d.Domain)
	switch {
	case err != nil && fresh:
		d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: TXT lookup: %v; using the cached policy (id %s, until %s)",
			err, cached.ID, cached.Expires.UTC().Format(time.RFC3339)))
		return &cached.STSPolicy, nil
	case errors.Is(err, ErrSTSNoRecord):
		d.Steps = append(d.Steps, "mta-sts: no _mta-sts record")
		return nil, nil
	case err != nil:
		return nil, err
	case fresh && cached.ID == id:
		d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: id %s unchanged; cached policy until %s", id, cached.Expires.UTC().Format(time.RFC3339)))
		return &cached.STSPolicy, nil
	}
	p, err := e.sts.Fetch(ctx, d.Domain)
	if err != nil {
		if fresh {
			d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: fetch of id %s failed (%v); using the cached policy", id, err))
			return &cached.STSPolicy, nil
		}
		return nil, err
	}
	p.ID = id
	e.storeSTS(ctx, d.Domain, p)
	d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: fetched policy id %s:\n%s", id, indent(p.Text)))
	return p, nil
}

func (e *Engine) mtaSTS(ctx context.Context, d *Decision) bool {
	if !e.cfg.MTASTS {
		return false
	}
	p, err := e.stsPolicy(ctx, d)
	if err != nil {
		d.Err = errors.Join(d.Err, err)
		d.Steps = append(d.Steps, fmt.Sprintf("mta-sts: %v", err))
		return false
	}
	if p == nil {
		return false
	}
	switch p.Mode {
	case "enforce":
		d.Answer, d.Source = "secure match="+p.PostfixMatch()+" servername=hostname", SourceMTASTS
		d.Steps = append(d.Steps, "mta-sts: mode enforce")
		return true
	case "testing":
		d.Steps = append(d.Steps, "mta-sts: mode testing: reported, not enforced")
	default:
		d.Steps = append(d.Steps, "mta-sts: mode none")
	}
	return false
}

// RefreshSTS refetches cached policies that expire within ahead, so that a
// policy never lapses while its domain is unreachable.
func (e *Engine) RefreshSTS(ctx context.Context, ahead time.Duration) (int, error) {
	rows, err := e.db.QueryContext(ctx, `SELECT domain FROM mta_sts_policies WHERE expires_at < ?`,
		time.Now().Add(ahead).Unix())
	if err != nil {
		return 0, fmt.Errorf("policy: refresh: %w", err)
	}
	var domains []string
	for rows.Next() {
		var d string
		rows.Scan(&d)
		domains = append(domains, d)
	}
	rows.Close()
	n := 0
	for _, domain := range domains {
		p, err := e.sts.Fetch(ctx, domain)
		if err != nil {
			e.log.Info("policy: MTA-STS refresh failed; cached policy kept until it expires", "domain", domain, "err", err)
			continue
		}
		if id, err := e.sts.LookupID(ctx, domain); err == nil {
			p.ID = id
		}
		e.storeSTS(ctx, domain, p)
		n++
	}
	return n, nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
