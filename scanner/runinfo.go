package scanner

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RunInfo is what a report heading says about a stored run.
type RunInfo struct {
	ID       int64
	Name     string    // "" for an unnamed run
	Kind     string    // domains, hosts, resolvers
	Input    string    // what was scanned, as the command that created it described it
	Started  time.Time // UTC
	Finished time.Time // zero until every shard has finished
	// What every shard sweeps (RunSpec); Shards is 0 for a domain run
	// made before runs had shards.
	Targets string
	Seed    uint64
	Shards  int
	// Sweeps are the shards that reported, by shard number.
	Sweeps []SweepState
}

// Label names the run as commands take it: its name, or its ID.
func (r RunInfo) Label() string {
	if r.Name != "" {
		return r.Name
	}
	return strconv.FormatInt(r.ID, 10)
}

// ShardsLine says how many of the run's shards reported and how each
// stands, e.g. "2 of 2 shards reported: 0/2 on m1 finished, 1/2 on m3
// not finished (step 40)"; "" for a run without shards.
func (r RunInfo) ShardsLine() string {
	if r.Shards == 0 {
		return ""
	}
	var each []string
	for _, s := range r.Sweeps {
		state := "finished"
		if s.Finished.IsZero() {
			state = "not finished"
			if s.Next > 0 {
				state += fmt.Sprintf(" (step %d)", s.Next)
			}
		}
		on := ""
		if s.Node != "" {
			on = " on " + s.Node
		}
		each = append(each, fmt.Sprintf("%d/%d%s %s", s.Shard, s.Shards, on, state))
	}
	line := fmt.Sprintf("%d of %d shards reported", len(r.Sweeps), r.Shards)
	if len(each) > 0 {
		line += ": " + strings.Join(each, ", ")
	}
	return line
}

// LatestRun returns the newest run of kind; ok is false when there is none.
func LatestRun(ctx context.Context, db *sql.DB, kind string) (RunInfo, bool, error) {
	var id int64
	err := db.QueryRowContext(ctx, `SELECT id FROM scan_runs WHERE kind = ? ORDER BY id DESC LIMIT 1`, kind).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return RunInfo{}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, fmt.Errorf("scanner: latest %s run: %w", kind, err)
	}
	return LoadRun(ctx, db, id)
}

// LookupRun reads the run ref names: a run ID (digits), or a run's name.
func LookupRun(ctx context.Context, db *sql.DB, ref string) (RunInfo, bool, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return LoadRun(ctx, db, id)
	}
	var id int64
	err := db.QueryRowContext(ctx, `SELECT id FROM scan_runs WHERE name = ?`, ref).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return RunInfo{Name: ref}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, fmt.Errorf("scanner: run %q: %w", ref, err)
	}
	return LoadRun(ctx, db, id)
}

// LoadRun reads run id and its shards; ok is false when it does not exist.
func LoadRun(ctx context.Context, db *sql.DB, id int64) (RunInfo, bool, error) {
	r := RunInfo{ID: id}
	var started int64
	var finished, seed, shards sql.NullInt64
	var name, targets sql.NullString
	err := db.QueryRowContext(ctx, `SELECT kind, input, started_at, finished_at, name, targets, seed, shards
		FROM scan_runs WHERE id = ?`, id).Scan(&r.Kind, &r.Input, &started, &finished, &name, &targets, &seed, &shards)
	if errors.Is(err, sql.ErrNoRows) {
		return RunInfo{ID: id}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, fmt.Errorf("scanner: run %d: %w", id, err)
	}
	r.Started = time.Unix(started, 0).UTC()
	if finished.Valid {
		r.Finished = time.Unix(finished.Int64, 0).UTC()
	}
	r.Name, r.Targets, r.Seed, r.Shards = name.String, targets.String, uint64(seed.Int64), int(shards.Int64)
	sweeps, err := loadSweeps(ctx, db, id)
	if err != nil {
		return RunInfo{}, false, err
	}
	r.Sweeps = sortedSweeps(sweeps)
	return r, true, nil
}

// ValidRunName checks a name for --run: 1 to 64 letters, digits, '.',
// '_' and '-', starting with a letter or digit, and not all digits (those
// are run IDs).
func ValidRunName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("a run name has 1 to 64 characters")
	}
	digits := true
	for i, c := range name {
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			digits = false
		case (c == '.' || c == '_' || c == '-') && i > 0:
			digits = false
		default:
			return fmt.Errorf("a run name is letters, digits, '.', '_' and '-', starting with a letter or digit: not %q", name)
		}
	}
	if digits {
		return fmt.Errorf("%q is a run ID, not a name: a name has a letter", name)
	}
	return nil
}
