package scanner

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/tlsinfo"
)

// Trust is the Table 2 class ("Certificates for Top 1 Million Domains")
// of the certificate a server presented: whether it chains to a trusted
// root, and if not, why.
type Trust string

// Certificate trust classes of Table 2.
const (
	TrustTrusted       Trust = "trusted"        // verifies against the system roots (names aside)
	TrustSelfSigned    Trust = "self_signed"    // issued by itself
	TrustExpired       Trust = "expired"        // outside its validity period
	TrustUnknownIssuer Trust = "unknown_issuer" // chains to no trusted root
	TrustOther         Trust = "other"          // unparsable, or rejected for another reason
)

// ErrClass is where an SMTP conversation of the scanner stopped: the
// error class of a grab (Table 9's rows) or a host probe.
type ErrClass string

// Grab error classes, in the order a conversation meets them.
const (
	ErrClassBlocked   ErrClass = "blocked"          // the address is blocklisted: never dialed
	ErrClassConnect   ErrClass = "connect"          // no TCP connection (refused, unreachable)
	ErrClassTimeout   ErrClass = "timeout"          // a step timed out
	ErrClassBanner    ErrClass = "banner"           // no 220 greeting (RFC 5321 section 4.3.1)
	ErrClassEHLO      ErrClass = "ehlo"             // EHLO failed
	ErrClassNoTLS     ErrClass = "starttls_refused" // STARTTLS not offered or refused (RFC 3207)
	ErrClassHandshake ErrClass = "handshake"        // the TLS handshake failed
	ErrClassDropped   ErrClass = "dropped"          // the server closed the connection mid-conversation
)

// TLSResult is what a STARTTLS handshake negotiated and showed.
type TLSResult struct {
	Version    string   `json:"version"`               // TLSv1 … TLSv1.3
	Cipher     string   `json:"cipher"`                // IANA name, e.g. TLS_RSA_WITH_AES_256_GCM_SHA384
	CipherID   string   `json:"cipher_id"`             // its code point, 0x009d
	KeyEx      string   `json:"key_exchange"`          // ECDHE, RSA, …
	Group      string   `json:"group,omitempty"`       // the (EC)DHE group, e.g. X25519; "" for RSA key exchange
	HelloRetry bool     `json:"hello_retry,omitempty"` // the server asked for another key share (TLS 1.3)
	FS         bool     `json:"forward_secret"`
	Trust      Trust    `json:"trust"`
	Names      []string `json:"names"` // DNS names of the leaf certificate
	KeyBits    int      `json:"key_bits"`
	KeyType    string   `json:"key_type"`     // RSA, ECDSA, Ed25519, DSA
	SigAlg     string   `json:"leaf_sig_alg"` // the leaf's signature algorithm, e.g. SHA256-RSA
	Chain      int      `json:"chain_len"`    // certificates the server sent
	NotAfter   int64    `json:"not_after"`
	LeafDER    []byte   `json:"leaf_der"` // kept so a resumed scan judges names the same way

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
	ErrorClass ErrClass   `json:"error_class,omitempty"`
	Error      string     `json:"error,omitempty"`
	Millis     int64      `json:"ms"`
	Software   *Software  `json:"software,omitempty"` // Table 5: what the greeting and EHLO say it runs
}

// Grabber talks to mail servers.
type Grabber struct {
	EHLOName string         // who scans; the default names snowrain
	Timeout  time.Duration  // whole conversation; default 20 s
	Roots    *x509.CertPool // nil: the system pool
	Dialer   *Dialer        // every connection; nil: refuse the DefaultBlocklist

	verified sync.Map // chain digest → trust class: shared certificates are verified once
}

// Grab connects to ip:port, reads the banner, says EHLO, and when STARTTLS
// is advertised does the handshake, never sending anything between
// STARTTLS and the handshake (no command injection), then QUIT.
func (g *Grabber) Grab(ctx context.Context, ip netip.Addr, port int) Grab {
	start := time.Now()
	res := g.grab(ctx, ip, port)
	res.Millis = time.Since(start).Milliseconds()
	return res
}

func (g *Grabber) grab(ctx context.Context, ip netip.Addr, port int) Grab {
	res := Grab{IP: ip.String(), Port: port}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	conn, cancel, err := g.dial(ctx, ip, port, timeout)
	if err != nil {
		res.fail(dialClass(err), err)
		return res
	}
	defer cancel()
	defer conn.Close()
	g.converse(conn, &res)
	return res
}

// dial connects through the scan's dialer and sets one deadline for the
// whole conversation: tarpits and greet_pause servers hold connections
// open, and a server dripping bytes must not outlive it either.
func (g *Grabber) dial(ctx context.Context, ip netip.Addr, port int, timeout time.Duration) (net.Conn, context.CancelFunc, error) {
	if g.Dialer.Blocked(ip) {
		return nil, nil, fmt.Errorf("%w: %s", ErrBlocked, ip)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	conn, err := g.Dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return conn, cancel, nil
}

func dialClass(err error) ErrClass {
	if errors.Is(err, ErrBlocked) {
		return ErrClassBlocked
	}
	return ErrClassConnect
}

func (r *Grab) fail(class ErrClass, err error) {
	var ne net.Error
	if class != ErrClassBlocked && errors.As(err, &ne) && ne.Timeout() {
		class = ErrClassTimeout
	}
	r.ErrorClass, r.Error = class, err.Error()
}

func (g *Grabber) converse(conn net.Conn, res *Grab) {
	r := getReader(conn)
	defer putReader(r)
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
	ehlo, err := g.ehlo(conn, r)
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
	conn.Write(cmdSTARTTLS)
	rep, err := ReadReply(r)
	if err != nil {
		res.fail(droppedOr(err, ErrClassNoTLS), err)
		return
	}
	if rep.Code != 220 {
		// A refusal (454, 502…) leaves the session usable: end it politely.
		res.fail(ErrClassNoTLS, fmt.Errorf("STARTTLS answered %d %s", rep.Code, clip(rep.Text(), 100)))
		quit(conn, r)
		return
	}
	if r.Buffered() > 0 {
		// Bytes before the handshake: the server (or a box) injected them.
		res.fail(ErrClassHandshake, errors.New("plaintext after STARTTLS reply"))
		return
	}
	tc := tls.Client(conn, scanTLSConfig())
	if err := tc.Handshake(); err != nil {
		res.fail(ErrClassHandshake, err)
		return
	}
	res.TLS = g.classify(tc.ConnectionState())
	r.Reset(tc) // nothing was buffered (checked above)
	tc.Write(cmdQUIT)
	ReadReply(r)
}

// droppedOr classes a failed read: the server hung up (dropped), the
// whole-grab deadline passed (timeout), or class.
// ehlo says EHLO with the grabber's name (a placeholder in .invalid, RFC
// 6761, when none is set) and reads the reply.
func (g *Grabber) ehlo(conn net.Conn, r *bufio.Reader) (Reply, error) {
	name := g.EHLOName
	if name == "" {
		name = "snowrain-scanner.invalid"
	}
	conn.Write(ehloCmd(name))
	return ReadReply(r)
}

func droppedOr(err error, class ErrClass) ErrClass {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ErrClassDropped
	case errors.As(err, &ne) && ne.Timeout():
		return ErrClassTimeout
	}
	return class
}

func quit(conn net.Conn, r *bufio.Reader) {
	conn.Write(cmdQUIT)
	ReadReply(r)
}

// classify verifies the chain against the roots, by hand since the
// handshake skipped it to see every certificate.
func (g *Grabber) classify(st tls.ConnectionState) *TLSResult {
	t := &TLSResult{Version: tlsinfo.NormalizeVersion(tlsVersion(st.Version)), Cipher: tls.CipherSuiteName(st.CipherSuite),
		CipherID: fmt.Sprintf("0x%04x", st.CipherSuite), HelloRetry: st.HelloRetryRequest, Chain: len(st.PeerCertificates)}
	s := tlsinfo.Parse(t.Cipher)
	t.KeyEx, t.FS = s.KeyExchange, s.ForwardSecret
	if st.CurveID != 0 {
		t.Group = st.CurveID.String()
	}
	if len(st.PeerCertificates) == 0 {
		t.Trust = TrustOther
		return t
	}
	leaf := st.PeerCertificates[0]
	t.leaf, t.Names, t.NotAfter, t.LeafDER = leaf, leaf.DNSNames, leaf.NotAfter.Unix(), leaf.Raw
	if len(t.Names) == 0 && leaf.Subject.CommonName != "" {
		t.Names = []string{leaf.Subject.CommonName}
	}
	t.KeyType, t.KeyBits = keyInfo(leaf.PublicKey)
	t.SigAlg = leaf.SignatureAlgorithm.String()
	h := sha256.New()
	for _, c := range st.PeerCertificates {
		h.Write(c.Raw)
	}
	key := string(h.Sum(nil))
	if trust, ok := g.verified.Load(key); ok {
		t.Trust = trust.(Trust)
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

func trustClass(leaf *x509.Certificate, err error) Trust {
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
