// Package maillog parses MTA logs into outbound deliveries with their TLS
// state: Postfix smtp status lines joined to its "TLS connection
// established" lines (or, from Postfix 3.11, its tls= field), and
// Sendmail's stat= lines joined to its STARTTLS=client lines.
package maillog

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Line is one syslog record.
type Line struct {
	Time    time.Time
	Host    string
	Program string // e.g. postfix/smtp, sendmail
	PID     int
	Message string
}

// Errors classify lines that are not syslog records.
var (
	ErrNoTimestamp = errors.New("maillog: no timestamp")
	ErrNoTag       = errors.New("maillog: no program tag")
)

// ParseSyslog reads "Nov 25 02:30:44 host prog[pid]: msg" (year from now,
// in loc) or "2026-11-25T02:30:44.123+00:00 host prog[pid]: msg".
func ParseSyslog(s string, now time.Time, loc *time.Location) (Line, error) {
	var l Line
	rest, err := l.parseTime(s, now, loc)
	if err != nil {
		return l, err
	}
	host, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return l, ErrNoTag
	}
	l.Host = host
	tag, msg, ok := strings.Cut(rest, ": ")
	if !ok {
		return l, ErrNoTag
	}
	l.Message = msg
	if i := strings.IndexByte(tag, '['); i > 0 && strings.HasSuffix(tag, "]") {
		l.PID, _ = strconv.Atoi(tag[i+1 : len(tag)-1])
		tag = tag[:i]
	}
	l.Program = tag
	return l, nil
}

func (l *Line) parseTime(s string, now time.Time, loc *time.Location) (string, error) {
	if len(s) > 20 && s[4] == '-' && s[10] == 'T' {
		sp := strings.IndexByte(s, ' ')
		if sp < 0 {
			return "", ErrNoTimestamp
		}
		t, err := time.Parse(time.RFC3339Nano, s[:sp])
		if err != nil { // journalctl -o short-iso writes +0000
			if t, err = time.Parse("2006-01-02T15:04:05-0700", s[:sp]); err != nil {
				return "", ErrNoTimestamp
			}
		}
		l.Time = t
		return s[sp+1:], nil
	}
	if len(s) < 16 || s[15] != ' ' {
		return "", ErrNoTimestamp
	}
	t, err := time.ParseInLocation("Jan _2 15:04:05 2006", s[:15]+" "+strconv.Itoa(now.Year()), loc)
	if err != nil {
		return "", ErrNoTimestamp
	}
	if t.After(now.Add(48 * time.Hour)) { // a December line read in January
		t = t.AddDate(-1, 0, 0)
	}
	l.Time = t
	return s[16:], nil
}
