package maillog

import (
	"bufio"
	"errors"
	"io"
)

// ErrLineTooLong reports a line longer than the reader's bound; the line
// was read to its end and dropped.
var ErrLineTooLong = errors.New("maillog: line longer than the limit")

// LineReader reads a log line by line with a bound checked while reading:
// a longer line is consumed to its newline in buffer-sized pieces and
// dropped, so an endless line costs no memory.
type LineReader struct {
	r    *bufio.Reader
	max  int
	line []byte
	skip bool // inside an over-long line, dropping to its newline
}

// NewLineReader reads lines of at most max bytes (MaxLine when max <= 0),
// the newline not counted.
func NewLineReader(r io.Reader, max int) *LineReader {
	if max <= 0 {
		max = MaxLine
	}
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Reset reads from r from now on, forgetting any partial line.
func (lr *LineReader) Reset(r io.Reader) {
	lr.r.Reset(r)
	lr.line, lr.skip = lr.line[:0], false
}

// Next returns the next line with its newline and n, the bytes it took
// from the input in this call. At the end of the input it returns the
// partial last line, if any, with io.EOF. A line over the bound gives
// ErrLineTooLong once its newline is read; if the input ends inside it,
// Next returns no line and io.EOF, and the next call goes on dropping.
// The line is valid until the next call.
func (lr *LineReader) Next() (line []byte, n int, err error) {
	lr.line = lr.line[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		n += len(chunk)
		if lr.skip {
			switch {
			case err == nil:
				lr.skip = false
				return nil, n, ErrLineTooLong
			case errors.Is(err, bufio.ErrBufferFull):
				continue
			}
			return nil, n, err
		}
		if len(lr.line)+len(chunk) > lr.max+1 || len(lr.line)+len(chunk) == lr.max+1 && err != nil {
			lr.line = lr.line[:0]
			if err == nil {
				return nil, n, ErrLineTooLong
			}
			lr.skip = true
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			return nil, n, err
		}
		lr.line = append(lr.line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return lr.line, n, err
	}
}

// Dropping reports whether the input ended inside an over-long line.
func (lr *LineReader) Dropping() bool { return lr.skip }
