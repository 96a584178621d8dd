package report

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/snowrain/snowrain/geoip"
	"github.com/snowrain/snowrain/measure"
)

// Options shape a report.
type Options struct {
	Period Period
	Loc    *time.Location // days begin at midnight here; nil: UTC
	GeoIP  string         // MMDB country database (GeoLite2/DB-IP); empty: no country table
	Top    int            // rows in "top" lists; default 10
	// DowngradeDrop is the drop in TLS share, in points, that makes a
	// domain a downgrade candidate; default 10.
	DowngradeDrop float64
	// MinMessages is the volume below which a domain is not judged; default 3.
	MinMessages int64
	// Providers names Table 6's providers beyond the built-in map
	// (the configuration's [providers]: registered domain → name).
	Providers map[string]string
}

// Report is everything the weekly report shows.
type Report struct {
	Period, Previous Period
	Current, Prior   *measure.Report
	Days             []Day
	Domains          []Domain
	Countries        []Country
	CountriesPrior   map[string]Country
	Downgrades       []Downgrade
	Providers        []Provider // Table 6, busiest first
	// Latest is the start of the latest hour with mail in the store, set
	// when this period has none, so the report can name where data is;
	// zero when the store holds no mail at all.
	Latest    time.Time
	Receivers *Receivers // received DMARC and TLS reports (receivers.go)
	opts      Options
}

// Day is one day of Figure 3; OutDeliveries are recipients delivered,
// not attempts.
type Day struct {
	Date                  time.Time
	InMessages, InTLS     int64
	OutDeliveries, OutTLS int64
}

// Weekend reports whether the day is a Saturday or Sunday.
func (d Day) Weekend() bool {
	return d.Date.Weekday() == time.Saturday || d.Date.Weekday() == time.Sunday
}

// Domain is one peer domain's TLS coverage, both directions and periods.
type Domain struct {
	Name                                   string
	In, InTLS, Out, OutTLS                 int64
	PrevIn, PrevInTLS, PrevOut, PrevOutTLS int64
}

// Downgrade is a peer the milter or the log follower saw fall back to
// plaintext after using TLS (policy.Detector).
type Downgrade struct {
	Direction, Kind, Peer string
	Times                 int64
	Last                  time.Time
}

// Country is the inbound mail of one country.
type Country struct {
	Code          string
	Messages, TLS int64
}

// Build gathers a report from the store.
func Build(ctx context.Context, s *measure.Store, o Options) (*Report, error) {
	if o.Loc == nil {
		o.Loc = time.UTC
	}
	if o.Top <= 0 {
		o.Top = 10
	}
	if o.DowngradeDrop <= 0 {
		o.DowngradeDrop = 10
	}
	if o.MinMessages <= 0 {
		o.MinMessages = 3
	}
	r := &Report{Period: o.Period, Previous: o.Period.Previous(), opts: o}
	var err error
	if r.Current, err = s.BuildReport(ctx, r.Period.Since, r.Period.Until); err != nil {
		return nil, err
	}
	if r.Prior, err = s.BuildReport(ctx, r.Previous.Since, r.Previous.Until); err != nil {
		return nil, err
	}
	if r.Days, err = days(ctx, s, r.Period, o.Loc); err != nil {
		return nil, err
	}
	if r.Domains, err = domains(ctx, s, r.Period, r.Previous); err != nil {
		return nil, err
	}
	if r.Downgrades, err = downgrades(ctx, s, r.Period); err != nil {
		return nil, err
	}
	if r.Receivers, err = receivers(ctx, s, r.Period); err != nil {
		return nil, err
	}
	if r.Providers, err = providers(ctx, s, r.Period, r.Previous, NewProviderMap(o.Providers)); err != nil {
		return nil, err
	}
	if r.empty() {
		if r.Latest, _, err = s.LatestActivity(ctx); err != nil {
			return nil, err
		}
	}
	if o.GeoIP != "" {
		if r.Countries, err = countries(ctx, s, r.Period, o.GeoIP); err != nil {
			return nil, err
		}
		prior, err := countries(ctx, s, r.Previous, o.GeoIP)
		if err != nil {
			return nil, err
		}
		r.CountriesPrior = map[string]Country{}
		for _, c := range prior {
			r.CountriesPrior[c.Code] = c
		}
	}
	return r, nil
}

func days(ctx context.Context, s *measure.Store, p Period, loc *time.Location) ([]Day, error) {
	var out []Day
	index := map[string]int{}
	for d := p.Since.In(loc); d.Before(p.Until); d = d.AddDate(0, 0, 1) {
		index[d.Format("2006-01-02")] = len(out)
		out = append(out, Day{Date: d})
	}
	from, to := measure.Hours(p.Since, p.Until)
	for _, q := range []struct {
		sql      string
		all, tls func(*Day) *int64
	}{
		{`SELECT hour, SUM(messages), SUM(messages * (tls_version <> '')) FROM hourly_messages
			WHERE direction = 'inbound' AND hour >= ? AND hour < ? GROUP BY 1`,
			func(d *Day) *int64 { return &d.InMessages }, func(d *Day) *int64 { return &d.InTLS }},
		{`SELECT hour, SUM(deliveries), SUM(deliveries * (tls_version <> '')) FROM hourly_deliveries
			WHERE status = 'sent' AND hour >= ? AND hour < ? GROUP BY 1`,
			func(d *Day) *int64 { return &d.OutDeliveries }, func(d *Day) *int64 { return &d.OutTLS }},
	} {
		rows, err := s.DB.QueryContext(ctx, q.sql, from, to)
		if err != nil {
			return nil, fmt.Errorf("report: days: %w", err)
		}
		for rows.Next() {
			var hour, n, tls int64
			if err := rows.Scan(&hour, &n, &tls); err != nil {
				rows.Close()
				return nil, fmt.Errorf("report: days: %w", err)
			}
			date := time.Unix(hour*3600, 0).In(loc).Format("2006-01-02")
			if i, ok := index[date]; ok {
				*q.all(&out[i]) += n
				*q.tls(&out[i]) += tls
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("report: days: %w", err)
		}
	}
	return out, nil
}

// domains groups inbound mail by envelope sender domain (the header From
// for the null sender) and outbound deliveries (delivered recipients) by
// recipient domain.
func domains(ctx context.Context, s *measure.Store, cur, prev Period) ([]Domain, error) {
	byName := map[string]*Domain{}
	get := func(n string) *Domain {
		if d, ok := byName[n]; ok {
			return d
		}
		d := &Domain{Name: n}
		byName[n] = d
		return d
	}
	const in = `SELECT domain, SUM(messages), SUM(tls) FROM hourly_peers
		WHERE direction = 'inbound' AND hour >= ? AND hour < ? GROUP BY 1`
	// Delivered mail only: a domain whose mail was only deferred or
	// bounced has no outbound TLS share to show (issue 12).
	const out = `SELECT domain, SUM(deliveries), SUM(deliveries * (tls_version <> '')) FROM hourly_deliveries
		WHERE status = 'sent' AND hour >= ? AND hour < ? GROUP BY 1`
	for _, q := range []struct {
		sql string
		p   Period
		set func(d *Domain, n, tls int64)
	}{
		{in, cur, func(d *Domain, n, t int64) { d.In, d.InTLS = n, t }},
		{out, cur, func(d *Domain, n, t int64) { d.Out, d.OutTLS = n, t }},
		{in, prev, func(d *Domain, n, t int64) { d.PrevIn, d.PrevInTLS = n, t }},
		{out, prev, func(d *Domain, n, t int64) { d.PrevOut, d.PrevOutTLS = n, t }},
	} {
		from, to := measure.Hours(q.p.Since, q.p.Until)
		rows, err := s.DB.QueryContext(ctx, q.sql, from, to)
		if err != nil {
			return nil, fmt.Errorf("report: domains: %w", err)
		}
		for rows.Next() {
			var name string
			var n, tls int64
			if err := rows.Scan(&name, &n, &tls); err != nil {
				rows.Close()
				return nil, fmt.Errorf("report: domains: %w", err)
			}
			q.set(get(name), n, tls)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("report: domains: %w", err)
		}
	}
	list := make([]Domain, 0, len(byName))
	for _, d := range byName {
		list = append(list, *d)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i].In+list[i].Out, list[j].In+list[j].Out
		if a != b {
			return a > b
		}
		return list[i].Name < list[j].Name
	})
	return list, nil
}

// countries looks up each distinct sending address once.
func countries(ctx context.Context, s *measure.Store, p Period, path string) ([]Country, error) {
	db, err := geoip.Open("", path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer db.Close()
	from, to := measure.Hours(p.Since, p.Until)
	rows, err := s.DB.QueryContext(ctx, `SELECT client_ip, SUM(messages), SUM(tls)
		FROM hourly_clients WHERE hour >= ? AND hour < ? GROUP BY 1`, from, to)
	if err != nil {
		return nil, fmt.Errorf("report: countries: %w", err)
	}
	defer rows.Close()
	by := map[string]*Country{}
	for rows.Next() {
		var ip string
		var n, tls int64
		if err := rows.Scan(&ip, &n, &tls); err != nil {
			return nil, fmt.Errorf("report: countries: %w", err)
		}
		code := lookupCountry(db, ip)
		c, ok := by[code]
		if !ok {
			c = &Country{Code: code}
			by[code] = c
		}
		c.Messages += n
		c.TLS += tls
	}
	out := make([]Country, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Messages != out[j].Messages {
			return out[i].Messages > out[j].Messages
		}
		return out[i].Code < out[j].Code
	})
	return out, rows.Err()
}

// lookupCountry is ip's country code, "??" when unknown.
func lookupCountry(db *geoip.DB, ip string) string {
	if cc := db.Country(ip); cc != "" {
		return cc
	}
	return "??"
}

func downgrades(ctx context.Context, s *measure.Store, p Period) ([]Downgrade, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT direction, peer_kind, peer, COUNT(*), MAX(detected_at)
		FROM downgrades WHERE detected_at >= ? AND detected_at < ? GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3`,
		p.Since.Unix(), p.Until.Unix())
	if err != nil {
		return nil, fmt.Errorf("report: downgrades: %w", err)
	}
	defer rows.Close()
	var out []Downgrade
	for rows.Next() {
		var d Downgrade
		var last int64
		if err := rows.Scan(&d.Direction, &d.Kind, &d.Peer, &d.Times, &last); err != nil {
			return nil, fmt.Errorf("report: downgrades: %w", err)
		}
		d.Last = time.Unix(last, 0).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}
