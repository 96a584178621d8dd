package policy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// Connection limits shared by both listeners.
const (
	defaultMaxConns    = 1000
	defaultReadTimeout = 10 * time.Second
	writeTimeout       = 10 * time.Second
)

// connServer is the accept loop both policy listeners run: a bounded
// number of connections, each under a recover that closes only that
// connection, and accept errors (EMFILE and the like) retried with a
// backoff instead of ending the listener.
type connServer struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool // by close: no connection is taken after
	wg     sync.WaitGroup
}

// serve accepts on ln until it is closed, running handle for each
// connection. count is told about "panic", "too_many_connections" and
// "accept_error".
func (s *connServer) serve(ln net.Listener, name string, maxConns int, log *slog.Logger, count func(string), handle func(net.Conn)) error {
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !retryAccept(err) {
				log.Error("policy: listener failed", "listener", name, "err", err)
				return fmt.Errorf("policy: %s: accept: %w", name, err)
			}
			// As net/http does: back off from 5 ms to 1 s, so running
			// out of descriptors neither spins nor stops the listener.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			count("accept_error")
			log.Error("policy: accept failed; retrying", "listener", name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if ok, closing := s.track(c, maxConns); !ok {
			if !closing {
				count("too_many_connections")
			}
			c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			defer func() {
				if p := recover(); p != nil {
					count("panic")
					log.Error("policy: panic in connection; closed it", "listener", name, "panic", p,
						"stack", string(debug.Stack()))
				}
			}()
			handle(c)
		}()
	}
}

// retryAccept tells the accept errors a listener outlives: descriptor and
// memory exhaustion, and a client that went away before accept.
func retryAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// track takes c unless the server is closing or full. The handler is
// counted in wg under the same lock close takes before it waits, so no
// Add can follow the Wait (sync.WaitGroup's rule).
func (s *connServer) track(c net.Conn, maxConns int) (ok, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return false, true
	case len(s.conns) >= maxConns:
		return false, false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true, false
}

func (s *connServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// close ends every connection and waits for their handlers.
func (s *connServer) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// awaitRequest waits up to idle for the first byte of a request, then
// gives the rest of it read: a client may keep a connection idle between
// requests (Postfix does), but not trickle one request forever.
func awaitRequest(c net.Conn, peek func() error, idle, read time.Duration) error {
	c.SetReadDeadline(time.Now().Add(idle))
	if err := peek(); err != nil {
		return err
	}
	return c.SetReadDeadline(time.Now().Add(read))
}
