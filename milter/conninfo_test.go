package milter

import (
	"testing"
)

type macros map[string]string

func (m macros) Get(name string) string { return m[name] }

func TestConnInfoPostfixAndSendmail(t *testing.T) {
	cases := []struct {
		name   string
		stages []macros
		want   ConnInfo
	}{
		{"postfix", []macros{
			{"j": "mx.example", "v": "Postfix 3.7.11", "{daemon_name}": "smtpd", "_": "unknown [192.0.2.1]",
				"{client_addr}": "192.0.2.1"},
			{"{tls_version}": "TLSv1.2", "{cipher}": "ECDHE-RSA-AES128-GCM-SHA256", "{cipher_bits}": "128"},
			{"{auth_authen}": ""},
		}, ConnInfo{ClientIP: "192.0.2.1", Daemon: "smtpd", MTAName: "mx.example", MTAVersion: "Postfix 3.7.11",
			TLSVersion: "TLSv1.2", Cipher: "ECDHE-RSA-AES128-GCM-SHA256", CipherBits: 128}},
		{"sendmail", []macros{
			{"j": "mx.example", "v": "8.17.1", "{daemon_name}": "MTA", "_": "mail.example.org [IPv6:2001:db8::1] (may be forged)",
				"{client_addr}": "IPv6:2001:db8::1"},
			{"{tls_version}": "TLSv1.3", "{cipher}": "TLS_AES_256_GCM_SHA384", "{cipher_bits}": "256",
				"{verify}": "OK", "{cert_subject}": "/CN=client", "{cert_issuer}": "/CN=CA"},
			{"{auth_authen}": "alice"},
		}, ConnInfo{ClientIP: "2001:db8::1", ClientPTR: "mail.example.org", Daemon: "MTA", MTAName: "mx.example",
			MTAVersion: "8.17.1", TLSVersion: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", CipherBits: 256,
			CertSubj: "/CN=client", CertIssuer: "/CN=CA", Verify: "OK", AuthUser: "alice"}},
		{"hostile", []macros{
			{"{client_addr}": "not-an-ip", "{cipher_bits}": "-5", "_": "evil\r\nname [1.2.3.4]",
				"{tls_version}": "TLSv1.2\x00", "{cipher}": string(make([]byte, 1000))},
		}, ConnInfo{ClientPTR: "evilname", TLSVersion: "TLSv1.2"}},
	}
	for _, c := range cases {
		var ci ConnInfo
		for _, m := range c.stages {
			ci.Update(m)
		}
		ci.Suite = c.want.Suite
		if ci.Cipher != c.want.Cipher {
			ci.Suite = ConnInfo{}.Suite
		}
		got := ci
		got.Suite = c.want.Suite
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

func TestOutbound(t *testing.T) {
	cfg := Config{SubmissionDaemons: []string{"submission"}}
	for _, c := range []struct {
		ci   ConnInfo
		want bool
	}{
		{ConnInfo{Daemon: "smtpd", ClientIP: "127.0.0.1"}, false},
		{ConnInfo{Daemon: "submission"}, true},
		{ConnInfo{AuthUser: "bob"}, true},
		{ConnInfo{ClientIP: "127.0.0.1", ClientPTR: "localhost", Local: true}, true},
	} {
		if got := cfg.outbound(&c.ci); got != c.want {
			t.Errorf("outbound(%+v) = %v", c.ci, got)
		}
	}
}

func FuzzConnInfo(f *testing.F) {
	f.Add("192.0.2.1", "unknown [192.0.2.1]", "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "128", "smtpd")
	f.Add("IPv6:::1", "a@b [::1] (may be forged)", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "x", "MTA")
	f.Fuzz(func(t *testing.T, addr, underscore, version, cipher, bits, daemon string) {
		var ci ConnInfo
		ci.Update(macros{"{client_addr}": addr, "_": underscore, "{tls_version}": version,
			"{cipher}": cipher, "{cipher_bits}": bits, "{daemon_name}": daemon})
		for _, s := range []string{ci.ClientPTR, ci.Cipher, ci.Daemon, ci.TLSVersion} {
			if len(s) > 255 {
				t.Fatalf("unbounded field %d bytes", len(s))
			}
			for _, r := range s {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("control character kept in %q", s)
				}
			}
		}
		_ = ci.TLSSummary()
	})
}
