package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"strings"
	"sync"

	"github.com/snowrain/snowrain/config"
)

// logging is the daemon's logger; its level follows SIGHUP.
type logging struct {
	*slog.Logger
	level *slog.LevelVar
	close func() error
}

// newLogging logs to stderr (journald under systemd) or, with
// log_target = "syslog", to the syslog socket with the mail facility, as
// Postfix, OpenDKIM and OpenDMARC do, so one grep of a queue ID in
// mail.log finds all of them. A syslog that cannot be reached at start
// falls back to stderr: mail must flow whatever the logs do.
func newLogging(cfg config.Config, stderr io.Writer) *logging {
	l := &logging{level: new(slog.LevelVar), close: func() error { return nil }}
	l.level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: l.level}
	if target, ok := strings.CutPrefix(cfg.LogTarget, "syslog"); ok {
		network, path := "", ""
		if p, ok := strings.CutPrefix(target, ":"); ok {
			network, path = "unixgram", p
		}
		w, err := syslog.Dial(network, path, syslog.LOG_MAIL|syslog.LOG_INFO, "snowrain")
		if err == nil {
			l.Logger, l.close = slog.New(newSyslogHandler(w, cfg.LogFormat, opts)), w.Close
			return l
		}
		fmt.Fprintf(stderr, "snowrain: log_target %q: %v; logging to stderr\n", cfg.LogTarget, err)
	}
	l.Logger = slog.New(formatHandler(stderr, cfg.LogFormat, opts))
	return l
}

func formatHandler(w io.Writer, format string, opts *slog.HandlerOptions) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// syslogHandler formats a record as the text (or JSON) handler does,
// without the time (syslog stamps it), and sends it with the priority of
// its level: one record, one syslog message.
type syslogHandler struct {
	inner slog.Handler
	out   *syslogOut
}

type syslogOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   *syslog.Writer
}

func newSyslogHandler(w *syslog.Writer, format string, opts *slog.HandlerOptions) *syslogHandler {
	out := &syslogOut{w: w}
	o := *opts
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	return &syslogHandler{inner: formatHandler(&out.buf, format, &o), out: out}
}

func (h *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	msg := strings.TrimSuffix(h.out.buf.String(), "\n")
	switch {
	case r.Level >= slog.LevelError:
		return h.out.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return h.out.w.Warning(msg)
	case r.Level >= slog.LevelInfo:
		return h.out.w.Info(msg)
	}
	return h.out.w.Debug(msg)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{inner: h.inner.WithAttrs(as), out: h.out}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{inner: h.inner.WithGroup(name), out: h.out}
}
