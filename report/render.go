package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/snowrain/snowrain/measure"
)

// Heading names the period and the one it is compared with.
func (r *Report) Heading() string {
	return fmt.Sprintf("snowrain report %s – %s (compared with %s – %s)",
		r.Period.Since.Format("2006-01-02"), r.Period.Until.Add(-1).Format("2006-01-02"),
		r.Previous.Since.Format("2006-01-02"), r.Previous.Until.Add(-1).Format("2006-01-02"))
}

// WriteText renders the report for a terminal or a cron mail.
func (r *Report) WriteText(w io.Writer) error { return WriteText(w, r.Heading(), r.Tables()) }

// WriteMarkdown renders GitHub-style Markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) error { return WriteMarkdown(w, r.Heading(), r.Tables()) }

// WriteCSV writes one file per table, named by its ID, into dir.
func (r *Report) WriteCSV(dir string) error { return WriteCSV(dir, r.Tables()) }

// WriteText renders tables as aligned text.
func WriteText(w io.Writer, heading string, tables []Table) error {
	fmt.Fprintln(w, heading)
	for _, t := range tables {
		fmt.Fprintf(w, "\n%s\n%s\n", t.Title, strings.Repeat("=", utf8.RuneCountInString(t.Title)))
		if t.Note != "" {
			fmt.Fprintln(w, t.Note)
		}
		if len(t.Rows) == 0 {
			fmt.Fprintln(w, "(none)")
			continue
		}
		widths := make([]int, len(t.Columns))
		for _, row := range append([][]string{t.Columns}, t.Rows...) {
			for i, c := range row {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
		for _, row := range append([][]string{t.Columns}, t.Rows...) {
			var b strings.Builder
			for i, c := range row {
				pad := widths[i] - utf8.RuneCountInString(c)
				if i == 0 {
					b.WriteString(c + strings.Repeat(" ", pad))
				} else {
					b.WriteString("  " + strings.Repeat(" ", pad) + c)
				}
			}
			fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		}
	}
	return nil
}

// WriteMarkdown renders tables as Markdown.
func WriteMarkdown(w io.Writer, heading string, tables []Table) error {
	fmt.Fprintf(w, "# %s\n", heading)
	esc := strings.NewReplacer("|", `\|`, "\n", " ")
	for _, t := range tables {
		fmt.Fprintf(w, "\n## %s\n\n", t.Title)
		if t.Note != "" {
			fmt.Fprintf(w, "%s\n\n", t.Note)
		}
		if len(t.Rows) == 0 {
			fmt.Fprintln(w, "(none)")
			continue
		}
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(t.Columns, " | "), strings.Repeat(" --- |", len(t.Columns)))
		for _, row := range t.Rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = esc.Replace(c)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	return nil
}

// jsonReport keeps the first report's contract at the top level (inbound,
// outbound, …) and adds the rest.
type jsonReport struct {
	*measure.Report
	Previous *measure.Report `json:"previous"`
	Days     []jsonDay       `json:"days"`
	Tables   []Table         `json:"tables"`
}

type jsonDay struct {
	Date          string `json:"date"`
	Weekend       bool   `json:"weekend"`
	InMessages    int64  `json:"inbound_messages"`
	InTLS         int64  `json:"inbound_tls"`
	OutDeliveries int64  `json:"outbound_deliveries"`
	OutTLS        int64  `json:"outbound_tls"`
}

// WriteJSON renders the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.JSONDoc())
}

// JSONDoc is the JSON form: the first report's contract at the top level
// (inbound, outbound, …), the previous period, the days and every table.
func (r *Report) JSONDoc() any {
	j := jsonReport{Report: r.Current, Previous: r.Prior, Tables: r.Tables()}
	for _, d := range r.Days {
		j.Days = append(j.Days, jsonDay{d.Date.Format("2006-01-02"), d.Weekend(), d.InMessages, d.InTLS, d.OutDeliveries, d.OutTLS})
	}
	return j
}

// WriteCSV writes one file per table, named by its ID, into dir.
func WriteCSV(dir string, tables []Table) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, t := range tables {
		f, err := os.Create(filepath.Join(dir, t.ID+".csv"))
		if err != nil {
			return err
		}
		cw := csv.NewWriter(f)
		cw.Write(t.Columns)
		cw.WriteAll(t.Rows)
		cw.Flush()
		if err := cw.Error(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
