package policy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/pgtest"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/resolver"
)

// stsWorld is a loopback DNS server, an HTTPS server for mta-sts.* hosts
// and a store.
type stsWorld struct {
	t      *testing.T
	dns    *dnstest.Server
	store  *measure.Store
	res    *resolver.Client
	fetch  *STSFetcher
	mu     sync.Mutex
	files  map[string]string // host → policy text
	hang   map[string]bool
	server *http.Server
}

const stsZone = `
enforce.example.       MX 10 mx.enforce.example.
enforce.example.       MX 20 mx1.backup.example.
enforce.example.       MX 30 deep.mx2.backup.example.
_mta-sts.enforce.example. TXT "v=STSv1; id=20261125a;"
mta-sts.enforce.example. A 127.0.0.1
testing.example.       MX 10 mx.testing.example.
_mta-sts.testing.example. TXT "v=STSv1; id=1;"
mta-sts.testing.example. A 127.0.0.1
none.example.          MX 10 mx.none.example.
_mta-sts.none.example. TXT "v=STSv1; id=1;"
mta-sts.none.example.  A 127.0.0.1
bad.example.           MX 10 mx.bad.example.
_mta-sts.bad.example.  TXT "v=STSv1; id=1;"
mta-sts.bad.example.   A 127.0.0.1
big.example.           MX 10 mx.big.example.
_mta-sts.big.example.  TXT "v=STSv1; id=1;"
mta-sts.big.example.   A 127.0.0.1
hang.example.          MX 10 mx.hang.example.
_mta-sts.hang.example. TXT "v=STSv1; id=1;"
mta-sts.hang.example.  A 127.0.0.1
badid.example.         MX 10 mx.badid.example.
_mta-sts.badid.example. TXT "v=STSv1; id=not-valid!;"
dane.example.          MX 10 mx.dane.example.
_25._tcp.mx.dane.example. TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
_mta-sts.dane.example. TXT "v=STSv1; id=1;"
mta-sts.dane.example.  A 127.0.0.1
unsigned.example.      MX 10 mx.unsigned.example.
_25._tcp.mx.unsigned.example. TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
plain.example.         MX 10 mx.plain.example.
nomatch.example.       MX 10 mx.nomatch.example.
nomatch.example.       MX 20 a.b.elsewhere.example.
_mta-sts.nomatch.example. TXT "v=STSv1; id=1;"
mta-sts.nomatch.example. A 127.0.0.1
_mta-sts.many.example. TXT "v=STSv1; id=1;"
mta-sts.many.example.  A 127.0.0.1
_mta-sts.inject.example. TXT "v=STSv1; id=1;"
mta-sts.inject.example. A 127.0.0.1
`

func newWorld(t *testing.T) *stsWorld {
	t.Helper()
	return newWorldOn(t, filepath.Join(t.TempDir(), "p.db"))
}

// newWorldOn is newWorld with the store at dsn (pgtest.EachBackend).
func newWorldOn(t *testing.T, dsn string) *stsWorld {
	t.Helper()
	w := &stsWorld{t: t, dns: dnstest.Start(t, stsZone), files: map[string]string{
		"mta-sts.enforce.example": "version: STSv1\nmode: enforce\nmx: mx.enforce.example\nmx: *.backup.example\nmax_age: 86400\n",
		"mta-sts.testing.example": "version: STSv1\r\nmode: testing\r\nmx: mx.testing.example\r\nmax_age: 86400\r\n",
		"mta-sts.none.example":    "version: STSv1\nmode: none\nmax_age: 86400\n",
		"mta-sts.bad.example":     "version: STSv2\nmode: enforce\n",
		"mta-sts.big.example":     "version: STSv1\nmode: enforce\nmx: a\nmax_age: 1\n" + strings.Repeat("#", 70000),
		"mta-sts.dane.example":    "version: STSv1\nmode: enforce\nmx: nomatch.example\nmax_age: 86400\n",
		"mta-sts.nomatch.example": "version: STSv1\nmode: enforce\nmx: *.elsewhere.example\nmax_age: 86400\n",
		"mta-sts.many.example":    "version: STSv1\nmode: enforce\nmx: *.many-mx.example\nmax_age: 86400\n",
		"mta-sts.inject.example":  "version: STSv1\nmode: enforce\nmx: mx.inject.example ciphers=null\nmax_age: 86400\n",
	}, hang: map[string]bool{"mta-sts.hang.example": true}}
	w.dns.Signed("dane.example")
	ca := testca.New(t)
	var names []string
	for h := range w.files {
		names = append(names, h)
	}
	cert, key := ca.Issue(t, "sts", append(names, "mta-sts.hang.example")...)
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	w.server = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		if host == "" {
			host = r.Host
		}
		w.mu.Lock()
		body, ok := w.files[host]
		hang := w.hang[host]
		w.mu.Unlock()
		if hang {
			hangUp(rw, done)
			return
		}
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, body)
	})}
	go w.server.Serve(ln)
	t.Cleanup(func() { close(done); w.server.Close() })
	w.res, _ = resolver.New(resolver.Config{Servers: []string{w.dns.Addr}, Timeout: 300 * time.Millisecond})
	w.fetch = &STSFetcher{Resolver: w.res, Roots: ca.Pool(), Port: ln.Addr().(*net.TCPAddr).Port, Timeout: time.Second}
	w.store, err = measure.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.store.Close() })
	return w
}

// hangUp holds a request unanswered until the client hangs up or done
// closes. It takes the connection from net/http, which would answer an
// empty 200 the moment the handler returns: a client whose deadline fired
// as that 200 arrived (its close_notify makes the server end the handler)
// read it as an invalid policy, not a failed fetch. Now only the client's
// own deadline ends the fetch, and nothing is ever sent.
func hangUp(rw http.ResponseWriter, done <-chan struct{}) {
	c, _, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		panic(err) // net/http closes the connection, unanswered
	}
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-done:
			c.Close()
		case <-finished:
		}
	}()
	io.Copy(io.Discard, c) // until the client closes the connection
	c.Close()
}

func (w *stsWorld) engine(cfg Config) *Engine {
	e := NewEngine(cfg, w.res, w.fetch, w.store, nil)
	w.t.Cleanup(e.Close)
	return e
}

func TestDecisions(t *testing.T) {
	pgtest.EachBackend(t, testDecisions)
}

func testDecisions(t *testing.T, dsn string) {
	w := newWorldOn(t, dsn)
	// Only the hanging server's fetch is to end by a deadline (the
	// fetcher's): every other lookup and fetch gets far more time than it
	// needs, even on a loaded machine under -race.
	w.res, _ = resolver.New(resolver.Config{Servers: []string{w.dns.Addr}, Timeout: 10 * time.Second})
	w.fetch.Resolver, w.fetch.Timeout = w.res, 3*time.Second
	e := w.engine(Config{DANE: true, MTASTS: true, Budget: 30 * time.Second, DecisionSample: 1, CacheTTL: -1,
		Overrides: map[string]string{"bank.example": "verify", ".corp.example": "encrypt", "enforce.example.override": "may"}})
	cases := []struct {
		domain, answer string
		source         Source
		err            error
	}{
		{"bank.example", "verify", SourceOverride, nil},
		{"mail.corp.example", "encrypt", SourceOverride, nil},
		{"corp.example", "", SourceNone, nil},
		{"enforce.example", "secure match=mx.enforce.example:mx1.backup.example servername=hostname", SourceMTASTS, nil},
		{"ENFORCE.example.", "secure match=mx.enforce.example:mx1.backup.example servername=hostname", SourceMTASTS, nil},
		{"testing.example", "", SourceNone, nil},
		{"none.example", "", SourceNone, nil},
		{"plain.example", "", SourceNone, nil},
		{"dane.example", "dane", SourceDANE, nil},
		{"unsigned.example", "", SourceNone, nil},
		{"bad.example", "", SourceError, ErrSTSPolicySyntax},
		{"big.example", "", SourceError, ErrSTSTooLarge},
		{"badid.example", "", SourceError, ErrSTSRecord},
		{"hang.example", "", SourceError, ErrSTSFetch},
		{"[192.0.2.1]:25", "", SourceNone, nil},
	}
	for _, c := range cases {
		d := e.Decide(context.Background(), c.domain)
		if c.err != nil && d.Class == "" {
			t.Errorf("%s: no error class for %v", c.domain, d.Err)
		}
		if d.Answer != c.answer || d.Source != c.source || (c.err != nil && !errors.Is(d.Err, c.err)) {
			t.Errorf("%s: %q from %s (%v), want %q from %s (%v)\n%s", c.domain, d.Answer, d.Source, d.Err,
				c.answer, c.source, c.err, strings.Join(d.Steps, "\n"))
		}
	}
	e.Close()
	var n int
	if err := w.store.DB.QueryRow(`SELECT COUNT(*) FROM policy_decisions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(cases) {
		t.Errorf("%d decisions recorded, want %d", n, len(cases))
	}
}

// TestSTSCacheUnreadable: a store that cannot be read does not lose the
// MTA-STS policy (it is fetched as for a first contact), and the decision
// says the store failed instead of taking the failure for "no cache".
func TestSTSCacheUnreadable(t *testing.T) {
	w := newWorld(t)
	if _, err := w.store.DB.Exec(`ALTER TABLE mta_sts_policies RENAME TO mta_sts_policies_gone`); err != nil {
		t.Fatal(err)
	}
	e := w.engine(Config{MTASTS: true, Budget: 3 * time.Second, CacheTTL: -1})
	d := e.Decide(context.Background(), "enforce.example")
	if d.Answer != "secure match=mx.enforce.example:mx1.backup.example servername=hostname" || d.Source != SourceMTASTS ||
		!errors.Is(d.Err, ErrStore) || d.Class != "store" {
		t.Errorf("%q from %s, class %q (%v)\n%s", d.Answer, d.Source, d.Class, d.Err, strings.Join(d.Steps, "\n"))
	}
}

// TestSTSWildcards: "*.domain" lists the MX hosts one label below it;
// none matching is TEMP (RFC 8461 section 5.1); a large RRset is cut to
// fit a socketmap answer; a policy trying to smuggle attributes is
// invalid.
func TestSTSWildcards(t *testing.T) {
	w := newWorld(t)
	var many strings.Builder
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&many, "many.example. MX %d mx-%03d-with-a-rather-long-label.many-mx.example.\n", i, i)
	}
	many.WriteString("many.example. MX 999 deeper.mx-0.many-mx.example.\n")
	w.dns.Add(many.String())
	e := w.engine(Config{MTASTS: true})
	d := e.Decide(context.Background(), "nomatch.example")
	if reply, _ := d.Reply(); reply != "TEMP no MX host matches the MTA-STS policy" {
		t.Errorf("nomatch: %q\n%s", reply, strings.Join(d.Steps, "\n"))
	}
	d = e.Decide(context.Background(), "many.example")
	p, err := ParseTLSPolicy(d.Answer)
	if err != nil || len(d.Answer) > MaxAnswer || len(p.Match) < 100 || len(p.Match) >= 300 {
		t.Errorf("many: %d bytes, %d names, %v", len(d.Answer), len(p.Match), err)
	}
	for _, m := range p.Match {
		if !MatchesMX("*.many-mx.example", m) {
			t.Errorf("many: %s listed", m)
		}
	}
	if d.ttl != 300*time.Second {
		t.Errorf("many: cached for %s, want the MX TTL", d.ttl)
	}
	d = e.Decide(context.Background(), "inject.example")
	if d.Answer != "" || !errors.Is(d.Err, ErrSTSPolicySyntax) {
		t.Errorf("inject: %q %v", d.Answer, d.Err)
	}
	for pattern, hosts := range map[string][2][]string{
		"*.example.com":  {{"mx.example.com", "a.example.com"}, {"example.com", "a.b.example.com", "xexample.com", ".example.com"}},
		"mx.example.com": {{"mx.example.com"}, {"a.mx.example.com", "example.com"}},
	} {
		for _, h := range hosts[0] {
			if !MatchesMX(pattern, h) {
				t.Errorf("%s does not match %s", pattern, h)
			}
		}
		for _, h := range hosts[1] {
			if MatchesMX(pattern, h) {
				t.Errorf("%s matches %s", pattern, h)
			}
		}
	}
}

func TestSTSCacheSurvivesOutages(t *testing.T) {
	w := newWorld(t)
	e := w.engine(Config{MTASTS: true, Budget: 2 * time.Second, CacheTTL: -1})
	want := "secure match=mx.enforce.example:mx1.backup.example servername=hostname"
	if d := e.Decide(context.Background(), "enforce.example"); d.Answer != want {
		t.Fatalf("first fetch: %q %v", d.Answer, d.Err)
	}
	e.Close() // the fetched policy reaches the store through the writer
	// The HTTPS server goes away and the id changes: the cached policy holds.
	w.mu.Lock()
	w.hang["mta-sts.enforce.example"] = true
	w.mu.Unlock()
	w.dns.Add(`_mta-sts.enforce.example. TXT "v=STSv1; id=20261125b;"`)
	if d := e.Decide(context.Background(), "enforce.example"); d.Answer != want {
		t.Errorf("fetch failing: %q %v", d.Answer, d.Err)
	}
	// DNS down too: still the cached policy. Without the MX RRset the
	// wildcard cannot be listed and falls back to Postfix's wider form,
	// the error recorded.
	w.dns.SetDrop(true)
	wider := "secure match=mx.enforce.example:.backup.example servername=hostname"
	if d := e.Decide(context.Background(), "enforce.example"); d.Answer != wider || d.Class != "dns_timeout" {
		t.Errorf("DNS down: %q %s %v\n%s", d.Answer, d.Class, d.Err, strings.Join(d.Steps, "\n"))
	}
	// A domain never seen: fail open (NOTFOUND), or TEMP when asked.
	d := e.Decide(context.Background(), "testing.example")
	if d.Answer != "" || d.Temp || d.Source != SourceError {
		t.Errorf("DNS down, nothing cached: %+v", d)
	}
	e2 := w.engine(Config{MTASTS: true, TempOnError: true, Budget: time.Second, CacheTTL: -1})
	if d := e2.Decide(context.Background(), "testing.example"); !d.Temp {
		t.Errorf("TempOnError: %+v", d)
	}
}

// TestLearnedPolicy: a domain delivered to over authenticated TLS only,
// often enough, is learned; forgetting it starts over; List names it. On
// both backends (on PostgreSQL the lookup once failed, and failed open).
func TestLearnedPolicy(t *testing.T) {
	pgtest.EachBackend(t, testLearnedPolicy)
}

func testLearnedPolicy(t *testing.T, dsn string) {
	w := newWorldOn(t, dsn)
	e := w.engine(Config{Learn: LearnConfig{Enabled: true, MinDeliveries: 3, Days: 7, Answer: "encrypt"}, CacheTTL: -1})
	add := func(domain, level, version string, n int) {
		t.Helper()
		if _, err := w.store.DB.Exec(`INSERT INTO hourly_deliveries (hour, domain, status, tls_version, cipher, tls_level,
			forward_secret, deliveries, node) VALUES (?, ?, 'sent', ?, 'X', ?, 1, ?, 'mx1')
			ON CONFLICT (hour, node, domain, status, tls_version, cipher, tls_level, forward_secret)
			DO UPDATE SET deliveries = hourly_deliveries.deliveries + excluded.deliveries`,
			time.Now().Unix()/3600, domain, version, level, n); err != nil {
			t.Fatal(err)
		}
	}
	add("learn.example", "trusted", "TLSv1.3", 2)
	add("plain.example", "verified", "TLSv1.3", 5)
	add("plain.example", "none", "", 1)
	if d := e.Decide(context.Background(), "learn.example"); d.Answer != "" || d.Err != nil {
		t.Errorf("below threshold: %q %v", d.Answer, d.Err)
	}
	add("learn.example", "trusted", "TLSv1.3", 1)
	if d := e.Decide(context.Background(), "learn.example"); d.Answer != "encrypt" || d.Source != SourceLearned {
		t.Errorf("at threshold: %q %s %v\n%s", d.Answer, d.Source, d.Err, strings.Join(d.Steps, "\n"))
	}
	if d := e.Decide(context.Background(), "plain.example"); d.Answer != "" || d.Err != nil {
		t.Errorf("one plaintext delivery: %q %v", d.Answer, d.Err)
	}
	list, err := e.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Domain != "learn.example" || list[0].Source != SourceLearned {
		t.Errorf("list %+v", list)
	}
	if err := e.Forget(context.Background(), "learn.example"); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(context.Background(), "learn.example"); d.Answer != "" || d.Err != nil {
		t.Errorf("after forget: %q %v", d.Answer, d.Err)
	}
}

// TestInboundLearned: a sender domain seen often enough, always over
// TLS, must use TLS; one seen once in plaintext need not. On both
// backends.
func TestInboundLearned(t *testing.T) {
	pgtest.EachBackend(t, func(t *testing.T, dsn string) {
		st, err := measure.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		hour := time.Now().Unix() / 3600
		for _, r := range []struct {
			domain    string
			msgs, tls int
		}{{"tls-only.example", 20, 20}, {"mixed.example", 20, 19}, {"rare.example", 2, 2}} {
			if _, err := st.DB.Exec(`INSERT INTO hourly_peers (hour, direction, domain, messages, tls, node) VALUES (?, 'inbound', ?, ?, ?, 'mx1')`,
				hour, r.domain, r.msgs, r.tls); err != nil {
				t.Fatal(err)
			}
		}
		var faults []string
		in := &Inbound{Store: st, Classes: func(c string) { faults = append(faults, c) }}
		if err := in.SetConfig(InboundConfig{Learned: true, MinSeen: 10, Days: 7, Action: "defer", Budget: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
		for sender, want := range map[string]string{"a@tls-only.example": "DEFER", "a@mixed.example": "DUNNO", "a@rare.example": "DUNNO"} {
			got := in.Check(context.Background(), map[string]string{"sender": sender})
			if !strings.HasPrefix(got, want) {
				t.Errorf("%s: %q, want %s", sender, got, want)
			}
		}
		if len(faults) > 0 {
			t.Errorf("faults %v", faults)
		}
	})
}

func TestSocketmapServer(t *testing.T) {
	w := newWorld(t)
	srv := &SocketmapServer{Engine: w.engine(Config{MTASTS: true, Overrides: map[string]string{"x.example": "encrypt"}}), MaxRequest: 100}
	classes := map[string]int{}
	var mu sync.Mutex
	srv.Classes = func(c string) { mu.Lock(); classes[c]++; mu.Unlock() }
	ln, _ := net.Listen("unix", filepath.Join(t.TempDir(), "policy.sock"))
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close(); srv.Close() })
	ask := func(conn net.Conn, r *bufio.Reader, req string) string {
		conn.Write([]byte(req))
		reply, err := ReadNetstring(r, 10000)
		if err != nil {
			return "error: " + err.Error()
		}
		return reply
	}
	conn, _ := net.Dial("unix", ln.Addr().String())
	r := bufio.NewReader(conn)
	// Persistent connection, several lookups.
	for _, c := range [][2]string{
		{FormatNetstring("tls x.example"), "OK encrypt"},
		{FormatNetstring("tls enforce.example"), "OK secure match=mx.enforce.example:mx1.backup.example servername=hostname"},
		{FormatNetstring("tls plain.example"), "NOTFOUND "},
		{FormatNetstring("tls"), "PERM expected NAME KEY"},
	} {
		if got := ask(conn, r, c[0]); got != c[1] {
			t.Errorf("%q → %q, want %q", c[0], got, c[1])
		}
	}
	conn.Close()
	// Many concurrent clients.
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if got := ask(c, bufio.NewReader(c), FormatNetstring("tls x.example")); got != "OK encrypt" {
				t.Errorf("concurrent: %q", got)
			}
		}()
	}
	wg.Wait()
	// Garbage and huge netstrings: a PERM, then the connection closes.
	for _, bad := range []string{"hello\n", "99999999999:", "5:abc"} {
		c, _ := net.Dial("unix", ln.Addr().String())
		c.Write([]byte(bad))
		if bad == "5:abc" {
			c.(*net.UnixConn).CloseWrite()
		}
		reply, _ := ReadNetstring(bufio.NewReader(c), 1000)
		if !strings.HasPrefix(reply, "PERM") {
			t.Errorf("%q → %q", bad, reply)
		}
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if classes["garbage"] < 2 || classes["too_long"] != 1 || classes["bad_request"] != 1 {
		t.Errorf("classes %v", classes)
	}
}

func TestParseSTS(t *testing.T) {
	for _, bad := range []string{"", "version: STSv1\nmode: enforce\nmax_age: 10\n", "version: STSv1\nmode: x\nmax_age: 1\n",
		"version: STSv1\nmode: none\nmax_age: -1\n", "version: STSv1\nmode: none\nmax_age: 99999999999\n", "garbage"} {
		if _, err := ParseSTSPolicy(bad); !errors.Is(err, ErrSTSPolicySyntax) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for rec, id := range map[string]string{"v=STSv1; id=abc123;": "abc123", "v=STSv1;id=X": "X"} {
		if got, err := ParseSTSRecord(rec); err != nil || got != id {
			t.Errorf("%q → %q %v", rec, got, err)
		}
	}
}

func FuzzParseSTSPolicy(f *testing.F) {
	f.Add("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n")
	f.Add("version: STSv1\r\nmode: none\r\nmax_age: 0\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSTSPolicy(s)
		if err == nil && (p.MaxAge < 0 || (p.Mode != "none" && len(p.MX) == 0)) {
			t.Fatalf("accepted %q as %+v", s, p)
		}
		if err != nil {
			return
		}
		for _, mx := range p.MX {
			if m, ok := CanonicalMXPattern(mx); !ok || m != mx {
				t.Fatalf("accepted mx %q", mx)
			}
		}
	})
}

func TestDecisionCache(t *testing.T) {
	w := newWorld(t)
	e := w.engine(Config{MTASTS: true, Overrides: map[string]string{"x.example": "encrypt"}})
	first := e.Decide(context.Background(), "enforce.example")
	w.dns.SetDrop(true) // answers now come from memory
	again := e.Decide(context.Background(), "enforce.example")
	if !again.Cached || again.Answer != first.Answer {
		t.Errorf("second decision %+v, want the cached %q", again, first.Answer)
	}
	e.Import(context.Background(), []Entry{{Domain: "enforce.example", Policy: "verify"}}, "test")
	if d := e.Decide(context.Background(), "enforce.example"); d.Cached || d.Answer != "verify" {
		t.Errorf("after import: %+v", d)
	}
	e.Close()
}

// BenchmarkSocketmap measures lookups answered from the decision cache
// over persistent unix-socket connections, as Postfix's smtp processes
// make them, with the p99 of one round trip.
func BenchmarkSocketmap(b *testing.B) {
	store, err := measure.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	// Every decision is recorded, as by default (asynchronously, batched).
	e := NewEngine(Config{Overrides: map[string]string{"bank.example": "verify"}, DecisionSample: 1}, nil, nil, store, nil)
	defer e.Close()
	for i := 0; i < 1000; i++ {
		e.cache.put(Decision{Domain: fmt.Sprintf("d%d.example", i), Answer: "secure match=.example", sealed: true}, time.Hour, e.cache.generation())
	}
	srv := &SocketmapServer{Engine: e}
	ln, _ := net.Listen("unix", filepath.Join(b.TempDir(), "s.sock"))
	go srv.Serve(ln)
	defer func() { ln.Close(); srv.Close() }()
	const clients = 8
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			conn, err := net.Dial("unix", ln.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			for i := c; i < b.N; i += clients {
				t0 := time.Now()
				conn.Write([]byte(FormatNetstring(fmt.Sprintf("tls d%d.example", i%1000))))
				if _, err := ReadNetstring(r, 10000); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}(c)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lookups/s")
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkInbound measures policy delegation requests (Postfix's
// attribute blocks) over persistent connections.
func BenchmarkInbound(b *testing.B) {
	p := &Inbound{RequireTLS: []string{"bank.example", ".gov.example"}}
	ln, _ := net.Listen("unix", filepath.Join(b.TempDir(), "i.sock"))
	go p.Serve(ln)
	defer ln.Close()
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.1\n" +
		"client_name=mail.example.org\nhelo_name=mail.example.org\nsender=alice@example.org\n" +
		"recipient=bob@example.net\nencryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n\n"
	const clients = 8
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			conn, err := net.Dial("unix", ln.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			for i := c; i < b.N; i += clients {
				conn.Write([]byte(req))
				if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "action=") {
					b.Errorf("%q %v", line, err)
					return
				}
				r.ReadString('\n')
			}
		}(c)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}

func TestRefreshSTS(t *testing.T) {
	pgtest.EachBackend(t, testRefreshSTS)
}

func testRefreshSTS(t *testing.T, dsn string) {
	w := newWorldOn(t, dsn)
	e := w.engine(Config{MTASTS: true, CacheTTL: -1})
	e.Decide(context.Background(), "enforce.example")
	e.Close() // the fetched policy goes through the writer
	w.store.DB.Exec(`UPDATE mta_sts_policies SET expires_at = ? WHERE domain = 'enforce.example'`, time.Now().Add(time.Minute).Unix())
	n, err := e.RefreshSTS(context.Background(), time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("refreshed %d, %v", n, err)
	}
	e.Close() // the refreshed policy goes through the writer
	var exp int64
	if err := w.store.DB.QueryRow(`SELECT expires_at FROM mta_sts_policies WHERE domain = 'enforce.example'`).Scan(&exp); err != nil {
		t.Fatal(err)
	}
	if time.Until(time.Unix(exp, 0)) < 23*time.Hour {
		t.Errorf("policy not refreshed: expires %v", time.Unix(exp, 0))
	}
}
