package scanner

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snowrain/snowrain/tlsinfo"
)

// Certificate trust classes of Table 2.
const (
	TrustTrusted       = "trusted"
	TrustSelfSigned    = "self_signed"
	TrustExpired       = "expired"
	TrustUnknownIssuer = "unknown_issuer"
	TrustOther         = "other"
)

// Grab error classes.
const (
	ErrClassBlocked   = "blocked"
	ErrClassConnect   = "connect"
	ErrClassTimeout   = "timeout"
	ErrClassBanner    = "banner"
	ErrClassEHLO      = "ehlo"
	ErrClassNoTLS     = "starttls_refused"
	ErrClassHandshake = "handshake"
	ErrClassDropped   = "dropped"
)

// TLSResult is what a STARTTLS handshake showed.
type TLSResult struct {
	Version  string   `json:"version"`
	Cipher   string   `json:"cipher"`
	KeyEx    string   `json:"key_exchange"`
	FS       bool     `json:"forward_secret"`
	Trust    string   `json:"trust"`
	Names    []string `json:"names"` // DNS names of the leaf certificate
	KeyBits  int      `json:"key_bits"`
	KeyType  string   `json:"key_type"`
	NotAfter int64    `json:"not_after"`
	LeafDER  []byte   `json:"leaf_der"` // kept so a resumed scan judges names the same way

	leaf *x509.Certificate
}

// Matches reports whether the leaf certificate is valid for name.
func (t *TLSResult) Matches(name string) bool {
	if t == nil || name == "" {
		return false
	}
	leaf := t.leaf
	if leaf == nil && len(t.LeafDER) > 0 {
		leaf, _ = x509.ParseCertificate(t.LeafDER) // a grab read back from a stored run
	}
	if leaf == nil {
		return false
	}
	return leaf.VerifyHostname(strings.TrimSuffix(name, ".")) == nil
}

// Grab is one SMTP conversation with one mail server address.
type Grab struct {
	IP         string     `json:"ip"`
	Port       int        `json:"port"`
	Banner     string     `json:"banner,omitempty"`
	ESMTP      bool       `json:"esmtp"`
	STARTTLS   bool       `json:"starttls_advertised"`
	TLS        *TLSResult `json:"tls,omitempty"`
	ErrorClass string     `json:"error_class,omitempty"`
	Error      string     `json:"error,omitempty"`
	Millis     int64      `json:"ms"`
	Software   *Software  `json:"software,omitempty"` // Table 5: what the greeting and EHLO say it runs
}

// Grabber talks to mail servers.
type Grabber struct {
	EHLOName  string         // who scans; the default names snowrain
	Timeout   time.Duration  // whole conversation; default 20 s
	Roots     *x509.CertPool // nil: the system pool
	Blocklist *Blocklist
	Dialer    net.Dialer

	verified sync.Map // chain digest → trust class: shared certificates are verified once
}

// Grab connects to ip:port, reads the banner, says EHLO, and when STARTTLS
// is advertised does the handshake, never sending anything between
// STARTTLS and the handshake (no command injection), then QUIT.
func (g *Grabber) Grab(ctx context.Context, ip netip.Addr, port int) Grab {
	start := time.Now()
	res := Grab{IP: ip.String(), Port: port}
	defer func() { res.Millis = time.Since(start).Milliseconds() }()
	if g.Blocklist.Blocked(ip) {
		res.ErrorClass, res.Error = ErrClassBlocked, "address is blocklisted"
		return res
	}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := g.Dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		res.fail(ErrClassConnect, err)
		return res
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl) // tarpits hold connections open: one deadline for all
	}
	g.converse(conn, &res)
	return res
}

func (r *Grab) fail(class string, err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		class = ErrClassTimeout
	}
	r.ErrorClass, r.Error = class, err.Error()
}

func (g *Grabber) converse(conn net.Conn, res *Grab) {
	r := bufio.NewReader(conn)
	banner, err := ReadReply(r)
	if err != nil {
		res.fail(droppedOr(err, ErrClassBanner), err)
		return
	}
	res.Banner = clip(banner.Text(), 512)
	res.ESMTP = strings.Contains(strings.ToUpper(banner.Text()), "ESMTP")
	if banner.Code != 220 {
		res.fail(ErrClassBanner, fmt.Errorf("banner code %d", banner.Code))
		return
	}
	name := g.EHLOName
	if name == "" {
		name = "snowrain-scanner.invalid"
	}
	fmt.Fprintf(conn, "EHLO %s\r\n", name)
	ehlo, err := ReadReply(r)
	res.Software = softwareOf(banner, ehlo, err)
	if err != nil || ehlo.Code != 250 {
		if err == nil {
			err = fmt.Errorf("EHLO answered %d", ehlo.Code)
		}
		res.fail(droppedOr(err, ErrClassEHLO), err)
		return
	}
	_, res.STARTTLS = Extensions(ehlo)["STARTTLS"]
	if !res.STARTTLS {
		quit(conn, r)
		return
	}
	fmt.Fprintf(conn, "STARTTLS\r\n")
	rep, err := ReadReply(r)
	if err != nil || rep.Code != 220 {
		if err == nil {
			err = fmt.Errorf("STARTTLS answered %d %s", rep.Code, clip(rep.Text(), 100))
		}
		res.fail(droppedOr(err, ErrClassNoTLS), err)
		return
	}
	if r.Buffered() > 0 {
		// Bytes before the handshake: the server (or a box) injected them.
		res.fail(ErrClassHandshake, errors.New("plaintext after STARTTLS reply"))
		return
	}
	// Classical key exchange only: the post-quantum hybrid Go offers by
	// default costs the scanner more CPU per grab than the rest together.
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}})
	if err := tc.Handshake(); err != nil {
		res.fail(ErrClassHandshake, err)
		return
	}
	res.TLS = g.classify(tc.ConnectionState())
	tr := bufio.NewReader(tc)
	fmt.Fprintf(tc, "QUIT\r\n")
	ReadReply(tr)
}

func droppedOr(err error, class string) string {
	if errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset") {
		return ErrClassDropped
	}
	return class
}

func quit(conn net.Conn, r *bufio.Reader) {
	fmt.Fprintf(conn, "QUIT\r\n")
	ReadReply(r)
}

// classify verifies the chain against the roots, by hand since the
// handshake skipped it to see every certificate.
func (g *Grabber) classify(st tls.ConnectionState) *TLSResult {
	t := &TLSResult{Version: tlsinfo.NormalizeVersion(tlsVersion(st.Version)), Cipher: tls.CipherSuiteName(st.CipherSuite)}
	s := tlsinfo.Parse(t.Cipher)
	t.KeyEx, t.FS = s.KeyExchange, s.ForwardSecret
	if len(st.PeerCertificates) == 0 {
		t.Trust = TrustOther
		return t
	}
	leaf := st.PeerCertificates[0]
	t.leaf, t.Names, t.NotAfter, t.LeafDER = leaf, leaf.DNSNames, leaf.NotAfter.Unix(), leaf.Raw
	if len(t.Names) == 0 && leaf.Subject.CommonName != "" {
		t.Names = []string{leaf.Subject.CommonName}
	}
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		t.KeyType, t.KeyBits = "RSA", k.N.BitLen()
	default:
		t.KeyType = strings.TrimPrefix(fmt.Sprintf("%T", k), "*")
	}
	h := sha256.New()
	for _, c := range st.PeerCertificates {
		h.Write(c.Raw)
	}
	key := string(h.Sum(nil))
	if trust, ok := g.verified.Load(key); ok {
		t.Trust = trust.(string)
		return t
	}
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: g.Roots, Intermediates: inter})
	t.Trust = trustClass(leaf, err)
	// Only the trust is cached: expiry is judged at the time of the first
	// grab, which is the same sweep.
	g.verified.Store(key, t.Trust)
	return t
}

func trustClass(leaf *x509.Certificate, err error) string {
	var inv x509.CertificateInvalidError
	var unk x509.UnknownAuthorityError
	switch {
	case err == nil:
		return TrustTrusted
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return TrustExpired
	case errors.As(err, &unk):
		// Self-signed: issued by itself and verifiable with its own key
		// (CheckSignatureFrom would insist the leaf be a CA).
		if bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
			leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil {
			return TrustSelfSigned
		}
		return TrustUnknownIssuer
	}
	return TrustOther
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return "0x" + strconv.FormatUint(uint64(v), 16)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
