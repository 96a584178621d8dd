package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/snowrain/snowrain/internal/atomicfile"
	"github.com/snowrain/snowrain/measure"
)

// The formats Write and WriteCSV render.
const (
	FormatText     = "text"
	FormatMarkdown = "md"
	FormatJSON     = "json"
	FormatCSV      = "csv"
	FormatHTML     = "html"
)

// ErrCSVNeedsDir is returned by Write for CSV: it is one file per table.
var ErrCSVNeedsDir = errors.New("report: CSV is one file per table; write it into a directory")

// Write renders d in format (text, md, json or html) to w. Every string
// is escaped for the format (escape.go), whichever report d came from.
func Write(w io.Writer, format string, d *Document) error {
	var b bytes.Buffer
	switch format {
	case FormatText:
		writeText(&b, d)
	case FormatMarkdown:
		writeMarkdown(&b, d)
	case FormatHTML:
		if err := writeHTML(&b, d); err != nil {
			return err
		}
	case FormatJSON:
		if err := writeJSON(&b, d); err != nil {
			return err
		}
	case FormatCSV:
		return ErrCSVNeedsDir
	default:
		return fmt.Errorf("report: format %q: want text, md, json, csv or html", format)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// writeText renders aligned text for a terminal or a cron mail.
func writeText(b *bytes.Buffer, d *Document) {
	b.WriteString(cleanText(d.Title) + "\n")
	for _, h := range d.header() {
		fmt.Fprintf(b, "%-10s %s\n", h[0]+":", cleanText(h[1]))
	}
	for _, n := range d.Notices {
		fmt.Fprintf(b, "\n%s\n", cleanText(n))
	}
	for _, t := range d.Tables {
		title := cleanText(t.Title)
		fmt.Fprintf(b, "\n%s\n%s\n", title, strings.Repeat("=", utf8.RuneCountInString(title)))
		if t.Source != "" {
			fmt.Fprintf(b, "Source: %s\n", cleanText(t.Source))
		}
		if t.Note != "" {
			fmt.Fprintln(b, cleanText(t.Note))
		}
		if len(t.Rows) == 0 {
			fmt.Fprintln(b, cleanText(t.noData()))
			continue
		}
		rows := make([][]string, 0, len(t.Rows)+1)
		for _, row := range append([][]string{t.Columns}, t.Rows...) {
			clean := make([]string, len(row))
			for i, c := range row {
				clean[i] = cleanText(c)
			}
			rows = append(rows, clean)
		}
		widths := make([]int, len(t.Columns))
		for _, row := range rows {
			for i, c := range row {
				if i < len(widths) {
					widths[i] = max(widths[i], utf8.RuneCountInString(c))
				}
			}
		}
		for _, row := range rows {
			var line strings.Builder
			for i, c := range row {
				pad := 0
				if i < len(widths) {
					pad = widths[i] - utf8.RuneCountInString(c)
				}
				if i == 0 {
					line.WriteString(c + strings.Repeat(" ", pad))
				} else {
					line.WriteString("  " + strings.Repeat(" ", pad) + c)
				}
			}
			fmt.Fprintln(b, strings.TrimRight(line.String(), " "))
		}
	}
}

// writeMarkdown renders GitHub-flavoured Markdown with tables.
func writeMarkdown(b *bytes.Buffer, d *Document) {
	fmt.Fprintf(b, "# %s\n\n", mdInline(d.Title))
	for _, h := range d.header() {
		fmt.Fprintf(b, "- %s: %s\n", h[0], mdInline(h[1]))
	}
	for _, n := range d.Notices {
		fmt.Fprintf(b, "\n**Note:** %s\n", mdInline(n))
	}
	for _, t := range d.Tables {
		fmt.Fprintf(b, "\n## %s\n\n", mdInline(t.Title))
		if t.Source != "" {
			fmt.Fprintf(b, "Source: %s\n\n", mdInline(t.Source))
		}
		if t.Note != "" {
			fmt.Fprintf(b, "%s\n\n", mdBlock(t.Note))
		}
		if len(t.Rows) == 0 {
			fmt.Fprintf(b, "%s\n", mdBlock(t.noData()))
			continue
		}
		cells := func(row []string) string {
			out := make([]string, len(t.Columns))
			for i := range out {
				if i < len(row) {
					out[i] = mdInline(row[i])
				}
			}
			return "| " + strings.Join(out, " | ") + " |\n"
		}
		b.WriteString(cells(t.Columns))
		b.WriteString("|" + strings.Repeat(" --- |", len(t.Columns)) + "\n")
		for _, row := range t.Rows {
			b.WriteString(cells(row))
		}
	}
}

// WriteCSV writes d into dir: one file per table, named by its ID; a
// tables.csv listing them with their titles, sources and notes; and a
// meta.csv with the heading (title, period, host, version, generation).
// Each file is replaced whole: a reader never sees half a table.
func WriteCSV(dir string, d *Document) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var meta bytes.Buffer
	m := d.jsonMeta()
	stamp := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	period := d.Period.span()
	if d.Compared != nil {
		period += "; compared with " + d.Compared.span()
	}
	for _, kv := range [][]string{{"field", "value"}, {"title", m.Title}, {"period", period},
		{"since", stamp(m.Since)}, {"until", stamp(m.Until)},
		{"compared_since", stamp(m.ComparedSince)}, {"compared_until", stamp(m.ComparedUntil)},
		{"scope", m.Scope}, {"host", m.Host}, {"version", m.Version}, {"generated", m.Generated.Format(time.RFC3339)}} {
		writeCSVRecord(&meta, kv)
	}
	for _, n := range d.Notices {
		writeCSVRecord(&meta, []string{"notice", n})
	}
	var index bytes.Buffer
	writeCSVRecord(&index, []string{"file", "title", "source", "note", "no_data"})
	files := map[string][]byte{"meta.csv": meta.Bytes()}
	for _, t := range d.Tables {
		var f bytes.Buffer
		writeCSVRecord(&f, t.Columns)
		for _, row := range t.Rows {
			writeCSVRecord(&f, row)
		}
		name := t.ID + ".csv"
		files[name] = f.Bytes()
		noData := ""
		if len(t.Rows) == 0 {
			noData = t.noData()
		}
		writeCSVRecord(&index, []string{name, t.Title, t.Source, t.Note, noData})
	}
	files["tables.csv"] = index.Bytes()
	for name, data := range files {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON encodes d.JSON (or the title, meta and tables). encoding/json
// escapes the controls and <, >, &; escapeJSON the C1 and bidi runes it
// leaves raw.
func writeJSON(b *bytes.Buffer, d *Document) error {
	v := d.JSON
	if v == nil {
		v = struct {
			Heading string   `json:"heading"`
			Tables  []Table  `json:"tables"`
			Meta    jsonMeta `json:"meta"`
		}{d.Title, d.Tables, d.jsonMeta()}
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("report: json: %w", err)
	}
	b.Write(escapeJSON(js))
	b.WriteByte('\n')
	return nil
}

// WriteJSON writes v as indented JSON escaped as every report's JSON is
// (C1 controls and bidi runes as \u escapes), for commands whose output
// is not a Document.
func WriteJSON(w io.Writer, v any) error {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("report: json: %w", err)
	}
	_, err = w.Write(append(escapeJSON(js), '\n'))
	return err
}

// jsonReport keeps the first report's contract at the top level (inbound,
// outbound, …) and adds the rest.
type jsonReport struct {
	*measure.Report
	Previous  *measure.Report `json:"previous"`
	Days      []jsonDay       `json:"days"`
	Providers []Provider      `json:"providers"` // Table 6, every provider
	Tables    []Table         `json:"tables"`
	Meta      jsonMeta        `json:"meta"`
}

type jsonDay struct {
	Date          string `json:"date"`
	Weekend       bool   `json:"weekend"`
	InMessages    int64  `json:"inbound_messages"`
	InTLS         int64  `json:"inbound_tls"`
	OutDeliveries int64  `json:"outbound_deliveries"`
	OutTLS        int64  `json:"outbound_tls"`
}

// jsonDoc is the weekly report's JSON form: the first report's contract
// at the top level (inbound, outbound, …), the previous period, the days,
// every table and the heading's meta.
func (r *Report) jsonDoc(d *Document) any {
	j := jsonReport{Report: r.Current, Previous: r.Prior, Providers: r.Providers, Tables: d.Tables, Meta: d.jsonMeta()}
	for _, day := range r.Days {
		j.Days = append(j.Days, jsonDay{day.Date.Format("2006-01-02"), day.Weekend(), day.InMessages, day.InTLS, day.OutDeliveries, day.OutTLS})
	}
	return j
}
