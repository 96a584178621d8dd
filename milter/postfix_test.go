package milter

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/measure"
)

// tls12Suites are the TLS 1.2 suites the clients rotate through, by Go
// and OpenSSL name.
var tls12Suites = []struct {
	id      uint16
	openssl string
}{
	{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE-RSA-AES128-GCM-SHA256"},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, "ECDHE-RSA-AES256-SHA"},
	{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-RSA-CHACHA20-POLY1305"},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "ECDHE-RSA-AES256-GCM-SHA384"},
}

var tls13Names = map[uint16]string{
	tls.TLS_AES_128_GCM_SHA256:       "TLS_AES_128_GCM_SHA256",
	tls.TLS_AES_256_GCM_SHA384:       "TLS_AES_256_GCM_SHA384",
	tls.TLS_CHACHA20_POLY1305_SHA256: "TLS_CHACHA20_POLY1305_SHA256",
}

// smtpSend delivers c to addr over SMTP from c.ClientIP, with STARTTLS as
// c.TLS says; it returns the "<version> <cipher>" key the report must
// count, or "" for plaintext.
func smtpSend(t *testing.T, addr string, c corpus.Case, n int, roots *x509.CertPool) string {
	t.Helper()
	cl := smtpOpen(t, addr, c)
	defer cl.Close()
	key := ""
	if c.TLS != "" {
		cfg := &tls.Config{ServerName: "mx.test.example", RootCAs: roots}
		if c.TLS == "1.2" {
			s := tls12Suites[n%len(tls12Suites)]
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, tls.VersionTLS12, []uint16{s.id}
		} else {
			cfg.MinVersion = tls.VersionTLS13
		}
		if err := cl.StartTLS(cfg); err != nil {
			t.Fatalf("%s: STARTTLS: %v", c.Name, err)
		}
		st, _ := cl.TLSConnectionState()
		if st.Version == tls.VersionTLS13 {
			key = "TLSv1.3 " + tls13Names[st.CipherSuite]
		} else {
			for _, s := range tls12Suites {
				if s.id == st.CipherSuite {
					key = "TLSv1.2 " + s.openssl
				}
			}
		}
	}
	if err := cl.Mail(c.MailFrom); err != nil {
		t.Fatalf("%s: MAIL: %v", c.Name, err)
	}
	if err := cl.Rcpt(c.Rcpt); err != nil {
		t.Fatalf("%s: RCPT: %v", c.Name, err)
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatalf("%s: DATA: %v", c.Name, err)
	}
	w.Write(c.Message)
	if err := w.Close(); err != nil {
		t.Fatalf("%s: end of DATA: %v", c.Name, err)
	}
	cl.Quit()
	return key
}

// smtpOpen connects to addr from c.ClientIP and says EHLO c.Helo.
func smtpOpen(t *testing.T, addr string, c corpus.Case) *smtp.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.ClientIP)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("%s: dial: %v", c.Name, err)
	}
	cl, err := smtp.NewClient(conn, "mx.test.example")
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	if err := cl.Hello(c.Helo); err != nil {
		cl.Close()
		t.Fatalf("%s: EHLO: %v", c.Name, err)
	}
	return cl
}

// sendCorpusThrough sends the corpus to an MTA at addr whose milter is h,
// then checks every record and the report, TLS suites included.
func sendCorpusThrough(t *testing.T, h *harness, addr string, roots *x509.CertPool, mtaLog func() string) *measure.Report {
	t.Helper()
	cases := corpus.Cases()
	byCipher := map[string]int64{}
	for i, c := range cases {
		if k := smtpSend(t, addr, c, i, roots); k != "" {
			byCipher[k]++
		}
	}
	h.flush()
	if t.Failed() {
		t.Log(mtaLog())
	}
	checkRecords(t, h.store, cases)
	r := checkReport(t, h.store, cases)
	for k, n := range byCipher {
		if r.Inbound.ByCipher[k] != n {
			t.Errorf("by_cipher[%s] = %d, want %d (all: %v)", k, r.Inbound.ByCipher[k], n, r.Inbound.ByCipher)
		}
	}
	if len(r.Inbound.ByCipher) != len(byCipher) {
		t.Errorf("by_cipher %v, want %v", r.Inbound.ByCipher, byCipher)
	}
	return r
}

func TestPostfixEndToEnd(t *testing.T) {
	h := newHarnessOn(t, Config{AuthServID: "mx.test.example"}, "tcp")
	neg := h.recordNegotiations()
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")
	pf := postfixtest.Start(t, postfixtest.Options{Milter: "inet:" + h.sock, CertFile: cert, KeyFile: key})
	r := sendCorpusThrough(t, h, pf.Addr, ca.Pool(), pf.Log)
	// Postfix 3.7 (milter_protocol = 6) grants every option: no reply
	// before end-of-message, and the records above are unchanged.
	neg.expect(t, required|optional|gomilter.OptNoMailReply, 0)
	t.Logf("%d messages through Postfix, by cipher %v", r.Inbound.Messages, r.Inbound.ByCipher)
	var mta string
	if err := h.store.DB.QueryRow(`SELECT mta FROM connections LIMIT 1`).Scan(&mta); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mta, "Postfix") {
		t.Errorf("MTA recorded as %q", mta)
	}
}

// TestPostfixDeliversOurHeader relays through Postfix to a sink: the
// delivered mail carries our Authentication-Results, and forged ones with
// our authserv-id are gone while others stay.
func TestPostfixDeliversOurHeader(t *testing.T) {
	h := newHarnessOn(t, Config{AuthServID: "mx.test.example"}, "tcp")
	sink := smtpsink.Start(t, "127.0.0.1:0")
	pf := postfixtest.Start(t, postfixtest.Options{Milter: "inet:" + h.sock, Main: map[string]string{
		"default_transport": "smtp", "relayhost": "[" + strings.Replace(sink.Addr, ":", "]:", 1),
		"smtp_tls_security_level": "none"}})
	c := pick(t, "dkim-rsa-pass")
	c.TLS = ""
	c.Message = append([]byte("Authentication-Results: mx.test.example; dkim=pass header.d=forged.example\r\n"+
		"Authentication-Results: elsewhere.example; spf=pass\r\n"), c.Message...)
	smtpSend(t, pf.Addr, c, 0, nil)
	msgs := sink.Wait(1, 20*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages\n%s", len(msgs), pf.Log())
	}
	data := string(msgs[0].Data)
	if !strings.Contains(data, "Authentication-Results: mx.test.example (tls=none);\r\n\tspf=pass smtp.mailfrom=dkim.example;") {
		t.Errorf("our header missing or malformed:\n%s", data)
	}
	if strings.Contains(data, "forged.example") || !strings.Contains(data, "elsewhere.example") {
		t.Errorf("forged header kept or foreign one removed:\n%s", data)
	}
	if !strings.Contains(data, "dkim=pass header.d=dkim.example") {
		t.Errorf("DKIM no longer passes after Postfix:\n%s", data)
	}
}
