package scanner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
)

func sinkTLS(t *testing.T, ca *testca.CA, names ...string) *tls.Config {
	cert, key := ca.Issue(t, names[0], names...)
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{kp}}
}

func addrOf(t *testing.T, s *smtpsink.Sink) (netip.Addr, int) {
	ap, err := netip.ParseAddrPort(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Addr(), int(ap.Port())
}

func TestGrabClasses(t *testing.T) {
	ca, other := testca.New(t), testca.New(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	cases := []struct {
		name  string
		opts  smtpsink.Options
		class ErrClass
		trust Trust
		match string
	}{
		{"notls", smtpsink.Options{}, "", "", ""},
		{"trusted", smtpsink.Options{TLS: sinkTLS(t, ca, "mx.a.example")}, "", TrustTrusted, "mx.a.example"},
		{"unknown", smtpsink.Options{TLS: sinkTLS(t, other, "mx.b.example")}, "", TrustUnknownIssuer, "mx.b.example"},
		{"broken", smtpsink.Options{FailTLS: true}, ErrClassHandshake, "", ""},
		{"slow", smtpsink.Options{BannerDelay: 3 * time.Second}, ErrClassTimeout, "", ""},
		{"drop", smtpsink.Options{Drop: true}, ErrClassDropped, "", ""},
	}
	g := &Grabber{EHLOName: "scanner.test.example", Timeout: time.Second, Roots: roots, Dialer: &Dialer{}}
	for _, c := range cases {
		s := smtpsink.StartWith(t, "127.0.0.1:0", c.opts)
		ip, port := addrOf(t, s)
		r := g.Grab(context.Background(), ip, port)
		if r.ErrorClass != c.class {
			t.Errorf("%s: class %q (%s), want %q", c.name, r.ErrorClass, r.Error, c.class)
		}
		if c.trust != "" && (r.TLS == nil || r.TLS.Trust != c.trust || !r.TLS.Matches(c.match) || r.TLS.Matches("other.example")) {
			t.Errorf("%s: TLS %+v, want trust %s matching %s", c.name, r.TLS, c.trust, c.match)
		}
	}
	blocked := smtpsink.StartWith(t, "127.0.0.2:0", smtpsink.Options{})
	bl, _ := ParseBlocklist(strings.NewReader("127.0.0.2 # the test's forbidden host\n"))
	g.Dialer = &Dialer{Blocklist: bl}
	ip, port := addrOf(t, blocked)
	if r := g.Grab(context.Background(), ip, port); r.ErrorClass != ErrClassBlocked || blocked.Accepts() != 0 {
		t.Errorf("blocklisted: %+v, %d accepts", r, blocked.Accepts())
	}
	_ = strconv.Itoa
}
