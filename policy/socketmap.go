package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// SocketmapServer answers Postfix's socketmap lookups
// (smtp_tls_policy_maps = socketmap:unix:/run/snowrain/policy.sock:tls):
// requests "NAME KEY" and replies "OK POLICY", "NOTFOUND ", "TEMP …" or
// "PERM …", each a netstring, over persistent connections.
type SocketmapServer struct {
	Engine      *Engine
	MaxRequest  int           // longest request accepted; default 10000 (Postfix's own limit is 100000)
	IdleTimeout time.Duration // close idle connections; default 100 s, Postfix closes its own after ~10 s
	Log         *slog.Logger
	// Classes counts bad requests by class (garbage, too_long, …); may be nil.
	Classes func(class string)

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Serve accepts connections until ln is closed.
func (s *SocketmapServer) Serve(ln net.Listener) error {
	if s.MaxRequest <= 0 {
		s.MaxRequest = 10000
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 100 * time.Second
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		s.track(c, true)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			s.session(c)
		}()
	}
}

func (s *SocketmapServer) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
		c.Close()
	}
}

// Close ends every connection and waits for the sessions.
func (s *SocketmapServer) Close() {
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *SocketmapServer) count(class string) {
	if s.Classes != nil {
		s.Classes(class)
	}
}

func (s *SocketmapServer) session(c net.Conn) {
	r := bufio.NewReader(c)
	var out []byte
	for {
		c.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		req, err := ReadNetstring(r, s.MaxRequest)
		switch {
		case errors.Is(err, ErrNetstringSize):
			s.count("too_long")
			c.Write(AppendNetstring(nil, "PERM request too long"))
			return
		case errors.Is(err, ErrNetstringSyntax), errors.Is(err, io.ErrUnexpectedEOF):
			s.count("garbage")
			c.Write(AppendNetstring(nil, "PERM malformed netstring"))
			return
		case err != nil:
			return // closed or idle
		}
		out = AppendNetstring(out[:0], s.answer(req))
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// answer turns one "NAME KEY" request into a reply, recovering from any
// panic of ours into the fail-open NOTFOUND.
func (s *SocketmapServer) answer(req string) (reply string) {
	defer func() {
		if p := recover(); p != nil {
			s.count("panic")
			s.Log.Error("policy: panic answering socketmap", "request", req, "panic", p)
			reply = "NOTFOUND "
		}
	}()
	_, key, ok := strings.Cut(req, " ")
	if !ok || key == "" {
		s.count("bad_request")
		return "PERM expected NAME KEY"
	}
	d := s.Engine.Decide(context.Background(), key)
	switch {
	case d.Answer != "":
		return "OK " + d.Answer
	case d.Temp:
		return "TEMP policy lookup failed"
	}
	return "NOTFOUND "
}
