package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Errors of a lookup that did not finish in time.
var (
	// ErrDeadline: the answer was not ready within the policy budget;
	// the caller failed open and the lookup finishes in the background.
	ErrDeadline = errors.New("policy: no answer within the budget")
	// ErrOverload: too many lookups were already waiting (on a stuck
	// database, say); the caller failed open without starting another.
	ErrOverload = errors.New("policy: too many lookups in flight")
	// ErrPanic: the lookup panicked; it was recovered and failed open.
	ErrPanic = errors.New("policy: lookup panicked")
)

// defaultMaxInFlight bounds lookups running at once. A lookup stuck on a
// locked database or a hung server holds a goroutine and maybe a
// database connection until its own timeouts end it; callers do not wait
// for it past their deadline, and this bounds what piles up meanwhile.
const defaultMaxInFlight = 64

// flights runs lookups in the background so that a caller waits at most
// until its context ends, whatever the lookup waits for (SQLite's busy
// handler, for one, does not heed context cancellation). Concurrent
// callers for the same key share one lookup.
type flights[T any] struct {
	mu    sync.Mutex
	max   int
	calls map[string]*call[T]
}

type call[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// do returns fn's result for key, or ErrDeadline when ctx ends first,
// ErrOverload when max lookups are already running, ErrPanic when fn
// panicked (onPanic is told). fn gets no context of its own: it must
// bound itself.
func (f *flights[T]) do(ctx context.Context, key string, fn func() (T, error), onPanic func(any)) (T, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*call[T]{}
	}
	c, ok := f.calls[key]
	if !ok {
		limit := f.max
		if limit <= 0 {
			limit = defaultMaxInFlight
		}
		if len(f.calls) >= limit {
			f.mu.Unlock()
			var zero T
			return zero, ErrOverload
		}
		c = &call[T]{done: make(chan struct{})}
		f.calls[key] = c
		go f.run(key, c, fn, onPanic)
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w: %w", ErrDeadline, ctx.Err())
	}
}

func (f *flights[T]) run(key string, c *call[T], fn func() (T, error), onPanic func(any)) {
	defer func() {
		if p := recover(); p != nil {
			c.err = fmt.Errorf("%w: %v", ErrPanic, p)
			if onPanic != nil {
				onPanic(p)
			}
		}
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn()
}

// running is the number of lookups in flight.
func (f *flights[T]) running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}
