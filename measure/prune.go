package measure

import (
	"context"
	"fmt"
	"time"
)

// pruneStep deletes one table's rows older than the cut: ? is the cut in
// seconds, or in hours for a rollup. Children go before their parents.
type pruneStep struct {
	table, where string
	hours        bool
}

// pruneSteps are every table's retention. Tables left out hold no
// records of events: schema_migrations; log_positions (where each log
// was read up to: pruned, the follower would read its log again);
// policy_overrides and policy_version (imported configuration, not
// history); copy_progress (db copy's bookkeeping, removed when a copy
// completes). TestPruneEveryTable fails for a table in neither list.
var pruneSteps = []pruneStep{
	// What the milter recorded.
	{table: "signatures", where: "message_id IN (SELECT id FROM messages WHERE received_at <= ?)"},
	{table: "messages", where: "received_at <= ?"},
	{table: "connections", where: "started_at <= ?"},
	// What the MTA log said.
	{table: "delivery_tls", where: "delivery_id IN (SELECT id FROM deliveries WHERE delivered_at <= ?)"},
	{table: "deliveries", where: "delivered_at <= ?"},
	// What the policy services decided and saw.
	{table: "downgrades", where: "detected_at <= ?"},
	{table: "policy_decisions", where: "decided_at <= ?"},
	// Cached MTA-STS policies that expired before the cut (a fresh one
	// is kept however old its fetch).
	{table: "mta_sts_policies", where: "expires_at <= ?"},
	// A forgotten domain's learned history starts in the hour after
	// (policy.Engine.Forget); once every earlier hour is pruned, the
	// mark changes nothing.
	{table: "policy_forgotten", where: "forgotten_at / 3600 < ?", hours: true},
	// Rollup hours wholly before the cut go with the records.
	{table: "hourly_messages", where: "hour < ?", hours: true},
	{table: "hourly_dkim_failures", where: "hour < ?", hours: true},
	{table: "hourly_dkim_results", where: "hour < ?", hours: true},
	{table: "hourly_peers", where: "hour < ?", hours: true},
	{table: "hourly_clients", where: "hour < ?", hours: true},
	{table: "hourly_deliveries", where: "hour < ?", hours: true},
	{table: "hourly_providers", where: "hour < ?", hours: true},
	// Reports between mail domains: those we sent, by the day they
	// covered, and those we received, by the start of their period.
	{table: "sent_reports", where: "end_at <= ?"},
	{table: "received_dmarc_rows", where: "report IN (SELECT id FROM received_reports WHERE begin_at <= ?)"},
	{table: "received_tls_policies", where: "report IN (SELECT id FROM received_reports WHERE begin_at <= ?)"},
	{table: "received_tls_failures", where: "report IN (SELECT id FROM received_reports WHERE begin_at <= ?)"},
	{table: "received_reports", where: "begin_at <= ?"},
	// Scan runs started before the cut, with every result.
	{table: "scan_domains", where: "run_id IN (SELECT id FROM scan_runs WHERE started_at <= ?)"},
	{table: "scan_ips", where: "run_id IN (SELECT id FROM scan_runs WHERE started_at <= ?)"},
	{table: "scan_hosts", where: "run_id IN (SELECT id FROM scan_runs WHERE started_at <= ?)"},
	{table: "scan_resolvers", where: "run_id IN (SELECT id FROM scan_runs WHERE started_at <= ?)"},
	{table: "scan_sweeps", where: "run_id IN (SELECT id FROM scan_runs WHERE started_at <= ?)"},
	{table: "scan_runs", where: "started_at <= ?"},
}

// keptTables hold no records of events; Prune leaves them (pruneSteps
// says why).
var keptTables = []string{"schema_migrations", "log_positions", "policy_overrides", "policy_version", copyProgressTable}

// PruneCounts are the rows Prune deleted, by table.
type PruneCounts map[string]int64

// Prune deletes every record older than age, in every table, in one
// transaction, and returns how many rows went from each.
func (s *Store) Prune(ctx context.Context, age time.Duration) (PruneCounts, error) {
	cut := time.Now().Add(-age).Unix()
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("measure: prune: %w", err)
	}
	defer tx.Rollback()
	n := PruneCounts{}
	for _, st := range pruneSteps {
		arg := cut
		if st.hours {
			arg = cut / 3600
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM `+st.table+` WHERE `+st.where, arg)
		if err != nil {
			return nil, fmt.Errorf("measure: prune %s: %w", st.table, err)
		}
		if n[st.table], err = res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("measure: prune %s: %w", st.table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("measure: prune: %w", err)
	}
	return n, nil
}
