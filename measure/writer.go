package measure

import (
	"context"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// WriterConfig tunes a Writer.
type WriterConfig struct {
	QueueSize int           // events held in memory; beyond it they are dropped
	BatchSize int           // events per transaction
	Interval  time.Duration // longest wait before a partial batch is written
	Retries   int           // failed commits retried before a batch is dropped
	Node      string        // written into every record; default the store's Node
	Logger    *slog.Logger
}

// Writer records events through a bounded queue drained by one goroutine
// in batched transactions. Enqueue never blocks: mail must not wait for
// the disk.
type Writer struct {
	store *Store
	cfg   WriterConfig
	ch    chan Event

	mu     sync.RWMutex // guards closed against concurrent Enqueue/Close
	closed bool
	done   chan struct{}
	pg     *pgWriter // PostgreSQL stores: COPY and upserts (pgwriter.go)

	written, dropped, failedBatches atomic.Int64
}

// NewWriter starts a Writer on store.
func NewWriter(store *Store, cfg WriterConfig) *Writer {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Node == "" {
		cfg.Node = store.Node
	}
	w := &Writer{store: store, cfg: cfg, ch: make(chan Event, cfg.QueueSize), done: make(chan struct{})}
	if store.pool != nil {
		w.pg = newPGWriter(store.pool, cfg.Node)
	}
	go w.loop()
	return w
}

// Enqueue queues ev; it reports false (and counts a drop) when the queue
// is full or the writer closed.
func (w *Writer) Enqueue(ev Event) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return false
	}
	select {
	case w.ch <- ev:
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

// Close stops accepting events, writes everything queued and waits until
// done or ctx ends.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("measure: flush: %w", ctx.Err())
	}
}

// WriterStats are the Writer's counters.
type WriterStats struct {
	Queued, Written, Dropped, FailedBatches int64
}

// Stats returns the current counters.
func (w *Writer) Stats() WriterStats {
	return WriterStats{Queued: int64(len(w.ch)), Written: w.written.Load(),
		Dropped: w.dropped.Load(), FailedBatches: w.failedBatches.Load()}
}

func (w *Writer) loop() {
	defer close(w.done)
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	pending := make([]Event, 0, w.cfg.BatchSize)
	for {
		select {
		case ev, ok := <-w.ch:
			if !ok {
				w.flush(pending)
				return
			}
			pending = append(pending, ev)
			if len(pending) < w.cfg.BatchSize {
				continue
			}
		case <-tick.C:
			if len(pending) == 0 {
				continue
			}
		}
		w.flush(pending)
		pending = pending[:0]
	}
}

// flush writes events, retrying a failing commit a few times; then the
// batch is dropped and counted rather than growing without bound.
func (w *Writer) flush(events []Event) {
	if len(events) == 0 {
		return
	}
	var err error
	for try := 0; try <= w.cfg.Retries; try++ {
		if err = w.commit(events); err == nil {
			w.written.Add(int64(len(events)))
			return
		}
		time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
	}
	w.failedBatches.Add(1)
	w.dropped.Add(int64(len(events)))
	w.cfg.Logger.Error("dropping batch after failed writes", "events", len(events), "err", err)
}

func (w *Writer) commit(events []Event) error {
	if w.pg != nil {
		return w.pg.commit(events)
	}
	conn, err := w.store.DB.Conn(context.Background())
	if err != nil {
		return fmt.Errorf("measure: conn: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c := dc.(driver.Conn)
		tx, err := c.Begin() //nolint:staticcheck // no context to pass on the raw conn
		if err != nil {
			return fmt.Errorf("measure: begin: %w", err)
		}
		b, err := newBatch(c, w.cfg.Node)
		if err != nil {
			tx.Rollback()
			return err
		}
		defer b.close()
		for _, ev := range events {
			if err := ev.apply(b); err != nil {
				tx.Rollback()
				return fmt.Errorf("measure: insert: %w", err)
			}
		}
		if err := b.flush(); err != nil {
			tx.Rollback()
			return fmt.Errorf("measure: insert: %w", err)
		}
		if err := b.writeRollup(); err != nil {
			tx.Rollback()
			return fmt.Errorf("measure: rollup: %w", err)
		}
		if err := tx.Commit(); err != nil {
			tx.Rollback()
			return fmt.Errorf("measure: commit: %w", err)
		}
		return nil
	})
}
