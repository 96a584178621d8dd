// Package supervise keeps the daemon's listeners serving. Every listener
// (milter, socketmap, inbound policy, metrics) runs under a Supervisor:
// temporary Accept errors (EMFILE, ENFILE, …) are retried after a pause
// instead of ending the server; a server that stops all the same, or
// whose socket file disappears, is logged at error level, counted and
// restarted on a fresh listener with backoff; one that cannot be brought
// back is reported on Fatal so the daemon exits non-zero and systemd's
// Restart=on-failure starts it again. The Supervisor also holds every
// component's state for /healthz.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// State is a component's condition as /healthz shows it.
type State string

// The states. Only Serving and OK count as healthy.
const (
	Serving    State = "serving"    // accepting connections
	OK         State = "ok"         // a component without a listener working normally
	Degraded   State = "degraded"   // accept failing with a temporary error; retrying
	Failing    State = "failing"    // a component without a listener reporting errors
	Restarting State = "restarting" // the server stopped; a new listener is being opened
	Failed     State = "failed"     // could not be restarted; the daemon is exiting
	Stopped    State = "stopped"    // shut down on request
)

// Healthy reports whether s is a working state.
func (s State) Healthy() bool { return s == Serving || s == OK }

// Status is one component's entry in /healthz.
type Status struct {
	State        State     `json:"state"`
	Addr         string    `json:"addr,omitempty"`
	Since        time.Time `json:"since"`
	Restarts     int       `json:"restarts,omitempty"`
	AcceptErrors int64     `json:"accept_errors,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
}

// Service is one listener and the server on it.
type Service struct {
	Name string // "milter", "socketmap", "inbound", "metrics"
	Addr string // as configured, for logs
	// Listen opens a new listener (after the server stopped).
	Listen func() (net.Listener, error)
	// Serve runs the server on ln until ln fails or is closed.
	Serve func(ln net.Listener) error
	// Check, if set, is called with the listener (as Listen or Start
	// gave it) every CheckEvery while serving; an error means the
	// listener is lost (e.g. its socket file was removed) and it is
	// replaced.
	Check func(ln net.Listener) error
}

// Supervisor runs Services and tracks component states.
type Supervisor struct {
	Log *slog.Logger
	// OnAcceptError and OnRestart, if set, count events (metrics).
	OnAcceptError func(service, errno string)
	OnRestart     func(service string)
	// MaxFailures is how many stops and failed restarts in a row a
	// service may have before it is declared failed; default 5. A
	// service that served for ResetAfter (default 1 min) starts afresh.
	MaxFailures int
	ResetAfter  time.Duration
	// Backoff is the pause before restart attempt n (1, 2, …); default
	// 100 ms doubling up to 5 s.
	Backoff    func(n int) time.Duration
	CheckEvery time.Duration // default 5 s

	fatalOnce sync.Once
	fatal     chan error
	stopping  atomic.Bool
	stopCh    chan struct{}
	wg        sync.WaitGroup

	mu     sync.Mutex
	status map[string]*Status
	lns    map[string]net.Listener
}

// New returns a Supervisor logging to log.
func New(log *slog.Logger) *Supervisor {
	return &Supervisor{Log: log, fatal: make(chan error, 1), stopCh: make(chan struct{}),
		status: map[string]*Status{}, lns: map[string]net.Listener{}}
}

// Fatal delivers the error of a service that could not be restarted.
func (s *Supervisor) Fatal() <-chan error { return s.fatal }

// Start serves svc on ln (opened by the caller, so that startup errors
// stay startup errors) and keeps it serving until Stop.
func (s *Supervisor) Start(svc Service, ln net.Listener) {
	s.set(svc.Name, func(st *Status) { st.State, st.Addr = Serving, svc.Addr })
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(svc, ln)
	}()
}

func (s *Supervisor) run(svc Service, ln net.Listener) {
	failures := 0
	for {
		started := time.Now()
		err := s.serveOnce(svc, ln)
		if s.stopping.Load() {
			s.set(svc.Name, func(st *Status) { st.State = Stopped })
			return
		}
		if err == nil {
			err = errors.New("server returned")
		}
		if time.Since(started) >= s.resetAfter() {
			failures = 0
		}
		failures++
		s.Log.Error("listener stopped; restarting it", "listener", svc.Name, "addr", svc.Addr, "err", err)
		s.set(svc.Name, func(st *Status) { st.State, st.LastError = Restarting, err.Error(); st.Restarts++ })
		if s.OnRestart != nil {
			s.OnRestart(svc.Name)
		}
		if ln = s.relisten(svc, &failures); ln == nil {
			return
		}
		s.Log.Info("listener serving again", "listener", svc.Name, "addr", svc.Addr)
		s.set(svc.Name, func(st *Status) { st.State = Serving })
	}
}

// relisten opens a new listener with backoff; nil means stopping or
// failed for good (Fatal has been told).
func (s *Supervisor) relisten(svc Service, failures *int) net.Listener {
	for {
		if *failures > s.maxFailures() {
			err := fmt.Errorf("supervise: %s listener %s could not be kept serving after %d attempts",
				svc.Name, svc.Addr, *failures-1)
			s.Log.Error("listener failed; exiting so the service manager restarts the daemon",
				"listener", svc.Name, "addr", svc.Addr)
			s.set(svc.Name, func(st *Status) { st.State = Failed })
			s.fatalOnce.Do(func() { s.fatal <- err })
			return nil
		}
		t := time.NewTimer(s.backoff(*failures))
		select {
		case <-s.stopCh:
			t.Stop()
			s.set(svc.Name, func(st *Status) { st.State = Stopped })
			return nil
		case <-t.C:
		}
		ln, err := svc.Listen()
		if err == nil {
			return ln
		}
		*failures++
		s.Log.Error("listener restart failed", "listener", svc.Name, "addr", svc.Addr, "err", err)
		s.set(svc.Name, func(st *Status) { st.LastError = err.Error() })
	}
}

// serveOnce runs svc.Serve on ln under a recover, with temporary Accept
// errors retried and the listener checked.
func (s *Supervisor) serveOnce(svc Service, ln net.Listener) (err error) {
	rl := newRetryListener(ln, func(errno string, err error, streak int) {
		if s.OnAcceptError != nil {
			s.OnAcceptError(svc.Name, errno)
		}
		s.set(svc.Name, func(st *Status) { st.State, st.LastError = Degraded, err.Error(); st.AcceptErrors++ })
		if streak == 1 || streak%100 == 0 {
			s.Log.Error("accept failed; retrying", "listener", svc.Name, "addr", svc.Addr, "err", err,
				"failures", streak)
		}
	}, func(streak int) {
		s.set(svc.Name, func(st *Status) { st.State = Serving })
		s.Log.Info("accepting again", "listener", svc.Name, "addr", svc.Addr, "failed_accepts", streak)
	})
	s.mu.Lock()
	s.lns[svc.Name] = rl
	s.mu.Unlock()
	if s.stopping.Load() { // Stop ran before the listener was registered
		rl.Close()
	}
	lost := make(chan error, 1)
	done := make(chan struct{})
	if svc.Check != nil {
		go s.watch(svc, ln, rl, lost, done)
	}
	defer func() {
		close(done)
		if p := recover(); p != nil {
			s.Log.Error("panic in listener", "listener", svc.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", p)
		}
		rl.Close()
		select {
		case l := <-lost:
			err = l
		default:
		}
	}()
	return svc.Serve(rl)
}

// watch closes rl when svc.Check fails, reporting why on lost.
func (s *Supervisor) watch(svc Service, ln net.Listener, rl *retryListener, lost chan<- error, done <-chan struct{}) {
	t := time.NewTicker(s.checkEvery())
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if err := svc.Check(ln); err != nil && !s.stopping.Load() {
				lost <- fmt.Errorf("listener lost: %w", err)
				rl.Close()
				return
			}
		}
	}
}

// Stop marks the supervisor stopping and closes every listener; servers
// then return from Serve and are not restarted. Shut the servers down
// (to drain their sessions) after Stop, then Wait.
func (s *Supervisor) Stop() {
	if s.stopping.Swap(true) {
		return
	}
	close(s.stopCh)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.lns {
		ln.Close()
	}
}

// Wait waits until every service's loop has ended, or ctx ends.
func (s *Supervisor) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetStatus records the state of a component without a listener (the
// store writer, a log follower).
func (s *Supervisor) SetStatus(name string, state State, err error) {
	s.set(name, func(st *Status) {
		st.State = state
		if err != nil {
			st.LastError = err.Error()
		}
	})
}

// Status returns every component's state and whether all are healthy.
func (s *Supervisor) Status() (map[string]Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Status, len(s.status))
	healthy := true
	for name, st := range s.status {
		out[name] = *st
		healthy = healthy && st.State.Healthy()
	}
	return out, healthy
}

// Names returns the components known, sorted.
func (s *Supervisor) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.status {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (s *Supervisor) set(name string, f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[name]
	if st == nil {
		st = &Status{}
		s.status[name] = st
	}
	before := st.State
	f(st)
	if st.State != before {
		st.Since = time.Now().UTC().Truncate(time.Second)
	}
}

func (s *Supervisor) maxFailures() int {
	if s.MaxFailures > 0 {
		return s.MaxFailures
	}
	return 5
}

func (s *Supervisor) resetAfter() time.Duration {
	if s.ResetAfter > 0 {
		return s.ResetAfter
	}
	return time.Minute
}

func (s *Supervisor) checkEvery() time.Duration {
	if s.CheckEvery > 0 {
		return s.CheckEvery
	}
	return 5 * time.Second
}

func (s *Supervisor) backoff(n int) time.Duration {
	if s.Backoff != nil {
		return s.Backoff(n)
	}
	d := 100 * time.Millisecond
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}
