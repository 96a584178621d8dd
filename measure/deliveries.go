package measure

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/snowrain/snowrain/measure/maillog"
)

// LogPosition is how far a log source has been read.
type LogPosition struct {
	Source string
	Inode  uint64
	Offset int64
}

// LogPosition returns the stored position of source on this store's
// node, if any: each host of a fleet follows a log of its own. A position
// stored before positions were per node (the unnamed node's) is this
// node's until it stores one.
func (s *Store) LogPosition(ctx context.Context, source string) (LogPosition, bool, error) {
	p := LogPosition{Source: source}
	err := s.DB.QueryRowContext(ctx, `SELECT inode, "offset" FROM log_positions WHERE source = ? AND node IN (?, '')
		ORDER BY node DESC LIMIT 1`, source, s.Node).Scan(&p.Inode, &p.Offset)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("measure: log position: %w", err)
	}
	return p, true, nil
}

const insertDelivery = `INSERT INTO deliveries (delivered_at, mta, queue_id, domain, relay_host,
	relay_ip, relay_port, status, dsn, delay, tls_version, cipher, cipher_bits, tls_level,
	key_exchange, bulk_cipher, mac, forward_secret, node) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

// deliveryValues appends the row of insertDelivery.
func deliveryValues(args []driver.Value, d *maillog.Delivery, node string) []driver.Value {
	return append(args, d.Time.Unix(), d.MTA, d.QueueID, d.Domain, d.RelayHost, d.RelayIP,
		i64(d.RelayPort), string(d.Status), d.DSN, d.Delay, d.TLSVersion, d.Cipher, i64(d.CipherBits), string(d.Level),
		d.Suite.KeyExchange, d.Suite.Cipher, d.Suite.MAC, d.Suite.ForwardSecret, node)
}

// upsertLogPosition keeps a node's position in a source ("offset" is
// quoted: PostgreSQL reserves the word).
const upsertLogPosition = `INSERT INTO log_positions (node, source, inode, "offset", updated_at)
	VALUES (?, ?, ?, ?, ?) ON CONFLICT(node, source) DO UPDATE SET inode = excluded.inode,
	"offset" = excluded."offset", updated_at = excluded.updated_at`

// RecordDeliveries writes ds and, in the same transaction, pos (when not
// nil): a crash then neither loses nor repeats a delivery.
func (s *Store) RecordDeliveries(ctx context.Context, ds []*maillog.Delivery, pos *LogPosition) error {
	return s.RecordDeliveriesTLS(ctx, ds, nil, pos)
}

// RecordDeliveriesTLS is RecordDeliveries with each delivery's TLS
// outcome (outs[i] for ds[i], nil when it had no SMTP session), kept in
// delivery_tls for the TLS reports.
func (s *Store) RecordDeliveriesTLS(ctx context.Context, ds []*maillog.Delivery, outs []*maillog.TLSOutcome, pos *LogPosition) error {
	if s.pool != nil {
		return s.recordDeliveriesPG(ctx, ds, outs, pos)
	}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("measure: deliveries: %w", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, insertDelivery)
	if err != nil {
		return fmt.Errorf("measure: deliveries: %w", err)
	}
	defer st.Close()
	roll := newRollup(s.Node)
	var tlsStmt *sql.Stmt
	if len(outs) > 0 {
		if tlsStmt, err = tx.PrepareContext(ctx, insertDeliveryTLS); err != nil {
			return fmt.Errorf("measure: deliveries: %w", err)
		}
		defer tlsStmt.Close()
	}
	var vals []driver.Value
	args := make([]any, 0, 19)
	for i, d := range ds {
		roll.addDelivery(d)
		roll.addProviderDelivery(d)
		vals = deliveryValues(vals[:0], d, s.Node)
		args = args[:0]
		for _, v := range vals {
			args = append(args, v)
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return fmt.Errorf("measure: deliveries: %w", err)
		}
		if i < len(outs) && outs[i] != nil {
			if err := recordOutcome(ctx, tlsStmt, res, outs[i]); err != nil {
				return err
			}
		}
	}
	if err := roll.write(func(q string, args ...driver.Value) error {
		a := make([]any, len(args))
		for i, v := range args {
			a[i] = v
		}
		_, err := tx.ExecContext(ctx, q, a...)
		return err
	}); err != nil {
		return fmt.Errorf("measure: rollup: %w", err)
	}
	if pos != nil {
		if _, err := tx.ExecContext(ctx, upsertLogPosition, s.Node, pos.Source, pos.Inode, pos.Offset, time.Now().Unix()); err != nil {
			return fmt.Errorf("measure: log position: %w", err)
		}
	}
	return tx.Commit()
}
