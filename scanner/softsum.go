package scanner

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/snowrain/snowrain/measure"
)

// SoftwareRow is one line of Table 5 for a run: servers of one software,
// offering STARTTLS or not, completing a handshake at one TLS version,
// classified by one rule.
type SoftwareRow struct {
	Software   string `json:"software"`
	Rule       string `json:"rule"`
	STARTTLS   bool   `json:"starttls_offered"`
	TLSVersion string `json:"tls_version"` // "" when no handshake completed
	Servers    int64  `json:"servers"`
}

// SoftwareSummary is Table 5 for one run: every server that greeted.
type SoftwareSummary struct {
	Servers    int64            `json:"servers"` // addresses that sent a greeting
	Rows       []SoftwareRow    `json:"rows"`
	BySoftware map[string]int64 `json:"by_software"`
	// Unrecorded counts servers of runs made before the EHLO reply was
	// kept: classified by their banner alone.
	BannerOnly int64 `json:"banner_only"`
}

// SummarizeSoftware reads run id's servers: a domain run's grabs
// (scan_ips) or a port-25 sweep's hosts (scan_hosts).
func SummarizeSoftware(ctx context.Context, db *sql.DB, id int64, kind string) (*SoftwareSummary, error) {
	q := `SELECT result FROM scan_ips WHERE run_id = ?`
	if kind == "hosts" {
		q = `SELECT result FROM scan_hosts WHERE run_id = ?`
	}
	s := &SoftwareSummary{BySoftware: map[string]int64{}}
	counts := map[SoftwareRow]int64{}
	err := measure.Each(ctx, db, q, []any{id}, func(rows *sql.Rows) error {
		js, err := measure.Column[[]byte](rows)
		if err != nil {
			return err
		}
		row, bannerOnly, ok := softwareRow(kind, js)
		if !ok {
			return nil
		}
		if bannerOnly {
			s.BannerOnly++
		}
		s.Servers++
		counts[row]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanner: software summary: %w", err)
	}
	for r, n := range counts {
		r.Servers = n
		s.Rows = append(s.Rows, r)
		s.BySoftware[r.Software] += n
	}
	sort.Slice(s.Rows, func(i, j int) bool {
		a, b := s.Rows[i], s.Rows[j]
		if s.BySoftware[a.Software] != s.BySoftware[b.Software] {
			return s.BySoftware[a.Software] > s.BySoftware[b.Software]
		}
		if a.Software != b.Software {
			return a.Software < b.Software
		}
		if a.Servers != b.Servers {
			return a.Servers > b.Servers
		}
		return fmt.Sprint(a) < fmt.Sprint(b)
	})
	return s, nil
}

// softwareRow reads one stored result; false for addresses that never
// greeted (closed, blocked, silent). Results stored before grabs kept the
// software are classified from their banner alone (bannerOnly).
func softwareRow(kind string, js []byte) (row SoftwareRow, bannerOnly, ok bool) {
	var banner, version string
	var starttls bool
	var sw *Software
	if kind == "hosts" {
		var h HostResult
		if json.Unmarshal(js, &h) != nil {
			return row, false, false
		}
		banner, starttls, sw, version = h.Banner, h.Advertised, h.Software, h.TLSVersion
	} else {
		var g Grab
		if json.Unmarshal(js, &g) != nil {
			return row, false, false
		}
		banner, starttls, sw = g.Banner, g.STARTTLS, g.Software
		if g.TLS != nil {
			version = g.TLS.Version
		}
	}
	if banner == "" {
		return row, false, false
	}
	row = SoftwareRow{STARTTLS: starttls, TLSVersion: version}
	if sw == nil {
		c := ClassifySoftware(banner, nil)
		sw, bannerOnly = &c, true
	}
	row.Software, row.Rule = sw.Name, sw.Rule
	return row, bannerOnly, true
}
