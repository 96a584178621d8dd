package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
	"github.com/snowrain/snowrain/report"
	"github.com/snowrain/snowrain/tlsinfo"
)

// providerPeer is one provider of the test: its sending servers (one
// loopback address each, named by PTR or only by HELO) and its MX.
type providerPeer struct {
	name     string // as Table 6 must name it
	sender   string // client address
	host     string // PTR and HELO name ("" PTR: HELO only)
	ptr      bool
	tls      *tls.Config // client side of inbound; nil: cleartext
	messages int         // inbound messages, on one connection
	domain   string      // recipient domain of our deliveries to it ("": none)
	mx       string      // its MX host
	mxAddr   string      // the sink's address (port 25, inside the test's namespace)
	sinkTLS  func(t *testing.T, ca *testca.CA, mx string) *tls.Config
	outbound int    // deliveries to it
	cert     string // Postfix's verdict on its certificate
}

// TestTable6RealPostfix has a real Postfix exchange mail with senders and
// receivers named as providers in the test DNS — reverse names and HELOs
// under google.com, outlook.com, yahoo.com, zoho.com and a domain the
// configuration's [providers] names — with snowrain serve recording the
// milter's sessions and following the log. Each row of Table 6 in
// `snowrain report` must equal what the test sent and delivered: counts,
// TLS share, version, key exchange, cipher and certificate status.
func TestTable6RealPostfix(t *testing.T) {
	ca := testca.New(t)
	tls12 := func(suite uint16) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}}
	}
	tls13 := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	caSink := func(max uint16, suite uint16) func(*testing.T, *testca.CA, string) *tls.Config {
		return func(t *testing.T, ca *testca.CA, mx string) *tls.Config {
			cert, key := ca.Issue(t, mx, mx)
			kp, _ := tls.LoadX509KeyPair(cert, key)
			c := &tls.Config{Certificates: []tls.Certificate{kp}, MaxVersion: max}
			if suite != 0 {
				c.CipherSuites = []uint16{suite}
			}
			return c
		}
	}
	peers := []providerPeer{
		{name: "Google", sender: "127.66.1.1", host: "mail-ot1-f41.google.com", ptr: true, tls: tls13, messages: 3,
			domain: "gmail.com", mx: "gmail-smtp-in.l.google.com", mxAddr: "127.77.1.1", sinkTLS: caSink(0, 0),
			outbound: 2, cert: "verified"},
		{name: "Microsoft", sender: "127.66.2.1", host: "mail-dm6nam12on2041.outbound.protection.outlook.com", ptr: true,
			tls: tls12(tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384), messages: 2,
			domain: "outlook.com", mx: "outlook-com.olc.protection.outlook.com", mxAddr: "127.77.2.1",
			sinkTLS: caSink(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384), outbound: 1, cert: "trusted"},
		{name: "Yahoo", sender: "127.66.3.1", host: "sonic305-20.consmr.mail.bf2.yahoo.com", ptr: false,
			tls: tls12(tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA), messages: 2,
			domain: "yahoo.com", mx: "mta5.am0.yahoodns.net", mxAddr: "127.77.3.1",
			sinkTLS: func(t *testing.T, ca *testca.CA, mx string) *tls.Config {
				cert, key := ca.IssueWith(t, "self-"+mx, testca.IssueOptions{SelfSigned: true}, mx)
				kp, _ := tls.LoadX509KeyPair(cert, key)
				return &tls.Config{Certificates: []tls.Certificate{kp}, MaxVersion: tls.VersionTLS12,
					CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}
			}, outbound: 2, cert: "untrusted"},
		{name: "Zoho", sender: "127.66.4.1", host: "sender4-op-o12.zoho.com", ptr: true, messages: 1,
			domain: "zoho.com", mx: "mx.zoho.com", mxAddr: "127.77.4.1", outbound: 1, cert: "none"},
		{name: "CorpMail", sender: "127.66.5.1", host: "out1.corpmail.example", ptr: true, tls: tls13, messages: 1},
	}

	// Postfix, its clients and the providers' MX sinks (port 25, each on
	// its own loopback address) live in a network namespace of the test's
	// own, with DNS on port 53 there; snowrain serve runs on the machine's
	// side, its milter a unix socket, which crosses namespaces.
	ns := testnet.NewNS(t)
	sinks := map[string]*smtpsink.Sink{}
	for _, p := range peers {
		if p.mx == "" {
			continue
		}
		var o smtpsink.Options
		if p.sinkTLS != nil {
			o.TLS = p.sinkTLS(t, ca, p.mx)
		}
		ln, err := ns.Listen("tcp", p.mxAddr+":25")
		if err != nil {
			t.Fatal(err)
		}
		sinks[p.name] = smtpsink.Serve(t, ln, o)
	}

	var zone strings.Builder
	zone.WriteString("ours.example. MX 10 mx.ours.example.\nmx.ours.example. A 127.0.0.1\n")
	for _, p := range peers {
		fmt.Fprintf(&zone, "%s. A %s\n", p.host, p.sender)
		if p.ptr {
			o := strings.Split(p.sender, ".")
			fmt.Fprintf(&zone, "%s.%s.%s.%s.in-addr.arpa. PTR %s.\n", o[3], o[2], o[1], o[0], p.host)
		}
		if p.domain != "" {
			fmt.Fprintf(&zone, "%s. MX 10 %s.\n%s. A %s\n", p.domain, p.mx, p.mx, p.mxAddr)
		}
	}
	dns := dnstest.Start(t, zone.String())
	dns.ServeIn(t, ns, "127.53.0.14:53")

	// snowrain serve: the milter on a unix socket smtpd (user postfix)
	// may use, the log followed.
	dir := sharedDir(t, 0)
	milter := "unix:" + filepath.Join(dir, "milter.sock")
	conf := filepath.Join(dir, "snowrain.conf")
	os.WriteFile(conf, []byte("authserv_id = \"mx.ours.example\"\ninternal_networks = [\"127.0.0.1/32\"]\n"+
		"[providers]\n\"corpmail.example\" = \"CorpMail\"\n"), 0o644)
	srvCert, srvKey := ca.Issue(t, "mx-ours", "mx.ours.example")
	pf := postfixtest.Start(t, postfixtest.Options{Milter: milter,
		CertFile: srvCert, KeyFile: srvKey, Hostname: "mx.ours.example", NetNS: ns, Nameserver: "127.53.0.14",
		Main: map[string]string{
			"smtpd_peername_lookup":   "yes",
			"mydestination":           "ours.example",
			"local_recipient_maps":    "",
			"alias_maps":              "",
			"default_transport":       "smtp",
			"smtp_tls_security_level": "may",
			"smtp_tls_policy_maps":    "inline:{gmail.com=verify}",
			"smtp_tls_CAfile":         ca.CAFile(),
			"smtp_tls_loglevel":       "1",
			"smtp_address_preference": "ipv4",
			"smtp_connect_timeout":    "5s",
		}})
	db := filepath.Join(dir, "snowrain.db")
	daemon := exec.Command(binary, "serve", "--config", conf, "--milter", milter, "--socket-mode", "0666",
		"--db", db, "--dns", dns.Addr, "--maillog", pf.LogFile, "--batch-interval", "100ms")
	var dlog strings.Builder
	dw := &syncWriter{w: &dlog}
	daemon.Stderr = dw
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- daemon.Wait() }()
	t.Cleanup(func() { daemon.Process.Kill() })
	waitListening(t, "unix", filepath.Join(dir, "milter.sock"))

	// Inbound: each provider's server sends its messages on one connection.
	seen := map[string]observed{}
	for _, p := range peers {
		st := sendAs(t, ns, pf.Addr, p.sender, p.host, p.tls, p.messages, "sender@"+strings.TrimPrefix(p.host, "mail."), "user@ours.example")
		if st != nil {
			s := tlsinfo.Parse(tls.CipherSuiteName(st.CipherSuite))
			seen[p.name] = observed{tlsVersionName(st.Version), s.KeyExchange, s.Cipher}
		}
	}
	// Outbound: our users write to each provider's domain.
	for _, p := range peers {
		for i := 0; i < p.outbound; i++ {
			sendAs(t, ns, pf.Addr, "127.0.0.1", "client.ours.example", nil, 1, "me@ours.example", fmt.Sprintf("u%d@%s", i, p.domain))
		}
	}
	delivered := map[string]observed{}
	for _, p := range peers {
		if p.outbound == 0 {
			continue
		}
		ms := sinks[p.name].Wait(p.outbound, 60*time.Second)
		if len(ms) != p.outbound {
			t.Fatalf("%s: %d messages delivered, want %d\n%s", p.name, len(ms), p.outbound, pf.Log())
		}
		if ms[0].TLS != "" {
			s := tlsinfo.Parse(ms[0].Cipher)
			delivered[p.name] = observed{"TLSv" + strings.TrimPrefix(ms[0].TLS, "TLS "), s.KeyExchange, s.Cipher}
		}
	}
	// The daemon has recorded every session and read every delivery.
	wantIn, wantOut := 0, 0
	for _, p := range peers {
		wantIn += p.messages
		wantOut += p.outbound
	}
	waitRecorded(t, db, wantIn, wantOut, pf, func() string { dw.mu.Lock(); defer dw.mu.Unlock(); return dlog.String() })
	daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("daemon did not exit")
	}

	js := run(t, "report", "--db", db, "--since", "2h", "--format", "json", "--config", conf)
	var doc struct {
		Providers []report.Provider `json:"providers"`
		Tables    []report.Table    `json:"tables"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	byName := map[string]report.Provider{}
	for _, p := range doc.Providers {
		byName[p.Name] = p
	}
	share := func(n, total int) string { return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(total)) }
	var table6 *report.Table
	for i := range doc.Tables {
		if doc.Tables[i].ID == "table6" {
			table6 = &doc.Tables[i]
		}
	}
	rows := map[string][]string{}
	for _, r := range table6.Rows {
		rows[r[0]] = r
	}
	for _, p := range peers {
		got, ok := byName[p.name]
		if !ok {
			t.Errorf("%s: not in Table 6 (providers %+v)", p.name, doc.Providers)
			continue
		}
		if got.From.Messages != int64(p.messages) || got.To.Messages != int64(p.outbound) {
			t.Errorf("%s: %d from, %d to; want %d and %d", p.name, got.From.Messages, got.To.Messages, p.messages, p.outbound)
		}
		if p.ptr == (got.From.ByHELO > 0) {
			t.Errorf("%s: named by HELO for %d messages, PTR published: %v", p.name, got.From.ByHELO, p.ptr)
		}
		row := rows[p.name]
		if len(row) != 16 {
			t.Errorf("%s: table row %q", p.name, row)
			continue
		}
		in := observed{}
		if o, ok := seen[p.name]; ok {
			in = o
			if got.From.TLS != int64(p.messages) || got.From.Versions[o.version] != int64(p.messages) ||
				got.From.KeyExchanges[o.kx] != int64(p.messages) || got.From.Ciphers[o.cipher] != int64(p.messages) {
				t.Errorf("%s: inbound TLS %+v, the sessions used %+v", p.name, got.From, o)
			}
		} else if got.From.TLS != 0 {
			t.Errorf("%s: %d inbound TLS messages, all were cleartext", p.name, got.From.TLS)
		}
		wantRow := []string{p.name, strconv.Itoa(p.messages), share(int(got.From.TLS), p.messages), "-",
			cell(in.version), cell(in.kx), cell(in.cipher), fsCell(in)}
		out := observed{}
		if p.outbound > 0 {
			out = delivered[p.name]
			if out.version != "" && (got.To.Versions[out.version] != int64(p.outbound) || got.To.Ciphers[out.cipher] != int64(p.outbound)) {
				t.Errorf("%s: outbound TLS %+v, the sink saw %+v", p.name, got.To, out)
			}
			if got.To.Certificates[p.cert] != int64(p.outbound) {
				t.Errorf("%s: certificate statuses %v, want %s for all %d", p.name, got.To.Certificates, p.cert, p.outbound)
			}
		}
		toTLS := "-"
		if p.outbound > 0 {
			toTLS = share(int(got.To.TLS), p.outbound)
		}
		wantRow = append(wantRow, strconv.Itoa(p.outbound), toTLS, "-", cell(out.version), cell(out.kx), cell(out.cipher), fsCell(out))
		if p.outbound > 0 {
			wantRow = append(wantRow, p.cert+" (100.00%)")
		} else {
			wantRow = append(wantRow, "-")
		}
		if strings.Join(row, " | ") != strings.Join(wantRow, " | ") {
			t.Errorf("%s: Table 6 row\n%s\nwant\n%s", p.name, strings.Join(row, " | "), strings.Join(wantRow, " | "))
		}
	}
	// The text and CSV forms carry the table too.
	text := run(t, "report", "--db", db, "--since", "2h", "--config", conf)
	if i := strings.Index(text, "Table 6:"); i >= 0 {
		t.Log(text[i : i+strings.Index(text[i:], "\n\n")])
	}
	if !strings.Contains(text, "Table 6: Encryption behaviour of mail providers") || !strings.Contains(text, "CorpMail") {
		t.Errorf("text report lacks Table 6:\n%s", text)
	}
	csvDir := filepath.Join(dir, "csv")
	run(t, "report", "--db", db, "--since", "2h", "--config", conf, "--format", "csv", "-o", csvDir)
	if b, err := os.ReadFile(filepath.Join(csvDir, "table6.csv")); err != nil || !strings.Contains(string(b), "Google,3,100.00%") {
		t.Errorf("table6.csv: %v\n%s", err, b)
	}
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return s + " (100.00%)"
}

func fsCell(o observed) string {
	if o.version == "" {
		return "-"
	}
	return "100.00%" // every suite the test negotiates is ECDHE or TLS 1.3
}

// observed is what a TLS session negotiated, in Table 6's words.
type observed struct{ version, kx, cipher string }

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%x", v)
}

func waitListening(t *testing.T, network, addr string) {
	for i := 0; i < 400; i++ {
		if c, err := net.Dial(network, addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// sendAs connects to addr inside ns from the address src, says EHLO
// helo, does STARTTLS with cfg when given, and sends n messages on the
// one connection.
func sendAs(t *testing.T, ns *testnet.NS, addr, src, helo string, cfg *tls.Config, n int, from, to string) *tls.ConnectionState {
	t.Helper()
	c := dialFrom(t, ns, src, addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	var conn net.Conn = c
	r := bufio.NewReader(conn)
	expect := func(code string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			if !strings.HasPrefix(line, code) {
				t.Fatalf("%s: %q, want %s", src, line, code)
			}
			if len(line) < 4 || line[3] != '-' {
				return
			}
		}
	}
	say := func(format string, a ...any) { fmt.Fprintf(conn, format+"\r\n", a...) }
	expect("220")
	say("EHLO %s", helo)
	expect("250")
	var st *tls.ConnectionState
	if cfg != nil {
		say("STARTTLS")
		expect("220")
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("%s: STARTTLS: %v", src, err)
		}
		s := tc.ConnectionState()
		st, conn = &s, tc
		r = bufio.NewReader(conn)
		say("EHLO %s", helo)
		expect("250")
	}
	for i := 0; i < n; i++ {
		say("MAIL FROM:<%s>", from)
		expect("250")
		say("RCPT TO:<%s>", to)
		expect("250")
		say("DATA")
		expect("354")
		say("From: <%s>\r\nTo: <%s>\r\nSubject: table 6, %d\r\n\r\nhello\r\n.", from, to, i)
		expect("250")
	}
	say("QUIT")
	expect("221")
	return st
}

// waitRecorded waits until the store holds the inbound messages (counted
// in their connections' records) and the sent deliveries.
func waitRecorded(t *testing.T, path string, in, out int, pf *postfixtest.Instance, dlog func() string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var gotIn, gotOut int
	for end := time.Now().Add(90 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		db.QueryRowContext(context.Background(), `SELECT COALESCE(SUM(messages), 0) FROM connections WHERE direction = 'inbound'`).Scan(&gotIn)
		db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM deliveries WHERE status = 'sent'`).Scan(&gotOut)
		if gotIn >= in && gotOut >= out {
			return
		}
	}
	t.Fatalf("store holds %d inbound messages and %d deliveries, want %d and %d\n%s\n%s", gotIn, gotOut, in, out, pf.Log(), dlog())
}
