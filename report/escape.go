package report

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Every string a report shows can come from a peer: a MAIL FROM or From
// domain (a null-sender bounce's From header is the sender's to choose), a
// HELO, a PTR name, a cipher name a client offered, a provider's MX name,
// an AS organisation or country from an MMDB file. Each encoder escapes
// for its format here, once, whatever report it renders (GUIDE rule 4).

// unsafeRune reports whether r must not reach a terminal, a mail client or
// a browser as it is: C0 and C1 controls and DEL (Cc: ESC sequences, CSI
// U+009B), format characters (Cf: the bidi embeddings and overrides
// U+202A–202E, the isolates U+2066–2069, the marks U+200E/200F and U+061C,
// zero-width characters), and the line and paragraph separators.
func unsafeRune(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

// cleanText replaces every unsafe rune, and every byte that is not UTF-8,
// by a visible Go-style escape (\x1b, \u202e), so an admin sees that
// something was there and a terminal never acts on it. It is the text
// encoder, and the first step of every other encoder but JSON.
func cleanText(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || unsafeRune(r) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case unsafeRune(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r) && r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// mdInline escapes s for Markdown inline content (a heading, a paragraph,
// a table cell) after cleanText: HTML as character references, so no tag,
// comment or autolink (<javascript:…>) can open; and with a backslash
// every ASCII character that opens emphasis, code, links or images,
// strikethrough, or ends a GFM table cell (CommonMark 0.31 §2.4 lets any
// ASCII punctuation be backslash-escaped), and the colon or dot of GFM's
// extended URL autolinks. A lone & stays, as CommonMark renders it; one
// that could start a character reference is escaped. One link cannot be
// escaped: GFM autolinks an e-mail address (and mailto:/xmpp: before one)
// in the decoded text, whatever escapes it was written with; such a link
// only opens a mail or chat client, and no http(s), javascript: or data:
// link can form.
func mdInline(s string) string {
	s = cleanText(s)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			if i+1 < len(s) && (s[i+1] == '#' || isASCIILetter(s[i+1])) {
				b.WriteString("&amp;")
			} else {
				b.WriteByte(c)
			}
		case '\\', '`', '*', '_', '[', ']', '|', '~', '#', '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		case ':', '.':
			// GFM's extended autolinks (spec §6.9) turn http://…,
			// https://…, ftp://… and www.… in plain text into links;
			// escaping the colon or the dot keeps them text.
			if (c == ':' && strings.HasPrefix(s[i+1:], "//")) || (c == '.' && i >= 3 && strings.EqualFold(s[i-3:i], "www")) {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// mdBlock escapes s for a paragraph or a list item of its own: mdInline,
// and a backslash before a first character that would open a block (a
// list, a setext underline, a thematic break, an ordered list "1.").
func mdBlock(s string) string {
	s = mdInline(s)
	if s == "" {
		return s
	}
	switch s[0] {
	case '-', '+', '=':
		return `\` + s
	}
	// An ordered list marker: 1–9 digits, "." or ")", then a space or
	// the end (CommonMark §5.2); "100.00% of …" is none.
	n := len(s) - len(strings.TrimLeft(s, "0123456789"))
	if n > 0 && n <= 9 && n < len(s) && (s[n] == '.' || s[n] == ')') && (n+1 == len(s) || s[n+1] == ' ') {
		return s[:n] + `\` + s[n:]
	}
	return s
}

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// csvCell neutralises a cell that a spreadsheet would read as a formula
// (OWASP, "CSV Injection"): one beginning with = + - @, a tab or a carriage
// return gets a leading single quote, so =cmd|'/c calc'!A0 and +1+cmd|…
// stay text. Plain numbers such as -20.69, +0 or 58.62% are no formula
// and stay numbers, and a lone "-" (our "no value") has nothing to
// compute. Leading spaces are looked through: some importers trim them.
// A spreadsheet whose list separator is ";" (most of continental Europe)
// starts a cell after every ";", even inside our quotes: each part after
// a ";" is neutralised the same way, so "a;=cmd|…" reads "a;'=cmd|…".
func csvCell(s string) string {
	parts := strings.Split(cleanText(s), ";")
	for i := 1; i < len(parts); i++ {
		if formulaStart(parts[i]) {
			parts[i] = "'" + parts[i] // a ";" is in no value of ours: no number to keep
		}
	}
	s = strings.Join(parts, ";")
	if t := strings.TrimLeft(s, " "); t != "-" && !plainNumber(t) && formulaStart(s) {
		return "'" + s
	}
	return s
}

// formulaStart reports whether s, leading spaces aside, begins with a
// character that starts a formula (OWASP's list).
func formulaStart(s string) bool {
	t := strings.TrimLeft(s, " ")
	return t != "" && strings.IndexByte("=+-@\t\r", t[0]) >= 0
}

// plainNumber matches [+-]digits[.digits][%]: what the report's own
// counts, shares and changes look like.
func plainNumber(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	s = strings.TrimSuffix(s, "%")
	whole, frac, dot := strings.Cut(s, ".")
	return allDigits(whole) && (!dot || allDigits(frac))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// writeCSVRecord writes one CSV line (RFC 4180). A cell is quoted when it
// holds a comma, a quote or a line break, as encoding/csv does, and also
// when it holds a semicolon, for readers that split on ";". In a ";"
// locale the whole line up to the first ";" is one cell that begins with
// our first cell, so a first cell that is a signed number or "-" gets
// the quote too ("-1" then "5+cmd|…" would read -1,5+cmd|… there); no
// report has one, its first column being labels.
func writeCSVRecord(w *bytes.Buffer, cells []string) {
	for i, c := range cells {
		if i > 0 {
			w.WriteByte(',')
		}
		c = csvCell(c)
		if t := strings.TrimLeft(c, " "); i == 0 && t != "" && (t[0] == '+' || t[0] == '-') {
			c = "'" + c
		}
		if c == `\.` || strings.ContainsAny(c, ",;\"\r\n") || strings.HasPrefix(c, " ") || strings.HasSuffix(c, " ") {
			w.WriteByte('"')
			w.WriteString(strings.ReplaceAll(c, `"`, `""`))
			w.WriteByte('"')
			continue
		}
		w.WriteString(c)
	}
	w.WriteByte('\n')
}

// escapeJSON rewrites, in encoding/json's output, the runes it leaves raw
// that a terminal or an editor would act on (C1 controls, DEL, bidi and
// other format characters) as \u escapes. The JSON value is the same: such
// runes only occur inside strings, where \u escapes mean the same rune.
func escapeJSON(js []byte) []byte {
	clean := true
	for _, r := range string(js) {
		if r != '\n' && unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return js
	}
	var b bytes.Buffer
	for _, r := range string(js) {
		if r == '\n' || !unsafeRune(r) {
			b.WriteRune(r)
			continue
		}
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
			continue
		}
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.Bytes()
}
