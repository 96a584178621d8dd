package report

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"

	"github.com/snowrain/snowrain/auth"
)

// Charts are the SVG figures of the HTML form, by table ID; an empty
// one has nothing to draw.
func (r *Report) Charts() map[string]template.HTML {
	return map[string]template.HTML{"figure3": r.dailyChart(), "table17": r.authChart()}
}

// htmlView is a Document with every string through cleanText; the
// template escapes them for HTML in their context (text, attribute).
type htmlView struct {
	Heading, Title string
	Header         [][2]string
	Notices        []string
	Sections       []htmlSection
}

type htmlSection struct {
	ID, Title, Source, Note, NoData string
	Columns                         []string
	Rows                            [][]string
	Chart                           *Chart
}

// writeHTML renders one self-contained page: inline CSS and SVG, no
// JavaScript (the page's CSP forbids any), readable in any mail client
// or browser.
func writeHTML(b *bytes.Buffer, d *Document) error {
	v := htmlView{Heading: cleanText(d.Heading()), Title: cleanText(d.Title), Notices: cleanAll(d.Notices)}
	for _, h := range d.header() {
		v.Header = append(v.Header, [2]string{cleanText(h[0]), cleanText(h[1])})
	}
	for _, t := range d.Tables {
		s := htmlSection{ID: cleanText(t.ID), Title: cleanText(t.Title), Source: cleanText(t.Source), Note: cleanText(t.Note),
			NoData: cleanText(t.noData()), Columns: cleanAll(t.Columns), Chart: d.Charts[t.ID]}
		for _, row := range t.Rows {
			s.Rows = append(s.Rows, cleanAll(row))
		}
		if s.Chart != nil {
			s.Chart = &Chart{SVG: s.Chart.SVG, NoData: cleanText(s.Chart.NoData)}
		}
		v.Sections = append(v.Sections, s)
	}
	return page.Execute(b, v)
}

func cleanAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = cleanText(s)
	}
	return out
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Heading}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;font-size:.9em}dl.meta dt{color:#555}dl.meta dd{margin:0}
p.notice{background:#fff4d6;border-left:4px solid #e0a800;padding:.5em 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #eee}
td:not(:first-child){text-align:right}th{text-align:left;background:#f4f4f4}
p.note,p.source{color:#555;font-size:.9em}p.source{font-style:italic}p.nodata{color:#777}svg{max-width:100%;height:auto}
.legend span{display:inline-block;width:1em;height:.6em;margin:0 .3em 0 1em}
</style></head><body>
<h1>{{.Title}}</h1>
<dl class="meta">{{range .Header}}<dt>{{index . 0}}</dt><dd>{{index . 1}}</dd>{{end}}</dl>
{{range .Notices}}<p class="notice">{{.}}</p>
{{end}}{{range .Sections}}{{$rows := .Rows}}<section id="{{.ID}}"><h2>{{.Title}}</h2>
{{if .Source}}<p class="source">Source: {{.Source}}</p>
{{end}}{{if .Note}}<p class="note">{{.Note}}</p>
{{end}}{{with .Chart}}{{if .SVG}}{{.SVG}}
{{else if $rows}}<p class="nodata">{{.NoData}}</p>
{{end}}{{end}}{{if .Rows}}<table><thead><tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table>{{else}}<p class="nodata">{{.NoData}}</p>{{end}}
</section>
{{end}}</body></html>
`))

// dailyChart draws Figure 3: inbound and outbound TLS share per day.
func (r *Report) dailyChart() template.HTML {
	const w, h, left, top, bottom = 640, 240, 40, 10, 30
	n := len(r.Days)
	var mail int64
	for _, d := range r.Days {
		mail += d.InMessages + d.OutDeliveries
	}
	if mail == 0 {
		return ""
	}
	x := func(i int) float64 {
		if n == 1 {
			return left + float64(w-left)/2
		}
		return left + float64(i)*float64(w-left-30)/float64(n-1)
	}
	y := func(pct float64) float64 { return top + (100-pct)*float64(h-top-bottom)/100 }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="figure3-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-label="TLS share per day">`, w, h)
	for _, p := range []float64{0, 25, 50, 75, 100} {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="2" y="%.1f" font-size="10">%.0f%%</text>`,
			left, w, y(p), y(p), y(p)+3, p)
	}
	for i, d := range r.Days {
		if d.Weekend() {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="8" height="%d" fill="#f3f3f3"/>`, x(i)-4, top, h-top-bottom)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="9" text-anchor="middle">%s</text>`, x(i), h-12, d.Date.Format("Mon 02"))
	}
	line := func(color string, val func(Day) (int64, int64)) {
		var pts []string
		for i, d := range r.Days {
			if n, tls := val(d); n > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(share(tls, n))))
			}
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
			for _, p := range pts {
				xy := strings.Split(p, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`, xy[0], xy[1], color)
			}
		}
	}
	line("#1f77b4", func(d Day) (int64, int64) { return d.InMessages, d.InTLS })
	line("#d62728", func(d Day) (int64, int64) { return d.OutDeliveries, d.OutTLS })
	b.WriteString(`</svg><p class="legend"><span style="background:#1f77b4"></span>inbound<span style="background:#d62728"></span>outbound (weekends shaded)</p>`)
	return template.HTML(b.String())
}

// authChart draws Table 17 as one stacked bar.
func (r *Report) authChart() template.HTML {
	c := r.Current.Inbound
	if c.Messages == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(`<svg id="table17-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 40" role="img" aria-label="Authentication methods">`)
	x := 0.0
	for _, cl := range []labeled[auth.AuthMethods]{{auth.AuthDKIMAndSPF, "#2ca02c"}, {auth.AuthDKIMOnly, "#98df8a"},
		{auth.AuthSPFOnly, "#ffbb78"}, {auth.AuthNone, "#d62728"}} {
		n := sumOf(c.Auth, cl.key)
		wd := 640 * float64(n) / float64(c.Messages)
		fmt.Fprintf(&b, `<rect x="%.1f" y="5" width="%.1f" height="30" fill="%s"><title>%s %.1f%%</title></rect>`,
			x, wd, cl.label, template.HTMLEscapeString(string(cl.key)), share(n, c.Messages))
		x += wd
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
