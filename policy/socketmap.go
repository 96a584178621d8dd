package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// SocketmapServer answers Postfix's socketmap lookups
// (smtp_tls_policy_maps = socketmap:unix:/run/snowrain/policy.sock:tls):
// requests "NAME KEY" and replies "OK POLICY", "NOTFOUND ", "TEMP …" or
// "PERM …", each a netstring, over persistent connections.
type SocketmapServer struct {
	Engine      *Engine
	MaxRequest  int           // longest request accepted; default 10000 (Postfix's own limit is 100000)
	IdleTimeout time.Duration // close connections idle between requests; default 100 s (Postfix's max_idle)
	ReadTimeout time.Duration // longest to read one request once it started; default 10 s
	MaxConns    int           // connections served at once; default 1000, beyond: closed and counted
	Log         *slog.Logger
	// Classes counts bad requests and faults by class (garbage,
	// too_long, bad_request, read_timeout, invalid_answer, panic,
	// too_many_connections, accept_error); may be nil.
	Classes func(class string)

	conns connServer
}

// Serve accepts connections until ln is closed. Accept errors such as
// running out of descriptors are logged, counted and retried; Serve
// returns an error only when the listener itself fails.
func (s *SocketmapServer) Serve(ln net.Listener) error {
	if s.MaxRequest <= 0 {
		s.MaxRequest = 10000
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 100 * time.Second
	}
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = defaultReadTimeout
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	return s.conns.serve(ln, "socketmap", s.MaxConns, s.Log, s.count, s.session)
}

// Close ends every connection and waits for the sessions.
func (s *SocketmapServer) Close() { s.conns.close() }

func (s *SocketmapServer) count(class string) {
	if s.Classes != nil {
		s.Classes(class)
	}
}

func (s *SocketmapServer) session(c net.Conn) {
	r := bufio.NewReader(c)
	var out []byte
	for {
		if err := awaitRequest(c, func() error { _, err := r.Peek(1); return err }, s.IdleTimeout, s.ReadTimeout); err != nil {
			return // closed, or idle too long
		}
		req, err := ReadNetstring(r, s.MaxRequest)
		switch {
		case errors.Is(err, ErrNetstringSize):
			s.count("too_long")
			s.reply(c, AppendNetstring(nil, "PERM request too long"))
			return
		case errors.Is(err, ErrNetstringSyntax), errors.Is(err, io.ErrUnexpectedEOF):
			s.count("garbage")
			s.reply(c, AppendNetstring(nil, "PERM malformed netstring"))
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.count("read_timeout")
			return
		case err != nil:
			return
		}
		out = AppendNetstring(out[:0], s.answer(req))
		if s.reply(c, out) != nil {
			return
		}
	}
}

func (s *SocketmapServer) reply(c net.Conn, b []byte) error {
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.Write(b)
	return err
}

// answer turns one "NAME KEY" request into a reply, recovering from any
// panic of ours into the fail-open NOTFOUND. The policy passes through
// encodeAnswer whatever its source.
func (s *SocketmapServer) answer(req string) (reply string) {
	defer func() {
		if p := recover(); p != nil {
			s.count("panic")
			s.Log.Error("policy: panic answering socketmap", "request", clip(req, 200), "panic", p)
			reply = "NOTFOUND "
		}
	}()
	_, key, ok := strings.Cut(req, " ")
	if !ok || key == "" {
		s.count("bad_request")
		return "PERM expected NAME KEY"
	}
	d := s.Engine.Decide(context.Background(), key)
	reply, clean := d.Reply()
	if !clean {
		s.count("invalid_answer")
		s.Log.Error("policy: answer outside the policy grammar; invalid attributes left out",
			"domain", d.Domain, "source", d.Source, "policy", clip(d.Answer, 200), "reply", reply)
	}
	return reply
}

// Reply is the socketmap reply for d: "OK " and the policy re-encoded
// by TLSPolicy, "TEMP …" or "NOTFOUND ". clean is false when the policy
// had to lose attributes outside the grammar (or was dropped whole).
func (d Decision) Reply() (reply string, clean bool) {
	switch {
	case d.Answer != "" && d.sealed:
		return "OK " + d.Answer, true
	case d.Answer != "":
		text, clean, ok := encodeAnswer(d.Answer)
		if ok {
			return "OK " + text, clean
		}
		return "NOTFOUND ", false
	case d.Temp && d.Source == SourceMTASTS:
		return "TEMP no MX host matches the MTA-STS policy", true
	case d.Temp:
		return "TEMP policy lookup failed", true
	}
	return "NOTFOUND ", true
}
