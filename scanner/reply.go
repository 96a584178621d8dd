// Package scanner runs the paper's sweeps: the domain-list STARTTLS and
// policy scan (MX, SPF, DMARC, MTA-STS, TLSA, then one SMTP+STARTTLS grab
// per distinct mail server), politely and resumably, with every packet's
// destination checked against a blocklist.
package scanner

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reply is one SMTP reply, possibly multi-line (RFC 5321 section 4.2).
type Reply struct {
	Code  int
	Lines []string // text after the code and separator
}

// Text joins the reply's lines.
func (r Reply) Text() string { return strings.Join(r.Lines, "\n") }

// Reply errors.
var (
	ErrReplySyntax = errors.New("scanner: malformed SMTP reply")
	ErrReplyLong   = errors.New("scanner: SMTP reply too long")
)

// Reply bounds: RFC 5321 section 4.5.3.1.5 allows 512 octets a line; real
// servers send longer EHLO lines, so a whole reply may take 64 KiB.
const (
	MaxReplyBytes = 64 << 10
	MaxReplyLines = 1000
)

// ReadReply reads one reply, bounding its size while reading: a hostile
// server may send an endless line or endless continuations, and no more
// than MaxReplyBytes (plus r's buffer) is ever held.
func ReadReply(r *bufio.Reader) (Reply, error) {
	var rep Reply
	budget := MaxReplyBytes
	for {
		if len(rep.Lines) >= MaxReplyLines {
			return rep, ErrReplyLong
		}
		line, err := readLine(r, &budget)
		if err != nil {
			return rep, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return rep, fmt.Errorf("%w: %.40q", ErrReplySyntax, line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 100 || code > 599 {
			return rep, fmt.Errorf("%w: %.40q", ErrReplySyntax, line)
		}
		if rep.Code != 0 && code != rep.Code {
			return rep, fmt.Errorf("%w: code changed mid-reply", ErrReplySyntax)
		}
		rep.Code = code
		sep := byte(' ')
		if len(line) > 3 {
			sep = line[3]
		}
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		rep.Lines = append(rep.Lines, text)
		switch sep {
		case ' ':
			return rep, nil
		case '-':
		default:
			return rep, fmt.Errorf("%w: separator %q", ErrReplySyntax, sep)
		}
	}
}

// Extensions reads the EHLO keywords (upper-cased) from a 250 reply.
func Extensions(r Reply) map[string]string {
	ext := map[string]string{}
	for i, l := range r.Lines {
		if i == 0 {
			continue // the greeting line
		}
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		if k != "" {
			ext[strings.ToUpper(k)] = v
		}
	}
	return ext
}

// readLine reads up to and including '\n', failing with ErrReplyLong as
// soon as the line would take more than *budget bytes, which it debits.
func readLine(r *bufio.Reader, budget *int) (string, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(frag) > *budget {
			return "", ErrReplyLong
		}
		*budget -= len(frag)
		line = append(line, frag...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return "", err
		}
		return string(line), nil
	}
}
