package scanner

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/hostile"
)

// TestGrabHostileServers meets each attack with both grabs (domain scan
// and host sweep): the reply is refused once it passes its bound, the
// connection is dropped, and the server could push no more than the
// bound plus the kernel's socket buffers.
func TestGrabHostileServers(t *testing.T) {
	g := &Grabber{EHLOName: "scanner.test.example", Timeout: 2 * time.Second, Dialer: &Dialer{}}
	for i, kind := range hostile.SMTPKinds {
		h := hostile.StartSMTP(t, netip.AddrFrom4([4]byte{127, 69, 0, byte(i + 1)}).String()+":0", kind)
		ap := netip.MustParseAddrPort(h.Addr)
		r := g.Grab(context.Background(), ap.Addr(), int(ap.Port()))
		hr := g.HostGrab(context.Background(), ap.Addr(), int(ap.Port()))
		switch kind {
		case hostile.Drip:
			if r.ErrorClass != ErrClassTimeout || hr.ErrorClass != ErrClassTimeout {
				t.Errorf("%s: classes %q/%q (%s), want timeout", kind, r.ErrorClass, hr.ErrorClass, r.Error)
			}
		case hostile.EndlessEHLO:
			if r.ErrorClass != ErrClassEHLO || !strings.Contains(r.Error, "too long") ||
				hr.ErrorClass != ErrClassEHLO || !strings.Contains(hr.Error, "too long") {
				t.Errorf("%s: %q %s / %q %s, want ehlo: reply too long", kind, r.ErrorClass, r.Error, hr.ErrorClass, hr.Error)
			}
		default:
			if r.ErrorClass != ErrClassBanner || !strings.Contains(r.Error, "too long") ||
				hr.ErrorClass != ErrClassBanner || !strings.Contains(hr.Error, "too long") {
				t.Errorf("%s: %q %s / %q %s, want banner: reply too long", kind, r.ErrorClass, r.Error, hr.ErrorClass, hr.Error)
			}
		}
		// Two grabs: what the scanner read (≤ 64 KiB each) plus what the
		// kernel buffered for a reader that stopped.
		if sent := h.Sent(); sent >= 64<<20 {
			t.Errorf("%s: the server sent %d bytes before the scanner hung up", kind, sent)
		}
	}
}

// TestReadReplyBounded feeds ReadReply more than its bound in every
// shape: it stops at the bound, having read little more.
func TestReadReplyBounded(t *testing.T) {
	for name, src := range map[string]io.Reader{
		"endless line":      io.MultiReader(strings.NewReader("220 "), endless('A')),
		"endless multiline": io.MultiReader(strings.NewReader("220-a\r\n"), repeatReader("220-"+strings.Repeat("b", 100)+"\r\n")),
		"many short lines":  repeatReader("250-x\r\n"),
	} {
		cr := &countingReader{r: src}
		_, err := ReadReply(bufio.NewReader(cr))
		if !errors.Is(err, ErrReplyLong) {
			t.Errorf("%s: %v, want ErrReplyLong", name, err)
		}
		if cr.n > MaxReplyBytes+8192 {
			t.Errorf("%s: read %d bytes for a %d-byte bound", name, cr.n, MaxReplyBytes)
		}
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

// repeatReader repeats s forever.
func repeatReader(s string) io.Reader {
	return &repeater{s: s}
}

type repeater struct {
	s   string
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}
