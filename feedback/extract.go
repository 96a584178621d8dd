package feedback

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"path"
	"strings"

	"github.com/snowrain/snowrain/dmarcrpt"
	"github.com/snowrain/snowrain/tlsrpt"
)

// Classes of input refused; each error Extract and Ingest return wraps
// one, and Class names it.
var (
	ErrTooLarge       = errors.New("too large")
	ErrBomb           = errors.New("compression bomb")
	ErrTooManyEntries = errors.New("archive with too many entries")
	ErrEntities       = errors.New("XML entity declarations")
	ErrTooDeep        = errors.New("nested too deep")
	ErrMalformedMIME  = errors.New("malformed MIME")
	ErrMalformed      = errors.New("malformed report")
	ErrNoReport       = errors.New("no report found")
)

// Class names the kind of an Extract or Ingest error, for output and
// counting.
func Class(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{
		{ErrBomb, "compression_bomb"}, {ErrTooManyEntries, "too_many_entries"}, {ErrTooLarge, "too_large"},
		{ErrEntities, "xml_entities"}, {ErrTooDeep, "too_deep"}, {ErrMalformedMIME, "malformed_mime"},
		{ErrMalformed, "malformed_report"}, {ErrNoReport, "no_report"},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	if err == nil {
		return ""
	}
	return "error"
}

// Limits of reading reports. Every read is bounded while it happens: a
// message is read to at most MaxMessage bytes, a decompressed report to
// MaxReport, and a decompression that passes MaxRatio times its input
// (past the first MiB) is a bomb whatever its final size.
const (
	MaxMessage    = 32 << 20
	MaxReport     = 32 << 20
	MaxRatio      = 200
	MaxZipEntries = 8
	MaxParts      = 64
	MaxDepth      = 8
)

// Document is one report found in an input.
type Document struct {
	Name  string // attachment or entry name, if any
	DMARC *dmarcrpt.Feedback
	TLS   *tlsrpt.Report
}

// Found is what Extract found: documents, and the documents it refused.
type Found struct {
	Docs    []Document
	Refused []error
}

// ExtractMessage finds the reports in an email message: attachments of
// the report types (XML, JSON, gzip, zip; RFC 7489 7.2.1.1, RFC 8460
// 5.3), or a message whose whole body is one.
func ExtractMessage(msg []byte) (Found, error) {
	var f Found
	if len(msg) > MaxMessage {
		return f, fmt.Errorf("%w: message over %d bytes", ErrTooLarge, MaxMessage)
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return f, fmt.Errorf("%w: %v", ErrMalformedMIME, err)
	}
	parts := 0
	if err := walk(textprotoHeader(m.Header), m.Body, 0, &parts, &f); err != nil {
		return f, err
	}
	if len(f.Docs) == 0 && len(f.Refused) == 0 {
		return f, ErrNoReport
	}
	return f, nil
}

type header interface{ Get(string) string }

func textprotoHeader(h mail.Header) header { return h }

// walk visits a MIME entity: multiparts part by part (bounded in depth
// and count), leaves by type.
func walk(h header, body io.Reader, depth int, parts *int, f *Found) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: MIME nesting", ErrTooDeep)
	}
	if *parts++; *parts > MaxParts {
		return fmt.Errorf("%w: more than %d MIME parts", ErrTooManyEntries, MaxParts)
	}
	ct := h.Get("Content-Type")
	media, params, err := mime.ParseMediaType(ct)
	if ct == "" {
		media, err = "text/plain", nil
	}
	if err != nil {
		return fmt.Errorf("%w: Content-Type %.80q: %v", ErrMalformedMIME, ct, err)
	}
	if strings.HasPrefix(media, "multipart/") {
		if params["boundary"] == "" {
			return fmt.Errorf("%w: multipart without boundary", ErrMalformedMIME)
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%w: %v", ErrMalformedMIME, err)
			}
			if err := walk(p.Header, p, depth+1, parts, f); err != nil {
				return err
			}
		}
	}
	name := params["name"]
	if _, dp, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && dp["filename"] != "" {
		name = dp["filename"]
	}
	if !reportPart(media, name) {
		return nil
	}
	data, err := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	if err != nil {
		return err
	}
	docs, err := ExtractPayload(name, data)
	f.Docs = append(f.Docs, docs...)
	if err != nil {
		f.Refused = append(f.Refused, fmt.Errorf("%s: %w", safeName(name), err))
	}
	return nil
}

// reportPart says whether a MIME leaf may hold a report.
func reportPart(media, name string) bool {
	switch media {
	case "application/gzip", "application/x-gzip", "application/zip", "application/x-zip-compressed",
		"application/x-zip", "text/xml", "application/xml", "application/tlsrpt+gzip", "application/tlsrpt+json",
		"application/json":
		return true
	case "application/octet-stream":
		n := strings.ToLower(name)
		for _, ext := range []string{".xml", ".gz", ".zip", ".json"} {
			if strings.HasSuffix(n, ext) {
				return true
			}
		}
	}
	return false
}

func decodeTransfer(cte string, body io.Reader) ([]byte, error) {
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &stripSpace{r: bufio.NewReader(body)})
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	default:
		r = body
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxMessage+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedMIME, err)
	}
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("%w: part over %d bytes", ErrTooLarge, MaxMessage)
	}
	return b, nil
}

// stripSpace drops line breaks and blanks inside base64.
type stripSpace struct{ r *bufio.Reader }

func (s *stripSpace) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := s.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if c == '\r' || c == '\n' || c == ' ' || c == '\t' {
			continue
		}
		p[n] = c
		n++
	}
	return n, nil
}

// ExtractPayload reads a raw attachment: gzip, zip or a document, found
// by its first bytes (names lie).
func ExtractPayload(name string, data []byte) ([]Document, error) {
	return extract(name, data, 0)
}

func extract(name string, data []byte, depth int) ([]Document, error) {
	if depth > 2 {
		return nil, fmt.Errorf("%w: archive in archive", ErrTooDeep)
	}
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
		}
		zr.Multistream(false)
		out, err := inflate(zr, int64(len(data)))
		if err != nil {
			return nil, err
		}
		return extract(strings.TrimSuffix(name, ".gz"), out, depth+1)
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		return unzip(data, depth)
	}
	doc, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	doc.Name = name
	return []Document{doc}, nil
}

// inflate decompresses at most MaxReport bytes, stopping as soon as the
// output passes MaxRatio times the input.
func inflate(r io.Reader, in int64) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if int64(out.Len()) > MaxReport {
			return nil, fmt.Errorf("%w: decompresses to more than %d bytes", ErrBomb, MaxReport)
		}
		if out.Len() > 1<<20 && int64(out.Len()) > MaxRatio*max(in, 1) {
			return nil, fmt.Errorf("%w: %d bytes grew past %d times", ErrBomb, in, MaxRatio)
		}
		if errors.Is(err, io.EOF) {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
}

func unzip(data []byte, depth int) ([]Document, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: zip: %v", ErrMalformed, err)
	}
	if len(zr.File) > MaxZipEntries {
		return nil, fmt.Errorf("%w: %d zip entries", ErrTooManyEntries, len(zr.File))
	}
	var docs []Document
	var total uint64
	for _, zf := range zr.File {
		if zf.FileInfo().IsDir() {
			continue
		}
		// The declared sizes first: a bomb usually says what it is.
		total += zf.UncompressedSize64
		if zf.UncompressedSize64 > MaxReport || total > MaxReport {
			return nil, fmt.Errorf("%w: zip entry %s declares %d bytes", ErrBomb, safeName(zf.Name), zf.UncompressedSize64)
		}
		rc, err := zf.Open()
		if err != nil {
			return nil, fmt.Errorf("%w: zip entry: %v", ErrMalformed, err)
		}
		// Then the real ones: the declaration may lie.
		out, err := inflate(rc, int64(zf.CompressedSize64))
		rc.Close()
		if err != nil {
			return nil, err
		}
		d, err := extract(path.Base(zf.Name), out, depth+1)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	if len(docs) == 0 {
		return nil, ErrNoReport
	}
	return docs, nil
}

// parseDocument reads an XML aggregate report or a JSON TLS report.
func parseDocument(b []byte) (Document, error) {
	t := bytes.TrimLeft(b, " \t\r\n\ufeff")
	t = bytes.TrimPrefix(t, []byte("\xef\xbb\xbf"))
	switch {
	case bytes.HasPrefix(t, []byte("<")):
		f, err := dmarcrpt.Parse(bytes.NewReader(t))
		switch {
		case errors.Is(err, dmarcrpt.ErrEntities):
			return Document{}, fmt.Errorf("%w: %v", ErrEntities, err)
		case errors.Is(err, dmarcrpt.ErrTooDeep):
			return Document{}, fmt.Errorf("%w: %v", ErrTooDeep, err)
		case errors.Is(err, dmarcrpt.ErrTooLarge):
			return Document{}, fmt.Errorf("%w: %v", ErrTooLarge, err)
		case err != nil:
			return Document{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return Document{DMARC: f}, nil
	case bytes.HasPrefix(t, []byte("{")):
		r, err := tlsrpt.Parse(bytes.NewReader(t))
		switch {
		case errors.Is(err, tlsrpt.ErrTooLarge):
			return Document{}, fmt.Errorf("%w: %v", ErrTooLarge, err)
		case err != nil:
			return Document{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return Document{TLS: r}, nil
	}
	return Document{}, ErrNoReport
}

// safeName keeps a peer-chosen name printable and short for output.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
