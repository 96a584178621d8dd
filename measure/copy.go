package measure

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Copying a store into another (`snowrain db copy`): a host's SQLite file
// into the PostgreSQL database of the fleet it joins, or a fleet's
// database back into a file. Every table is copied; the destination may
// hold rows already (the fleet's), so
//
//   - records get new ids in the destination (its sequence on
//     PostgreSQL, after its largest on SQLite) and the rows that point
//     at them (signatures, TLS outcomes, scan results, received report
//     rows) follow their parent;
//   - rollups add up: an hour two stores counted is their sum, as when
//     two nodes write it;
//   - keyed state (cached MTA-STS policies, imported and forgotten
//     policies, log positions) keeps the newer row.
//
// Progress is kept in the destination (copy_progress, per source and
// table), in the transaction of the rows it counts: a copy interrupted
// and run again goes on where it stopped, and a finished one is not
// repeated.

// copyProgressTable is where a copy keeps its progress.
const copyProgressTable = "copy_progress"

// copyChild is a table whose rows point at a record: column holds the
// record's id.
type copyChild struct{ table, column string }

// copyTable is how one table is copied.
type copyTable struct {
	name string
	// Records: an id column, renumbered, and the tables pointing at it.
	id       bool
	children []copyChild
	// Keyed state and rollups: the conflict key; counters add up,
	// otherwise newer (a larger value in column newer) wins.
	key      []string
	counters []string
	newer    string
}

// rollupCopy is a rollup table: its key is every column but its counters.
func rollupCopy(name string, counters ...string) copyTable {
	return copyTable{name: name, counters: counters}
}

var copyTables = []copyTable{
	{name: "connections", id: true},
	{name: "messages", id: true, children: []copyChild{{"signatures", "message_id"}}},
	{name: "deliveries", id: true, children: []copyChild{{"delivery_tls", "delivery_id"}}},
	{name: "downgrades", id: true},
	{name: "policy_decisions", id: true},
	{name: "sent_reports", id: true},
	{name: "received_reports", id: true, children: []copyChild{{"received_dmarc_rows", "report"},
		{"received_tls_policies", "report"}, {"received_tls_failures", "report"}}},
	{name: "scan_runs", id: true, children: []copyChild{{"scan_domains", "run_id"}, {"scan_ips", "run_id"},
		{"scan_hosts", "run_id"}, {"scan_resolvers", "run_id"}, {"scan_sweeps", "run_id"}}},
	rollupCopy("hourly_messages", "messages"),
	rollupCopy("hourly_dkim_failures", "signatures"),
	rollupCopy("hourly_dkim_results", "signatures"),
	rollupCopy("hourly_peers", "messages", "tls"),
	rollupCopy("hourly_clients", "messages", "tls"),
	rollupCopy("hourly_deliveries", "deliveries"),
	rollupCopy("hourly_providers", "messages"),
	{name: "mta_sts_policies", key: []string{"domain"}, newer: "fetched_at"},
	{name: "policy_forgotten", key: []string{"domain"}, newer: "forgotten_at"},
	{name: "policy_overrides", key: []string{"domain"}, newer: "imported_at"},
	{name: "log_positions", key: []string{"node", "source"}, newer: "updated_at"},
}

// copySkipped are not copied: the destination's own bookkeeping
// (policy_version is bumped instead, so that running daemons reload the
// policies copied in).
var copySkipped = []string{"schema_migrations", "policy_version", copyProgressTable}

// CopyOptions shape a copy.
type CopyOptions struct {
	// Node names the rows that name none (written before schema 15).
	Node string
	// Chunk is the records copied per transaction; default 2000.
	Chunk int
	// MaxRows stops the copy after about this many rows (0: no limit);
	// the next copy goes on.
	MaxRows int64
	// Progress, if set, is told after every transaction.
	Progress func(table string, rows int64)
}

// CopyStats say what a copy did.
type CopyStats struct {
	Source string           // the source as copy_progress names it
	Rows   map[string]int64 // rows copied by this run, by table
	Done   bool             // every table is copied (by this run or earlier ones)
}

// ErrSameStore is a copy of a store onto itself.
var ErrSameStore = errors.New("measure: copy: source and destination are the same store")

// Copy copies every table of src into dst (see copyTables), going on from
// where an earlier copy of the same source stopped.
func Copy(ctx context.Context, dst, src *Store, o CopyOptions) (*CopyStats, error) {
	if o.Chunk <= 0 {
		o.Chunk = 2000
	}
	if dst.Path == src.Path && dst.dialect == src.dialect {
		return nil, ErrSameStore
	}
	have, err := src.SchemaVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("measure: copy: source: %w", err)
	}
	if have > len(migrations) {
		return nil, fmt.Errorf("measure: copy: source schema %d is newer than this binary (%d)", have, len(migrations))
	}
	if have == 0 {
		return nil, fmt.Errorf("measure: copy: %s holds no snowrain schema", src.Path)
	}
	c := &copier{dst: dst, src: src, o: o, stats: &CopyStats{Rows: map[string]int64{}}}
	if c.stats.Source, err = sourceName(ctx, src); err != nil {
		return nil, err
	}
	c.stats.Done = true
	for _, t := range copyTables {
		done, err := c.table(ctx, t)
		if err != nil {
			return c.stats, fmt.Errorf("measure: copy %s: %w", t.name, err)
		}
		if !done {
			c.stats.Done = false
			break
		}
	}
	if c.policies > 0 {
		if _, err := dst.DB.ExecContext(ctx, `UPDATE policy_version SET version = version + 1 WHERE id = 1`); err != nil {
			return c.stats, fmt.Errorf("measure: copy: policy version: %w", err)
		}
	}
	return c.stats, nil
}

// sourceName names a source in copy_progress: its path (a PostgreSQL URL
// without password) and when its schema was created, so that another
// store at the same path is another source.
func sourceName(ctx context.Context, src *Store) (string, error) {
	var created int64
	if err := src.DB.QueryRowContext(ctx, `SELECT applied_at FROM schema_migrations WHERE version = 1`).Scan(&created); err != nil {
		return "", fmt.Errorf("measure: copy: source: %w", err)
	}
	return fmt.Sprintf("%s@%d", src.Path, created), nil
}

type copier struct {
	dst, src *Store
	o        CopyOptions
	stats    *CopyStats
	copied   int64 // rows, for MaxRows
	policies int64 // policy rows copied
}

// progress is a table's copy_progress row.
type progress struct {
	lastID, rows int64
	done         bool
}

func (c *copier) progress(ctx context.Context, table string) (progress, error) {
	var p progress
	err := c.dst.DB.QueryRowContext(ctx, `SELECT last_id, rows, done FROM copy_progress WHERE source = ? AND tbl = ?`,
		c.stats.Source, table).Scan(&p.lastID, &p.rows, &p.done)
	if errors.Is(err, sql.ErrNoRows) {
		return progress{}, nil
	}
	return p, err
}

func (c *copier) saveProgress(ctx context.Context, tx *sql.Tx, table string, p progress) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO copy_progress (source, tbl, last_id, rows, done) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (source, tbl) DO UPDATE SET last_id = excluded.last_id, rows = excluded.rows, done = excluded.done`,
		c.stats.Source, table, p.lastID, p.rows, p.done)
	return err
}

// tally counts n rows copied under table; false when MaxRows is
// reached.
func (c *copier) tally(table string, n int64) bool {
	c.copied += n
	if strings.HasPrefix(table, "policy_") || table == "mta_sts_policies" {
		c.policies += n
	}
	if c.o.Progress != nil {
		c.o.Progress(table, n)
	}
	return c.o.MaxRows <= 0 || c.copied < c.o.MaxRows
}

// table copies one table; false when the copy stopped at MaxRows first.
func (c *copier) table(ctx context.Context, t copyTable) (bool, error) {
	p, err := c.progress(ctx, t.name)
	if err != nil || p.done {
		return err == nil, err
	}
	ok, err := c.src.HasTable(ctx, t.name)
	if err != nil {
		return false, err
	}
	if !ok { // a source older than the table
		return true, c.finish(ctx, t.name, p)
	}
	if t.id {
		return c.records(ctx, t, p)
	}
	return c.keyed(ctx, t, p)
}

// finish marks a table copied.
func (c *copier) finish(ctx context.Context, table string, p progress) error {
	tx, err := c.dst.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	p.done = true
	if err := c.saveProgress(ctx, tx, table, p); err != nil {
		return err
	}
	return tx.Commit()
}

// columns are the columns of table both stores have, in the
// destination's order; a source older than a column gives its default.
func (c *copier) columns(ctx context.Context, table string) ([]string, error) {
	dc, err := columnsOfTable(ctx, c.dst, table)
	if err != nil {
		return nil, err
	}
	sc, err := columnsOfTable(ctx, c.src, table)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, col := range dc {
		if slices.Contains(sc, col) {
			out = append(out, col)
		}
	}
	return out, nil
}

func columnsOfTable(ctx context.Context, s *Store, table string) ([]string, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT * FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	return cols, rows.Close()
}

// quoted quotes the column names PostgreSQL reserves.
func quoted(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c
		if c == "offset" || c == "window" {
			out[i] = `"` + c + `"`
		}
	}
	return out
}

// readRows reads the rows of a query as values, text as strings.
func readRows(ctx context.Context, s *Store, q string, args []any, ncols int) ([][]any, error) {
	return Rows(ctx, s.DB, q, args, func(r *sql.Rows) ([]any, error) {
		vals := make([]any, ncols)
		ptrs := make([]any, ncols)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		return vals, nil
	})
}

// fillNode names the rows that name no node.
func (c *copier) fillNode(cols []string, rows [][]any) {
	i := slices.Index(cols, "node")
	if i < 0 || c.o.Node == "" {
		return
	}
	for _, r := range rows {
		if s, _ := r[i].(string); s == "" {
			r[i] = c.o.Node
		}
	}
}

// records copies a table of records in chunks by id, each chunk with the
// rows pointing at it, renumbered, in one transaction with its progress.
func (c *copier) records(ctx context.Context, t copyTable, p progress) (bool, error) {
	cols, err := c.columns(ctx, t.name)
	if err != nil {
		return false, err
	}
	idx := slices.Index(cols, "id")
	if idx < 0 {
		return false, errors.New("no id column")
	}
	type child struct {
		copyChild
		cols []string
		ref  int
	}
	var kids []child
	for _, k := range t.children {
		ok, err := c.src.HasTable(ctx, k.table)
		if err != nil {
			return false, err
		}
		if !ok {
			continue
		}
		kc, err := c.columns(ctx, k.table)
		if err != nil {
			return false, err
		}
		kids = append(kids, child{k, kc, slices.Index(kc, k.column)})
	}
	list := strings.Join(quoted(cols), ", ")
	for {
		rows, err := readRows(ctx, c.src, `SELECT `+list+` FROM `+t.name+` WHERE id > ? ORDER BY id LIMIT ?`,
			[]any{p.lastID, c.o.Chunk}, len(cols))
		if err != nil {
			return false, err
		}
		if len(rows) == 0 {
			return true, c.finish(ctx, t.name, p)
		}
		c.fillNode(cols, rows)
		first, last := rows[0][idx].(int64), rows[len(rows)-1][idx].(int64)
		tx, err := c.dst.DB.BeginTx(ctx, nil)
		if err != nil {
			return false, err
		}
		ids, err := c.dst.newIDs(ctx, tx, t.name, len(rows))
		if err != nil {
			tx.Rollback()
			return false, err
		}
		renumber := make(map[int64]int64, len(rows))
		for i, r := range rows {
			renumber[r[idx].(int64)] = ids[i]
			r[idx] = ids[i]
		}
		n := int64(len(rows))
		err = insertRows(ctx, tx, t.name, cols, rows, "")
		for _, k := range kids {
			if err != nil {
				break
			}
			var krows [][]any
			krows, err = readRows(ctx, c.src, `SELECT `+strings.Join(quoted(k.cols), ", ")+` FROM `+k.table+
				` WHERE `+k.column+` >= ? AND `+k.column+` <= ?`, []any{first, last}, len(k.cols))
			if err != nil {
				break
			}
			kept := krows[:0]
			for _, r := range krows {
				if id, ok := renumber[r[k.ref].(int64)]; ok {
					r[k.ref] = id
					kept = append(kept, r)
				}
			}
			if err = insertRows(ctx, tx, k.table, k.cols, kept, ""); err == nil {
				c.stats.Rows[k.table] += int64(len(kept))
				n += int64(len(kept))
			}
		}
		p.lastID, p.rows = last, p.rows+int64(len(rows))
		if err == nil {
			err = c.saveProgress(ctx, tx, t.name, p)
		}
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			tx.Rollback()
			return false, err
		}
		c.stats.Rows[t.name] += int64(len(rows))
		if !c.tally(t.name, n) {
			return false, nil
		}
	}
}

// keyed copies a rollup or a keyed table in one transaction: its rows
// merge with the destination's, so a copy cut short must not have added
// part of them.
func (c *copier) keyed(ctx context.Context, t copyTable, p progress) (bool, error) {
	cols, err := c.columns(ctx, t.name)
	if err != nil {
		return false, err
	}
	key := t.key
	if len(t.counters) > 0 {
		key = nil
		for _, col := range cols {
			if !slices.Contains(t.counters, col) {
				key = append(key, col)
			}
		}
	}
	var set []string
	for _, col := range quoted(cols) {
		switch {
		case slices.Contains(key, strings.Trim(col, `"`)):
		case len(t.counters) > 0:
			set = append(set, col+" = "+t.name+"."+col+" + excluded."+col)
		default:
			set = append(set, col+" = excluded."+col)
		}
	}
	conflict := " ON CONFLICT (" + strings.Join(quoted(key), ", ") + ") DO UPDATE SET " + strings.Join(set, ", ")
	if t.newer != "" {
		conflict += " WHERE excluded." + t.newer + " > " + t.name + "." + t.newer
	}
	tx, err := c.dst.DB.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	list := strings.Join(quoted(cols), ", ")
	var n int64
	for after := 0; ; after += c.o.Chunk {
		// Pages in key order: the source does not change under a copy
		// (it is a file no daemon writes, or a read-only snapshot of
		// what it is).
		rows, err := readRows(ctx, c.src, `SELECT `+list+` FROM `+t.name+` ORDER BY `+strings.Join(quoted(key), ", ")+
			` LIMIT ? OFFSET ?`, []any{c.o.Chunk, after}, len(cols))
		if err != nil {
			return false, err
		}
		if len(rows) == 0 {
			break
		}
		c.fillNode(cols, rows)
		if err := insertRows(ctx, tx, t.name, cols, mergeKeys(cols, key, t, rows), conflict); err != nil {
			return false, err
		}
		n += int64(len(rows))
	}
	p.rows, p.done = n, true
	if err := c.saveProgress(ctx, tx, t.name, p); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	c.stats.Rows[t.name] += n
	return c.tally(t.name, n), nil
}

// mergeKeys folds rows with the same key (two source rows named alike
// once their node was filled in) into one, as one statement may not
// update a row twice: counters add up, otherwise the newer row wins.
func mergeKeys(cols, key []string, t copyTable, rows [][]any) [][]any {
	var ki, ci []int
	for i, c := range cols {
		if slices.Contains(key, c) {
			ki = append(ki, i)
		}
		if slices.Contains(t.counters, c) {
			ci = append(ci, i)
		}
	}
	ni := slices.Index(cols, t.newer)
	at := map[string]int{}
	out := rows[:0]
	for _, r := range rows {
		var b strings.Builder
		for _, i := range ki {
			fmt.Fprintf(&b, "%v\x00", r[i])
		}
		k := b.String()
		j, ok := at[k]
		switch {
		case !ok:
			at[k] = len(out)
			out = append(out, r)
		case len(ci) > 0:
			for _, i := range ci {
				a, _ := out[j][i].(int64)
				b, _ := r[i].(int64)
				out[j][i] = a + b
			}
		case ni >= 0:
			a, _ := out[j][ni].(int64)
			if b, _ := r[ni].(int64); b > a {
				out[j] = r
			}
		}
	}
	return out
}

// insertRows inserts rows into table, as many per statement as both
// backends take (SQLite binds at most 32,766 values, PostgreSQL 65,535),
// with conflict after the values.
func insertRows(ctx context.Context, tx *sql.Tx, table string, cols []string, rows [][]any, conflict string) error {
	per := max(1, 30000/len(cols))
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	head := "INSERT INTO " + table + " (" + strings.Join(quoted(cols), ", ") + ") VALUES "
	for len(rows) > 0 {
		n := min(per, len(rows))
		args := make([]any, 0, n*len(cols))
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		q := head + strings.TrimSuffix(strings.Repeat(one+", ", n), ", ") + conflict
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// newIDs draws n ids for new rows of table: from its sequence on
// PostgreSQL (writers of a fleet draw theirs from it too), after its
// largest on SQLite (the transaction holds the file's write lock from
// its first insert on; a daemon writing meanwhile waits).
func (s *Store) newIDs(ctx context.Context, tx *sql.Tx, table string, n int) ([]int64, error) {
	if s.dialect == Postgres {
		return Rows(ctx, tx, `SELECT nextval((SELECT pg_get_serial_sequence(?, 'id'))) FROM generate_series(1, ?)`,
			[]any{table, n}, Column[int64])
	}
	var top int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM `+table).Scan(&top); err != nil {
		return nil, err
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = top + 1 + int64(i)
	}
	return ids, nil
}

// HasTable reports whether the store has table (a store opened read-only
// may predate it).
func (s *Store) HasTable(ctx context.Context, table string) (bool, error) {
	q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	if s.dialect == Postgres {
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?`
	}
	var n int
	if err := s.DB.QueryRowContext(ctx, q, table).Scan(&n); err != nil {
		return false, fmt.Errorf("measure: %w", err)
	}
	return n > 0, nil
}

// Tables lists the store's tables, by name.
func (s *Store) Tables(ctx context.Context) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1`
	if s.dialect == Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`
	}
	out, err := Rows(ctx, s.DB, q, nil, Column[string])
	if err != nil {
		return nil, fmt.Errorf("measure: tables: %w", err)
	}
	return out, nil
}
