package measure

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/smtp"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/internal/testnet"
)

// TestPostfixOutboundTLS has a real Postfix (smtp_tls_loglevel = 1) deliver
// to loopback sinks — plaintext, TLS 1.2, TLS 1.3, one whose STARTTLS
// breaks — and follows its log: every delivery recorded with its TLS state.
func TestPostfixOutboundTLS(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "sink", "127.0.0.1", "sink.test.example")
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	sinks := map[string]*smtpsink.Sink{
		"plain.example":   smtpsink.Start(t, "127.0.0.1:0"),
		"tls12.example":   smtpsink.StartWith(t, "127.0.0.1:0", smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}, MaxVersion: tls.VersionTLS12}}),
		"tls13.example":   smtpsink.StartWith(t, "127.0.0.1:0", smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS13}}),
		"failtls.example": smtpsink.StartWith(t, "127.0.0.1:0", smtpsink.Options{FailTLS: true}),
	}
	var routes []string
	for d, s := range sinks {
		routes = append(routes, fmt.Sprintf("%s=smtp:[%s]:%s", d, "127.0.0.1", s.Addr[strings.LastIndexByte(s.Addr, ':')+1:]))
	}
	pf := postfixtest.Start(t, postfixtest.Options{Main: map[string]string{
		"default_transport":       "smtp",
		"transport_maps":          "inline:{" + strings.Join(routes, ", ") + "}",
		"smtp_tls_security_level": "may",
		"smtp_tls_loglevel":       "1",
		"smtp_tls_CAfile":         ca.CAFile(),
		"smtp_connect_timeout":    "5s",
		"smtp_helo_timeout":       "5s",
	}})
	want := map[string]string{"plain.example": "", "tls12.example": "TLSv1.2", "tls13.example": "TLSv1.3", "failtls.example": ""}
	for d := range want {
		for i := 0; i < 2; i++ {
			if err := smtp.SendMail(pf.Addr, nil, "sender@example.org", []string{fmt.Sprintf("u%d@%s", i, d)},
				[]byte("Subject: outbound\r\n\r\nhello\r\n")); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&Follower{Store: s, Path: pf.LogFile, Poll: 50 * time.Millisecond}).Run(ctx)
		close(done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var sent, n int
		if err := s.DB.QueryRow(`SELECT COUNT(*), COALESCE(SUM(status = 'sent'), 0) FROM deliveries`).Scan(&n, &sent); err != nil {
			t.Fatal(err)
		}
		if sent >= 6 && n >= 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
	rows, err := s.DB.Query(`SELECT domain, status, tls_version, cipher, tls_level FROM deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for rows.Next() {
		var domain, status, version, cipher, level string
		if err := rows.Scan(&domain, &status, &version, &cipher, &level); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %s %s %s %s", domain, status, version, cipher, level)
		if v, ok := want[domain]; !ok || version != v {
			t.Errorf("%s: TLS version %q, want %q", domain, version, v)
		}
		if version != "" && (cipher == "" || level != "trusted") {
			t.Errorf("%s: cipher %q level %q, want a cipher and trusted (test CA)", domain, cipher, level)
		}
		if status == "sent" {
			got[domain]++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, d := range []string{"plain.example", "tls12.example", "tls13.example"} {
		if got[d] != 2 {
			t.Errorf("%s: %d sent deliveries recorded, want 2\n%s", d, got[d], pf.Log())
		}
	}
}

// sinkTLS returns a test CA and a sink certificate from it for 127.0.0.1.
func sinkTLS(t *testing.T) (*testca.CA, *tls.Config) {
	t.Helper()
	ca := testca.New(t)
	cert, key := ca.Issue(t, "sink", "127.0.0.1")
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca, &tls.Config{Certificates: []tls.Certificate{kp}}
}

// sinkRoute is a transport_maps entry sending domain's mail to sink.
func sinkRoute(domain string, s *smtpsink.Sink) string {
	return fmt.Sprintf("%s=smtp:[127.0.0.1]:%s", domain, s.Addr[strings.LastIndexByte(s.Addr, ':')+1:])
}

// follow runs a Follower on the instance's log until done reports true
// (polled; bounded by a minute), then stops it after its last commit.
// Every second it flushes Postfix's queue (postqueue -f), so deferred
// mail is retried at once whatever backoff or dead-destination state a
// loaded machine led Postfix into.
func follow(t *testing.T, s *Store, pf *postfixtest.Instance, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		(&Follower{Store: s, Path: pf.LogFile, Poll: 50 * time.Millisecond}).Run(ctx)
		close(stopped)
	}()
	deadline := time.Now().Add(time.Minute)
	for i := 1; !done() && time.Now().Before(deadline); i++ {
		time.Sleep(100 * time.Millisecond)
		if i%10 == 0 {
			osexec.Command("postqueue", "-c", filepath.Join(pf.Dir, "etc"), "-f").Run()
		}
	}
	cancel()
	<-stopped
}

// statusByDomain counts the stored deliveries by domain and status, and
// those over TLS.
func statusByDomain(t *testing.T, s *Store) (n, tls map[string]int) {
	t.Helper()
	n, tls = map[string]int{}, map[string]int{}
	rows, err := s.DB.Query(`SELECT domain, status, tls_version FROM deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var domain, status, version string
		if err := rows.Scan(&domain, &status, &version); err != nil {
			t.Fatal(err)
		}
		n[domain+" "+status]++
		if version != "" {
			tls[domain+" "+status]++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n, tls
}

// TestPostfixInjectedReply (issue 10): a receiver whose replies carry
// another recipient and fake fields, and a sender whose quoted local parts
// do, through a real Postfix: every delivery is recorded for the
// receiver's own domain with the TLS state of its connection, and none
// for the domain named in the injected text.
func TestPostfixInjectedReply(t *testing.T) {
	ca, tc := sinkTLS(t)
	replies := []string{
		"250 2.0.0 Ok), to=<victim@bank.example>, x=(",
		"451 4.3.0 later), to=<victim@bank.example>, relay=mx.bank.example[198.51.100.1]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (",
		"250 ok>, relay=mx.bank.example[198.51.100.1]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (x",
	}
	sink := smtpsink.StartWith(t, "127.0.0.1:0", smtpsink.Options{
		TLS:       tc,
		DataReply: func(n int) string { return replies[(n-1)%len(replies)] },
	})
	pf := postfixtest.Start(t, postfixtest.Options{Main: map[string]string{
		"default_transport":       "smtp",
		"transport_maps":          "inline:{" + sinkRoute("inject.example", sink) + "}",
		"smtp_tls_security_level": "may",
		"smtp_tls_loglevel":       "1",
		"smtp_tls_CAfile":         ca.CAFile(),
		"minimal_backoff_time":    "1s",
		"maximal_backoff_time":    "2s",
		"queue_run_delay":         "1s",
	}})
	rcpts := []string{
		"u@inject.example",
		`"a@bank.example>, orig_to=<b"@inject.example`,
		`"x>, relay=mx.bank.example[198.51.100.1]:25, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (y"@inject.example`,
	}
	for i := 0; i < 3; i++ {
		if err := smtp.SendMail(pf.Addr, nil, "sender@example.org", rcpts, []byte("Subject: injected\r\n\r\nhello\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	// Of the three messages, the one answered 451 is retried and then
	// answered 250: 9 recipients delivered, 3 attempts deferred.
	s := openTemp(t)
	follow(t, s, pf, func() bool {
		n, _ := statusByDomain(t, s)
		return n["inject.example sent"] >= 9
	})
	n, tlsN := statusByDomain(t, s)
	want := map[string]int{"inject.example sent": 9, "inject.example deferred": 3}
	if len(n) != len(want) || n["inject.example sent"] != 9 || n["inject.example deferred"] != 3 {
		t.Errorf("deliveries by domain and status %v, want %v\n%s", n, want, pf.Log())
	}
	if tlsN["inject.example sent"] != 9 || tlsN["inject.example deferred"] != 3 {
		t.Errorf("over TLS %v, want every attempt", tlsN)
	}
	var bank int
	if err := s.DB.QueryRow(`SELECT COUNT(*) FROM deliveries WHERE domain LIKE '%bank%' OR relay_host LIKE '%bank%'`).Scan(&bank); err != nil {
		t.Fatal(err)
	}
	if bank != 0 {
		t.Errorf("%d records name bank.example", bank)
	}
}

// TestPostfixOutboundRetries (issue 12): a real Postfix delivering to
// receivers that accept (over TLS and in plaintext), defer once then
// accept, never accept, break STARTTLS (Postfix defers, then retries in
// plaintext), bounce, and one whose DNS fails (relay=none). Delivered
// and TLS counts are per recipient delivered; attempts and deferrals are
// counted apart, and domains never delivered to have no outbound share.
func TestPostfixOutboundRetries(t *testing.T) {
	ca, tc := sinkTLS(t)
	// Postfix and its receivers in a network namespace of the test's own,
	// where the DNS server answers on port 53 (Postfix's resolv.conf
	// cannot name a port).
	ns := testnet.NewNS(t)
	sink := func(o smtpsink.Options) *smtpsink.Sink {
		ln, err := ns.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return smtpsink.Serve(t, ln, o)
	}
	sinks := map[string]*smtpsink.Sink{
		"tls.example":   sink(smtpsink.Options{TLS: tc}),
		"plain.example": sink(smtpsink.Options{}),
		"retry.example": sink(smtpsink.Options{TLS: tc, DataReply: func(n int) string {
			if n == 1 {
				return "451 4.3.0 try again later"
			}
			return "250 2.0.0 ok"
		}}),
		"never.example":   sink(smtpsink.Options{DataReply: func(int) string { return "451 4.3.0 never" }}),
		"failtls.example": sink(smtpsink.Options{FailTLS: true}),
		"bounce.example":  sink(smtpsink.Options{TLS: tc, DataReply: func(int) string { return "550 5.1.1 no such user" }}),
		"example.org":     sink(smtpsink.Options{}), // the sender's domain: bounces go there
	}
	var routes []string
	for d, s := range sinks {
		routes = append(routes, sinkRoute(d, s))
	}
	// nodns.example is looked up in DNS, which fails: Postfix defers with
	// relay=none.
	dns := dnstest.Start(t, ". NS ns.test.\nns.test. A 127.53.0.12\n")
	dns.ServeIn(t, ns, "127.53.0.12:53")
	dns.ServFail("nodns.example")
	pf := postfixtest.Start(t, postfixtest.Options{NetNS: ns, Nameserver: "127.53.0.12", Main: map[string]string{
		"default_transport":       "smtp",
		"transport_maps":          "inline:{" + strings.Join(routes, ", ") + "}",
		"smtp_tls_security_level": "may",
		"smtp_tls_loglevel":       "1",
		"smtp_tls_CAfile":         ca.CAFile(),
		"smtp_connect_timeout":    "5s",
		"minimal_backoff_time":    "1s",
		"maximal_backoff_time":    "2s",
		"queue_run_delay":         "1s",
	}})
	send := func(domain string, messages, rcpts int) {
		for i := 0; i < messages; i++ {
			var to []string
			for j := 0; j < rcpts; j++ {
				to = append(to, fmt.Sprintf("m%dr%d@%s", i, j, domain))
			}
			if err := pf.Send(context.Background(), "sender@example.org", to, []byte("Subject: out\r\n\r\nhello\r\n")); err != nil {
				t.Fatal(err)
			}
		}
	}
	send("tls.example", 3, 2)
	send("plain.example", 2, 1)
	send("retry.example", 1, 2)
	send("never.example", 1, 1)
	send("failtls.example", 2, 1)
	send("bounce.example", 1, 1)
	send("nodns.example", 1, 1)
	s := openTemp(t)
	follow(t, s, pf, func() bool {
		n, _ := statusByDomain(t, s)
		return n["tls.example sent"] >= 6 && n["plain.example sent"] >= 2 && n["retry.example sent"] >= 2 &&
			n["failtls.example sent"] >= 2 && n["example.org sent"] >= 1 && n["never.example deferred"] >= 2 &&
			n["nodns.example deferred"] >= 2
	})
	n, tlsN := statusByDomain(t, s)
	t.Logf("attempts by domain and status: %v; over TLS: %v", n, tlsN)
	exact := map[string][2]int{ // attempts, over TLS
		"tls.example sent": {6, 6}, "plain.example sent": {2, 0},
		"retry.example deferred": {2, 2}, "retry.example sent": {2, 2},
		"failtls.example deferred": {2, 0}, "failtls.example sent": {2, 0},
		"bounce.example bounced": {1, 1}, "example.org sent": {1, 0},
		"never.example sent": {0, 0}, "nodns.example sent": {0, 0},
	}
	for k, w := range exact {
		if n[k] != w[0] || tlsN[k] != w[1] {
			t.Errorf("%s: %d attempts, %d over TLS; want %d, %d", k, n[k], tlsN[k], w[0], w[1])
		}
	}
	r, err := s.BuildReport(context.Background(), Scope{Since: time.Now().Add(-time.Hour), Until: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Delivery
	// Delivered: 6 + 2 + 2 + 2 + 1 recipients, 8 of them over TLS.
	if c.Deliveries != 13 || c.TLSDeliveries != 8 || c.Bounced != 1 {
		t.Errorf("delivered %d, over TLS %d, bounced %d; want 13, 8, 1", c.Deliveries, c.TLSDeliveries, c.Bounced)
	}
	deferred := int64(2 + 2 + n["never.example deferred"] + n["nodns.example deferred"])
	if c.Deferred != deferred || c.Attempts != c.Deliveries+c.Bounced+deferred {
		t.Errorf("deferred %d, attempts %d; want %d, %d", c.Deferred, c.Attempts, deferred, c.Deliveries+c.Bounced+deferred)
	}
	for _, d := range []string{"never.example", "nodns.example", "bounce.example"} {
		if _, ok := c.ByDomain[d]; ok {
			t.Errorf("%s has no delivered mail but is in by_domain %v", d, c.ByDomain)
		}
	}
	if c.ByDomain["retry.example"] != 2 || c.TLSByDomain["retry.example"] != 2 || c.DeferredByDomain["nodns.example"] < 2 {
		t.Errorf("by domain %v, TLS %v, deferred %v", c.ByDomain, c.TLSByDomain, c.DeferredByDomain)
	}
	var noRelay int
	if err := s.DB.QueryRow(`SELECT COUNT(*) FROM deliveries WHERE domain = 'nodns.example' AND relay_host = '' AND relay_ip = ''`).Scan(&noRelay); err != nil {
		t.Fatal(err)
	}
	if noRelay != n["nodns.example deferred"] {
		t.Errorf("%d of %d nodns.example attempts without relay", noRelay, n["nodns.example deferred"])
	}
	if t.Failed() {
		t.Log(pf.Log())
	}
}
