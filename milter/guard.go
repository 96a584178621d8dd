package milter

import (
	"fmt"
	"runtime/debug"

	gomilter "github.com/d--j/go-milter"
)

// guard recovers panics in the session's handlers: a bug of ours must
// never reject or stall mail. The message is recorded as fail-open and
// accepted.
type guard struct {
	s *session
}

func (g *guard) catch(resp **gomilter.Response, err *error) {
	p := recover()
	if p == nil {
		return
	}
	g.s.f.metrics.Panics.Inc()
	g.s.f.log.Error("panic in milter handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	g.s.failOpen("panic")
	if resp != nil {
		*resp = gomilter.RespContinue
	}
	if err != nil {
		*err = nil
	}
}

func (g *guard) NewConnection(m gomilter.Modifier) (err error) {
	defer g.catch(nil, &err)
	return g.s.NewConnection(m)
}

func (g *guard) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return g.s.Connect(host, family, port, addr, m)
}

func (g *guard) Helo(name string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return g.s.Helo(name, m)
}

func (g *guard) MailFrom(from, args string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return g.s.MailFrom(from, args, m)
}

func (g *guard) RcptTo(rcpt, args string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return g.s.RcptTo(rcpt, args, m)
}

func (g *guard) Data(m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return g.s.Data(m)
}

func (g *guard) Header(name, value string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return g.s.Header(name, value, m)
}

func (g *guard) Headers(m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return g.s.Headers(m)
}

func (g *guard) BodyChunk(chunk []byte, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return g.s.BodyChunk(chunk, m)
}

func (g *guard) EndOfMessage(m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			g.s.f.metrics.Panics.Inc()
			g.s.f.log.Error("panic at end of message", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			g.s.failOpen("panic")
			g.s.recordPanicked()
			r, err = gomilter.RespAccept, nil
		}
	}()
	return g.s.EndOfMessage(m)
}

func (g *guard) Abort(m gomilter.Modifier) (err error) {
	defer g.catch(nil, &err)
	return g.s.Abort(m)
}

func (g *guard) Unknown(cmd string, m gomilter.Modifier) (r *gomilter.Response, err error) {
	defer g.catch(&r, &err)
	return gomilter.RespContinue, nil
}

func (g *guard) Cleanup(m gomilter.Modifier) {
	defer g.catch(nil, nil)
	g.s.Cleanup(m)
}
