package measure

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The milter's side of the exposure join (Tables 14 and 15: inbound mail
// from STARTTLS-stripping hosts and from addresses falsified MX answers
// point to). The sweeps' side is the scanner's; report joins the two.

// EachClient calls fn with every client address that sent mail in
// [since, until) and its messages, summed over the fleet's nodes (the
// hourly client rollup, so the hours the period touches).
func (s *Store) EachClient(ctx context.Context, since, until time.Time, fn func(ip string, messages int64) error) error {
	from, to := Hours(since, until)
	err := Each(ctx, s.DB, `SELECT client_ip, SUM(messages) FROM hourly_clients WHERE hour >= ? AND hour < ? GROUP BY client_ip`,
		[]any{from, to}, func(r *sql.Rows) error {
			var ip string
			var n int64
			if err := r.Scan(&ip, &n); err != nil {
				return err
			}
			return fn(ip, n)
		})
	if err != nil {
		return fmt.Errorf("measure: messages by client: %w", err)
	}
	return nil
}

// EachClientDomain calls fn with every client address and sender domain
// of the inbound messages received in [since, until), and how many there
// were. The sender domain is the envelope's, else the From header's, else
// "(none)".
func (s *Store) EachClientDomain(ctx context.Context, since, until time.Time, fn func(ip, domain string, messages int64) error) error {
	err := Each(ctx, s.DB, `SELECT client_ip, sender, COUNT(*) FROM (
			SELECT COALESCE(client_ip, '') AS client_ip,
				COALESCE(NULLIF(mail_from_domain, ''), NULLIF(from_domain, ''), '(none)') AS sender
			FROM messages WHERE direction = 'inbound' AND received_at >= ? AND received_at < ?) AS inbound
		GROUP BY client_ip, sender`, []any{since.Unix(), until.Unix()}, func(r *sql.Rows) error {
		var ip, d string
		var n int64
		if err := r.Scan(&ip, &d, &n); err != nil {
			return err
		}
		return fn(ip, d, n)
	})
	if err != nil {
		return fmt.Errorf("measure: messages by client and sender: %w", err)
	}
	return nil
}
