package scanner

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// SweepState is one shard of a run: its permutation and progress, stored
// with its run (scan_sweeps). The shards of one run share targets, seed
// and shard count; each may run on its own machine, writing the same
// database, and any machine may continue any shard from its checkpoint.
type SweepState struct {
	Targets       string // canonical CIDR list (Targets.String), or the domain list's identity
	Seed          uint64
	Shard, Shards int
	Checkpoint
	// Node is the machine that last ran the shard (measure.Store.Node).
	Node string
	// Updated is when it last stored a checkpoint, Finished when it
	// finished (zero: not yet, or not since it was continued).
	Updated, Finished time.Time
}

// ErrShardStarted is returned by NewShard for a shard the run already
// holds: another machine runs it, or ran it; continue it with StartSweep.
var ErrShardStarted = errors.New("shard already started")

// String lists the target prefixes, comma separated: a resumed sweep must
// walk the same space.
func (t *Targets) String() string {
	parts := make([]string, len(t.prefixes))
	for i, p := range t.prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// Sweeps returns the shards the run stored when it was opened (and those
// this process started), by shard number.
func (r *Run) Sweeps() []SweepState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedSweeps(r.sweeps)
}

func sortedSweeps(m map[int]*SweepState) []SweepState {
	var out []SweepState
	for _, st := range m {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return out
}

// StartSweep makes st's shard the one this process sweeps, on node
// st.Node: a shard the run stored comes back with its checkpoint (it is
// continued, from whichever machine), a new one is recorded. Its
// targets, seed and shard count must be the run's.
func (r *Run) StartSweep(ctx context.Context, st SweepState) (SweepState, error) {
	return r.startShard(ctx, st, true)
}

// NewShard is StartSweep for a shard the run must not hold yet: it
// fails with ErrShardStarted when any process, on any machine, started
// it first.
func (r *Run) NewShard(ctx context.Context, st SweepState) (SweepState, error) {
	return r.startShard(ctx, st, false)
}

func (r *Run) startShard(ctx context.Context, st SweepState, resume bool) (SweepState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.matches(st); err != nil {
		return st, err
	}
	if st.Shard < 0 || st.Shard >= max(st.Shards, 1) {
		return st, fmt.Errorf("scanner: shard %d of %d", st.Shard, st.Shards)
	}
	now := time.Now()
	res, err := r.db.ExecContext(ctx, `INSERT INTO scan_sweeps (run_id, shard, shards, targets, seed, next_step, tried, node, updated_at)
		VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?) ON CONFLICT (run_id, shard) DO NOTHING`,
		r.ID, st.Shard, st.Shards, st.Targets, int64(st.Seed), st.Node, now.Unix())
	if err != nil {
		return st, fmt.Errorf("scanner: start shard: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return st, fmt.Errorf("scanner: start shard: %w", err)
	} else if n == 1 {
		st.Checkpoint, st.Updated, st.Finished = Checkpoint{}, now.UTC().Truncate(time.Second), time.Time{}
		r.sweeps[st.Shard] = &st
		r.sweep = &st
		return st, nil
	}
	// Stored before: read it as it is now (another machine may have
	// moved it since this run was opened).
	sweeps, err := loadSweeps(ctx, r.db, r.ID)
	if err != nil {
		return st, err
	}
	old := sweeps[st.Shard]
	if old == nil {
		return st, fmt.Errorf("scanner: shard %d of run %d vanished", st.Shard, r.ID)
	}
	if !resume {
		return *old, fmt.Errorf("scanner: shard %d/%d of run %s was started by %s (checkpoint %d, %s): %w",
			st.Shard, st.Shards, r.label(), nodeName(old.Node), old.Next, shardState(old), ErrShardStarted)
	}
	if _, err := r.db.ExecContext(ctx, `UPDATE scan_sweeps SET node = ?, updated_at = ?, finished_at = NULL
		WHERE run_id = ? AND shard = ? AND finished_at IS NULL`, st.Node, now.Unix(), r.ID, st.Shard); err != nil {
		return st, fmt.Errorf("scanner: continue shard: %w", err)
	}
	if old.Finished.IsZero() {
		old.Node, old.Updated = st.Node, now.UTC().Truncate(time.Second)
	}
	r.sweeps[st.Shard] = old
	r.sweep = old
	return *old, nil
}

func nodeName(n string) string {
	if n == "" {
		return "an unnamed node"
	}
	return "node " + n
}

func shardState(s *SweepState) string {
	if s.Finished.IsZero() {
		return "not finished"
	}
	return "finished " + s.Finished.Format("2006-01-02 15:04 MST")
}

// matches checks st against what the run sweeps: its spec, or for a run
// made before runs held one, its other shards.
func (r *Run) matches(st SweepState) error {
	want := r.spec
	if want.Shards == 0 {
		for _, o := range r.sweeps {
			want = RunSpec{Kind: r.spec.Kind, Targets: o.Targets, Seed: o.Seed, Shards: o.Shards}
			break
		}
	}
	if want.Shards == 0 {
		return nil
	}
	if want.Targets != st.Targets || want.Seed != st.Seed || want.Shards != st.Shards {
		return fmt.Errorf("scanner: run %s sweeps %s with seed %d in %d shards, not %s with seed %d in %d: %w",
			r.label(), want.Targets, want.Seed, want.Shards, st.Targets, st.Seed, st.Shards, ErrRunMismatch)
	}
	return nil
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
	_, err := tx.Exec(`UPDATE scan_sweeps SET next_step = ?, tried = ?, updated_at = ? WHERE run_id = ? AND shard = ?`,
		int64(r.sweep.Next), int64(r.sweep.Tried), time.Now().Unix(), r.ID, r.sweep.Shard)
	if err != nil {
		return fmt.Errorf("scanner: store checkpoint: %w", err)
	}
	return nil
}

// finishShard marks the current shard finished, and the run once every
// shard has. Each statement commits on its own, so of shards finishing
// at once the last to count sees all the others.
func (r *Run) finishShard(ctx context.Context, now int64) error {
	if _, err := r.db.ExecContext(ctx, `UPDATE scan_sweeps SET finished_at = ?, updated_at = ? WHERE run_id = ? AND shard = ?`,
		now, now, r.ID, r.sweep.Shard); err != nil {
		return fmt.Errorf("scanner: finish shard: %w", err)
	}
	r.sweep.Finished = time.Unix(now, 0).UTC()
	if _, err := r.db.ExecContext(ctx, `UPDATE scan_runs SET finished_at = ? WHERE id = ? AND finished_at IS NULL
		AND (SELECT COUNT(*) FROM scan_sweeps WHERE run_id = ? AND finished_at IS NOT NULL) >= COALESCE(shards, 1)`,
		now, r.ID, r.ID); err != nil {
		return fmt.Errorf("scanner: finish run: %w", err)
	}
	return nil
}

func loadSweeps(ctx context.Context, db *sql.DB, id int64) (map[int]*SweepState, error) {
	out := map[int]*SweepState{}
	err := measure.Each(ctx, db, `SELECT shard, shards, targets, seed, next_step, tried, node, updated_at, finished_at
		FROM scan_sweeps WHERE run_id = ?`, []any{id}, func(rows *sql.Rows) error {
		st := &SweepState{}
		var seed, next, tried int64
		var updated, finished sql.NullInt64
		if err := rows.Scan(&st.Shard, &st.Shards, &st.Targets, &seed, &next, &tried, &st.Node, &updated, &finished); err != nil {
			return err
		}
		st.Seed, st.Next, st.Tried = uint64(seed), uint64(next), uint64(tried)
		if updated.Valid {
			st.Updated = time.Unix(updated.Int64, 0).UTC()
		}
		if finished.Valid {
			st.Finished = time.Unix(finished.Int64, 0).UTC()
		}
		out[st.Shard] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanner: sweep state: %w", err)
	}
	return out, nil
}

// sweepTried is Table 9's count of addresses tried over the run's shards,
// when it stored checkpoints.
func sweepTried(ctx context.Context, db *sql.DB, id int64) (int64, bool, error) {
	var n, tried int64
	err := db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(tried), 0) FROM scan_sweeps WHERE run_id = ?`, id).Scan(&n, &tried)
	if err != nil || n == 0 {
		return 0, false, err
	}
	return tried, true, nil
}
