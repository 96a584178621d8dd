package policy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/resolver"
)

// A loopback Internet for Postfix, in a network namespace of the test's
// own (testnet.NewNS), where the default ports are ours: its resolv.conf
// names our DNS server on 127.53.0.1:53 (the libc resolver asks no other
// port); each destination's MX is a sink on its own 127.54.0.x address,
// port 25. snowrain's engine, in the test process on the machine's side,
// asks the same DNS server on a picked port and fetches MTA-STS policies
// from an HTTPS server on 127.55.0.1; Postfix reaches the engine through a
// unix socket, which crosses namespaces.
type scenario struct {
	domain string
	sink   smtpsink.Options
	sts    string // policy file; "" for none
	signed bool   // DNSSEC-signed, with a TLSA record for the sink's key
	learn  int    // authenticated-TLS deliveries already in the history
	want   string // sent or deferred
	dane   bool   // Postfix must validate DANE
	class  string // error class snowrain must record (fail-open cases)
	mx     string // the MX host's name; default mx.DOMAIN
	zone   string // more records
}

func TestPostfixTLSPolicies(t *testing.T) {
	ca := testCA(t)
	enforce := func(mx string) string {
		return "version: STSv1\nmode: enforce\nmx: " + mx + "\nmax_age: 86400\n"
	}
	runPolicyWorld(t, ca, []scenario{
		{domain: "enforce-valid.example", sink: validSink(t, ca, "mx.enforce-valid.example"), sts: enforce("mx.enforce-valid.example"), want: "sent"},
		{domain: "enforce-notls.example", sts: enforce("mx.enforce-notls.example"), want: "deferred"},
		{domain: "enforce-selfsigned.example", sink: selfSignedSink(t, "mx.enforce-selfsigned.example"), sts: enforce("mx.enforce-selfsigned.example"), want: "deferred"},
		{domain: "enforce-failtls.example", sink: smtpsink.Options{FailTLS: true}, sts: enforce("mx.enforce-failtls.example"), want: "deferred"},
		{domain: "testing.example", sts: "version: STSv1\nmode: testing\nmx: mx.testing.example\nmax_age: 86400\n", want: "sent"},
		{domain: "none.example", sts: "version: STSv1\nmode: none\nmax_age: 86400\n", want: "sent"},
		{domain: "dane.example", sink: selfSignedSink(t, "mx.dane.example"), sts: enforce("elsewhere.example"), signed: true, want: "sent", dane: true},
		{domain: "learned.example", learn: 5, want: "deferred"},
		{domain: "unlearned.example", learn: 2, want: "sent"},
		// MTA-STS "*.wild-mx.example" allows hosts one label below it
		// (RFC 8461 section 4.1); Postfix's ".wild-mx.example" would allow
		// any depth. The MX one label below gets the mail; an MX two
		// labels below, with a valid certificate for its name, must not.
		{domain: "wild.example", mx: "mx1.wild-mx.example", sink: validSink(t, ca, "mx1.wild-mx.example"),
			sts: enforce("*.wild-mx.example"), want: "sent"},
		{domain: "deep.example", mx: "a.b.deep-mx.example", sink: validSink(t, ca, "a.b.deep-mx.example"),
			sts: enforce("*.deep-mx.example"), want: "deferred",
			zone: "deep.example. MX 20 mx2.deep-mx.example.\nmx2.deep-mx.example. A 127.54.0.250\n"},
	}, false)
}

// TestPostfixPolicyFaults breaks snowrain's side — its DNS server is gone,
// an MTA-STS server hangs, policies are malformed or oversized — and mail
// still flows (fail open), each decision recorded with its error class.
func TestPostfixPolicyFaults(t *testing.T) {
	ca := testCA(t)
	t.Run("sts", func(t *testing.T) {
		runPolicyWorld(t, ca, []scenario{
			{domain: "hang.example", sts: "hang", want: "sent", class: "sts_fetch"},
			{domain: "malformed.example", sts: "version: STSv9\nmode: enforce\n", want: "sent", class: "sts_syntax"},
			{domain: "oversized.example", sts: "version: STSv1\nmode: enforce\nmx: x\nmax_age: 1\n" + strings.Repeat("#", 100000), want: "sent", class: "sts_too_large"},
		}, false)
	})
	t.Run("dns-down", func(t *testing.T) {
		runPolicyWorld(t, ca, []scenario{
			{domain: "dnsdown.example", sts: "version: STSv1\nmode: enforce\nmx: nowhere.example\nmax_age: 86400\n", want: "sent", class: "dns_"},
		}, true)
	})
}

func testCA(t *testing.T) *testca.CA {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (a network namespace and a test Postfix): run make test as root; scripts/deps-postfix.sh installs Postfix")
	}
	return testca.New(t)
}

func validSink(t *testing.T, ca *testca.CA, name string) smtpsink.Options {
	cert, key := ca.Issue(t, name, name)
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}}}
}

func selfSignedSink(t *testing.T, name string) smtpsink.Options {
	return validSink(t, testca.New(t), name) // a CA Postfix does not trust
}

// runPolicyWorld builds the loopback Internet for scenarios, sends one
// message to each through a real Postfix and checks the outcome. With
// deadDNS, snowrain's resolver asks a server that is not there.
func runPolicyWorld(t *testing.T, ca *testca.CA, scenarios []scenario, deadDNS bool) {
	ns := testnet.NewNS(t)
	var zone strings.Builder
	sinks := map[string]*smtpsink.Sink{}
	for i, sc := range scenarios {
		ip := fmt.Sprintf("127.54.0.%d", i+1)
		ln, err := ns.Listen("tcp", ip+":25")
		if err != nil {
			t.Fatal(err)
		}
		sinks[sc.domain] = smtpsink.Serve(t, ln, sc.sink)
		mx := sc.mx
		if mx == "" {
			mx = "mx." + sc.domain
		}
		fmt.Fprintf(&zone, "%s. MX 10 %s.\n%s. A %s\n%s", sc.domain, mx, mx, ip, sc.zone)
		if sc.sts != "" {
			fmt.Fprintf(&zone, "_mta-sts.%s. TXT \"v=STSv1; id=1;\"\nmta-sts.%s. A 127.55.0.1\n", sc.domain, sc.domain)
		}
		if sc.signed {
			cert := sc.sink.TLS.Certificates[0]
			leaf, _ := x509.ParseCertificate(cert.Certificate[0])
			sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
			fmt.Fprintf(&zone, "_25._tcp.mx.%s. TLSA 3 1 1 %s\n", sc.domain, hex.EncodeToString(sum[:]))
		}
	}
	// Postfix probes the root before it trusts the AD bit: answer it, and
	// sign everything (only dane.example publishes TLSA records).
	zone.WriteString(". NS ns.test.\nns.test. A 127.53.0.1\n")
	dns := dnstest.Start(t, zone.String())
	dns.ServeIn(t, ns, "127.53.0.1:53")
	dns.Signed(".")

	// MTA-STS over HTTPS, certificates from the test CA.
	var stsNames []string
	files := map[string]string{}
	for _, sc := range scenarios {
		if sc.sts != "" {
			stsNames = append(stsNames, "mta-sts."+sc.domain)
			files["mta-sts."+sc.domain] = sc.sts
		}
	}
	cert, key := ca.Issue(t, "sts", stsNames...)
	kp, _ := tls.LoadX509KeyPair(cert, key)
	ln, err := tls.Listen("tcp", "127.55.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp}})
	if err != nil {
		t.Fatal(err)
	}
	hung := make(chan struct{})
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		body, ok := files[host]
		switch {
		case body == "hang":
			hangUp(w, hung)
		case ok:
			fmt.Fprint(w, body)
		default:
			http.NotFound(w, r)
		}
	})}
	go web.Serve(ln)
	t.Cleanup(func() { close(hung); web.Close() })

	// snowrain's side: the engine behind a socketmap Postfix can reach.
	store, err := measure.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, sc := range scenarios {
		if sc.learn > 0 {
			store.DB.Exec(`INSERT INTO hourly_deliveries VALUES (?, ?, 'sent', 'TLSv1.3', 'TLS_AES_128_GCM_SHA256', 'verified', 1, ?, '')`,
				time.Now().Unix()/3600, sc.domain, sc.learn)
		}
	}
	dnsAddr := dns.Addr
	if deadDNS {
		// A port reserved closed: refused, whatever runs on the machine.
		dnsAddr = testnet.Pick(t, testnet.Request{Closed: "127.53.0.99/32"}).Addr("127.53.0.99")
	}
	res, _ := resolver.New(resolver.Config{Servers: []string{dnsAddr}, Timeout: 500 * time.Millisecond})
	engine := NewEngine(Config{DANE: true, MTASTS: true, DecisionSample: 1, Budget: 3 * time.Second,
		Learn: LearnConfig{Enabled: true, MinDeliveries: 3, Days: 7}},
		res, &STSFetcher{Resolver: res, Roots: ca.Pool(), Port: ln.Addr().(*net.TCPAddr).Port, Timeout: 2 * time.Second}, store, nil)
	sockDir, _ := os.MkdirTemp("/var/tmp", "snowrain-policy-")
	os.Chmod(sockDir, 0o755)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "policy.sock")
	pl, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o666)
	sm := &SocketmapServer{Engine: engine}
	go sm.Serve(pl)
	t.Cleanup(func() { pl.Close(); sm.Close() })

	pf := postfixtest.Start(t, postfixtest.Options{NetNS: ns, Nameserver: "127.53.0.1", Main: map[string]string{
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
	for _, sc := range scenarios {
		if err := pf.Send(context.Background(), "sender@example.org", []string{"user@" + sc.domain},
			[]byte("Subject: policy test\r\n\r\nhello\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	status := func(domain string) string {
		for _, line := range strings.Split(pf.Log(), "\n") {
			if strings.Contains(line, "to=<user@"+domain+">") {
				for _, s := range []string{"status=sent", "status=deferred", "status=bounced"} {
					if strings.Contains(line, s) {
						return strings.TrimPrefix(s, "status=")
					}
				}
			}
		}
		return ""
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, sc := range scenarios {
		for status(sc.domain) == "" && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		got := status(sc.domain)
		delivered := len(sinks[sc.domain].Messages())
		t.Logf("%s: %s, %d delivered", sc.domain, got, delivered)
		if got != sc.want || (sc.want == "sent") != (delivered == 1) {
			d := engine.Decide(context.Background(), sc.domain)
			t.Errorf("%s: %s (%d at the sink), want %s; policy %q from %s\n%s", sc.domain, got, delivered, sc.want,
				d.Answer, d.Source, strings.Join(d.Steps, "\n"))
		}
	}
	engine.Close() // flush the recorded decisions
	for _, sc := range scenarios {
		if sc.dane && !strings.Contains(pf.Log(), "Verified TLS connection established to mx."+sc.domain) {
			t.Errorf("%s not delivered under DANE", sc.domain)
		}
		if sc.class != "" {
			var errText string
			if err := store.DB.QueryRow(`SELECT error FROM policy_decisions WHERE domain = ? AND source = 'error' LIMIT 1`, sc.domain).Scan(&errText); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(errText, sc.class) {
				t.Errorf("%s: recorded error %q, want class %s", sc.domain, errText, sc.class)
			}
		}
	}
	for _, sc := range scenarios {
		if sc.mx != "" && sc.want == "deferred" && !strings.Contains(pf.Log(), "certificate verification failed for "+sc.mx) {
			t.Errorf("%s: no certificate failure for %s in the Postfix log", sc.domain, sc.mx)
		}
	}
	if t.Failed() {
		t.Log(pf.Log())
	}
}
