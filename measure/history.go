package measure

import (
	"context"
	"fmt"
	"strings"

	"github.com/snowrain/snowrain/measure/maillog"
)

// The history the TLS policy services learn from (policy's learned
// policies, outbound and inbound), read from the rollups. Every figure
// sums over the fleet's nodes: a domain one node delivered to in
// plaintext is not learned by another.

// authenticatedLevels are the certificate verdicts a learned policy
// counts as authenticated TLS (maillog's levels).
var authenticatedLevels = []any{maillog.LevelTrusted, maillog.LevelVerified, maillog.LevelDANE}

// DeliveryHistory is what was delivered to a recipient domain: recipients
// delivered over TLS with an authenticated certificate, and in plaintext.
type DeliveryHistory struct {
	Authenticated, Plaintext int64
}

// DeliveryHistory reads the deliveries to any of the domain's forms
// (A-label and U-label, as stored by each MTA) from the hour fromHour on.
func (s *Store) DeliveryHistory(ctx context.Context, forms []string, fromHour int64) (DeliveryHistory, error) {
	var h DeliveryHistory
	in, args := inList(forms)
	err := s.DB.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN tls_level IN (?, ?, ?) THEN deliveries ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN tls_version = '' THEN deliveries ELSE 0 END), 0)
		FROM hourly_deliveries WHERE domain IN (`+in+`) AND hour >= ? AND status = ?`,
		append(append(append([]any{}, authenticatedLevels...), args...), fromHour, maillog.StatusSent)...).
		Scan(&h.Authenticated, &h.Plaintext)
	if err != nil {
		return h, fmt.Errorf("measure: delivery history: %w", err)
	}
	return h, nil
}

// LearnableDomains lists the recipient domains with at least minDeliveries
// deliveries over authenticated TLS and none in plaintext from the hour
// fromHour on: the candidates for learned policies.
func (s *Store) LearnableDomains(ctx context.Context, fromHour, minDeliveries int64) ([]string, error) {
	out, err := Rows(ctx, s.DB, `SELECT domain FROM hourly_deliveries WHERE hour >= ? AND status = ?
		GROUP BY domain HAVING SUM(CASE WHEN tls_level IN (?, ?, ?) THEN deliveries ELSE 0 END) >= ?
		AND SUM(CASE WHEN tls_version = '' THEN deliveries ELSE 0 END) = 0 ORDER BY 1`,
		append(append([]any{fromHour, maillog.StatusSent}, authenticatedLevels...), minDeliveries), Column[string])
	if err != nil {
		return nil, fmt.Errorf("measure: learnable domains: %w", err)
	}
	return out, nil
}

// InboundHistory reads the messages received from a sender domain (any
// of its forms) from the hour fromHour on, and how many came over TLS.
func (s *Store) InboundHistory(ctx context.Context, forms []string, fromHour int64) (messages, tls int64, err error) {
	in, args := inList(forms)
	err = s.DB.QueryRowContext(ctx, `SELECT COALESCE(SUM(messages), 0), COALESCE(SUM(tls), 0) FROM hourly_peers
		WHERE direction = ? AND domain IN (`+in+`) AND hour >= ?`, append(append([]any{string(Inbound)}, args...), fromHour)...).
		Scan(&messages, &tls)
	if err != nil {
		return 0, 0, fmt.Errorf("measure: inbound history: %w", err)
	}
	return messages, tls, nil
}

// inList is "?, ?, …" for vals, and vals as arguments.
func inList(vals []string) (string, []any) {
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	return strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", "), args
}
