package scanner

import (
	"bufio"
	"io"
	"sync"
)

// The grab path's I/O, kept cheap: a sweep makes millions of short
// connections, and what each costs the scanner's CPU is issue 15's figure.

// readers recycles the reply readers: each grab's 4 KiB buffer was a
// sixth of what it allocated.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// getReader returns a pooled reader on r.
func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// putReader returns br to the pool, dropping its connection.
func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

// Commands are written whole, one write each.
var (
	cmdSTARTTLS = []byte("STARTTLS\r\n")
	cmdQUIT     = []byte("QUIT\r\n")
)

func ehloCmd(name string) []byte { return []byte("EHLO " + name + "\r\n") }
