package scanner

import (
	"context"
	"database/sql"
	"slices"
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
	Classes                             map[StripClass]int64
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
	s := &HostSummary{Classes: map[StripClass]int64{}}
	byAS := map[uint]*ASStripping{}
	err := eachStored(ctx, db, "scan_hosts", id, func(h *HostResult) {
		s.Probed++ // runs stored before checkpoints: only what was kept
		if h.ErrorClass == ErrClassConnect || h.ErrorClass == ErrClassBlocked {
			return
		}
		s.Open++
		if h.Banner == "" {
			return
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
	})
	if err != nil {
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
	return s, nil
}

// StrippingIPs and FalsifiedIPs read the address sets the exposure join
// needs.
func StrippingIPs(ctx context.Context, db *sql.DB, id int64) (map[string]bool, error) {
	return hostIPs(ctx, db, id, (*HostResult).Stripping)
}

// CiscoIPs returns the hosts showing Cisco-style tampering.
func CiscoIPs(ctx context.Context, db *sql.DB, id int64) (map[string]bool, error) {
	return hostIPs(ctx, db, id, func(h *HostResult) bool { return h.Class == StripEchoReplaced || h.EHLOMasked })
}

// hostIPs returns the addresses of run id's hosts that keep says.
func hostIPs(ctx context.Context, db *sql.DB, id int64, keep func(*HostResult) bool) (map[string]bool, error) {
	out := map[string]bool{}
	err := eachStored(ctx, db, "scan_hosts", id, func(h *HostResult) {
		if keep(h) {
			out[h.IP] = true
		}
	})
	return out, err
}

// FalsifiedIPs returns the addresses falsified answers pointed to.
func FalsifiedIPs(ctx context.Context, db *sql.DB, id int64) (map[string]bool, *ResolverSummary, error) {
	out := map[string]bool{}
	all := map[string]*ResolverResult{}
	err := eachStored(ctx, db, "scan_resolvers", id, func(r *ResolverResult) {
		all[r.IP] = r
		for _, a := range r.FalseAddrs {
			out[a] = true
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return out, SummarizeResolvers(all), nil
}

// DomainsBehind counts a domain scan's domains whose mail servers (any MX
// address) are in ips.
func DomainsBehind(ctx context.Context, db *sql.DB, domainsRun int64, ips map[string]bool) (int64, error) {
	var n int64
	err := eachStored(ctx, db, "scan_domains", domainsRun, func(d *DomainResult) {
		for _, m := range d.MX {
			if slices.ContainsFunc(m.IPs, func(ip string) bool { return ips[ip] }) {
				n++
				return
			}
		}
	})
	return n, err
}
