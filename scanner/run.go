package scanner

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Run is one stored sweep: results go to SQLite (and JSON lines), so a
// killed sweep resumes where it stopped.
type Run struct {
	ID    int64
	db    *sql.DB
	jsonl io.Writer

	mu      sync.Mutex
	done    map[string]bool
	known   map[string]*Grab
	batch   []pending
	sweeps  map[int]*SweepState // address sweeps: each shard's permutation and checkpoint
	sweep   *SweepState         // the shard this process sweeps
	cpDirty bool                // its checkpoint changed since the last flush
}

type pending struct {
	table, key string
	rank       int
	json       []byte
}

// NewRun starts a run of kind ("domains") over input (a description).
func NewRun(ctx context.Context, db *sql.DB, kind, input string, jsonl io.Writer) (*Run, error) {
	res, err := db.ExecContext(ctx, `INSERT INTO scan_runs (started_at, kind, input) VALUES (?, ?, ?)`,
		time.Now().Unix(), kind, input)
	if err != nil {
		return nil, fmt.Errorf("scanner: new run: %w", err)
	}
	id, _ := res.LastInsertId()
	return &Run{ID: id, db: db, jsonl: jsonl, done: map[string]bool{}, known: map[string]*Grab{}, sweeps: map[int]*SweepState{}}, nil
}

// ResumeRun reopens run id with what it already holds.
func ResumeRun(ctx context.Context, db *sql.DB, id int64, jsonl io.Writer) (*Run, error) {
	r := &Run{ID: id, db: db, jsonl: jsonl, done: map[string]bool{}, known: map[string]*Grab{}}
	if _, ok, err := LoadRun(ctx, db, id); err != nil || !ok {
		return nil, errors.Join(fmt.Errorf("scanner: no run %d", id), err)
	}
	rows, err := db.QueryContext(ctx, `SELECT domain FROM scan_domains WHERE run_id = ?1
		UNION ALL SELECT ip FROM scan_hosts WHERE run_id = ?1 UNION ALL SELECT ip FROM scan_resolvers WHERE run_id = ?1`, id)
	if err != nil {
		return nil, fmt.Errorf("scanner: resume run %d: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		if err := rows.Scan(&key); err != nil {
			return nil, fmt.Errorf("scanner: resume run %d: %w", id, err)
		}
		r.done[key] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("scanner: resume run %d: %w", id, err)
	}
	if r.sweeps, err = loadSweeps(ctx, db, id); err != nil {
		return nil, err
	}
	err = eachStored(ctx, db, "scan_ips", id, func(g *Grab) { r.known[g.IP] = g })
	return r, err
}

// Done reports whether domain was already scanned in this run.
func (r *Run) Done(domain string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[strings.ToLower(domain)]
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
	for _, p := range r.batch {
		var err error
		if p.table == "scan_domains" {
			_, err = tx.Exec(`INSERT OR IGNORE INTO scan_domains VALUES (?, ?, ?, ?)`, r.ID, p.key, p.rank, p.json)
		} else {
			_, err = tx.Exec(`INSERT OR IGNORE INTO `+p.table+` VALUES (?, ?, ?)`, r.ID, p.key, p.json)
		}
		if err != nil {
			return fmt.Errorf("scanner: store: %w", err)
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
	err = r.writeLines()
	r.batch, r.cpDirty = r.batch[:0], false
	return err
}

// writeLines writes the stored batch as JSON lines. They follow the
// commit, so the lines of a killed run are rows it holds, and its resumed
// run, appending, writes none of them again.
func (r *Run) writeLines() error {
	if r.jsonl == nil || len(r.batch) == 0 {
		return nil
	}
	var buf []byte
	for _, p := range r.batch {
		buf = append(append(buf, p.json...), '\n')
	}
	if _, err := r.jsonl.Write(buf); err != nil {
		return fmt.Errorf("scanner: JSON lines: %w", err)
	}
	return nil
}

// Finish flushes and marks the run finished.
func (r *Run) Finish() error {
	if err := r.Flush(); err != nil {
		return err
	}
	_, err := r.db.Exec(`UPDATE scan_runs SET finished_at = ? WHERE id = ?`, time.Now().Unix(), r.ID)
	return err
}

// ReadInput streams domains from a Tranco-style "rank,domain" CSV or a
// plain list (one per line, "#" comments), up to limit (0: all).
func ReadInput(ctx context.Context, rd io.Reader, limit int, out chan<- Input) error {
	defer close(out)
	sc := bufio.NewScanner(rd)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		in := Input{Domain: line}
		if rank, domain, ok := strings.Cut(line, ","); ok {
			r, err := strconv.Atoi(strings.TrimSpace(rank))
			if err != nil {
				continue // a header line
			}
			in = Input{Domain: strings.TrimSpace(domain), Rank: r}
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
