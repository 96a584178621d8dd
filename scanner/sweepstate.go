package scanner

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// SweepState is one shard of an address sweep: its permutation and
// progress, stored with its run (scan_sweeps). The shards of one run
// share targets, seed and shard count; each may run on its own machine
// and be gathered into the run with --resume.
type SweepState struct {
	Targets       string // canonical CIDR list (Targets.String)
	Seed          uint64
	Shard, Shards int
	Checkpoint
}

// String lists the target prefixes, comma separated: a resumed sweep must
// walk the same space.
func (t *Targets) String() string {
	parts := make([]string, len(t.prefixes))
	for i, p := range t.prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// Sweeps returns the shards the run stored, by shard number.
func (r *Run) Sweeps() []SweepState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []SweepState
	for _, st := range r.sweeps {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return out
}

// StartSweep makes st's shard the one this process sweeps: a shard the
// run stored comes back with its checkpoint, a new one is recorded. Its
// targets, seed and shard count must be those of the run's other shards.
func (r *Run) StartSweep(ctx context.Context, st SweepState) (SweepState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.sweeps {
		if o.Targets != st.Targets || o.Seed != st.Seed || o.Shards != st.Shards {
			return st, fmt.Errorf("scanner: run %d sweeps %s with seed %d in %d shards, not %s with seed %d in %d",
				r.ID, o.Targets, o.Seed, o.Shards, st.Targets, st.Seed, st.Shards)
		}
	}
	if old, ok := r.sweeps[st.Shard]; ok {
		r.sweep = old
		return *old, nil
	}
	st.Checkpoint = Checkpoint{}
	if _, err := r.db.ExecContext(ctx, `INSERT INTO scan_sweeps VALUES (?, ?, ?, ?, ?, 0, 0)`,
		r.ID, st.Shard, st.Shards, st.Targets, int64(st.Seed)); err != nil {
		return st, fmt.Errorf("scanner: start sweep: %w", err)
	}
	r.sweeps[st.Shard] = &st
	r.sweep = &st
	return st, nil
}

// current returns the shard this process sweeps, if StartSweep chose one.
func (r *Run) current() (SweepState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sweep == nil {
		return SweepState{}, false
	}
	return *r.sweep, true
}

// Checkpoint records the current shard's progress. It is stored in the
// same transaction as the results it covers, at the next flush.
func (r *Run) Checkpoint(c Checkpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sweep != nil {
		r.sweep.Checkpoint = c
		r.cpDirty = true
	}
}

func (r *Run) storeCheckpoint(tx *sql.Tx) error {
	_, err := tx.Exec(`UPDATE scan_sweeps SET next_step = ?, tried = ? WHERE run_id = ? AND shard = ?`,
		int64(r.sweep.Next), int64(r.sweep.Tried), r.ID, r.sweep.Shard)
	if err != nil {
		return fmt.Errorf("scanner: store checkpoint: %w", err)
	}
	return nil
}

func loadSweeps(ctx context.Context, db *sql.DB, id int64) (map[int]*SweepState, error) {
	rows, err := db.QueryContext(ctx, `SELECT shard, shards, targets, seed, next_step, tried FROM scan_sweeps WHERE run_id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("scanner: sweep state: %w", err)
	}
	defer rows.Close()
	out := map[int]*SweepState{}
	for rows.Next() {
		st := &SweepState{}
		var seed, next, tried int64
		if err := rows.Scan(&st.Shard, &st.Shards, &st.Targets, &seed, &next, &tried); err != nil {
			return nil, err
		}
		st.Seed, st.Next, st.Tried = uint64(seed), uint64(next), uint64(tried)
		out[st.Shard] = st
	}
	return out, rows.Err()
}

// sweepTried is Table 9's count of addresses tried over the run's shards,
// when it stored checkpoints.
func sweepTried(ctx context.Context, db *sql.DB, id int64) (int64, bool, error) {
	var n, tried sql.NullInt64
	err := db.QueryRowContext(ctx, `SELECT COUNT(*), SUM(tried) FROM scan_sweeps WHERE run_id = ?`, id).Scan(&n, &tried)
	if err != nil || n.Int64 == 0 {
		return 0, false, err
	}
	return tried.Int64, true, nil
}
