package scanner

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// Run is one stored sweep: results go to the store (and JSON lines), so a
// killed sweep resumes where it stopped, and shards on several machines
// writing one database make one run.
type Run struct {
	ID    int64
	db    *sql.DB
	jsonl io.Writer
	spec  RunSpec // what every shard sweeps

	mu      sync.Mutex
	done    map[string]bool
	known   map[string]*Grab
	batch   []pending
	sweeps  map[int]*SweepState // each shard's permutation and checkpoint
	sweep   *SweepState         // the shard this process sweeps
	cpDirty bool                // its checkpoint changed since the last flush
}

type pending struct {
	table, key string
	rank       int
	json       []byte
}

// RunSpec is what a run sweeps, fixed when it is created: every shard
// that joins it, from any machine, must sweep the same.
type RunSpec struct {
	// Name, when set, names the run (ValidRunName): unique in the
	// database, so that shards on several machines find one run.
	Name  string
	Kind  string // domains, hosts, resolvers
	Input string // what is scanned, as the creating command describes it
	// Targets is what is swept: the address prefixes (Targets.String) or
	// the domain list's identity (ListIdentity). Seed orders addresses
	// and spreads domains over the shards; Shards is how many parts the
	// sweep is split in (0: a run without shards, as NewRun makes).
	Targets string
	Seed    uint64
	Shards  int
	// AnySeed says Seed is a default nobody chose: joining a run takes
	// the run's seed instead. AnyTargets: Targets was not given, the
	// run's are taken (a run is only created with targets).
	AnySeed, AnyTargets bool
}

// ErrRunMismatch is wrapped by the errors of a shard that does not sweep
// what its run sweeps (kind, targets, seed or shard count).
var ErrRunMismatch = errors.New("not what the run sweeps")

// NewRun starts a run of kind ("domains") over input (a description).
func NewRun(ctx context.Context, db *sql.DB, kind, input string, jsonl io.Writer) (*Run, error) {
	return CreateRun(ctx, db, RunSpec{Kind: kind, Input: input}, jsonl)
}

// CreateRun starts a new run of spec; a name another run has is an error
// (JoinRun joins it).
func CreateRun(ctx context.Context, db *sql.DB, spec RunSpec, jsonl io.Writer) (*Run, error) {
	var id int64
	err := db.QueryRowContext(ctx, `INSERT INTO scan_runs (started_at, kind, input, name, targets, seed, shards)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, spec.values()...).Scan(&id)
	if err != nil {
		return nil, fmt.Errorf("scanner: new run: %w", err)
	}
	return newRun(id, db, spec, jsonl), nil
}

// JoinRun opens the run named spec.Name with what it already holds,
// creating it when no run has that name (with spec's targets, seed and
// shard count). Shards on several machines each call it with the same
// name: one creates the run, the others join it, whichever comes first.
// A run of another kind, targets, seed or shard count is refused
// (ErrRunMismatch); Spec then says what the run sweeps.
func JoinRun(ctx context.Context, db *sql.DB, spec RunSpec, jsonl io.Writer) (*Run, error) {
	if err := ValidRunName(spec.Name); err != nil {
		return nil, fmt.Errorf("scanner: %w", err)
	}
	if !spec.AnyTargets {
		var id int64
		err := db.QueryRowContext(ctx, `INSERT INTO scan_runs (started_at, kind, input, name, targets, seed, shards)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id`, spec.values()...).Scan(&id)
		if err == nil {
			return newRun(id, db, spec, jsonl), nil
		}
		if !errors.Is(err, sql.ErrNoRows) { // no row: the name is taken
			return nil, fmt.Errorf("scanner: run %q: %w", spec.Name, err)
		}
	}
	var id int64
	err := db.QueryRowContext(ctx, `SELECT id FROM scan_runs WHERE name = ?`, spec.Name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("scanner: no run %q: give its targets to create it", spec.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("scanner: run %q: %w", spec.Name, err)
	}
	info, _, err := LoadRun(ctx, db, id)
	if err != nil {
		return nil, err
	}
	if err := spec.check(info.spec(), id); err != nil {
		return nil, err
	}
	return ResumeRun(ctx, db, id, jsonl)
}

// spec is what the run sweeps.
func (r RunInfo) spec() RunSpec {
	return RunSpec{Name: r.Name, Kind: r.Kind, Input: r.Input, Targets: r.Targets, Seed: r.Seed, Shards: r.Shards}
}

// Check says whether a shard of spec may join run r: ErrRunMismatch when
// it sweeps another kind, other targets, another seed or shard count.
func (r RunInfo) Check(spec RunSpec) error { return spec.check(r.spec(), r.ID) }

func (s RunSpec) values() []any {
	var name, targets, seed, shards any // NULL: no name, or a run without shards
	if s.Name != "" {
		name = s.Name
	}
	if s.Shards > 0 {
		targets, seed, shards = s.Targets, int64(s.Seed), s.Shards
	}
	return []any{time.Now().Unix(), s.Kind, s.Input, name, targets, seed, shards}
}

// check says whether a shard of s may join run id, which sweeps have.
func (s RunSpec) check(have RunSpec, id int64) error {
	if s.Kind != have.Kind {
		return fmt.Errorf("scanner: run %s is a %s scan, not %s: %w", have.label(id), have.Kind, s.Kind, ErrRunMismatch)
	}
	if have.Shards == 0 { // made before runs held what they sweep: its shards say
		return nil
	}
	got := s
	if s.AnySeed {
		got.Seed = have.Seed
	}
	if s.AnyTargets {
		got.Targets = have.Targets
	}
	if got.Targets != have.Targets || got.Seed != have.Seed || got.Shards != have.Shards {
		return fmt.Errorf("scanner: run %s sweeps %s with seed %d in %d shards; this shard: %s with seed %d in %d: %w",
			have.label(id), have.Targets, have.Seed, have.Shards, got.Targets, got.Seed, got.Shards, ErrRunMismatch)
	}
	return nil
}

func (s RunSpec) label(id int64) string {
	if s.Name != "" {
		return fmt.Sprintf("%q", s.Name)
	}
	return strconv.FormatInt(id, 10)
}

func newRun(id int64, db *sql.DB, spec RunSpec, jsonl io.Writer) *Run {
	spec.AnySeed, spec.AnyTargets = false, false
	return &Run{ID: id, db: db, jsonl: jsonl, spec: spec, done: map[string]bool{}, known: map[string]*Grab{}, sweeps: map[int]*SweepState{}}
}

// Spec is what the run sweeps, as stored.
func (r *Run) Spec() RunSpec { return r.spec }

// label names the run in messages: its name, quoted, or its ID.
func (r *Run) label() string { return r.spec.label(r.ID) }

// storedKeys is the table each kind of run stores its results in, by
// key: what a resumed run skips.
var storedKeys = map[string]string{
	"domains":   `SELECT domain FROM scan_domains WHERE run_id = ?`,
	"hosts":     `SELECT ip FROM scan_hosts WHERE run_id = ?`,
	"resolvers": `SELECT ip FROM scan_resolvers WHERE run_id = ?`,
}

// ResumeRun reopens run id with what it already holds: every shard's
// results, checkpoints and grabs, whichever machine stored them.
func ResumeRun(ctx context.Context, db *sql.DB, id int64, jsonl io.Writer) (*Run, error) {
	info, ok, err := LoadRun(ctx, db, id)
	if err != nil || !ok {
		return nil, errors.Join(fmt.Errorf("scanner: no run %d", id), err)
	}
	r := newRun(id, db, info.spec(), jsonl)
	q, ok := storedKeys[info.Kind]
	if !ok {
		return nil, fmt.Errorf("scanner: run %d is of unknown kind %q", id, info.Kind)
	}
	err = measure.Each(ctx, db, q, []any{id}, func(rows *sql.Rows) error {
		key, err := measure.Column[string](rows)
		r.done[key] = true
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scanner: resume run %d: %w", id, err)
	}
	for _, st := range info.Sweeps {
		r.sweeps[st.Shard] = &st
	}
	err = eachStored(ctx, db, "scan_ips", id, func(g *Grab) { r.known[g.IP] = g })
	return r, err
}

// Done reports whether domain was already scanned in this run.
func (r *Run) Done(domain string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[domainKey(domain)]
}

// KnownGrab returns a grab made earlier in this run.
func (r *Run) KnownGrab(ip string) (*Grab, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.known[ip]
	return g, ok
}

// Result is a probe's result as a run stores it: a row of its table,
// keyed by domain or address, holding the result's JSON (the JSON line).
type Result interface {
	row() (table, key string, rank int)
}

func (d *DomainResult) row() (string, string, int)   { return "scan_domains", d.Domain, d.Rank }
func (h *HostResult) row() (string, string, int)     { return "scan_hosts", h.IP, 0 }
func (r *ResolverResult) row() (string, string, int) { return "scan_resolvers", r.IP, 0 }

// SaveDomain records a domain result.
func (r *Run) SaveDomain(d *DomainResult) error { return r.save(d) }

// SaveHost records one port-25 host. A closed port is not stored: the
// sweep's checkpoint counts it (Table 9), and a full IPv4 sweep has
// billions of them.
func (r *Run) SaveHost(h *HostResult) error {
	if h.ErrorClass == ErrClassConnect {
		return nil
	}
	return r.save(h)
}

// SaveResolver records one open resolver.
func (r *Run) SaveResolver(res *ResolverResult) error { return r.save(res) }

func (r *Run) save(res Result) error {
	js, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("scanner: encode result: %w", err)
	}
	table, key, rank := res.row()
	return r.add(pending{table, key, rank, js})
}

// SaveGrab records one address's grab.
func (r *Run) SaveGrab(g *Grab) error {
	js, err := json.Marshal(struct {
		Type string `json:"type"`
		*Grab
	}{"mx_ip", g})
	if err != nil {
		return fmt.Errorf("scanner: encode grab: %w", err)
	}
	return r.add(pending{"scan_ips", g.IP, 0, js})
}

// add queues a row; every 500 rows (and once a second in a sweep) they
// are stored in one transaction.
func (r *Run) add(p pending) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batch = append(r.batch, p)
	if len(r.batch) >= 500 {
		return r.flushLocked()
	}
	return nil
}

// Flush writes what is pending; Finish also marks the run finished.
func (r *Run) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushLocked()
}

func (r *Run) flushLocked() error {
	if len(r.batch) == 0 && !r.cpDirty {
		return nil
	}
	tx, err := r.db.Begin()
	if err != nil {
		return fmt.Errorf("scanner: store: %w", err)
	}
	defer tx.Rollback()
	// A key another process stored first (a shard on another machine
	// grabbed the same mail server) is kept as it was, and gets no JSON
	// line here: the lines of all machines hold each stored row once.
	stored := r.batch[:0:0]
	for _, p := range r.batch {
		var res sql.Result
		if p.table == "scan_domains" {
			res, err = tx.Exec(`INSERT INTO scan_domains VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, r.ID, p.key, p.rank, p.json)
		} else {
			res, err = tx.Exec(`INSERT INTO `+p.table+` VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, r.ID, p.key, p.json)
		}
		if err != nil {
			return fmt.Errorf("scanner: store: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("scanner: store: %w", err)
		} else if n > 0 {
			stored = append(stored, p)
		}
	}
	if r.cpDirty {
		// After the rows: a checkpoint never covers a result not stored.
		if err := r.storeCheckpoint(tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("scanner: store: %w", err)
	}
	err = r.writeLines(stored)
	r.batch, r.cpDirty = r.batch[:0], false
	return err
}

// writeLines writes the stored batch as JSON lines. They follow the
// commit, so the lines of a killed run are rows it holds, and its resumed
// run, appending, writes none of them again.
func (r *Run) writeLines(stored []pending) error {
	if r.jsonl == nil || len(stored) == 0 {
		return nil
	}
	var buf []byte
	for _, p := range stored {
		buf = append(append(buf, p.json...), '\n')
	}
	if _, err := r.jsonl.Write(buf); err != nil {
		return fmt.Errorf("scanner: JSON lines: %w", err)
	}
	return nil
}

// Finish flushes and marks this process's shard finished, and the run
// once all its shards are (a run without shards at once).
func (r *Run) Finish() error {
	if err := r.Flush(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now().Unix()
	if r.sweep != nil {
		return r.finishShard(context.Background(), now)
	}
	if _, err := r.db.Exec(`UPDATE scan_runs SET finished_at = ? WHERE id = ?`, now, r.ID); err != nil {
		return fmt.Errorf("scanner: finish run: %w", err)
	}
	return nil
}

// ReadInput streams domains from a Tranco-style "rank,domain" CSV or a
// plain list (one per line, "#" comments), up to limit (0: all).
func ReadInput(ctx context.Context, rd io.Reader, limit int, out chan<- Input) error {
	defer close(out)
	sc := bufio.NewScanner(rd)
	n := 0
	for sc.Scan() {
		in, ok := parseInput(sc.Text())
		if !ok {
			continue
		}
		select {
		case out <- in:
		case <-ctx.Done():
			return ctx.Err()
		}
		if n++; limit > 0 && n >= limit {
			break
		}
	}
	return sc.Err()
}

// parseInput reads one line of a domain list; false for blank lines,
// comments and a CSV header.
func parseInput(line string) (Input, bool) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return Input{}, false
	}
	if rank, domain, ok := strings.Cut(line, ","); ok {
		r, err := strconv.Atoi(strings.TrimSpace(rank))
		if err != nil {
			return Input{}, false // a header line
		}
		return Input{Domain: strings.TrimSpace(domain), Rank: r}, true
	}
	return Input{Domain: line}, true
}

// ListIdentity names a domain list as ReadInput reads it, up to limit: how
// many domains and the start of the SHA-256 of their ranks and keys. A
// domain run stores it as its targets, so that shards on other machines
// (and resumed ones) are refused a different list.
func ListIdentity(rd io.Reader, limit int) (id string, n int64, err error) {
	h := sha256.New()
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		in, ok := parseInput(sc.Text())
		if !ok {
			continue
		}
		fmt.Fprintf(h, "%d,%s\n", in.Rank, domainKey(in.Domain))
		if n++; limit > 0 && n >= int64(limit) {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return "", 0, err
	}
	return fmt.Sprintf("%d domains, sha256 %x", n, h.Sum(nil)[:8]), n, nil
}
