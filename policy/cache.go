package policy

import (
	"container/list"
	"sync"
	"time"
)

// decisionCache is a bounded LRU of decisions with expiry. Each clear
// starts a new generation: a lookup that began before it cannot put its
// now stale answer back.
type decisionCache struct {
	mu    sync.Mutex
	max   int
	gen   uint64
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

// generation is the current generation, to pass to put.
func (c *decisionCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches d for ttl if the cache was not cleared since gen.
func (c *decisionCache) put(d Decision, ttl time.Duration, gen uint64) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
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
	c.gen++
	c.order.Init()
	c.items = map[string]*list.Element{}
}
