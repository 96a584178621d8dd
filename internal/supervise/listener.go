package supervise

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// temporaryErrnos are the accept(2) errors that say nothing about the
// listening socket itself: the process or the system is out of
// descriptors or buffers, or one pending connection went away. net/http
// retries the same class (its Temporary() check) after a pause; so do we,
// for every listener, instead of letting Serve return.
var temporaryErrnos = []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
	syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM}

// Temporary reports whether an Accept error is worth retrying on the same
// listener, and the errno's name for logs and metrics.
func Temporary(err error) (string, bool) {
	for _, e := range temporaryErrnos {
		if errors.Is(err, e) {
			return errnoName(e), true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "ETIMEDOUT", true
	}
	return "", false
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EMFILE:
		return "EMFILE"
	case syscall.ENFILE:
		return "ENFILE"
	case syscall.ENOBUFS:
		return "ENOBUFS"
	case syscall.ENOMEM:
		return "ENOMEM"
	case syscall.ECONNABORTED:
		return "ECONNABORTED"
	case syscall.ECONNRESET:
		return "ECONNRESET"
	case syscall.EINTR:
		return "EINTR"
	case syscall.EAGAIN:
		return "EAGAIN"
	case syscall.EPROTO:
		return "EPROTO"
	case syscall.EPERM:
		return "EPERM"
	}
	return "other"
}

// retryListener hides temporary Accept errors from the server above it:
// it pauses (5 ms doubling to 1 s, as net/http does) and accepts again, so
// a descriptor shortage never ends a Serve loop. The first failure of a
// streak and the recovery are reported; the failures in between are
// counted.
//
// A listener has recovered when an accept succeeds, or when a retried
// Accept has waited quietRecovery without failing: accept(2) fails with
// EMFILE only while a connection is pending, so one that waits has
// nothing it cannot take, and the listener must not stay degraded until
// the next client happens to come.
type retryListener struct {
	net.Listener
	onError   func(errno string, err error, streak int)
	onRecover func(streak int)

	once   sync.Once
	closed chan struct{}
}

func newRetryListener(ln net.Listener, onError func(string, error, int), onRecover func(int)) *retryListener {
	return &retryListener{Listener: ln, onError: onError, onRecover: onRecover, closed: make(chan struct{})}
}

const (
	maxAcceptDelay = time.Second
	quietRecovery  = 500 * time.Millisecond
)

func (l *retryListener) Accept() (net.Conn, error) {
	var delay time.Duration
	streak := 0
	for {
		// recovered is claimed once per streak: by the quiet timer, by a
		// successful accept or by the next failure, whichever comes
		// first, so a late timer cannot mark a failing listener healthy.
		var recovered atomic.Bool
		var quiet *time.Timer
		if streak > 0 {
			n := streak
			quiet = time.AfterFunc(quietRecovery, func() {
				if recovered.CompareAndSwap(false, true) {
					l.onRecover(n)
				}
			})
		}
		c, err := l.Listener.Accept()
		if quiet != nil {
			quiet.Stop()
		}
		if err == nil {
			if streak > 0 && recovered.CompareAndSwap(false, true) {
				l.onRecover(streak)
			}
			return c, nil
		}
		errno, temp := Temporary(err)
		if !temp {
			return nil, err
		}
		if streak > 0 && !recovered.CompareAndSwap(false, true) {
			streak, delay = 0, 0 // it had recovered: a new streak
		}
		streak++
		l.onError(errno, err, streak)
		if delay == 0 {
			delay = 5 * time.Millisecond
		} else {
			delay = min(2*delay, maxAcceptDelay)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

func (l *retryListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
