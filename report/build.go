package report

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/snowrain/snowrain/feedback"
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
	// Node narrows every section to the records one node of a fleet
	// wrote (`snowrain report --node`); empty: every node, summed.
	Node string
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
	Receivers *feedback.Received // received DMARC and TLS reports (receivers.go)
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
type Downgrade = measure.DowngradedPeer

// Country is the inbound mail of one country.
type Country struct {
	Code          string
	Messages, TLS int64
}

// ErrUnknownNode is a node no record of the store names.
var ErrUnknownNode = errors.New("report: no mail recorded by node")

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
	if o.Node != "" {
		nodes, err := s.Nodes(ctx)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(nodes, o.Node) {
			return nil, fmt.Errorf("%w: %q; the nodes in %s: %s", ErrUnknownNode, o.Node, s.Path, strings.Join(nodes, ", "))
		}
	}
	cur := measure.Scope{Since: r.Period.Since, Until: r.Period.Until, Node: o.Node}
	prev := measure.Scope{Since: r.Previous.Since, Until: r.Previous.Until, Node: o.Node}
	var err error
	if r.Current, err = s.BuildReport(ctx, cur); err != nil {
		return nil, err
	}
	if r.Prior, err = s.BuildReport(ctx, prev); err != nil {
		return nil, err
	}
	if r.Days, err = days(ctx, s, cur, o.Loc); err != nil {
		return nil, err
	}
	if r.Domains, err = domains(ctx, s, cur, prev); err != nil {
		return nil, err
	}
	if r.Downgrades, err = s.DowngradedPeers(ctx, cur); err != nil {
		return nil, err
	}
	if r.Receivers, err = feedback.ReceivedIn(ctx, s, r.Period.Since, r.Period.Until); err != nil {
		return nil, err
	}
	if r.Providers, err = providers(ctx, s, cur, prev, NewProviderMap(o.Providers)); err != nil {
		return nil, err
	}
	if r.empty() {
		if r.Latest, _, err = s.LatestActivity(ctx, o.Node); err != nil {
			return nil, err
		}
	}
	if o.GeoIP != "" {
		if r.Countries, err = countries(ctx, s, cur, o.GeoIP); err != nil {
			return nil, err
		}
		prior, err := countries(ctx, s, prev, o.GeoIP)
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

// days adds the scope's hours up into days of loc (Figure 3).
func days(ctx context.Context, s *measure.Store, sc measure.Scope, loc *time.Location) ([]Day, error) {
	var out []Day
	index := map[string]int{}
	for d := sc.Since.In(loc); d.Before(sc.Until); d = d.AddDate(0, 0, 1) {
		index[d.Format("2006-01-02")] = len(out)
		out = append(out, Day{Date: d})
	}
	hours, err := s.HourlyTraffic(ctx, sc)
	if err != nil {
		return nil, err
	}
	for _, h := range hours {
		if i, ok := index[h.Hour.In(loc).Format("2006-01-02")]; ok {
			out[i].InMessages += h.InMessages
			out[i].InTLS += h.InTLS
			out[i].OutDeliveries += h.OutDeliveries
			out[i].OutTLS += h.OutTLS
		}
	}
	return out, nil
}

// domains pairs each peer domain's mail in both periods, busiest first:
// inbound mail by envelope sender domain (the header From for the null
// sender), outbound deliveries (delivered recipients) by recipient
// domain.
func domains(ctx context.Context, s *measure.Store, cur, prev measure.Scope) ([]Domain, error) {
	byName := map[string]*Domain{}
	get := func(n string) *Domain {
		if d, ok := byName[n]; ok {
			return d
		}
		d := &Domain{Name: n}
		byName[n] = d
		return d
	}
	for _, w := range []struct {
		sc  measure.Scope
		set func(*Domain, measure.PeerTraffic)
	}{
		{cur, func(d *Domain, p measure.PeerTraffic) {
			d.In, d.InTLS, d.Out, d.OutTLS = p.In, p.InTLS, p.Out, p.OutTLS
		}},
		{prev, func(d *Domain, p measure.PeerTraffic) {
			d.PrevIn, d.PrevInTLS, d.PrevOut, d.PrevOutTLS = p.In, p.InTLS, p.Out, p.OutTLS
		}},
	} {
		peers, err := s.PeerTraffic(ctx, w.sc)
		if err != nil {
			return nil, err
		}
		for _, p := range peers {
			w.set(get(p.Domain), p)
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
func countries(ctx context.Context, s *measure.Store, sc measure.Scope, path string) ([]Country, error) {
	db, err := geoip.Open("", path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer db.Close()
	clients, err := s.ClientTraffic(ctx, sc)
	if err != nil {
		return nil, err
	}
	by := map[string]*Country{}
	for _, cl := range clients {
		code := lookupCountry(db, cl.IP)
		c, ok := by[code]
		if !ok {
			c = &Country{Code: code}
			by[code] = c
		}
		c.Messages += cl.Messages
		c.TLS += cl.TLS
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
	return out, nil
}

// lookupCountry is ip's country code, "??" when unknown.
func lookupCountry(db *geoip.DB, ip string) string {
	if cc := db.Country(ip); cc != "" {
		return cc
	}
	return "??"
}
