package policy

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Entry is one domain's policy as listed, exported or imported.
type Entry struct {
	Domain string `json:"domain"`
	Policy string `json:"policy"`
	Source string `json:"source"`
	Note   string `json:"note,omitempty"`
}

// List returns the configured overrides, imported policies, cached MTA-STS
// policies and learned domains.
func (e *Engine) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	for d, p := range e.cfg.Overrides {
		out = append(out, Entry{Domain: d, Policy: p, Source: "config"})
	}
	rows, err := e.db.QueryContext(ctx, `SELECT domain, policy, origin FROM policy_overrides`)
	if err != nil {
		return nil, fmt.Errorf("policy: list: %w", err)
	}
	for rows.Next() {
		var en Entry
		rows.Scan(&en.Domain, &en.Policy, &en.Note)
		en.Source = "imported"
		out = append(out, en)
	}
	rows.Close()
	rows, err = e.db.QueryContext(ctx, `SELECT domain, mode, mx, expires_at FROM mta_sts_policies`)
	if err != nil {
		return nil, fmt.Errorf("policy: list: %w", err)
	}
	for rows.Next() {
		var d, mode, mx string
		var exp int64
		rows.Scan(&d, &mode, &mx, &exp)
		p := &STSPolicy{Mode: mode, MX: strings.Fields(mx)}
		answer := "(not enforced)"
		if mode == "enforce" {
			answer = "secure match=" + p.PostfixMatch() + " servername=hostname"
		}
		out = append(out, Entry{Domain: d, Policy: answer, Source: SourceMTASTS,
			Note: "mode " + mode + ", cached until " + time.Unix(exp, 0).UTC().Format(time.RFC3339)})
	}
	rows.Close()
	if e.cfg.Learn.Enabled {
		learned, err := e.learnedDomains(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, learned...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Domain != out[j].Domain {
			return out[i].Domain < out[j].Domain
		}
		return out[i].Source < out[j].Source
	})
	return out, nil
}

func (e *Engine) learnedDomains(ctx context.Context) ([]Entry, error) {
	l := e.cfg.Learn
	rows, err := e.db.QueryContext(ctx, `SELECT domain FROM hourly_deliveries WHERE hour >= ? AND status = 'sent'
		GROUP BY domain HAVING SUM(deliveries * (tls_level IN ('trusted', 'verified', 'dane'))) >= ?
		AND SUM(deliveries * (tls_version = '')) = 0`, time.Now().AddDate(0, 0, -l.Days).Unix()/3600, l.MinDeliveries)
	if err != nil {
		return nil, fmt.Errorf("policy: learned: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var d string
		rows.Scan(&d)
		// Forgotten domains still need their own check.
		if dec := (&Decision{Domain: d}); e.learned(ctx, dec) {
			out = append(out, Entry{Domain: d, Policy: l.Answer, Source: SourceLearned})
		}
	}
	return out, rows.Err()
}

// WriteCSV writes entries as "domain,policy,source,note".
func WriteCSV(w io.Writer, entries []Entry) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"domain", "policy", "source", "note"})
	for _, e := range entries {
		cw.Write([]string{e.Domain, e.Policy, e.Source, e.Note})
	}
	cw.Flush()
	return cw.Error()
}

// ParseImport reads a CSV (domain,policy[,…] with an optional header), our
// JSON list, or a STARTTLS-Everywhere policy list
// ({"policies": {"example.com": {"mode": "enforce", "mxs": [".example.com"]}}}).
func ParseImport(data []byte) ([]Entry, error) {
	trimmed := strings.TrimSpace(string(data))
	switch {
	case strings.HasPrefix(trimmed, "["):
		var list []Entry
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("policy: import: %w", err)
		}
		return validate(list)
	case strings.HasPrefix(trimmed, "{"):
		return parseSTARTTLSEverywhere(data)
	}
	recs, err := csv.NewReader(strings.NewReader(trimmed)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("policy: import: %w", err)
	}
	var list []Entry
	for i, r := range recs {
		if len(r) < 2 || (i == 0 && r[0] == "domain") {
			continue
		}
		list = append(list, Entry{Domain: r[0], Policy: r[1]})
	}
	return validate(list)
}

func parseSTARTTLSEverywhere(data []byte) ([]Entry, error) {
	var doc struct {
		Policies map[string]struct {
			Mode string   `json:"mode"`
			MXs  []string `json:"mxs"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("policy: import: %w", err)
	}
	var list []Entry
	for d, p := range doc.Policies {
		if p.Mode != "enforce" {
			continue // testing: reported by the list, not enforced by us
		}
		answer := "encrypt"
		if len(p.MXs) > 0 {
			answer = "secure match=" + strings.Join(p.MXs, ":") + " servername=hostname"
		}
		list = append(list, Entry{Domain: d, Policy: answer})
	}
	return validate(list)
}

var levels = map[string]bool{"none": true, "may": true, "encrypt": true, "dane": true, "dane-only": true,
	"fingerprint": true, "verify": true, "secure": true}

func validate(list []Entry) ([]Entry, error) {
	for i, e := range list {
		e.Domain = strings.ToLower(strings.TrimSpace(e.Domain))
		e.Policy = strings.TrimSpace(e.Policy)
		if e.Domain == "" || strings.ContainsAny(e.Domain, " \t,;") {
			return nil, fmt.Errorf("policy: import: bad domain %q", e.Domain)
		}
		if level, _, _ := strings.Cut(e.Policy, " "); !levels[level] || strings.ContainsAny(e.Policy, "\r\n") {
			return nil, fmt.Errorf("policy: import: %s: bad policy %q", e.Domain, e.Policy)
		}
		list[i] = e
	}
	return list, nil
}

// Import stores entries as imported overrides.
func (e *Engine) Import(ctx context.Context, list []Entry, origin string) error {
	e.cache.clear()
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, en := range list {
		if _, err := tx.ExecContext(ctx, `INSERT INTO policy_overrides VALUES (?, ?, ?, ?) ON CONFLICT(domain)
			DO UPDATE SET policy = excluded.policy, origin = excluded.origin, imported_at = excluded.imported_at`,
			en.Domain, en.Policy, origin, time.Now().Unix()); err != nil {
			return fmt.Errorf("policy: import: %w", err)
		}
	}
	return tx.Commit()
}
