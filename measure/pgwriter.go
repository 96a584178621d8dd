package measure

import (
	"bytes"
	"cmp"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/snowrain/snowrain/measure/maillog"
)

// The PostgreSQL writer's bounds. A commit that does not finish within
// pgCommitTimeout fails (and is retried, then dropped, as on SQLite);
// after a failure the next attempt waits, doubling from pgBackoffMin to
// pgBackoffMax, so that a server that is down is asked about once every
// few seconds while the queue fills and drops, and is written to again
// within pgBackoffMax of its return.
const (
	pgCommitTimeout = 10 * time.Second
	pgBackoffMin    = 100 * time.Millisecond
	pgBackoffMax    = 5 * time.Second
)

// pgWriter is the Writer's PostgreSQL side: one transaction per batch,
// COPY for the records and one pipelined round trip for the rollup
// upserts. It is used by the Writer's goroutine only.
type pgWriter struct {
	pool *pgxpool.Pool
	node string
	wait time.Duration // current backoff; 0 after a success
	next time.Time     // no attempt before
}

func newPGWriter(pool *pgxpool.Pool, node string) *pgWriter {
	return &pgWriter{pool: pool, node: node}
}

func (p *pgWriter) commit(events []Event) error {
	if d := time.Until(p.next); d > 0 {
		time.Sleep(d)
	}
	b := &pgBatch{node: p.node, roll: newRollup(p.node)}
	for _, ev := range events {
		if err := ev.copyPG(b); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgCommitTimeout)
	defer cancel()
	if err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return b.write(ctx, tx) }); err != nil {
		p.wait = min(max(2*p.wait, pgBackoffMin), pgBackoffMax)
		p.next = time.Now().Add(p.wait)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			// Not an answer of the server: the connection is gone (a
			// restart leaves every idle one dead). Drop them all rather
			// than meeting them one failed batch at a time.
			p.pool.Reset()
		}
		return fmt.Errorf("measure: postgres: %w", err)
	}
	p.wait, p.next = 0, time.Time{}
	return nil
}

// pgBatch collects one transaction's rows; write sends them.
type pgBatch struct {
	node      string
	conns     []*Connection
	msgs      []*Message
	sigs      int
	downs     []*Downgrade
	decisions []*PolicyDecision
	policies  []*MTASTSPolicy
	roll      *rollup
}

func (c *Connection) copyPG(b *pgBatch) error {
	b.roll.addProviderConnection(c)
	b.conns = append(b.conns, c)
	return nil
}

func (m *Message) copyPG(b *pgBatch) error {
	b.roll.addMessage(m)
	b.msgs = append(b.msgs, m)
	b.sigs += len(m.Signatures)
	return nil
}

func (d *Downgrade) copyPG(b *pgBatch) error {
	b.downs = append(b.downs, d)
	return nil
}

func (p *PolicyDecision) copyPG(b *pgBatch) error {
	b.decisions = append(b.decisions, p)
	return nil
}

func (p *MTASTSPolicy) copyPG(b *pgBatch) error {
	b.policies = append(b.policies, p)
	return nil
}

// The COPY column lists are read from the SQLite INSERT texts, so that
// both backends write each value into the same column.
var (
	connectionColumns = columnsOf(insertConnection)
	messageColumns    = append([]string{"id"}, columnsOf(insertMessage)...)
	signatureColumns  = columnsOf(insertSignature)
	downgradeColumns  = columnsOf(insertDowngrade)
	decisionColumns   = columnsOf(insertPolicyDecision)
	deliveryColumns   = append([]string{"id"}, columnsOf(insertDelivery)...)
	deliveryTLSCols   = columnsOf(insertDeliveryTLS)
)

// columnsOf returns the column names of "INSERT INTO t (a, b, …)",
// unquoted.
func columnsOf(insert string) []string {
	_, list, _ := strings.Cut(insert, "(")
	list, _, _ = strings.Cut(list, ")")
	var cols []string
	for _, c := range strings.Split(list, ",") {
		cols = append(cols, strings.Trim(strings.TrimSpace(c), `"`))
	}
	return cols
}

func (b *pgBatch) write(ctx context.Context, tx pgx.Tx) error {
	if err := copyRows(ctx, tx, "connections", connectionColumns, len(b.conns), func(i int, a []driver.Value) []driver.Value {
		return b.conns[i].values(a, b.node)
	}); err != nil {
		return err
	}
	if len(b.msgs) > 0 {
		// Ids drawn from the table's sequence before the COPY link each
		// signature to its message; concurrent writers draw disjoint ids.
		ids, err := nextIDs(ctx, tx, "messages", len(b.msgs))
		if err != nil {
			return err
		}
		if err := copyRows(ctx, tx, "messages", messageColumns, len(b.msgs), func(i int, a []driver.Value) []driver.Value {
			return b.msgs[i].values(append(a, ids[i]), b.node)
		}); err != nil {
			return err
		}
		mi, seq := 0, 0
		if err := copyRows(ctx, tx, "signatures", signatureColumns, b.sigs, func(_ int, a []driver.Value) []driver.Value {
			for seq >= len(b.msgs[mi].Signatures) {
				mi, seq = mi+1, 0
			}
			seq++
			return b.msgs[mi].Signatures[seq-1].values(a, ids[mi], seq-1)
		}); err != nil {
			return err
		}
	}
	if err := copyRows(ctx, tx, "downgrades", downgradeColumns, len(b.downs), func(i int, a []driver.Value) []driver.Value {
		return b.downs[i].values(a, b.node)
	}); err != nil {
		return err
	}
	if err := copyRows(ctx, tx, "policy_decisions", decisionColumns, len(b.decisions), func(i int, a []driver.Value) []driver.Value {
		return b.decisions[i].values(a, b.node)
	}); err != nil {
		return err
	}
	var ups upserts
	// The policy cache keeps a domain's latest policy: the batch's last.
	latest := map[string]*MTASTSPolicy{}
	for _, p := range b.policies {
		latest[p.Domain] = p
	}
	for _, p := range latest {
		ups.add(upsertMTASTSPolicy, p.values(nil)...)
	}
	if err := b.roll.write(ups.add); err != nil {
		return err
	}
	return ups.send(ctx, tx)
}

// nextIDs draws n ids from the sequence of table's id column.
func nextIDs(ctx context.Context, tx pgx.Tx, table string, n int) ([]int64, error) {
	rows, err := tx.Query(ctx, `SELECT nextval((SELECT pg_get_serial_sequence($1, 'id'))) FROM generate_series(1, $2)`, table, n)
	if err != nil {
		return nil, fmt.Errorf("ids of %s: %w", table, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err == nil && len(ids) != n {
		err = fmt.Errorf("%d ids of %s for %d rows", len(ids), table, n)
	}
	return ids, err
}

// copyRows copies n rows into table in COPY's text format, row i given
// by row (values in the SQLite writer's types). Encoding the text here
// costs a fraction of pgx's typed encoding of each value.
func copyRows(ctx context.Context, tx pgx.Tx, table string, cols []string, n int,
	row func(i int, a []driver.Value) []driver.Value) error {
	if n == 0 {
		return nil
	}
	var vals []driver.Value
	buf := make([]byte, 0, 256*n)
	for i := range n {
		vals = row(i, vals[:0])
		for j, v := range vals {
			if j > 0 {
				buf = append(buf, '\t')
			}
			buf = appendCopyValue(buf, v)
		}
		buf = append(buf, '\n')
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(buf),
		"COPY "+pgx.Identifier{table}.Sanitize()+" ("+strings.Join(quoted, ", ")+") FROM STDIN")
	if err != nil {
		return fmt.Errorf("copy %s: %w", table, err)
	}
	if tag.RowsAffected() != int64(n) {
		return fmt.Errorf("copy %s: %d rows of %d", table, tag.RowsAffected(), n)
	}
	return nil
}

// appendCopyValue appends v as a field of COPY's text format: \N for
// NULL, booleans as 0 and 1 (integer columns), text escaped.
func appendCopyValue(buf []byte, v driver.Value) []byte {
	switch v := v.(type) {
	case nil:
		return append(buf, `\N`...)
	case string:
		return appendCopyText(buf, pgText(v))
	case int64:
		return strconv.AppendInt(buf, v, 10)
	case int:
		return strconv.AppendInt(buf, int64(v), 10)
	case uint64:
		return strconv.AppendUint(buf, v, 10)
	case bool:
		return strconv.AppendInt(buf, b2i(v), 10)
	case float64:
		return strconv.AppendFloat(buf, v, 'g', -1, 64)
	}
	return appendCopyText(buf, pgText(fmt.Sprint(v)))
}

// appendCopyText escapes what COPY's text format gives a meaning.
func appendCopyText(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			buf = append(buf, '\\', '\\')
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, c)
		}
	}
	return buf
}

// pgText makes s storable as PostgreSQL text: a UTF8 database refuses
// invalid UTF-8 and NUL bytes anywhere in a statement or COPY, which would
// fail (and drop) a whole batch for one hostile header. Invalid bytes
// become U+FFFD and NUL is dropped; SQLite stores the bytes as they came.
func pgText(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// upserts collects statements and sends them in one pipelined round
// trip, in a fixed order (by statement, then key): writers that upsert
// the same rollup rows lock them in the same order and never deadlock.
type upserts []upsertStmt

type upsertStmt struct {
	q    string
	args []any
}

func (u *upserts) add(q string, args ...driver.Value) error {
	a := make([]any, len(args))
	for i, v := range args {
		switch x := v.(type) {
		case bool:
			v = b2i(x)
		case string:
			v = pgText(x)
		}
		a[i] = v
	}
	*u = append(*u, upsertStmt{q, a})
	return nil
}

func (u upserts) send(ctx context.Context, tx pgx.Tx) error {
	if len(u) == 0 {
		return nil
	}
	slices.SortFunc(u, func(a, b upsertStmt) int {
		if c := strings.Compare(a.q, b.q); c != 0 {
			return c
		}
		return compareArgs(a.args, b.args)
	})
	batch := &pgx.Batch{}
	rebound := map[string]string{}
	for _, s := range u {
		q, ok := rebound[s.q]
		if !ok {
			q = Rebind(s.q)
			rebound[s.q] = q
		}
		batch.Queue(q, s.args...)
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("upserts: %w", err)
	}
	return nil
}

// compareArgs orders argument lists of one statement (int64 and string
// values in the same places).
func compareArgs(a, b []any) int {
	for i := range min(len(a), len(b)) {
		var c int
		switch x := a[i].(type) {
		case int64:
			y, _ := b[i].(int64)
			c = cmp.Compare(x, y)
		case string:
			y, _ := b[i].(string)
			c = strings.Compare(x, y)
		default:
			c = strings.Compare(fmt.Sprint(a[i]), fmt.Sprint(b[i]))
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// recordDeliveriesPG is RecordDeliveriesTLS on PostgreSQL: ids drawn for
// the deliveries link their TLS outcomes, both tables are copied, and the
// rollups and the log position go in the same transaction.
func (s *Store) recordDeliveriesPG(ctx context.Context, ds []*maillog.Delivery, outs []*maillog.TLSOutcome, pos *LogPosition) error {
	roll := newRollup(s.Node)
	var tlsRows []int
	for i, d := range ds {
		roll.addDelivery(d)
		roll.addProviderDelivery(d)
		if i < len(outs) && outs[i] != nil {
			tlsRows = append(tlsRows, i)
		}
	}
	var ups upserts
	if err := roll.write(ups.add); err != nil {
		return fmt.Errorf("measure: rollup: %w", err)
	}
	if pos != nil {
		ups.add(upsertLogPosition, s.Node, pos.Source, pos.Inode, pos.Offset, time.Now().Unix())
	}
	ctx, cancel := context.WithTimeout(ctx, pgCommitTimeout) // the follower, too, must not hang
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if len(ds) > 0 {
			ids, err := nextIDs(ctx, tx, "deliveries", len(ds))
			if err != nil {
				return err
			}
			if err := copyRows(ctx, tx, "deliveries", deliveryColumns, len(ds), func(i int, a []driver.Value) []driver.Value {
				return deliveryValues(append(a, ids[i]), ds[i], s.Node)
			}); err != nil {
				return err
			}
			if err := copyRows(ctx, tx, "delivery_tls", deliveryTLSCols, len(tlsRows), func(i int, a []driver.Value) []driver.Value {
				o := outs[tlsRows[i]]
				return append(a, ids[tlsRows[i]], o.Session, string(o.Result), nullable(o.Reason))
			}); err != nil {
				return err
			}
		}
		return ups.send(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("measure: deliveries: %w", err)
	}
	return nil
}
