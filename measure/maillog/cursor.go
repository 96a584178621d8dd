package maillog

import "strings"

// cursor reads a log message left to right, one field at a time: each
// read takes what the MTA writes at this place, with that field's syntax
// and length limit, or the cursor fails and stays failed. No read looks
// ahead into what follows, so text a remote party wrote further on (a
// reply) cannot change how an earlier field is read.
type cursor struct {
	s  string
	ok bool
}

func newCursor(s string) *cursor { return &cursor{s: s, ok: true} }

// must consumes the literal p or fails.
func (c *cursor) must(p string) {
	if !c.opt(p) {
		c.ok = false
	}
}

// opt consumes the literal p if it comes next.
func (c *cursor) opt(p string) bool {
	if c.ok && strings.HasPrefix(c.s, p) {
		c.s = c.s[len(p):]
		return true
	}
	return false
}

// at reports whether p comes next.
func (c *cursor) at(p string) bool { return c.ok && strings.HasPrefix(c.s, p) }

// span consumes min to max bytes in class, as many as there are; fewer
// than min or more than max fails.
func (c *cursor) span(min, max int, class func(byte) bool) string {
	if !c.ok {
		return ""
	}
	i := 0
	for i < len(c.s) && class(c.s[i]) {
		if i++; i > max {
			c.ok = false
			return ""
		}
	}
	if i < min {
		c.ok = false
		return ""
	}
	v := c.s[:i]
	c.s = c.s[i:]
	return v
}

// oneOf consumes the longest of words that comes next, or fails.
func (c *cursor) oneOf(words ...string) string {
	best := ""
	for _, w := range words {
		if c.at(w) && len(w) > len(best) {
			best = w
		}
	}
	if best == "" {
		c.ok = false
		return ""
	}
	c.s = c.s[len(best):]
	return best
}

// dsn consumes an RFC 3463 status code, class.subject.detail.
func (c *cursor) dsn() string {
	start := c.s
	c.span(1, 1, isDigit)
	c.must(".")
	c.span(1, 3, isDigit)
	c.must(".")
	c.span(1, 3, isDigit)
	if !c.ok {
		return ""
	}
	return start[:len(start)-len(c.s)]
}

// extras consumes up to 8 "key=value, " fields of a later MTA version
// (Postfix 3.11's tls=, Sendmail's dsn=) until one of the literals in
// stop comes next, and returns them by key.
func (c *cursor) extras(stop ...string) map[string]string {
	var out map[string]string
	for n := 0; c.ok; n++ {
		for _, s := range stop {
			if c.at(s) {
				return out
			}
		}
		if n == 8 {
			c.ok = false
			break
		}
		k := c.span(1, 20, isKey)
		c.must("=")
		v := c.span(0, 64, isValue)
		c.must(", ")
		if c.ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

func isDigit(b byte) bool  { return b >= '0' && b <= '9' }
func isNumber(b byte) bool { return isDigit(b) || b == '.' }
func isAlpha(b byte) bool  { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }
func isKey(b byte) bool    { return b >= 'a' && b <= 'z' || b == '_' }
func isUpper(b byte) bool  { return b >= 'A' && b <= 'Z' }

// isValue: what a fixed field's value may hold; never a separator, a
// bracket, a quote or a parenthesis.
func isValue(b byte) bool {
	return b > ' ' && b != ',' && b != '(' && b != ')' && b != '<' && b != '>' && b != '"' && b != 0x7f
}

// isToken: a relay field; no space and no comma.
func isToken(b byte) bool { return b > ' ' && b != ',' && b != 0x7f }

// isHostChar: a host name as logged before a bracketed address.
func isHostChar(b byte) bool { return isToken(b) && b != '[' && b != ']' }

// isAddrChar: an IP address inside brackets, with Sendmail's "IPv6:".
func isAddrChar(b byte) bool {
	return isDigit(b) || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' || b == ':' || b == '.' || b == 'I' || b == 'P' || b == 'v'
}

// isCipher: an OpenSSL or IANA cipher suite name.
func isCipher(b byte) bool { return isAlpha(b) || isDigit(b) || b == '_' || b == '-' }

// tlsVersions are the protocol names the MTAs log, as OpenSSL writes them.
var tlsVersions = []string{"SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}
