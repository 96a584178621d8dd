package measure

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/snowrain/snowrain/measure/maillog"
)

// The report's per-hour, per-peer, per-client and downgrade figures
// (report.Build renders them). Each sums over the fleet's nodes unless
// the scope names one: two nodes that saw the same peer in the same hour
// hold a rollup row each, and the peer's figure is their sum.

// HourTraffic is one hour of Figure 3: inbound messages and recipients
// delivered outbound, and how many of each went over TLS.
type HourTraffic struct {
	Hour                  time.Time
	InMessages, InTLS     int64
	OutDeliveries, OutTLS int64
}

// HourlyTraffic reads the scope's hours that hold mail, oldest first.
func (s *Store) HourlyTraffic(ctx context.Context, sc Scope) ([]HourTraffic, error) {
	by := map[int64]*HourTraffic{}
	get := func(h int64) *HourTraffic {
		if t, ok := by[h]; ok {
			return t
		}
		t := &HourTraffic{Hour: time.Unix(h*3600, 0).UTC()}
		by[h] = t
		return t
	}
	where, args := sc.rollup()
	err := Each(ctx, s.DB, `SELECT hour, SUM(messages), SUM(CASE WHEN tls_version <> '' THEN messages ELSE 0 END)
		FROM hourly_messages WHERE direction = ? AND `+where+` GROUP BY 1`, append([]any{string(Inbound)}, args...),
		func(r *sql.Rows) error {
			var h, n, tls int64
			if err := r.Scan(&h, &n, &tls); err != nil {
				return err
			}
			t := get(h)
			t.InMessages, t.InTLS = n, tls
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("measure: hourly traffic: %w", err)
	}
	// Delivered mail only: deferrals and bounces are attempts (issue 12).
	err = Each(ctx, s.DB, `SELECT hour, SUM(deliveries), SUM(CASE WHEN tls_version <> '' THEN deliveries ELSE 0 END)
		FROM hourly_deliveries WHERE status = ? AND `+where+` GROUP BY 1`, append([]any{maillog.StatusSent}, args...),
		func(r *sql.Rows) error {
			var h, n, tls int64
			if err := r.Scan(&h, &n, &tls); err != nil {
				return err
			}
			t := get(h)
			t.OutDeliveries, t.OutTLS = n, tls
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("measure: hourly traffic: %w", err)
	}
	out := make([]HourTraffic, 0, len(by))
	for _, t := range by {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b HourTraffic) int { return a.Hour.Compare(b.Hour) })
	return out, nil
}

// PeerTraffic is one peer domain's mail in a scope: inbound messages by
// envelope sender domain (the header From's for the null sender) and
// recipients delivered to it outbound, with their TLS shares.
type PeerTraffic struct {
	Domain      string
	In, InTLS   int64
	Out, OutTLS int64
}

// PeerTraffic reads every peer domain of the scope, by name.
func (s *Store) PeerTraffic(ctx context.Context, sc Scope) ([]PeerTraffic, error) {
	by := map[string]*PeerTraffic{}
	get := func(d string) *PeerTraffic {
		if p, ok := by[d]; ok {
			return p
		}
		p := &PeerTraffic{Domain: d}
		by[d] = p
		return p
	}
	where, args := sc.rollup()
	err := Each(ctx, s.DB, `SELECT domain, SUM(messages), SUM(tls) FROM hourly_peers
		WHERE direction = ? AND `+where+` GROUP BY 1`, append([]any{string(Inbound)}, args...), func(r *sql.Rows) error {
		var d string
		var n, tls int64
		if err := r.Scan(&d, &n, &tls); err != nil {
			return err
		}
		p := get(d)
		p.In, p.InTLS = n, tls
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("measure: peer traffic: %w", err)
	}
	// Delivered mail only: a domain whose mail was only deferred or
	// bounced has no outbound TLS share to show (issue 12).
	err = Each(ctx, s.DB, `SELECT domain, SUM(deliveries), SUM(CASE WHEN tls_version <> '' THEN deliveries ELSE 0 END)
		FROM hourly_deliveries WHERE status = ? AND `+where+` GROUP BY 1`, append([]any{maillog.StatusSent}, args...),
		func(r *sql.Rows) error {
			var d string
			var n, tls int64
			if err := r.Scan(&d, &n, &tls); err != nil {
				return err
			}
			p := get(d)
			p.Out, p.OutTLS = n, tls
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("measure: peer traffic: %w", err)
	}
	out := make([]PeerTraffic, 0, len(by))
	for _, p := range by {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b PeerTraffic) int { return cmp.Compare(a.Domain, b.Domain) })
	return out, nil
}

// ClientTraffic is the inbound mail of one client address in a scope.
type ClientTraffic struct {
	IP            string
	Messages, TLS int64
}

// ClientTraffic reads the scope's inbound mail by client address.
func (s *Store) ClientTraffic(ctx context.Context, sc Scope) ([]ClientTraffic, error) {
	where, args := sc.rollup()
	out, err := Rows(ctx, s.DB, `SELECT client_ip, SUM(messages), SUM(tls) FROM hourly_clients
		WHERE `+where+` GROUP BY 1 ORDER BY 1`, args, func(r *sql.Rows) (ClientTraffic, error) {
		var c ClientTraffic
		err := r.Scan(&c.IP, &c.Messages, &c.TLS)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("measure: client traffic: %w", err)
	}
	return out, nil
}

// DowngradedPeer is a peer the milter or the log follower saw fall back
// to plaintext after using TLS (policy.Detector), with how often and
// when last in a scope.
type DowngradedPeer struct {
	Direction, Kind, Peer string
	Times                 int64
	Last                  time.Time
}

// DowngradedPeers reads the scope's downgrades by peer, most frequent
// first.
func (s *Store) DowngradedPeers(ctx context.Context, sc Scope) ([]DowngradedPeer, error) {
	where, args := sc.records("detected_at")
	out, err := Rows(ctx, s.DB, `SELECT direction, peer_kind, peer, COUNT(*), MAX(detected_at)
		FROM downgrades WHERE `+where+` GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3, 1, 2`, args,
		func(r *sql.Rows) (DowngradedPeer, error) {
			var d DowngradedPeer
			var last int64
			err := r.Scan(&d.Direction, &d.Kind, &d.Peer, &d.Times, &last)
			d.Last = time.Unix(last, 0).UTC()
			return d, err
		})
	if err != nil {
		return nil, fmt.Errorf("measure: downgrades: %w", err)
	}
	return out, nil
}

// Nodes lists the fleet nodes that wrote mail records, by name ("" for
// rows written before schema 15, or by a store without a node).
func (s *Store) Nodes(ctx context.Context) ([]string, error) {
	out, err := Rows(ctx, s.DB, `SELECT node FROM hourly_messages UNION SELECT node FROM hourly_deliveries ORDER BY 1`,
		nil, Column[string])
	if err != nil {
		return nil, fmt.Errorf("measure: nodes: %w", err)
	}
	return out, nil
}
