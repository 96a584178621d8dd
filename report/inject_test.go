package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
)

// hostile are strings a peer chooses: a null-sender bounce's From domain,
// a HELO, a PTR name, a cipher name, an MMDB country or AS name.
var hostile = []string{
	`=cmd|'/c calc'!A0`,
	`+1+cmd|' /C calc'!A0`,
	`-2+3+cmd|' /C calc'!A0`,
	`@SUM(1+1)*cmd|' /C calc'!A0`,
	"\t=1+2",
	"\r=1+3",
	` =1+4`,
	`a;=HYPERLINK("http://evil.example/","click")`,
	`<script>alert(1)</script>.example`,
	`<img src=x onerror=alert(2)>`,
	`[click](javascript:alert(3))`,
	`<javascript:alert(4)>`,
	`![x](http://evil.example/t.png)`,
	`pipe|in|domain.example`,
	"*bold* _em_ ~~del~~ `code` $x$",
	`&lt;script&gt;alert(5)&lt;/script&gt;`,
	`</td></tr></table><script>alert(6)</script>`,
	`" onmouseover="alert(7)`,
	`</svg><style>*{display:none}</style>`,
	"esc\x1b[31mred\x1b[0m.example",
	"csi\u009b31m.example",
	"bank\u202egnp.example",
	"iso\u2066late\u2069.example",
	"marks\u200e\u200f\u061c.example",
	"line\nbreak.example",
	"sep\u2028line.example",
	"bad\xff\x9butf8.example",
	"# heading",
	"- list",
	"1. ordered",
	`back\slash.example`,
}

// hostileStore fills week 47 with one inbound message and one delivery
// per hostile domain, each with a hostile cipher, from addresses whose
// MMDB countries are hostile, and a downgrade per hostile HELO/PTR name.
func hostileStore(t testing.TB) (*measure.Store, string) {
	t.Helper()
	s, err := measure.Open(context.Background(), filepath.Join(t.TempDir(), "hostile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w := measure.NewWriter(s, measure.WriterConfig{})
	ips := []string{"192.0.2.1", "198.51.100.1", "203.0.113.1"}
	var deliveries []*maillog.Delivery
	for i, h := range hostile {
		at := week47.Since.Add(time.Duration(i) * time.Hour)
		m := &measure.Message{ConnUID: fmt.Sprintf("h%d", i), Received: at, Direction: "inbound",
			ClientIP: ips[i%len(ips)], MailFromDomain: h, FromDomain: h, Action: "accept",
			TLSVersion: "TLSv1.2", Cipher: "ECDHE-" + h + "-SHA256", SPFResult: "pass", DKIMResult: "pass",
			DMARCResult: "pass", DMARCPolicy: "reject", AuthClass: "dkim_and_spf"}
		w.Enqueue(m)
		deliveries = append(deliveries, &maillog.Delivery{Time: at, MTA: "postfix", QueueID: fmt.Sprintf("H%d", i),
			Domain: h, RelayHost: "mx." + h, Status: "sent", Level: maillog.LevelNone})
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordDeliveries(context.Background(), deliveries, nil); err != nil {
		t.Fatal(err)
	}
	for i, h := range hostile[:8] {
		if _, err := s.DB.Exec(`INSERT INTO downgrades (detected_at, direction, peer_kind, peer, tls_before, window)
			VALUES (?, 'inbound', 'helo', ?, 10, 10)`, week47.Since.Add(time.Duration(i)*time.Minute).Unix(), "mx."+h); err != nil {
			t.Fatal(err)
		}
	}
	return s, mmdbFile(t, map[string]string{"192.0.2.0/24": "=1+1|cmd", "198.51.100.0/24": "<b onmouseover=x>X</b>",
		"203.0.113.0/24": "\u202eSU\x1b[2J"})
}

// hostileWeek is the weekly report over the hostile store.
func hostileWeek(t testing.TB) *Document {
	s, mmdb := hostileStore(t)
	r, err := Build(context.Background(), s, Options{Period: week47, GeoIP: mmdb, Top: len(hostile)})
	if err != nil {
		t.Fatal(err)
	}
	return r.Document(testMeta)
}

// peerColumns are the identities a peer names itself by.
var peerColumns = []string{"Domain", "HELO", "PTR", "Cipher", "Country", "AS organisation"}

// hostilePeers is a document whose table carries every hostile string in
// every identity column, and in its title, note and notice.
func hostilePeers() *Document {
	t := Table{ID: "peers", Title: "Peers " + hostile[8], Note: "Note " + hostile[11], Columns: peerColumns}
	for i, h := range hostile {
		t.Rows = append(t.Rows, []string{h, "helo." + h, h + ".in-addr.arpa", "TLS_" + h, h, fmt.Sprintf("AS%d %s", 64500+i, h)})
	}
	return &Document{Title: "Hostile " + hostile[20], Period: week47, Meta: Meta{Host: "mx\u202e.example", Version: "v0.0.0-test",
		Generated: testMeta.Generated}, Notices: []string{"Notice " + hostile[9]}, Tables: []Table{t}}
}

func TestInjectionGoldens(t *testing.T) {
	for name, d := range map[string]*Document{"week": hostileWeek(t), "peers": hostilePeers()} {
		for _, f := range []string{FormatText, FormatMarkdown, FormatHTML, FormatJSON} {
			ext := f
			if f == FormatText {
				ext = "txt"
			}
			golden(t, fmt.Sprintf("inject/%s.%s", name, ext), render(t, f, d))
		}
		goldenCSV(t, "inject/"+name+"-csv", d)
	}
}

// TestInjectionText: no control, format or bidi character, and no byte
// that is not UTF-8, reaches a terminal.
func TestInjectionText(t *testing.T) {
	for _, d := range []*Document{hostileWeek(t), hostilePeers()} {
		assertNoUnsafe(t, "text", render(t, FormatText, d))
		assertNoUnsafe(t, "json", render(t, FormatJSON, d))
	}
	out := string(render(t, FormatText, hostilePeers()))
	for _, h := range hostile {
		if !strings.Contains(out, cleanText(h)) {
			t.Errorf("text lacks %q", cleanText(h))
		}
	}
}

func assertNoUnsafe(t *testing.T, format string, out []byte) {
	t.Helper()
	if !utf8.Valid(out) {
		t.Errorf("%s: not UTF-8", format)
	}
	for i, r := range string(out) {
		if r != '\n' && unsafeRune(r) {
			t.Errorf("%s: rune %U at byte %d", format, r, i)
		}
	}
}

// TestInjectionJSON: the JSON form holds the strings exactly (invalid
// UTF-8 replaced, as encoding/json does).
func TestInjectionJSON(t *testing.T) {
	var got struct {
		Tables []Table `json:"tables"`
		Meta   struct {
			Host string `json:"host"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(render(t, FormatJSON, hostilePeers()), &got); err != nil {
		t.Fatal(err)
	}
	for i, h := range hostile {
		if want := jsonString(h); got.Tables[0].Rows[i][0] != want {
			t.Errorf("row %d: %q, want %q", i, got.Tables[0].Rows[i][0], want)
		}
	}
	if got.Meta.Host != "mx\u202e.example" {
		t.Errorf("host %q", got.Meta.Host)
	}
}

// TestInjectionCSV reads the CSV files back as a spreadsheet would, with
// "," and with ";" as the separator: no cell starts a formula, and each
// peer cell is the string, quoted with ' where it began like one.
func TestInjectionCSV(t *testing.T) {
	for name, d := range map[string]*Document{"week": hostileWeek(t), "peers": hostilePeers()} {
		dir := t.TempDir()
		if err := WriteCSV(dir, d); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			for _, sep := range []rune{',', ';'} {
				rd := csv.NewReader(bytes.NewReader(data))
				rd.Comma, rd.FieldsPerRecord, rd.LazyQuotes = sep, -1, sep == ';'
				records, err := rd.ReadAll()
				if err != nil {
					t.Fatalf("%s %s sep %q: %v", name, filepath.Base(f), sep, err)
				}
				for _, rec := range records {
					for _, c := range rec {
						if formulaLike(c) {
							t.Errorf("%s %s sep %q: cell %q starts a formula", name, filepath.Base(f), sep, c)
						}
					}
				}
			}
		}
	}
	rd := csv.NewReader(bytes.NewReader(must(os.ReadFile(filepath.Join("testdata", "inject", "peers-csv", "peers.csv")))))
	records, err := rd.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hostile {
		got := records[i+1][0]
		for _, part := range strings.Split(got, ";") {
			if formulaLike(part) {
				t.Errorf("cell %d: %q: %q starts a formula in a \";\" locale", i, got, part)
			}
		}
		// Only quotes were added: at the start and after a ";".
		if back := strings.ReplaceAll(strings.TrimPrefix(got, "'"), ";'", ";"); back != cleanText(h) {
			t.Errorf("cell %d: %q, want %q with quotes only", i, got, cleanText(h))
		}
	}
}

// formulaLike is what LibreOffice and Excel evaluate: a cell whose first
// non-blank character is = + - @ (or a tab or CR), unless it is a number.
func formulaLike(c string) bool {
	t := strings.TrimLeft(c, " ")
	if t == "" || t == "-" || plainNumber(t) {
		return false
	}
	return strings.ContainsRune("=+-@\t\r", rune(t[0]))
}

// jsonString is s as encoding/json writes it: each invalid byte U+FFFD.
func jsonString(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // range yields U+FFFD for each invalid byte
	}
	return b.String()
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestInjectionMarkdown renders the Markdown with cmark-gfm, GitHub's own
// renderer, with raw HTML allowed (as renderers without GitHub's
// sanitiser do): only the report's own elements appear, no link, image or
// script, and each peer cell reads as the (cleaned) string.
func TestInjectionMarkdown(t *testing.T) {
	cmark, err := exec.LookPath("cmark-gfm")
	if err != nil {
		t.Fatal("cmark-gfm missing: run scripts/deps-chromium.sh as root (make test does)")
	}
	allowed := map[string]bool{"html": true, "head": true, "body": true, "h1": true, "h2": true, "p": true, "ul": true,
		"li": true, "strong": true, "table": true, "thead": true, "tbody": true, "tr": true, "th": true, "td": true,
		"a": true} // e-mail autolinks only: see emailAutolink
	for name, d := range map[string]*Document{"week": hostileWeek(t), "peers": hostilePeers()} {
		cmd := exec.Command(cmark, "--unsafe", "-e", "table", "-e", "strikethrough", "-e", "autolink")
		cmd.Stdin = bytes.NewReader(render(t, FormatMarkdown, d))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cmark-gfm: %v", err)
		}
		doc, err := html.Parse(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		checkTree(t, "markdown "+name, doc, allowed)
		if name == "peers" {
			checkPeerCells(t, "markdown", doc)
		}
	}
}

// TestInjectionHTML loads the hostile pages in headless Chromium: the DOM
// it builds holds only the report's elements, no event handler, and each
// peer cell reads as the (cleaned) string.
func TestInjectionHTML(t *testing.T) {
	allowed := map[string]bool{"html": true, "head": true, "body": true, "meta": true, "title": true, "style": true,
		"h1": true, "h2": true, "dl": true, "dt": true, "dd": true, "p": true, "section": true, "span": true,
		"table": true, "thead": true, "tbody": true, "tr": true, "th": true, "td": true,
		"svg": true, "line": true, "text": true, "rect": true, "polyline": true, "circle": true}
	for name, d := range map[string]*Document{"week": hostileWeek(t), "peers": hostilePeers()} {
		dom := chromiumDOM(t, render(t, FormatHTML, d))
		doc, err := html.Parse(bytes.NewReader(dom))
		if err != nil {
			t.Fatal(err)
		}
		checkTree(t, "html "+name, doc, allowed)
		if name == "peers" {
			checkPeerCells(t, "html", doc)
		}
	}
}

// checkTree fails on an element outside allowed, an event handler or a
// URL attribute, and on any unsafe rune in the text a reader sees.
func checkTree(t *testing.T, what string, n *html.Node, allowed map[string]bool) {
	t.Helper()
	switch n.Type {
	case html.ElementNode:
		if !allowed[n.Data] {
			t.Errorf("%s: element <%s>", what, n.Data)
		}
		for _, a := range n.Attr {
			if n.Data == "a" && a.Key == "href" && emailAutolink(a.Val, n) {
				continue
			}
			if strings.HasPrefix(a.Key, "on") || a.Key == "href" || a.Key == "src" || a.Key == "style" && n.Data != "span" {
				t.Errorf("%s: <%s %s=%q>", what, n.Data, a.Key, a.Val)
			}
		}
	case html.TextNode:
		for _, r := range n.Data {
			if r != '\n' && unsafeRune(r) {
				t.Errorf("%s: text %q holds %U", what, n.Data, r)
			}
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		checkTree(t, what, c, allowed)
	}
}

// emailAutolink reports whether an <a> is GFM's autolink of an e-mail
// address in the text (spec §6.9), which no escape prevents (mdInline):
// its href is mailto: or xmpp: and its text is the address itself.
func emailAutolink(href string, a *html.Node) bool {
	addr, ok := strings.CutPrefix(href, "mailto:")
	if !ok {
		addr, ok = strings.CutPrefix(href, "xmpp:")
		if !ok {
			return false
		}
		addr = "xmpp:" + addr
	}
	return strings.Contains(addr, "@") && (text(a) == addr || text(a) == "mailto:"+addr) && !strings.ContainsAny(addr, "/<>\"")
}

// checkPeerCells compares the first column of the peers table, as the
// renderer shows it, with the hostile strings through cleanText.
func checkPeerCells(t *testing.T, what string, doc *html.Node) {
	t.Helper()
	var cells []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" {
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.ElementNode && c.Data == "td" {
					cells = append(cells, text(c))
					break
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(cells) != len(hostile) {
		t.Fatalf("%s: %d peer rows, want %d", what, len(cells), len(hostile))
	}
	for i, h := range hostile {
		if want := strings.TrimSpace(cleanText(h)); cells[i] != want {
			t.Errorf("%s: cell %d reads %q, want %q", what, i, cells[i], want)
		}
	}
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}

// FuzzEncoders puts one string everywhere a peer's string can go and
// checks each format's promise: text and JSON carry no unsafe rune, JSON
// keeps the string, CSV reads back without a formula, and the HTML parses
// to the report's own elements with the cell reading as cleanText(s).
func FuzzEncoders(f *testing.F) {
	for _, h := range hostile {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := &Document{Title: s, Period: week47, Meta: testMeta, Notices: []string{s},
			Tables: []Table{{ID: "t", Title: s, Source: s, Note: s, Columns: []string{s, "n"}, Rows: [][]string{{s, s}}},
				{ID: "e", Title: s, Columns: []string{s}, NoData: s}}}
		assertNoUnsafe(t, "text", render(t, FormatText, d))
		js := render(t, FormatJSON, d)
		assertNoUnsafe(t, "json", js)
		var back struct{ Tables []Table }
		if err := json.Unmarshal(js, &back); err != nil || back.Tables[0].Rows[0][0] != jsonString(s) {
			t.Fatalf("json: %v %q", err, back.Tables)
		}
		var b bytes.Buffer
		writeCSVRecord(&b, []string{s, s})
		for _, sep := range []rune{',', ';'} {
			rd := csv.NewReader(bytes.NewReader(b.Bytes()))
			rd.Comma, rd.FieldsPerRecord, rd.LazyQuotes = sep, -1, sep == ';'
			rec, err := rd.Read()
			if err != nil {
				t.Fatalf("csv %q: %v", b.String(), err)
			}
			for _, c := range rec {
				for _, part := range strings.Split(c, ";") {
					if formulaLike(part) {
						t.Fatalf("csv sep %q: %q starts a formula in %q", sep, part, b.String())
					}
				}
			}
		}
		page, err := html.Parse(bytes.NewReader(render(t, FormatHTML, d)))
		if err != nil {
			t.Fatal(err)
		}
		var tds []string
		var walk func(*html.Node)
		walk = func(n *html.Node) {
			if n.Type == html.ElementNode {
				switch n.Data {
				case "script", "img", "a", "iframe", "object", "svg", "math":
					t.Fatalf("html: <%s> from %q", n.Data, s)
				case "td":
					tds = append(tds, text(n))
				}
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				walk(c)
			}
		}
		walk(page)
		if len(tds) != 2 || tds[0] != strings.TrimSpace(cleanText(s)) {
			t.Fatalf("html cells %q for %q", tds, s)
		}
	})
}
