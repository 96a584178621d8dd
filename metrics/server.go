package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerConfig bounds the metrics endpoint: every connection has read,
// write and idle deadlines, headers are capped, and so is the number of
// open connections (2,000 idle keep-alives once held 140 MiB).
type ServerConfig struct {
	ReadHeaderTimeout time.Duration // default 5 s
	ReadTimeout       time.Duration // whole request; default 10 s
	WriteTimeout      time.Duration // whole response; default 30 s
	IdleTimeout       time.Duration // between keep-alive requests; default 2 min (Prometheus scrapes every 1 min by default)
	MaxHeaderBytes    int           // default 8 KiB
	MaxConns          int           // default 32; beyond, idle connections are closed first
}

func (c *ServerConfig) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.ReadHeaderTimeout, 5*time.Second)
	set(&c.ReadTimeout, 10*time.Second)
	set(&c.WriteTimeout, 30*time.Second)
	set(&c.IdleTimeout, 2*time.Minute)
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 8 << 10
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 32
	}
}

// Health reports the daemon's components for /healthz: a value encoded as
// JSON and whether every component is healthy (200) or not (503).
type Health func() (components any, healthy bool)

// Server is the HTTP server of /metrics and /healthz.
type Server struct {
	http *http.Server
	lim  *connLimiter
}

// NewServer returns the metrics endpoint; health may be nil.
func (m *Metrics) NewServer(cfg ServerConfig, health Health) *Server {
	cfg.defaults()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Timeout: cfg.WriteTimeout / 2}))
	if health != nil {
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { serveHealth(w, health) })
	}
	lim := &connLimiter{max: cfg.MaxConns, conns: map[net.Conn]connState{}, m: m}
	return &Server{lim: lim, http: &http.Server{Handler: mux, ConnState: lim.state,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
		IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes}}
}

// Serve answers on ln until ln fails or Shutdown; after Shutdown it
// returns nil.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(&limitListener{Listener: ln, lim: s.lim})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown closes the listener and idle connections and waits for
// requests in progress until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

func serveHealth(w http.ResponseWriter, health Health) {
	components, healthy := health()
	status, code := "ok", http.StatusOK
	if !healthy {
		status, code = "unhealthy", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(struct {
		Status     string `json:"status"`
		Components any    `json:"components"`
	}{status, components})
}

// connLimiter holds at most max connections. At the cap a new connection
// closes the longest-idle keep-alive one (a scraper must get through
// while an idler waits for IdleTimeout); when none is idle, the new
// connection is closed at once.
type connLimiter struct {
	max   int
	m     *Metrics
	mu    sync.Mutex
	seq   uint64
	conns map[net.Conn]connState
}

type connState struct {
	state http.ConnState
	seq   uint64 // when it entered the state, in admission order
}

func (l *connLimiter) admit(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.conns) >= l.max {
		idle := l.oldestIdle()
		if idle == nil {
			l.m.HTTPRejected.Inc()
			return false
		}
		delete(l.conns, idle)
		idle.Close()
		l.m.HTTPRejected.Inc()
	}
	l.seq++
	l.conns[c] = connState{http.StateNew, l.seq}
	l.m.HTTPConns.Set(float64(len(l.conns)))
	return true
}

func (l *connLimiter) oldestIdle() net.Conn {
	var oldest net.Conn
	var seq uint64
	for c, st := range l.conns {
		if st.state == http.StateIdle && (oldest == nil || st.seq < seq) {
			oldest, seq = c, st.seq
		}
	}
	return oldest
}

// state is the http.Server's ConnState hook.
func (l *connLimiter) state(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateHijacked, http.StateClosed:
		delete(l.conns, c)
	default:
		if _, ok := l.conns[c]; ok { // an evicted connection is not counted again
			l.seq++
			l.conns[c] = connState{st, l.seq}
		}
	}
	l.m.HTTPConns.Set(float64(len(l.conns)))
}

type limitListener struct {
	net.Listener
	lim *connLimiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.lim.admit(c) {
			return c, nil
		}
		c.Close()
	}
}
