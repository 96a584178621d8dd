package policy

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
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
	Source Source `json:"source"`
	Note   string `json:"note,omitempty"`
}

// List returns the configured overrides, imported policies, cached MTA-STS
// policies and learned domains.
func (e *Engine) List(ctx context.Context) ([]Entry, error) {
	cfg := e.config()
	var out []Entry
	for d, p := range cfg.Overrides {
		out = append(out, Entry{Domain: d, Policy: p, Source: SourceConfig})
	}
	imported, err := importedEntries(ctx, e.store)
	if err != nil {
		return nil, fmt.Errorf("policy: list: %w", err)
	}
	out = append(out, imported...)
	stored, err := cachedSTSList(ctx, e.store)
	if err != nil {
		return nil, fmt.Errorf("policy: list: %w", err)
	}
	var cached []Entry
	for _, c := range stored {
		answer := "(not enforced)"
		if c.Mode == STSEnforce {
			answer = "secure servername=hostname"
		}
		cached = append(cached, Entry{Domain: c.Domain, Policy: answer, Source: SourceMTASTS,
			Note: "mode " + string(c.Mode) + ", mx " + strings.Join(c.MX, " ") +
				", cached until " + c.Expires.UTC().Format(time.RFC3339)})
	}
	out = append(out, cached...)
	if cfg.Learn.Enabled {
		learned, err := e.learnedDomains(ctx, cfg)
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

func (e *Engine) learnedDomains(ctx context.Context, cfg *Config) ([]Entry, error) {
	l := cfg.Learn
	domains, err := e.store.LearnableDomains(ctx, time.Now().AddDate(0, 0, -l.Days).Unix()/3600, l.MinDeliveries)
	if err != nil {
		return nil, fmt.Errorf("policy: learned: %w", err)
	}
	var out []Entry
	for _, raw := range domains {
		d, ok := CanonicalDomain(raw)
		if !ok {
			continue
		}
		// Forgotten domains still need their own check.
		if dec := (&Decision{Domain: d}); e.learned(ctx, cfg, dec) {
			out = append(out, Entry{Domain: d, Policy: l.Answer, Source: SourceLearned})
		}
	}
	return out, nil
}

// WriteCSV writes entries as "domain,policy,source,note".
func WriteCSV(w io.Writer, entries []Entry) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"domain", "policy", "source", "note"})
	for _, e := range entries {
		cw.Write([]string{e.Domain, e.Policy, string(e.Source), e.Note})
	}
	cw.Flush()
	return cw.Error()
}

// ErrImport marks an import refused because of invalid records; nothing
// of it is stored.
var ErrImport = errors.New("policy: import refused")

// ParseImport reads a CSV (domain,policy[,source,note] with an optional
// header, as `policy export` writes it), our JSON list, or a
// STARTTLS-Everywhere policy list ({"policies": {"example.com": {"mode":
// "enforce", "mxs": [".example.com"]}}}, with "policy-aliases").
//
// Every field is validated strictly: domains are LDH names or ".domain"
// patterns (RFC 1035 section 2.3.1), policies follow ParseTLSPolicy, mxs
// entries are host names or ".domain" patterns. One invalid record
// refuses the whole import, with every bad record named; rows of an
// export that were derived (sources mta-sts and learned) are skipped.
func ParseImport(data []byte) ([]Entry, error) {
	trimmed := strings.TrimSpace(string(data))
	switch {
	case strings.HasPrefix(trimmed, "["):
		var list []Entry
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrImport, err)
		}
		var v validator
		for i, en := range list {
			v.entry(fmt.Sprintf("entry %d (%q)", i+1, en.Domain), en.Domain, en.Policy)
		}
		return v.result()
	case strings.HasPrefix(trimmed, "{"):
		return parseSTARTTLSEverywhere(data)
	}
	r := csv.NewReader(strings.NewReader(trimmed))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImport, err)
	}
	var v validator
	for i, rec := range recs {
		name := fmt.Sprintf("line %d", i+1)
		switch {
		case i == 0 && len(rec) > 0 && rec[0] == "domain":
			continue
		case len(rec) < 2:
			v.fail(name, "want domain,policy")
			continue
		case len(rec) > 2 && (Source(rec[2]) == SourceMTASTS || Source(rec[2]) == SourceLearned):
			continue
		}
		v.entry(fmt.Sprintf("%s (%q)", name, rec[0]), rec[0], rec[1])
	}
	return v.result()
}

// stePolicy is one STARTTLS-Everywhere policy or alias.
type stePolicy struct {
	Mode  STSMode  `json:"mode"`
	MXs   []string `json:"mxs"`
	Alias string   `json:"policy-alias"`
}

func parseSTARTTLSEverywhere(data []byte) ([]Entry, error) {
	var doc struct {
		Policies map[string]stePolicy `json:"policies"`
		Aliases  map[string]stePolicy `json:"policy-aliases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImport, err)
	}
	domains := make([]string, 0, len(doc.Policies))
	for d := range doc.Policies {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	var v validator
	for _, d := range domains {
		p := doc.Policies[d]
		name := fmt.Sprintf("policy %q", d)
		if p.Alias != "" {
			alias, ok := doc.Aliases[p.Alias]
			if !ok || alias.Alias != "" {
				v.fail(name, fmt.Sprintf("unknown policy-alias %q", p.Alias))
				continue
			}
			p = alias
		}
		switch p.Mode {
		case STSEnforce:
		case STSTesting, STSNone:
			continue // reported by the list, not enforced by us
		default:
			v.fail(name, fmt.Sprintf("mode %q: want enforce, testing or none", p.Mode))
			continue
		}
		pol := TLSPolicy{Level: LevelEncrypt}
		if len(p.MXs) > 0 {
			pol = TLSPolicy{Level: LevelSecure, ServerName: "hostname"}
			bad := false
			for i, mx := range p.MXs {
				m, ok := CanonicalPattern(mx)
				if !ok || !IsHostPattern(m) || mx != strings.TrimSpace(mx) {
					v.fail(name, fmt.Sprintf("mxs[%d] %q: not a host name or .domain pattern", i, mx))
					bad = true
					continue
				}
				pol.Match = append(pol.Match, m)
			}
			if bad {
				continue
			}
		}
		v.entry(name, d, pol.String())
	}
	return v.result()
}

// validator collects imported entries and the reasons records failed.
type validator struct {
	list []Entry
	errs []string
}

func (v *validator) fail(record, why string) {
	v.errs = append(v.errs, record+": "+why)
}

func (v *validator) entry(record, domain, pol string) {
	key, ok := CanonicalPattern(domain)
	if !ok || !IsHostPattern(key) || domain != strings.TrimSpace(domain) {
		v.fail(record, fmt.Sprintf("domain %q: not an LDH domain name or .domain pattern", domain))
		return
	}
	p, err := ParseTLSPolicy(pol)
	if err != nil || pol != strings.TrimSpace(pol) {
		v.fail(record, fmt.Sprintf("policy %q: %v", pol, err))
		return
	}
	v.list = append(v.list, Entry{Domain: key, Policy: p.String()})
}

func (v *validator) result() ([]Entry, error) {
	if len(v.errs) == 0 {
		return v.list, nil
	}
	shown := v.errs
	more := ""
	if len(shown) > 20 {
		more = fmt.Sprintf("\n  … and %d more", len(shown)-20)
		shown = shown[:20]
	}
	return nil, fmt.Errorf("%w: %d invalid records, nothing imported:\n  %s%s", ErrImport, len(v.errs),
		strings.Join(shown, "\n  "), more)
}

// Import stores entries as imported overrides and tells running daemons
// (policy version).
func (e *Engine) Import(ctx context.Context, list []Entry, origin string) error {
	var v validator
	for _, en := range list {
		v.entry(fmt.Sprintf("%q", en.Domain), en.Domain, en.Policy)
	}
	list, err := v.result()
	if err != nil {
		return err
	}
	origin = clip(origin, 255)
	tx, err := e.store.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("policy: import: %w", err)
	}
	defer tx.Rollback()
	now := time.Now()
	for _, en := range list {
		if err := storeOverride(ctx, tx, en.Domain, en.Policy, origin, now); err != nil {
			return fmt.Errorf("policy: import: %w", err)
		}
	}
	if err := bumpVersion(ctx, tx); err != nil {
		return fmt.Errorf("policy: import: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("policy: import: %w", err)
	}
	return e.Reload(ctx)
}
