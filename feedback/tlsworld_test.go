package feedback

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/reportschema"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
	"github.com/snowrain/snowrain/tlsrpt"
)

// A loopback Internet of receivers for outbound TLS, in a network
// namespace of the test's own (testnet.NewNS), where the default ports
// are ours: Postfix's resolv.conf names a DNS server on 127.68.0.1:53
// (the libc resolver asks no other port), each receiver's MX is a sink on
// 127.69.0.x:25. snowrain's engine, on the machine's side, asks the same
// DNS server on a picked port and fetches MTA-STS policies over HTTPS
// from 127.70.0.1; Postfix reaches the engine through a unix socket,
// which crosses namespaces.
type receiver struct {
	domain string
	sink   smtpsink.Options
	sts    string // policy file; "" none; "404" a record whose policy cannot be fetched
	tlsa   string // "match", "mismatch" or "" (none, unsigned)
}

type tlsWorld struct {
	pf     *postfixtest.Instance
	ca     *testca.CA
	dns    *dnstest.Server
	store  *measure.Store
	engine *policy.Engine
	res    resolver.Resolver
	sinks  map[string]*smtpsink.Sink
}

func startTLSWorld(t *testing.T, ca *testca.CA, rs []receiver, extraZone string) *tlsWorld {
	w := &tlsWorld{sinks: map[string]*smtpsink.Sink{}, ca: ca}
	ns := testnet.NewNS(t)
	var zone strings.Builder
	for i, r := range rs {
		ip := fmt.Sprintf("127.69.0.%d", i+1)
		ln, err := ns.Listen("tcp", ip+":25")
		if err != nil {
			t.Fatal(err)
		}
		w.sinks[r.domain] = smtpsink.Serve(t, ln, r.sink)
		fmt.Fprintf(&zone, "%s. MX 10 mx.%s.\nmx.%s. A %s\n", r.domain, r.domain, r.domain, ip)
		if r.sts != "" {
			fmt.Fprintf(&zone, "_mta-sts.%s. TXT \"v=STSv1; id=1;\"\nmta-sts.%s. A 127.70.0.1\n", r.domain, r.domain)
		}
		if r.tlsa != "" {
			leaf, _ := x509.ParseCertificate(r.sink.TLS.Certificates[0].Certificate[0])
			sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
			if r.tlsa == "mismatch" {
				sum = sha256.Sum256([]byte("another key"))
			}
			fmt.Fprintf(&zone, "_25._tcp.mx.%s. TLSA 3 1 1 %s\n", r.domain, hex.EncodeToString(sum[:]))
		}
	}
	zone.WriteString(". NS ns.test.\nns.test. A 127.68.0.1\n")
	zone.WriteString(extraZone)
	w.dns = dnstest.Start(t, zone.String())
	w.dns.ServeIn(t, ns, "127.68.0.1:53")
	w.dns.Signed(".")

	var stsNames []string
	files := map[string]string{}
	for _, r := range rs {
		if r.sts != "" {
			stsNames = append(stsNames, "mta-sts."+r.domain)
			files["mta-sts."+r.domain] = r.sts
		}
	}
	cert, key := ca.Issue(t, "sts", stsNames...)
	kp, _ := tls.LoadX509KeyPair(cert, key)
	ln, err := tls.Listen("tcp", "127.70.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp}})
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		if body, ok := files[host]; ok && body != "404" {
			fmt.Fprint(rw, body)
			return
		}
		http.NotFound(rw, r)
	})}
	go web.Serve(ln)
	t.Cleanup(func() { web.Close() })

	w.store, err = measure.Open(context.Background(), filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.store.Close() })
	w.res, _ = resolver.New(resolver.Config{Servers: []string{w.dns.Addr}, Timeout: 2 * time.Second})
	w.engine = policy.NewEngine(policy.Config{DANE: true, MTASTS: true, DecisionSample: 1, Budget: 5 * time.Second},
		w.res, &policy.STSFetcher{Resolver: w.res, Roots: ca.Pool(), Port: ln.Addr().(*net.TCPAddr).Port, Timeout: 3 * time.Second},
		w.store, nil)
	sockDir, _ := os.MkdirTemp("/var/tmp", "snowrain-feedback-")
	os.Chmod(sockDir, 0o755)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "policy.sock")
	pl, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o666)
	sm := &policy.SocketmapServer{Engine: w.engine}
	go sm.Serve(pl)
	t.Cleanup(func() { pl.Close(); sm.Close() })

	w.pf = postfixtest.Start(t, postfixtest.Options{NetNS: ns, Nameserver: "127.68.0.1", Hostname: "mx.sender.example", Main: map[string]string{
		"default_transport":       "smtp",
		"smtp_tls_security_level": "may",
		"smtp_tls_policy_maps":    "socketmap:unix:" + sock + ":tls",
		"smtp_tls_CAfile":         ca.CAFile(),
		"smtp_tls_loglevel":       "1",
		"smtp_dns_support_level":  "dnssec",
		"smtp_connect_timeout":    "5s",
		"smtp_address_preference": "ipv4",
		"maximal_queue_lifetime":  "1h",
		"smtp_tls_fallback_level": "",
	}})
	return w
}

// send mails one message to each domain and waits for each status line.
func (w *tlsWorld) send(t *testing.T, domains ...string) {
	for _, d := range domains {
		if err := w.pf.Send(context.Background(), "sender@sender.example", []string{"user@" + d},
			[]byte("Subject: tls report test\r\n\r\nhello\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, d := range domains {
		for !strings.Contains(w.pf.Log(), "to=<user@"+d+">") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// scenario is a receiver and what its TLS report must say.
type scenario struct {
	receiver
	policy   tlsrpt.PolicyType
	result   tlsrpt.ResultType // "" all sessions succeed
	retry    bool              // deferred: flushed once more, a second session
	logWords string            // what Postfix logged that says so
}

// TestTLSReportsMatchPostfixLog delivers through a real Postfix (policy
// from snowrain's socketmap: MTA-STS enforce and testing, DANE, a broken
// policy server) to receivers with good, self-signed, expired and
// misnamed certificates, no STARTTLS and a broken handshake; flushes the
// deferred mail once more; reads Postfix's log into the store as the
// follower does; sends the TLS reports by HTTPS POST to a collector on
// loopback; and checks each report against the schema and against the
// log: one session per status line, every failure of the type the log
// line named.
func TestTLSReportsMatchPostfixLog(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (a network namespace and a test Postfix): run make test as root; scripts/deps-postfix.sh installs Postfix")
	}
	ca := testca.New(t)
	valid := func(name string) smtpsink.Options { return sinkWith(t, ca, name, testca.IssueOptions{}, name) }
	enforce := func(mx string) string { return "version: STSv1\nmode: enforce\nmx: " + mx + "\nmax_age: 86400\n" }
	scenarios := []scenario{
		{receiver{domain: "sts-ok.example", sink: valid("mx.sts-ok.example"), sts: enforce("mx.sts-ok.example")}, tlsrpt.PolicySTS, "", false, "Verified TLS connection established"},
		{receiver{domain: "sts-untrusted.example", sink: sinkWith(t, ca, "u", testca.IssueOptions{SelfSigned: true}, "mx.sts-untrusted.example"), sts: enforce("mx.sts-untrusted.example")},
			tlsrpt.PolicySTS, tlsrpt.ResultCertificateNotTrusted, true, "self-signed certificate"},
		{receiver{domain: "sts-expired.example", sink: sinkWith(t, ca, "e", testca.IssueOptions{Expired: true}, "mx.sts-expired.example"), sts: enforce("mx.sts-expired.example")},
			tlsrpt.PolicySTS, tlsrpt.ResultCertificateExpired, true, "certificate has expired"},
		{receiver{domain: "sts-mismatch.example", sink: valid("other.example"), sts: enforce("mx.sts-mismatch.example")},
			tlsrpt.PolicySTS, tlsrpt.ResultCertificateHostMismatch, true, "hostname mismatch"},
		{receiver{domain: "sts-notls.example", sts: enforce("mx.sts-notls.example")},
			tlsrpt.PolicySTS, tlsrpt.ResultSTARTTLSNotSupported, true, "TLS is required, but was not offered"},
		{receiver{domain: "sts-testing.example", sink: sinkWith(t, ca, "t", testca.IssueOptions{SelfSigned: true}, "mx.sts-testing.example"),
			sts: "version: STSv1\nmode: testing\nmx: mx.sts-testing.example\nmax_age: 86400\n"},
			tlsrpt.PolicySTS, tlsrpt.ResultCertificateNotTrusted, false, "Untrusted TLS connection established"},
		{receiver{domain: "dane-ok.example", sink: sinkWith(t, ca, "d", testca.IssueOptions{SelfSigned: true}, "mx.dane-ok.example"), tlsa: "match"},
			tlsrpt.PolicyTLSA, "", false, "Verified TLS connection established"},
		{receiver{domain: "dane-bad.example", sink: valid("mx.dane-bad.example"), tlsa: "mismatch"},
			tlsrpt.PolicyTLSA, tlsrpt.ResultTLSAInvalid, true, "no matching DANE TLSA records"},
		{receiver{domain: "sts-fetch.example", sink: valid("mx.sts-fetch.example"), sts: "404"},
			tlsrpt.PolicySTS, tlsrpt.ResultSTSPolicyFetchError, false, "Trusted TLS connection established"},
		{receiver{domain: "plain.example", sink: valid("mx.plain.example")}, tlsrpt.PolicyNoPolicyFound, "", false, "Trusted TLS connection established"},
		{receiver{domain: "nostarttls.example"}, tlsrpt.PolicyNoPolicyFound, tlsrpt.ResultSTARTTLSNotSupported, false, "status=sent"},
		{receiver{domain: "failtls.example", sink: smtpsink.Options{FailTLS: true}, sts: enforce("mx.failtls.example")},
			tlsrpt.PolicySTS, tlsrpt.ResultValidationFailure, true, "SSL_connect error"},
	}
	var rs []receiver
	var rua strings.Builder
	for _, sc := range scenarios {
		rs = append(rs, sc.receiver)
		fmt.Fprintf(&rua, "_smtp._tls.%s. TXT \"v=TLSRPTv1; rua=https://tlsrpt.collector.example/v1\"\n", sc.domain)
	}
	rua.WriteString("tlsrpt.collector.example. A 127.70.0.2\n")
	w := startTLSWorld(t, ca, rs, rua.String())
	col := startCollector(t, ca)

	var domains []string
	for _, sc := range scenarios {
		domains = append(domains, sc.domain)
	}
	w.send(t, domains...)
	// The deferred ones once more: a second session each.
	if out, err := exec.Command("postqueue", "-c", filepath.Join(w.pf.Dir, "etc"), "-f").CombinedOutput(); err != nil {
		t.Fatalf("postqueue -f: %v %s", err, out)
	}
	for _, sc := range scenarios {
		want := 1
		if sc.retry {
			want = 2
		}
		w.waitStatus(t, sc.domain, want)
	}
	w.engine.Close() // the decisions recorded

	// The log into the store, as the follower reads it.
	lf, err := os.Open(w.pf.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.store.IngestReader(context.Background(), lf, maillog.NewParser())
	lf.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d deliveries read from the log", n)

	cfg := Config{OrgName: "sender.example", Submitter: "mx.sender.example", From: "tlsrpt@sender.example",
		Resolver: w.res, RootCAs: ca.Pool(), Dial: col.dial}
	sender := &Sender{Config: cfg, Store: w.store}
	for _, day := range w.days(t) {
		ds, err := sender.Send(context.Background(), day, KindTLSRPT)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Status != StatusSent {
				t.Errorf("%s: %s %s", d.Domain, d.Status, d.Reason)
			}
		}
	}

	got := col.summaries(t)
	for _, sc := range scenarios {
		logged := w.statusLines(sc.domain)
		if len(logged) == 0 {
			t.Errorf("%s: nothing logged", sc.domain)
			continue
		}
		for _, l := range logged {
			if !strings.Contains(w.sessionLog(l), sc.logWords) {
				t.Errorf("%s: Postfix did not log %q for %s", sc.domain, sc.logWords, l)
			}
		}
		g := got[sc.domain]
		wantOK, wantFail := int64(len(logged)), int64(0)
		if sc.result != "" {
			wantOK, wantFail = 0, int64(len(logged))
		}
		if g.policy != sc.policy || g.ok != wantOK || g.failed != wantFail {
			t.Errorf("%s: report says %s %d ok %d failed, want %s %d ok %d failed (log: %d sessions)",
				sc.domain, g.policy, g.ok, g.failed, sc.policy, wantOK, wantFail, len(logged))
		}
		if sc.result != "" && (len(g.results) != 1 || g.results[sc.result] != wantFail) {
			t.Errorf("%s: failure types %v, want %d × %s", sc.domain, g.results, wantFail, sc.result)
		}
		t.Logf("%-22s %-15s ok %d failed %d %v (Postfix: %d status lines)", sc.domain, g.policy, g.ok, g.failed, g.results, len(logged))
	}
	if t.Failed() {
		t.Log(w.pf.Log())
	}
}

func sinkWith(t *testing.T, ca *testca.CA, name string, o testca.IssueOptions, names ...string) smtpsink.Options {
	c, k := ca.IssueWith(t, name, o, names...)
	kp, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}}}
}

// waitStatus waits until Postfix logged n status lines for domain.
func (w *tlsWorld) waitStatus(t *testing.T, domain string, n int) {
	deadline := time.Now().Add(90 * time.Second)
	for len(w.statusLines(domain)) < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := len(w.statusLines(domain)); got < n {
		t.Fatalf("%s: %d status lines, want %d\n%s", domain, got, n, w.pf.Log())
	}
}

func (w *tlsWorld) statusLines(domain string) []string {
	var out []string
	for _, l := range strings.Split(w.pf.Log(), "\n") {
		if strings.Contains(l, "/smtp[") && strings.Contains(l, "to=<user@"+domain+">") && strings.Contains(l, " status=") {
			out = append(out, l)
		}
	}
	return out
}

// sessionLog is what the status line's smtp process logged since its
// previous status line: the session's lines.
func (w *tlsWorld) sessionLog(status string) string {
	pid := status[strings.Index(status, "/smtp[") : strings.Index(status, "]:")+1]
	var session []string
	for _, l := range strings.Split(w.pf.Log(), "\n") {
		if !strings.Contains(l, pid) {
			continue
		}
		if l == status {
			return strings.Join(append(session, l), "\n")
		}
		if strings.Contains(l, " status=") {
			session = nil
			continue
		}
		session = append(session, l)
	}
	return ""
}

// days are the UTC days the deliveries fell on (a test may cross midnight).
func (w *tlsWorld) days(t *testing.T) []Day {
	rows, err := w.store.DB.Query(`SELECT DISTINCT delivered_at / 86400 FROM deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []Day
	for rows.Next() {
		var d int64
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		out = append(out, DayOf(time.Unix(d*86400, 0)))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// collector is a TLS-RPT HTTPS endpoint on loopback.
type collector struct {
	addr string
	mu   sync.Mutex
	got  [][]byte // decompressed reports
	errs []string
}

func startCollector(t *testing.T, ca *testca.CA) *collector {
	c := &collector{}
	cert, key := ca.Issue(t, "collector", "tlsrpt.collector.example")
	kp, _ := tls.LoadX509KeyPair(cert, key)
	ln, err := tls.Listen("tcp", "127.70.0.2:0", &tls.Config{Certificates: []tls.Certificate{kp}})
	if err != nil {
		t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/v1" || r.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			c.errs = append(c.errs, fmt.Sprintf("%s %s %s", r.Method, r.URL.Path, r.Header.Get("Content-Type")))
			http.Error(rw, "bad request", http.StatusBadRequest)
			return
		}
		zr, err := gzip.NewReader(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			c.errs = append(c.errs, err.Error())
			http.Error(rw, "not gzip", http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(zr)
		c.got = append(c.got, b)
		rw.WriteHeader(http.StatusCreated)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// dial sends every connection to the collector, whatever the URI's port.
func (c *collector) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, c.addr)
}

type summary struct {
	policy     tlsrpt.PolicyType
	ok, failed int64
	results    map[tlsrpt.ResultType]int64
}

// summaries validates what the collector received and sums it by domain.
func (c *collector) summaries(t *testing.T) map[string]*summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.errs {
		t.Errorf("collector: %s", e)
	}
	out := map[string]*summary{}
	for _, b := range c.got {
		if err := reportschema.TLSRPT(b); err != nil {
			t.Errorf("schema: %v\n%s", err, b)
		}
		r, err := tlsrpt.Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range r.Policies {
			s := out[p.Policy.Domain]
			if s == nil {
				s = &summary{results: map[tlsrpt.ResultType]int64{}}
				out[p.Policy.Domain] = s
			}
			if s.policy != "" && s.policy != p.Policy.Type {
				t.Errorf("%s: policies %s and %s", p.Policy.Domain, s.policy, p.Policy.Type)
			}
			s.policy = p.Policy.Type
			s.ok += p.Summary.Successful
			s.failed += p.Summary.Failed
			for _, f := range p.FailureDetails {
				s.results[f.ResultType] += f.FailedSessionCount
			}
		}
	}
	return out
}
