// Package policy decides, per destination domain, how much TLS mail must
// have: manual overrides, DANE, MTA-STS (RFC 8461) and policies learned
// from delivery history, served to Postfix as a socketmap for
// smtp_tls_policy_maps and as a policy delegation service for inbound
// mail. It fails open: when it cannot decide, mail goes as it would
// without snowrain.
package policy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Netstring errors.
var (
	ErrNetstringSyntax = errors.New("policy: malformed netstring")
	ErrNetstringSize   = errors.New("policy: netstring too long")
)

// ReadNetstring reads one "LEN:DATA," netstring of at most max bytes.
func ReadNetstring(r *bufio.Reader, max int) (string, error) {
	n := 0
	digits := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if digits > 0 && errors.Is(err, io.EOF) {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' || digits >= 10 || (digits == 1 && n == 0) {
			return "", ErrNetstringSyntax
		}
		n = n*10 + int(c-'0')
		digits++
		if n > max {
			return "", ErrNetstringSize
		}
	}
	if digits == 0 {
		return "", ErrNetstringSyntax
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	if buf[n] != ',' {
		return "", ErrNetstringSyntax
	}
	return string(buf[:n]), nil
}

// AppendNetstring appends s as a netstring.
func AppendNetstring(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	b = append(b, s...)
	return append(b, ',')
}

// FormatNetstring returns s as a netstring.
func FormatNetstring(s string) string { return fmt.Sprintf("%d:%s,", len(s), s) }
