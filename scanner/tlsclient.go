package scanner

import (
	//lint:ignore SA1019 DSA certificates are still served and must be measured
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"sync"
)

// allSuites is every TLS 1.0–1.2 suite crypto/tls implements, the
// insecure ones included (RSA key exchange, CBC, 3DES, RC4): a
// measurement client must complete the handshake with whatever a server
// still accepts, and record what was negotiated, as zgrab2 does. Listing
// them in Config.CipherSuites enables them for this config only (Go 1.22
// dropped RSA key exchange and Go 1.23 3DES from the defaults; the
// tlsrsakex and tls3des settings only change those defaults).
var allSuites = func() []uint16 {
	var ids []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		ids = append(ids, s.ID)
	}
	return ids
}()

// scanTLSConfig is the client side of every STARTTLS handshake the
// scanner makes: TLS 1.0 to 1.3 and every suite. Certificates are not
// verified during the handshake (the grab classifies them afterwards) and
// the post-quantum hybrids are left out: an ML-KEM key share costs the
// scanner more CPU per grab than the rest of the grab together, and every
// server offering a hybrid also takes X25519.
func scanTLSConfig() *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS10,
		MaxVersion:         tls.VersionTLS13,
		CipherSuites:       allSuites,
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521},
	}
}

// LegacyGODEBUG lists the process-wide crypto settings a measurement
// client needs beyond what a tls.Config can express (go.dev/doc/godebug):
//
//   - tlssha1=1: offer and accept SHA-1 signatures in TLS 1.2 handshakes
//     (Go 1.25 removed them; servers with old keys still sign with them).
//   - x509negativeserial=1: parse certificates with a negative serial
//     number (Go 1.23 rejects them, and with them the whole handshake).
//   - rsa1024min=0: complete handshakes with RSA keys under 1024 bits
//     (Go 1.24 refuses them); the grab records the key size.
//
// They change defaults for every TLS connection of the process, so only
// the `snowrain scan` process sets them (EnableLegacyCrypto), never
// `snowrain serve`, whose milter and policy service keep Go's defaults.
var LegacyGODEBUG = []string{"tlssha1=1", "x509negativeserial=1", "rsa1024min=0"}

var legacyOnce sync.Once

// EnableLegacyCrypto adds LegacyGODEBUG to this process's GODEBUG
// environment, keeping any value the operator set for the same key. The
// runtime re-reads GODEBUG each time os.Setenv changes it (Go's
// internal/godebug, setUpdate), so it takes effect for handshakes started
// afterwards; a //go:debug line would change the whole binary, serve
// included. Call it only in a process that runs scans and nothing else.
func EnableLegacyCrypto() {
	legacyOnce.Do(func() {
		os.Setenv("GODEBUG", mergeGODEBUG(os.Getenv("GODEBUG"), LegacyGODEBUG))
	})
}

// mergeGODEBUG appends the settings of add whose key cur does not set.
func mergeGODEBUG(cur string, add []string) string {
	set := map[string]bool{}
	var parts []string
	for _, kv := range strings.Split(cur, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
		parts = append(parts, kv)
	}
	for _, kv := range add {
		if k, _, _ := strings.Cut(kv, "="); !set[k] {
			parts = append(parts, kv)
		}
	}
	return strings.Join(parts, ",")
}

// keyInfo names a certificate's public key algorithm and its size in bits:
// the modulus for RSA and DSA, the curve's field size for ECDSA (P-256:
// 256), 256 for Ed25519.
func keyInfo(pub any) (string, int) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		return "ECDSA", k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "Ed25519", 256
	case *dsa.PublicKey:
		return "DSA", k.P.BitLen()
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", pub), "*"), 0
}
