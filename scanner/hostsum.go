package scanner

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
)

// Stripping reports whether a host shows STARTTLS being tampered with on
// its path: the command rewritten, the extension list masked, or STARTTLS
// hidden from EHLO though the server takes it.
func (h *HostResult) Stripping() bool {
	switch h.Class {
	case StripEchoReplaced, StripEchoTruncated, StripEchoLowercased, StripUnadvertised:
		return true
	}
	return h.EHLOMasked
}

// HostSummary is Tables 9–12 for one host sweep.
type HostSummary struct {
	// Probed counts every address tried (closed ports included), Open
	// those that accepted the connection.
	Probed, Open, Responsive, Handshake int64
	Classes                             map[string]int64
	Stripping                           int64
	CiscoTampering                      int64 // echo replaced by X's, or XXXX in the extension list
	ASes                                []ASStripping
}

// ASStripping is one AS's servers (Table 12 lists those at 100%).
type ASStripping struct {
	ASN             uint
	Org             string
	Servers, Strips int64
}

// SummarizeHosts reads run id's host results.
func SummarizeHosts(ctx context.Context, db *sql.DB, id int64) (*HostSummary, error) {
	rows, err := db.QueryContext(ctx, `SELECT result FROM scan_hosts WHERE run_id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("scanner: host summary: %w", err)
	}
	defer rows.Close()
	s := &HostSummary{Classes: map[string]int64{}}
	byAS := map[uint]*ASStripping{}
	for rows.Next() {
		var js []byte
		rows.Scan(&js)
		var h HostResult
		if json.Unmarshal(js, &h) != nil {
			continue
		}
		s.Probed++ // runs stored before checkpoints: only what was kept
		if h.ErrorClass == ErrClassConnect || h.ErrorClass == ErrClassBlocked {
			continue
		}
		s.Open++
		if h.Banner == "" {
			continue
		}
		s.Responsive++
		s.Classes[h.Class]++
		if h.Class == StripHandshake || h.Class == StripUnadvertised {
			s.Handshake++
		}
		if h.Stripping() {
			s.Stripping++
		}
		if h.Class == StripEchoReplaced || h.EHLOMasked {
			s.CiscoTampering++
		}
		if h.ASN != 0 {
			a := byAS[h.ASN]
			if a == nil {
				a = &ASStripping{ASN: h.ASN, Org: h.Organization}
				byAS[h.ASN] = a
			}
			a.Servers++
			if h.Stripping() {
				a.Strips++
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Closed ports are counted by the sweep's checkpoint, not stored.
	if tried, ok, err := sweepTried(ctx, db, id); err != nil {
		return nil, err
	} else if ok {
		s.Probed = tried
	}
	for _, a := range byAS {
		s.ASes = append(s.ASes, *a)
	}
	sort.Slice(s.ASes, func(i, j int) bool {
		if s.ASes[i].Strips != s.ASes[j].Strips {
			return s.ASes[i].Strips > s.ASes[j].Strips
		}
		return s.ASes[i].ASN < s.ASes[j].ASN
	})
	return s, rows.Err()
}

// StrippingIPs and FalsifiedIPs read the address sets the exposure join
// needs.
func StrippingIPs(ctx context.Context, db *sql.DB, id int64) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT result FROM scan_hosts WHERE run_id = ?`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var js []byte
		rows.Scan(&js)
		var h HostResult
		if json.Unmarshal(js, &h) == nil && h.Stripping() {
			out[h.IP] = true
		}
	}
	return out, rows.Err()
}

// FalsifiedIPs returns the addresses falsified answers pointed to.
func FalsifiedIPs(ctx context.Context, db *sql.DB, id int64) (map[string]bool, *ResolverSummary, error) {
	rows, err := db.QueryContext(ctx, `SELECT ip, result FROM scan_resolvers WHERE run_id = ?`, id)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	all := map[string]*ResolverResult{}
	for rows.Next() {
		var ip string
		var js []byte
		rows.Scan(&ip, &js)
		r := &ResolverResult{}
		if json.Unmarshal(js, r) == nil {
			all[ip] = r
			for _, a := range r.FalseAddrs {
				out[a] = true
			}
		}
	}
	return out, SummarizeResolvers(all), rows.Err()
}

// DomainsBehind counts a domain scan's domains whose mail servers (any MX
// address) are in ips.
func DomainsBehind(ctx context.Context, db *sql.DB, domainsRun int64, ips map[string]bool) (int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT result FROM scan_domains WHERE run_id = ?`, domainsRun)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		var js []byte
		rows.Scan(&js)
		var d DomainResult
		if json.Unmarshal(js, &d) != nil {
			continue
		}
	mx:
		for _, m := range d.MX {
			for _, ip := range m.IPs {
				if ips[ip] {
					n++
					break mx
				}
			}
		}
	}
	return n, rows.Err()
}

// CiscoIPs returns the hosts showing Cisco-style tampering.
func CiscoIPs(ctx context.Context, db *sql.DB, id int64) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT result FROM scan_hosts WHERE run_id = ?`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var js []byte
		rows.Scan(&js)
		var h HostResult
		if json.Unmarshal(js, &h) == nil && (h.Class == StripEchoReplaced || h.EHLOMasked) {
			out[h.IP] = true
		}
	}
	return out, rows.Err()
}
