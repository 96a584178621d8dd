package miltertest

import (
	"io"
	"strings"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
)

// FoldedField is a header value folded into one-character lines, as a
// milter receives it (folds as LF), of about size bytes.
func FoldedField(size int) string {
	return strings.Repeat(" x\n", size/3) + " x"
}

// FoldedBomb is the header of a message holding size bytes of
// one-character folded lines: one field up to 400 KB, fields of 100 KB
// (Postfix's header_size_limit) beyond; then a From of spf-pass.example.
func FoldedBomb(size int) []corpus.Field {
	const perField = 100 << 10
	var fields []corpus.Field
	if size <= 400<<10 {
		fields = append(fields, corpus.Field{Name: "Subject", Value: FoldedField(size)})
	} else {
		for left := size; left > 0; left -= perField {
			fields = append(fields, corpus.Field{Name: "X-Folded", Value: FoldedField(min(left, perField))})
		}
	}
	return append(fields, corpus.Field{Name: "From", Value: " <a@spf-pass.example>"})
}

// SendFields runs one transaction with the given header fields and body on
// an open session and returns the milter's final answer.
func SendFields(s *gomilter.ClientSession, from, rcpt string, fields []corpus.Field, body io.Reader) (Result, error) {
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Mail("<"+from+">", "") },
		func() (*gomilter.Action, error) { return s.Rcpt("<"+rcpt+">", "") },
		s.DataStart,
	} {
		if _, err := step(); err != nil {
			return Result{}, err
		}
	}
	for _, f := range fields {
		if _, err := s.HeaderField(f.Name, f.Value, nil); err != nil {
			return Result{}, err
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		return Result{}, err
	}
	mods, act, err := s.BodyReadFrom(body)
	if err == nil && act == nil {
		mods, act, err = s.End()
	}
	return Result{mods, act}, err
}
