package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// ReaderBufferSize is the buffer of a Reader: packets up to this size
// (every command, macro and header packet, most body chunks) are cut from
// it without a copy (snowrain patch).
const ReaderBufferSize = 16 << 10

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, ReaderBufferSize) }}

// Reader reads the packets of one connection through a buffer (snowrain
// patch). ReadPacketLimited reads the length, then the data, each straight
// from the connection: two read system calls per packet, however many
// packets the peer's write carried, and an MTA that needs no reply sends
// several packets at once (a macro packet and its command, a header field
// after another). A Reader takes what is there in one call and cuts the
// packets from its buffer, under the bounds of ReadPacketLimited: the idle
// timeout for the wait before a packet, the read timeout from there to its
// last byte, the size limit checked before anything is read or allocated.
//
// A Reader is used by one goroutine at a time.
type Reader struct {
	conn     net.Conn
	br       *bufio.Reader
	deadline bool    // a read deadline is set on conn
	msg      Message // the last packet read
}

// NewReader returns a Reader on conn with a buffer from a pool; Release
// gives it back.
func NewReader(conn net.Conn) *Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(conn)
	return &Reader{conn: conn, br: br}
}

// Release returns the buffer to the pool. The Reader and the Data of the
// last packet it returned must not be used after.
func (r *Reader) Release() {
	if r.br == nil {
		return
	}
	r.br.Reset(nil)
	readerPool.Put(r.br)
	r.br = nil
}

// setDeadline bounds the next blocking read by d from now; 0 lifts a bound
// set before.
func (r *Reader) setDeadline(d time.Duration) {
	switch {
	case d != 0:
		_ = r.conn.SetReadDeadline(time.Now().Add(d))
		r.deadline = true
	case r.deadline:
		_ = r.conn.SetReadDeadline(time.Time{})
		r.deadline = false
	}
}

// ReadPacket reads one packet with the bounds of ReadPacketLimited. The
// Message and the Data of a packet of up to ReaderBufferSize bytes are the
// Reader's: they are valid until the next call of ReadPacket.
//
// A deadline is set only before a read that may block: a packet already
// in the buffer costs no system call at all. The read timeout then runs
// from the first read that waits inside the packet, so a peer can stretch a
// packet at most by the time the caller spent on the packets before it.
func (r *Reader) ReadPacket(idle, read time.Duration, maxSize uint32) (*Message, error) {
	if maxSize == 0 || maxSize > maxPacketSize {
		maxSize = maxPacketSize
	}
	if r.br.Buffered() == 0 {
		r.setDeadline(idle)
		if _, err := r.br.Peek(1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, fmt.Errorf("%w: %w", ErrIdleTimeout, err)
			}
			return nil, err
		}
	}
	inPacket := false
	wait := func(n int) {
		if !inPacket && r.br.Buffered() < n {
			r.setDeadline(read)
			inPacket = true
		}
	}
	wait(4)
	hdr, err := r.br.Peek(4)
	if err != nil {
		return nil, noEOF(err)
	}
	length := binary.BigEndian.Uint32(hdr)
	if length == 0 {
		return nil, fmt.Errorf("%w: zero length", ErrMalformedPacket)
	}
	if length > maxSize {
		return nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrPacketTooLarge, length, maxSize)
	}
	_, _ = r.br.Discard(4)
	wait(int(length))
	var data []byte
	if length <= ReaderBufferSize {
		// Peek fills the buffer up to length and the bytes stay where
		// they are until the next read; Discard only moves past them.
		if data, err = r.br.Peek(int(length)); err != nil {
			return nil, noEOF(err)
		}
		_, _ = r.br.Discard(int(length))
	} else {
		data = make([]byte, length)
		if _, err := io.ReadFull(r.br, data); err != nil {
			return nil, noEOF(err)
		}
	}
	r.msg = Message{Code: Code(data[0]), Data: data[1:]}
	return &r.msg, nil
}
