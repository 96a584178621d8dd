package report

import (
	"fmt"
	"html/template"
	"io"
	"strings"
)

// WriteHTML renders one self-contained page: inline CSS and SVG, no
// JavaScript, readable in any mail client or browser.
func (r *Report) WriteHTML(w io.Writer) error {
	return WriteHTML(w, r.Heading(), r.Tables(), r.Charts())
}

// Charts are the SVG figures of the HTML form, by table ID.
func (r *Report) Charts() map[string]template.HTML {
	return map[string]template.HTML{"figure3": r.dailyChart(), "table17": r.authChart()}
}

// WriteHTML renders tables into one self-contained page; charts are SVG
// shown above the table whose ID they are keyed by.
func WriteHTML(w io.Writer, heading string, tables []Table, charts map[string]template.HTML) error {
	return page.Execute(w, struct {
		Heading string
		Charts  map[string]template.HTML
		Tables  []Table
	}{heading, charts, tables})
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Heading}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #eee}
td:not(:first-child){text-align:right}th{text-align:left;background:#f4f4f4}
p.note{color:#555;font-size:.9em}svg{max-width:100%;height:auto}
.legend span{display:inline-block;width:1em;height:.6em;margin:0 .3em 0 1em}
</style></head><body>
<h1>{{.Heading}}</h1>
{{range .Tables}}<section id="{{.ID}}"><h2>{{.Title}}</h2>
{{if .Note}}<p class="note">{{.Note}}</p>{{end}}
{{index $.Charts .ID}}
{{if .Rows}}<table><thead><tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table>{{else}}<p>(none)</p>{{end}}
</section>
{{end}}</body></html>
`))

// dailyChart draws Figure 3: inbound and outbound TLS share per day.
func (r *Report) dailyChart() template.HTML {
	const w, h, left, top, bottom = 640, 240, 40, 10, 30
	n := len(r.Days)
	if n == 0 {
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
	for _, cl := range []struct{ key, color string }{{"dkim_and_spf", "#2ca02c"}, {"dkim_only", "#98df8a"}, {"spf_only", "#ffbb78"}, {"none", "#d62728"}} {
		wd := 640 * float64(c.Auth[cl.key]) / float64(c.Messages)
		fmt.Fprintf(&b, `<rect x="%.1f" y="5" width="%.1f" height="30" fill="%s"><title>%s %.1f%%</title></rect>`, x, wd, cl.color, cl.key, share(c.Auth[cl.key], c.Messages))
		x += wd
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
