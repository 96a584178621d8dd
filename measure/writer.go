package measure

import (
	"context"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snowrain/snowrain/config"
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
//
// The writer's goroutine sleeps until a batch is queued or the interval
// ends, then takes what is queued: Enqueue wakes it only when the queue
// reaches a batch, not for every event (two wake-ups of a goroutine per
// message at 1,000 messages a second, each a futex call and a context
// switch on an idle core, for an event that only waited for its batch).
type Writer struct {
	store *Store
	cfg   WriterConfig
	ch    chan Event
	kick  chan struct{} // a batch is queued
	batch int           // queued events that make a batch worth waking for

	mu      sync.RWMutex // guards closed against concurrent Enqueue/Close
	closed  bool
	closing chan struct{} // closed by Close: drain and stop
	done    chan struct{}
	pg      *pgWriter // PostgreSQL stores: COPY and upserts (pgwriter.go)

	written, dropped, failedBatches atomic.Int64
}

// WriterConfigFrom is the writer's part of the configuration c.
func WriterConfigFrom(c config.Config) WriterConfig {
	return WriterConfig{QueueSize: c.QueueSize, BatchSize: c.BatchSize, Interval: c.BatchInterval.Duration}
}

// defaultRetries is how often a failed commit is tried again before its
// batch is dropped.
const defaultRetries = 3

// NewWriter starts a Writer on store. Fields of cfg left unset take the
// configuration's defaults (config.Default).
func NewWriter(store *Store, cfg WriterConfig) *Writer {
	d := WriterConfigFrom(config.Default())
	config.OrDefault(&cfg.QueueSize, d.QueueSize)
	config.OrDefault(&cfg.BatchSize, d.BatchSize)
	config.OrDefault(&cfg.Interval, d.Interval)
	config.OrDefault(&cfg.Retries, defaultRetries)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Node == "" {
		cfg.Node = store.Node
	}
	w := &Writer{store: store, cfg: cfg, ch: make(chan Event, cfg.QueueSize), kick: make(chan struct{}, 1),
		batch: max(1, min(cfg.BatchSize, cfg.QueueSize/2)), closing: make(chan struct{}), done: make(chan struct{})}
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
		if len(w.ch) >= w.batch {
			select {
			case w.kick <- struct{}{}:
			default: // already kicked
			}
		}
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
		close(w.closing)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("measure: flush: %w", ctx.Err())
	}
}

// WriterStats are the Writer's counters. Queued counts the events not yet
// taken for a transaction, those waiting for their batch included.
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
	ready := w.store.Ready() // nil once seen closed: it wakes the writer once
	if w.store.IsReady() {
		ready = nil
	}
	for {
		all := true // write a partial batch too
		select {
		case <-w.kick:
			all = false
		case <-tick.C:
		case <-w.closing:
		case <-ready: // what waited for the database goes at once
			ready = nil
		}
		if !w.store.IsReady() {
			// A database not reached yet (OpenServing): what is queued
			// waits for it, Enqueue drops and counts beyond the queue,
			// and a Close meanwhile drops and counts the rest.
			select {
			case <-w.closing:
				w.dropQueued(len(pending))
				return
			default:
				continue
			}
		}
		open := true
	drain:
		for {
			select {
			case ev, ok := <-w.ch:
				if !ok {
					open = false
					break drain
				}
				pending = append(pending, ev)
				if len(pending) == w.cfg.BatchSize {
					w.flush(pending)
					pending = pending[:0]
				}
			default:
				break drain
			}
		}
		if all || !open {
			w.flush(pending)
			pending = pending[:0]
		}
		if !open {
			return
		}
	}
}

// dropQueued counts pending and everything left in the closed queue as
// dropped.
func (w *Writer) dropQueued(pending int) {
	n := int64(pending)
	for range w.ch {
		n++
	}
	w.dropped.Add(n)
	if n > 0 {
		w.cfg.Logger.Error("dropping queued records: the database was never reached", "events", n)
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
		bt, ok := dc.(driver.ConnBeginTx)
		if !ok {
			return fmt.Errorf("measure: driver connection %T has no BeginTx", dc)
		}
		tx, err := bt.BeginTx(context.Background(), driver.TxOptions{})
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
