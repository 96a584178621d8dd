package measure

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
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
		s.DB.QueryRow(`SELECT COUNT(*), COALESCE(SUM(status = 'sent'), 0) FROM deliveries`).Scan(&n, &sent)
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
		rows.Scan(&domain, &status, &version, &cipher, &level)
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
	rows.Close()
	for _, d := range []string{"plain.example", "tls12.example", "tls13.example"} {
		if got[d] != 2 {
			t.Errorf("%s: %d sent deliveries recorded, want 2\n%s", d, got[d], pf.Log())
		}
	}
}
