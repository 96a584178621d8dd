package policy

import (
	"container/list"
	"database/sql"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// decisionCache is a bounded LRU of decisions with expiry.
type decisionCache struct {
	mu    sync.Mutex
	max   int
	order *list.List
	items map[string]*list.Element
}

type cachedDecision struct {
	d       Decision
	expires time.Time
}

func newDecisionCache(max int) *decisionCache {
	return &decisionCache{max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (c *decisionCache) get(domain string) (Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[domain]
	if !ok {
		return Decision{}, false
	}
	cd := el.Value.(*cachedDecision)
	if time.Now().After(cd.expires) {
		c.order.Remove(el)
		delete(c.items, domain)
		return Decision{}, false
	}
	c.order.MoveToFront(el)
	return cd.d, true
}

func (c *decisionCache) put(d Decision, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cd := &cachedDecision{d: d, expires: time.Now().Add(ttl)}
	if el, ok := c.items[d.Domain]; ok {
		el.Value = cd
		c.order.MoveToFront(el)
		return
	}
	c.items[d.Domain] = c.order.PushFront(cd)
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(*cachedDecision).d.Domain)
	}
}

func (c *decisionCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	c.items = map[string]*list.Element{}
}

// recorder writes decisions in batches from a bounded queue, off the
// lookup path; when the queue is full, decisions are counted and dropped.
type recorder struct {
	db      *sql.DB
	log     *slog.Logger
	ch      chan Decision
	done    chan struct{}
	once    sync.Once
	Dropped atomic.Int64
}

func newRecorder(db *sql.DB, log *slog.Logger) *recorder {
	r := &recorder{db: db, log: log, ch: make(chan Decision, 10000), done: make(chan struct{})}
	go r.loop()
	return r
}

func (r *recorder) add(d Decision) {
	select {
	case r.ch <- d:
	default:
		r.Dropped.Add(1)
	}
}

func (r *recorder) close() {
	r.once.Do(func() { close(r.ch) })
	<-r.done
}

func (r *recorder) loop() {
	defer close(r.done)
	var batch []Decision
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d, ok := <-r.ch:
			if !ok {
				r.write(batch)
				return
			}
			if batch = append(batch, d); len(batch) < 1000 {
				continue
			}
		case <-tick.C:
		}
		r.write(batch)
		batch = batch[:0]
	}
}

func (r *recorder) write(batch []Decision) {
	if len(batch) == 0 {
		return
	}
	tx, err := r.db.Begin()
	if err != nil {
		r.log.Warn("policy: recording decisions", "err", err)
		return
	}
	defer tx.Rollback()
	st, err := tx.Prepare(`INSERT INTO policy_decisions (decided_at, domain, source, answer, latency_us, error)
		VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		r.log.Warn("policy: recording decisions", "err", err)
		return
	}
	defer st.Close()
	now := time.Now().Unix()
	for _, d := range batch {
		answer, errText := d.Answer, ""
		if answer == "" {
			answer = "NOTFOUND"
		}
		if d.Err != nil {
			errText = d.Class + ": " + d.Err.Error()
		}
		st.Exec(now, d.Domain, d.Source, answer, d.Latency.Microseconds(), errText)
	}
	if err := tx.Commit(); err != nil {
		r.log.Warn("policy: recording decisions", "err", err)
	}
}
