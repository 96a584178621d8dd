package scanner

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
)

// world is the simulated Internet of the sweep tests: per server kind,
// domains whose MX is a sink on its own 127.60.0.x address.
type world struct {
	sts     *policy.STSFetcher
	dns     *dnstest.Server
	res     *resolver.Client
	roots   *x509.CertPool
	sinks   map[string]*smtpsink.Sink
	want    map[string]DomainResult // what the generator built
	domains []string
	block   *Blocklist
	port    int // the sinks' port, picked on all their addresses
}

type kind struct {
	name           string
	connected, tls bool
	trust          Trust
	match          CertMatch
	opts           func(t *testing.T, ca *testca.CA, mx string, domains []string) smtpsink.Options
}

func tlsOpts(t *testing.T, ca *testca.CA, o testca.IssueOptions, names ...string) smtpsink.Options {
	cert, key := ca.IssueWith(t, names[0], o, names...)
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}}}
}

var kinds = []kind{
	{"notls", true, false, "", "", func(*testing.T, *testca.CA, string, []string) smtpsink.Options { return smtpsink.Options{} }},
	{"domain", true, true, TrustTrusted, "domain", func(t *testing.T, ca *testca.CA, mx string, ds []string) smtpsink.Options {
		return tlsOpts(t, ca, testca.IssueOptions{}, ds...)
	}},
	{"mxname", true, true, TrustTrusted, "mx", func(t *testing.T, ca *testca.CA, mx string, _ []string) smtpsink.Options {
		return tlsOpts(t, ca, testca.IssueOptions{}, mx)
	}},
	{"neither", true, true, TrustTrusted, "neither", func(t *testing.T, ca *testca.CA, _ string, _ []string) smtpsink.Options {
		return tlsOpts(t, ca, testca.IssueOptions{}, "unrelated.example")
	}},
	{"selfsigned", true, true, TrustSelfSigned, "mx", func(t *testing.T, ca *testca.CA, mx string, _ []string) smtpsink.Options {
		return tlsOpts(t, ca, testca.IssueOptions{SelfSigned: true}, mx)
	}},
	{"expired", true, true, TrustExpired, "mx", func(t *testing.T, ca *testca.CA, mx string, _ []string) smtpsink.Options {
		return tlsOpts(t, ca, testca.IssueOptions{Expired: true}, mx)
	}},
	{"unknownca", true, true, TrustUnknownIssuer, "mx", func(t *testing.T, _ *testca.CA, mx string, _ []string) smtpsink.Options {
		return tlsOpts(t, testca.New(t), testca.IssueOptions{}, mx)
	}},
	{"brokentls", true, false, "", "", func(*testing.T, *testca.CA, string, []string) smtpsink.Options {
		return smtpsink.Options{FailTLS: true}
	}},
	{"slow", false, false, "", "", func(*testing.T, *testca.CA, string, []string) smtpsink.Options {
		return smtpsink.Options{BannerDelay: 5 * time.Second}
	}},
	{"drops", false, false, "", "", func(*testing.T, *testca.CA, string, []string) smtpsink.Options {
		return smtpsink.Options{Drop: true}
	}},
	{"blocked", false, false, "", "", func(*testing.T, *testca.CA, string, []string) smtpsink.Options { return smtpsink.Options{} }},
}

const perKind = 20

func newWorld(t *testing.T) *world {
	ca := testca.New(t)
	w := &world{sinks: map[string]*smtpsink.Sink{}, want: map[string]DomainResult{}, roots: x509.NewCertPool()}
	w.roots.AddCert(ca.Cert)
	var zone strings.Builder
	var ips []string
	for i := range kinds {
		ips = append(ips, fmt.Sprintf("127.60.0.%d", i+1))
	}
	ports := testnet.TCP(t, ips...)
	w.port = ports.Port
	for i, k := range kinds {
		ip := ips[i]
		mx := "mx." + k.name + ".example"
		var ds []string
		for j := 0; j < perKind; j++ {
			ds = append(ds, fmt.Sprintf("d%d.%s.example", j, k.name))
		}
		w.sinks[k.name] = smtpsink.Serve(t, ports.TCP[i], k.opts(t, ca, mx, ds))
		fmt.Fprintf(&zone, "%s. A %s\n", mx, ip)
		for _, d := range ds {
			fmt.Fprintf(&zone, "%s. MX 10 %s.\n", d, mx)
			w.domains = append(w.domains, d)
			w.want[d] = DomainResult{Domain: d, Connected: k.connected, STARTTLS: k.tls, Trust: k.trust, CertMatch: k.match}
		}
	}
	// SPF trees, DMARC policies and one domain without mail.
	zone.WriteString(`d0.notls.example. TXT "v=spf1 include:spf.notls.example -all"
spf.notls.example. TXT "v=spf1 ip4:192.0.2.0/24 ~all"
d1.notls.example. TXT "v=spf1 redirect=spf.notls.example"
d2.notls.example. TXT "v=spf1 include:d2.notls.example -all"
_dmarc.d0.domain.example. TXT "v=DMARC1; p=reject; rua=mailto:r@d0.domain.example"
_dmarc.d1.domain.example. TXT "v=DMARC1; p=quarantine"
_dmarc.d2.domain.example. TXT "v=DMARC1; p=none"
nomail.example. TXT "v=spf1 -all"
_mta-sts.d0.domain.example. TXT "v=STSv1; id=1;"
mta-sts.d0.domain.example. A 127.62.0.1
_mta-sts.d1.domain.example. TXT "v=STSv1; id=1;"
mta-sts.d1.domain.example. A 127.62.0.1
_mta-sts.d2.domain.example. TXT "v=STSv1; id=1;"
mta-sts.d2.domain.example. A 127.62.0.1
_25._tcp.mx.mxname.example. TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
_25._tcp.mx.neither.example. TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
`)
	w.domains = append(w.domains, "nomail.example")
	w.want["nomail.example"] = DomainResult{Domain: "nomail.example"}
	w.dns = dnstest.Start(t, zone.String())
	w.dns.Signed("_25._tcp.mx.mxname.example")
	w.sts = stsServer(t, ca, map[string]string{
		"mta-sts.d0.domain.example": "version: STSv1\nmode: enforce\nmx: mx.domain.example\nmax_age: 86400\n",
		"mta-sts.d1.domain.example": "version: STSv1\nmode: testing\nmx: mx.domain.example\nmax_age: 86400\n",
		"mta-sts.d2.domain.example": "not a policy",
	})
	w.res, _ = resolver.New(resolver.Config{Servers: []string{w.dns.Addr}, Timeout: time.Second, CacheSize: 1000})
	w.sts.Resolver = w.res
	w.block, _ = ParseBlocklist(strings.NewReader(fmt.Sprintf("127.60.0.%d/32\n", len(kinds))))
	return w
}

func (w *world) options(run *Run) Options {
	return Options{Resolver: w.res, Port: w.port, Workers: 8, Grabbers: 8, ConnRate: 1000, STS: w.sts,
		Grabber:    &Grabber{EHLOName: "scanner.test.example", Timeout: 2 * time.Second, Roots: w.roots, Dialer: &Dialer{Blocklist: w.block}},
		SkipDomain: run.Done, KnownGrab: run.KnownGrab,
		OnDomain: func(d *DomainResult) { run.SaveDomain(d) }, OnGrab: func(g *Grab) { run.SaveGrab(g) }}
}

// stsServer serves MTA-STS policy files over HTTPS on 127.62.0.1.
func stsServer(t *testing.T, ca *testca.CA, files map[string]string) *policy.STSFetcher {
	var names []string
	for n := range files {
		names = append(names, n)
	}
	cert, key := ca.Issue(t, "sts", names...)
	kp, _ := tls.LoadX509KeyPair(cert, key)
	ln, err := tls.Listen("tcp", "127.62.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		if body, ok := files[host]; ok {
			fmt.Fprint(w, body)
			return
		}
		http.NotFound(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &policy.STSFetcher{Roots: roots, Port: ln.Addr().(*net.TCPAddr).Port, Timeout: 2 * time.Second}
}

func feed(ctx context.Context, domains []string) <-chan Input {
	ch := make(chan Input)
	go func() {
		defer close(ch)
		for i, d := range domains {
			select {
			case ch <- Input{Domain: d, Rank: i + 1}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

func results(t *testing.T, db *measure.Store, run int64) map[string]DomainResult {
	rows, err := db.DB.Query(`SELECT domain, result FROM scan_domains WHERE run_id = ?`, run)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]DomainResult{}
	for rows.Next() {
		var d string
		var js []byte
		rows.Scan(&d, &js)
		var r DomainResult
		json.Unmarshal(js, &r)
		if _, dup := out[d]; dup {
			t.Errorf("duplicate %s", d)
		}
		out[d] = r
	}
	return out
}

func TestSweepSimulatedInternet(t *testing.T) {
	w := newWorld(t)
	store, err := measure.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var jsonl bytes.Buffer
	run, err := NewRun(context.Background(), store.DB, "domains", "test", &jsonl)
	if err != nil {
		t.Fatal(err)
	}
	if err := Sweep(context.Background(), w.options(run), feed(context.Background(), w.domains)); err != nil {
		t.Fatal(err)
	}
	run.Finish()
	got := results(t, store, run.ID)
	for d, want := range w.want {
		g := got[d]
		if g.Connected != want.Connected || g.STARTTLS != want.STARTTLS || g.Trust != want.Trust || g.CertMatch != want.CertMatch {
			t.Errorf("%s: connected %v starttls %v trust %q match %q, want %v %v %q %q", d,
				g.Connected, g.STARTTLS, g.Trust, g.CertMatch, want.Connected, want.STARTTLS, want.Trust, want.CertMatch)
		}
	}
	if n := w.sinks["blocked"].Accepts(); n != 0 {
		t.Errorf("the blocklisted server accepted %d connections", n)
	}
	for name, s := range w.sinks {
		if name != "blocked" && s.Accepts() != 1 {
			t.Errorf("%s: %d connections, want exactly one (addresses are grabbed once)", name, s.Accepts())
		}
	}
	if g := got["d0.notls.example"]; g.SPF == nil || g.SPF.All != "-" || g.SPF.Addrs4 != "256" {
		t.Errorf("SPF walk %+v", g.SPF)
	}
	if g := got["d2.notls.example"]; g.SPF == nil || g.SPF.ErrorClass != "loop" {
		t.Errorf("SPF loop %+v", g.SPF)
	}
	if g := got["d0.domain.example"]; g.DMARC == nil || g.DMARC.Policy != "reject" || !g.DMARC.RUA {
		t.Errorf("DMARC %+v", g.DMARC)
	}
	// The tables count what the generator built.
	sum, err := Summarize(context.Background(), store.DB, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	var connected, starttls int64
	certs := map[string]map[string]int64{}
	for _, k := range kinds {
		if k.connected {
			connected += perKind
		}
		if k.tls {
			starttls += perKind
			if certs[string(k.trust)] == nil {
				certs[string(k.trust)] = map[string]int64{}
			}
			certs[string(k.trust)][string(k.match)] += perKind
		}
	}
	all := int64(len(w.domains))
	if sum.Domains != all || sum.WithMX != all-1 || sum.Connected != connected || sum.STARTTLS != starttls {
		t.Errorf("table 1: %d domains, %d with MX, %d connected, %d STARTTLS; want %d %d %d %d",
			sum.Domains, sum.WithMX, sum.Connected, sum.STARTTLS, all, all-1, connected, starttls)
	}
	for trust, m := range certs {
		for match, n := range m {
			if sum.Certs[trust][match] != n {
				t.Errorf("table 2 [%s][%s] = %d, want %d", trust, match, sum.Certs[trust][match], n)
			}
		}
	}
	if sum.Status["no_mx"] != 1 || sum.Status["no_response"] != 3*perKind || sum.Status["starttls"] != starttls {
		t.Errorf("table 1 status %v", sum.Status)
	}
	if len(sum.Top) != 20 || sum.Top[0].Rank != 1 || sum.Top[0].SPF != "fail" {
		t.Errorf("table 16 %+v", sum.Top)
	}
	if sum.MTASTS["enforce"] != 1 || sum.MTASTS["testing"] != 1 || sum.MTASTS["error"] != 1 || sum.DANE != perKind {
		t.Errorf("MTA-STS %v, DANE %d (want %d)", sum.MTASTS, sum.DANE, perKind)
	}
	if sum.Providers["notls.example"] != perKind || sum.DMARC["reject"] != 1 || sum.DMARC["quarantine"] != 1 ||
		sum.SPFErrors["loop"] != 1 || sum.SPFAll["redirect"] != 1 || sum.SPFAll["-"] != 3 {
		t.Errorf("providers %v dmarc %v spf all %v errors %v", sum.Providers, sum.DMARC, sum.SPFAll, sum.SPFErrors)
	}
	lines := strings.Count(jsonl.String(), "\n")
	if lines != len(w.domains)+len(kinds) { // the blocked address gets its line too, saying so
		t.Errorf("%d JSON lines, want one per domain and per MX address (%d)", lines, len(w.domains)+len(kinds))
	}
}

// TestSweepResume kills a sweep halfway and resumes it: the result set is
// the same as an uninterrupted run's, with no duplicate.
func TestSweepResume(t *testing.T) {
	w := newWorld(t)
	store, _ := measure.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	defer store.Close()
	run, _ := NewRun(context.Background(), store.DB, "domains", "test", nil)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	n := 0
	o := w.options(run)
	save := o.OnDomain
	o.OnDomain = func(d *DomainResult) {
		save(d)
		mu.Lock()
		defer mu.Unlock()
		if n++; n == len(w.domains)/2 {
			cancel() // the operator hits ^C
		}
	}
	Sweep(ctx, o, feed(ctx, w.domains))
	run.Flush()
	first := len(results(t, store, run.ID))
	if first == 0 || first >= len(w.domains) {
		t.Fatalf("interrupted run kept %d of %d domains", first, len(w.domains))
	}
	resumed, err := ResumeRun(context.Background(), store.DB, run.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	Sweep(context.Background(), w.options(resumed), feed(context.Background(), w.domains))
	resumed.Finish()
	got := results(t, store, run.ID)
	var names []string
	for d := range got {
		names = append(names, d)
	}
	sort.Strings(names)
	if len(got) != len(w.domains) {
		t.Errorf("resumed run holds %d domains, want %d", len(got), len(w.domains))
	}
	for d, want := range w.want {
		if g := got[d]; g.STARTTLS != want.STARTTLS || g.Trust != want.Trust || g.CertMatch != want.CertMatch {
			t.Errorf("%s after resume: %+v", d, g)
		}
	}
}

func TestSweepDryRun(t *testing.T) {
	w := newWorld(t)
	store, _ := measure.Open(context.Background(), filepath.Join(t.TempDir(), "d.db"))
	defer store.Close()
	run, _ := NewRun(context.Background(), store.DB, "domains", "dry", nil)
	o := w.options(run)
	o.DryRun = true
	Sweep(context.Background(), o, feed(context.Background(), w.domains))
	run.Finish()
	for name, s := range w.sinks {
		if s.Accepts() != 0 {
			t.Errorf("dry run connected to %s", name)
		}
	}
	if got := results(t, store, run.ID); len(got) != len(w.domains) || len(got["d0.notls.example"].MX) != 1 {
		t.Errorf("dry run recorded %d domains", len(got))
	}
}
