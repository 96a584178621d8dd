package dkim

import (
	"io"
	"strings"
)

// Canonicalization is a canonicalization algorithm.
type Canonicalization string

const (
	CanonicalizationSimple  Canonicalization = "simple"
	CanonicalizationRelaxed                  = "relaxed"
)

type canonicalizer interface {
	CanonicalizeHeader(s string) string
	CanonicalizeBody(w io.Writer) io.WriteCloser
}

var canonicalizers = map[Canonicalization]canonicalizer{
	CanonicalizationSimple:  new(simpleCanonicalizer),
	CanonicalizationRelaxed: new(relaxedCanonicalizer),
}

// crlfFixer fixes any lone LF without a preceding CR.
type crlfFixer struct {
	cr bool
}

func (cf *crlfFixer) Fix(b []byte) []byte {
	res := make([]byte, 0, len(b))
	for _, ch := range b {
		prevCR := cf.cr
		cf.cr = false
		switch ch {
		case '\r':
			cf.cr = true
		case '\n':
			if !prevCR {
				res = append(res, '\r')
			}
		}
		res = append(res, ch)
	}
	return res
}

type simpleCanonicalizer struct{}

func (c *simpleCanonicalizer) CanonicalizeHeader(s string) string {
	return s
}

// simpleBodyCanonicalizer withholds the CRLFs at the end of what it has
// seen (empty lines at the end of the body are ignored, RFC 6376 3.4.3).
//
// snowrain patch: it holds them as a count, not as bytes. Each Write used
// to prepend the withheld bytes to its input and scan them again, which
// made a body of many empty lines quadratic in time (and linear in memory
// per signature).
type simpleBodyCanonicalizer struct {
	w         io.Writer
	crlfs     int  // withheld "\r\n" pairs
	cr        bool // a withheld "\r" after them: the next Write may start with "\n"
	crlfFixer crlfFixer
}

func (c *simpleBodyCanonicalizer) Write(b []byte) (int, error) {
	written := len(b)
	b = c.crlfFixer.Fix(b)
	if len(b) == 0 {
		return written, nil
	}
	if c.cr && b[0] == '\n' {
		c.cr = false
		c.crlfs++
		b = b[1:]
	}

	end := len(b)
	// If it ends with \r, maybe the next write will begin with \n
	cr := end > 0 && b[end-1] == '\r'
	if cr {
		end--
	}
	// Keep all \r\n sequences
	n := 0
	for end >= 2 && b[end-2] == '\r' && b[end-1] == '\n' {
		end -= 2
		n++
	}
	if end == 0 && !(c.cr && len(b) > 0) {
		c.crlfs += n
		c.cr = cr
		return written, nil
	}
	// Content follows: what was withheld (a lone \r included) was not
	// at the end of the body.
	if err := c.flush(); err != nil {
		return written, err
	}
	c.crlfs, c.cr = n, cr
	var err error
	if end > 0 {
		_, err = c.w.Write(b[:end])
	}
	return written, err
}

var crlfRun = []byte(strings.Repeat(crlf, 2048))

// flush writes the withheld bytes.
func (c *simpleBodyCanonicalizer) flush() error {
	for c.crlfs > 0 {
		n := min(c.crlfs, len(crlfRun)/2)
		if _, err := c.w.Write(crlfRun[:2*n]); err != nil {
			return err
		}
		c.crlfs -= n
	}
	if c.cr {
		c.cr = false
		if _, err := c.w.Write([]byte{'\r'}); err != nil {
			return err
		}
	}
	return nil
}

func (c *simpleBodyCanonicalizer) Close() error {
	// Flush the withheld bytes if they end with a single \r (without a
	// matching \n)
	if c.cr {
		if err := c.flush(); err != nil {
			return err
		}
	}
	c.crlfs = 0

	if _, err := c.w.Write([]byte(crlf)); err != nil {
		return err
	}
	return nil
}

func (c *simpleCanonicalizer) CanonicalizeBody(w io.Writer) io.WriteCloser {
	return &simpleBodyCanonicalizer{w: w}
}

type relaxedCanonicalizer struct{}

func (c *relaxedCanonicalizer) CanonicalizeHeader(s string) string {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return strings.TrimSpace(strings.ToLower(s)) + ":" + crlf
	}

	k = strings.TrimSpace(strings.ToLower(k))
	v = strings.Join(strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}), " ")
	return k + ":" + v + crlf
}

type relaxedBodyCanonicalizer struct {
	w         io.Writer
	crlfBuf   []byte
	wsp       bool
	written   bool
	crlfFixer crlfFixer
}

func (c *relaxedBodyCanonicalizer) Write(b []byte) (int, error) {
	written := len(b)

	b = c.crlfFixer.Fix(b)

	canonical := make([]byte, 0, len(b))
	for _, ch := range b {
		if ch == ' ' || ch == '\t' {
			c.wsp = true
		} else if ch == '\r' || ch == '\n' {
			c.wsp = false
			c.crlfBuf = append(c.crlfBuf, ch)
		} else {
			if len(c.crlfBuf) > 0 {
				canonical = append(canonical, c.crlfBuf...)
				c.crlfBuf = c.crlfBuf[:0]
			}
			if c.wsp {
				canonical = append(canonical, ' ')
				c.wsp = false
			}

			canonical = append(canonical, ch)
		}
	}

	if !c.written && len(canonical) > 0 {
		c.written = true
	}

	_, err := c.w.Write(canonical)
	return written, err
}

func (c *relaxedBodyCanonicalizer) Close() error {
	if c.written {
		if _, err := c.w.Write([]byte(crlf)); err != nil {
			return err
		}
	}
	return nil
}

func (c *relaxedCanonicalizer) CanonicalizeBody(w io.Writer) io.WriteCloser {
	return &relaxedBodyCanonicalizer{w: w}
}

type limitedWriter struct {
	W io.Writer
	N int64
}

func (w *limitedWriter) Write(b []byte) (int, error) {
	if w.N <= 0 {
		return len(b), nil
	}

	skipped := 0
	if int64(len(b)) > w.N {
		b = b[:w.N]
		skipped = int(int64(len(b)) - w.N)
	}

	n, err := w.W.Write(b)
	w.N -= int64(n)
	return n + skipped, err
}
