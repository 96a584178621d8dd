package dkim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/textproto"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

const crlf = "\r\n"

type header []string

func readHeader(r *bufio.Reader) (header, error) {
	tr := textproto.NewReader(r)

	// snowrain patch: the field being read is built in a strings.Builder.
	// Appending each continuation line to the last string of h copied the
	// whole field every time: quadratic in the number of lines of one
	// folded field (a 400 KB field of one-character lines took 14 s).
	var h header
	var field strings.Builder
	flush := func() {
		if field.Len() > 0 {
			h = append(h, field.String())
			field.Reset()
		}
	}
	for {
		l, err := tr.ReadLine()
		if err != nil {
			flush()
			return h, fmt.Errorf("failed to read header: %v", err)
		}

		if len(l) == 0 {
			break
		} else if field.Len() > 0 && (l[0] == ' ' || l[0] == '\t') {
			// This is a continuation line
			field.WriteString(l)
			field.WriteString(crlf)
		} else {
			flush()
			field.WriteString(l)
			field.WriteString(crlf)
		}
	}
	flush()

	return h, nil
}

func writeHeader(w io.Writer, h header) error {
	for _, kv := range h {
		if _, err := w.Write([]byte(kv)); err != nil {
			return err
		}
	}
	_, err := w.Write([]byte(crlf))
	return err
}

func foldHeaderField(kv string) string {
	buf := bytes.NewBufferString(kv)

	line := make([]byte, 75) // 78 - len("\r\n\s")
	first := true
	var fold strings.Builder
	for len, err := buf.Read(line); err != io.EOF; len, err = buf.Read(line) {
		if first {
			first = false
		} else {
			fold.WriteString("\r\n ")
		}
		fold.Write(line[:len])
	}

	return fold.String() + crlf
}

func parseHeaderField(s string) (string, string) {
	key, value, _ := strings.Cut(s, ":")
	return strings.TrimSpace(key), strings.TrimSpace(value)
}

func parseHeaderParams(s string) (map[string]string, error) {
	pairs := strings.Split(s, ";")
	params := make(map[string]string)
	for _, s := range pairs {
		key, value, ok := strings.Cut(s, "=")
		if !ok {
			if strings.TrimSpace(s) == "" {
				continue
			}
			return params, ErrMalformedTagList
		}

		trimmedKey := strings.TrimSpace(key)
		_, present := params[trimmedKey]
		if present {
			return params, ErrDuplicateTag
		}
		params[trimmedKey] = strings.TrimSpace(value)
	}
	return params, nil
}

func formatHeaderParams(headerFieldName string, params map[string]string) string {
	keys, bvalue, bfound := sortParams(params)

	s := headerFieldName + ":"
	var line string

	for _, k := range keys {
		v := params[k]
		nextLength := 3 + len(line) + len(v) + len(k)
		if nextLength > 75 {
			s += line + crlf
			line = ""
		}
		line = fmt.Sprintf("%v %v=%v;", line, k, v)
	}

	if line != "" {
		s += line
	}

	if bfound {
		bfiled := foldHeaderField(" b=" + bvalue)
		s += crlf + bfiled
	}

	return s
}

func sortParams(params map[string]string) ([]string, string, bool) {
	keys := make([]string, 0, len(params))
	bfound := false
	var bvalue string
	for k := range params {
		if k == "b" {
			bvalue = params["b"]
			bfound = true
		} else {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, bvalue, bfound
}

type headerPicker struct {
	h      header
	picked map[string]int
	// snowrain patch: the positions of the fields by foldKey of their
	// name, built once. Pick scanned all of h for every name of h=, which
	// made a signature cost fields × names.
	index map[string][]int
}

func newHeaderPicker(h header) *headerPicker {
	return &headerPicker{
		h:      h,
		picked: make(map[string]int),
	}
}

// Pick returns the next field named key, from the bottom up (RFC 6376
// 5.4.2), or "" when there is none left.
func (p *headerPicker) Pick(key string) string {
	if p.index == nil {
		p.index = make(map[string][]int)
		for i, kv := range p.h {
			k, _ := parseHeaderField(kv)
			fk := foldKey(k)
			p.index[fk] = append(p.index[fk], i)
		}
	}
	key = strings.ToLower(key)

	at := p.picked[key]
	pos := p.index[foldKey(key)]
	if at >= len(pos) {
		return ""
	}
	p.picked[key]++
	return p.h[pos[len(pos)-1-at]]
}

// foldKey maps s to a key that two strings share exactly when
// strings.EqualFold holds for them: every rune becomes the smallest rune of
// its simple case folding orbit (snowrain patch).
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// The smallest rune of an ASCII letter's orbit is its upper case
		// (k, K and the Kelvin sign U+212A).
		return strings.ToUpper(s)
	}
	var b strings.Builder
	for _, r := range s {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}
