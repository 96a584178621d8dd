package dmarcrpt

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Errors of Parse, each a class of hostile or broken input.
var (
	ErrTooLarge  = errors.New("dmarcrpt: report too large")
	ErrEntities  = errors.New("dmarcrpt: document type declaration (entity expansion refused)")
	ErrTooDeep   = errors.New("dmarcrpt: elements nested too deep")
	ErrMalformed = errors.New("dmarcrpt: malformed report")
)

// Limits of Parse.
const (
	MaxReportSize = 32 << 20 // uncompressed XML
	maxDepth      = 12       // the schema nests 5 deep
	MaxRecords    = 1 << 20
)

// Parse reads an aggregate report of at most MaxReportSize bytes. It
// refuses any document type declaration (no report needs one, and
// entities are how a billion laughs begins: encoding/xml expands none,
// but refusing says what the input was), nesting beyond any report's,
// and a document without a report ID, date range or policy domain.
func Parse(r io.Reader) (*Feedback, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxReportSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(b) > MaxReportSize {
		return nil, ErrTooLarge
	}
	if err := scan(b); err != nil {
		return nil, err
	}
	var f Feedback
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.CharsetReader = charsetReader
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return &f, nil
}

// scan walks the tokens once, cheaply, before the decoder builds anything.
func scan(b []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.CharsetReader = charsetReader
	depth, records := 0, 0
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return ErrEntities
		case xml.StartElement:
			if depth++; depth > maxDepth {
				return ErrTooDeep
			}
			if t.Name.Local == "record" {
				if records++; records > MaxRecords {
					return ErrTooLarge
				}
			}
		case xml.EndElement:
			depth--
		}
	}
}

// charsetReader accepts the encodings reports are declared in: UTF-8 and
// US-ASCII as they are, ISO-8859-1 converted.
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	case "iso-8859-1", "latin1", "latin-1":
		b, err := io.ReadAll(in)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(b)*2)
		for _, c := range b {
			out = utf8.AppendRune(out, rune(c))
		}
		return bytes.NewReader(out), nil
	}
	return nil, fmt.Errorf("unsupported encoding %.20q", label)
}

func (f *Feedback) check() error {
	bad := func(s string, a ...any) error { return fmt.Errorf("%w: "+s, append([]any{ErrMalformed}, a...)...) }
	m := f.Metadata
	if strings.TrimSpace(m.ReportID) == "" {
		return bad("no report_id")
	}
	if m.DateRange.Begin <= 0 || m.DateRange.End < m.DateRange.Begin {
		return bad("bad date_range %d-%d", m.DateRange.Begin, m.DateRange.End)
	}
	if strings.TrimSpace(f.Policy.Domain) == "" {
		return bad("no policy_published domain")
	}
	for _, r := range f.Records {
		if r.Row.Count < 0 {
			return bad("negative count")
		}
	}
	return nil
}
