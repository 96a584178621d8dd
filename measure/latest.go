package measure

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// LatestActivity returns the start of the latest hour that holds a
// message (either direction) or a delivery, of any node or of node; ok is
// false when there is neither. A report over an empty period uses it to
// name the period that has data. Both rollups are keyed by hour first:
// two index lookups (with a node, a scan of the rollups' hours).
func (s *Store) LatestActivity(ctx context.Context, node string) (t time.Time, ok bool, err error) {
	var hour sql.NullInt64
	cond, args := "", []any(nil)
	if node != "" {
		cond, args = " WHERE node = ?", []any{node, node}
	}
	err = s.DB.QueryRowContext(ctx, `SELECT MAX(h) FROM (
		SELECT MAX(hour) AS h FROM hourly_messages`+cond+` UNION ALL SELECT MAX(hour) FROM hourly_deliveries`+cond+`) AS latest`,
		args...).Scan(&hour)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("measure: latest activity: %w", err)
	}
	if !hour.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(hour.Int64*3600, 0).UTC(), true, nil
}

// PeerDomains lists every peer domain the store has seen, inbound senders
// and outbound recipients alike ("scan domains --from-db").
func (s *Store) PeerDomains(ctx context.Context) ([]string, error) {
	ds, err := Rows(ctx, s.DB, `SELECT domain FROM hourly_peers WHERE domain <> '(none)'
		UNION SELECT domain FROM hourly_deliveries ORDER BY 1`, nil, Column[string])
	if err != nil {
		return nil, fmt.Errorf("measure: peer domains: %w", err)
	}
	return ds, nil
}
