// Package tlsinfo decomposes the cipher suite names that MTAs log and pass
// to milters into the columns of the paper's Table 3: key exchange,
// symmetric cipher, MAC and forward secrecy.
package tlsinfo

import (
	"strings"
)

// Suite is one cipher suite, decomposed.
type Suite struct {
	Name          string // as the MTA named it, e.g. ECDHE-RSA-AES128-GCM-SHA256
	KeyExchange   string // ECDHE, DHE, RSA, PSK, … ("" when unknown)
	Auth          string // RSA, ECDSA, anon, …
	Cipher        string // AES-128-GCM, AES-256, CHACHA20-POLY1305, RC4, 3DES, …
	MAC           string // SHA-1, SHA-256, SHA-384, MD5
	ForwardSecret bool
}

// Parse decomposes an OpenSSL-style name (ECDHE-RSA-AES128-GCM-SHA256,
// AES128-SHA, TLS_AES_128_GCM_SHA256) or an IANA-style one
// (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256). Unknown parts stay empty.
func Parse(name string) Suite {
	s := Suite{Name: name}
	switch {
	case name == "":
		return s
	case strings.Contains(name, "_WITH_"):
		parseIANA(&s, name)
	case strings.HasPrefix(name, "TLS_"), strings.HasPrefix(name, "TLS13-"):
		parseTLS13(&s, name)
	default:
		parseOpenSSL(&s, name)
	}
	s.ForwardSecret = s.KeyExchange == "ECDHE" || s.KeyExchange == "DHE"
	return s
}

// TLS 1.3 suites name no key exchange: it is always ephemeral (EC)DHE.
func parseTLS13(s *Suite, name string) {
	n := strings.TrimPrefix(strings.TrimPrefix(name, "TLS13-"), "TLS_")
	n = strings.ReplaceAll(n, "-", "_")
	s.KeyExchange = "ECDHE"
	s.Auth = "any"
	cipher, mac := splitLast(n)
	s.Cipher = cipherName(strings.Split(cipher, "_"))
	s.MAC = macName(mac)
}

func parseIANA(s *Suite, name string) {
	kx, rest, _ := strings.Cut(strings.TrimPrefix(name, "TLS_"), "_WITH_")
	s.KeyExchange, s.Auth = kxName(strings.Split(kx, "_"))
	cipher, mac := splitLast(rest)
	s.Cipher = cipherName(strings.Split(cipher, "_"))
	s.MAC = macName(mac)
}

func parseOpenSSL(s *Suite, name string) {
	parts := strings.Split(name, "-")
	i := 0
	switch parts[0] {
	case "ECDHE", "EECDH":
		s.KeyExchange, i = "ECDHE", 1
	case "DHE", "EDH":
		s.KeyExchange, i = "DHE", 1
	case "ADH":
		s.KeyExchange, s.Auth, i = "DH", "anon", 1
	case "AECDH":
		s.KeyExchange, s.Auth, i = "ECDH", "anon", 1
	case "ECDH", "DH":
		s.KeyExchange, i = parts[0], 1
	case "PSK", "RSAPSK":
		s.KeyExchange, i = "PSK", 1
	default:
		s.KeyExchange, s.Auth = "RSA", "RSA"
	}
	if i == 1 && s.Auth == "" && len(parts) > 2 {
		switch parts[1] {
		case "RSA", "ECDSA", "DSS", "PSK":
			s.Auth, i = parts[1], 2
		}
	}
	if i > 0 && s.Auth == "" {
		s.Auth = "RSA"
	}
	body := parts[i:]
	if len(body) == 0 {
		return
	}
	mac := body[len(body)-1]
	switch mac {
	case "SHA", "SHA256", "SHA384", "MD5":
		body = body[:len(body)-1]
	case "POLY1305":
		mac = "SHA256"
	default:
		mac = ""
	}
	s.Cipher = opensslCipher(body)
	s.MAC = macName(mac)
}

func opensslCipher(body []string) string {
	joined := strings.Join(body, "-")
	switch {
	case strings.HasPrefix(joined, "AES128"), strings.HasPrefix(joined, "AES256"):
		return aesName(joined[3:6], joined)
	case strings.HasPrefix(joined, "CHACHA20"):
		return "CHACHA20-POLY1305"
	case joined == "DES-CBC3", joined == "3DES-EDE-CBC":
		return "3DES"
	case strings.HasPrefix(joined, "CAMELLIA"):
		return "CAMELLIA-" + strings.TrimPrefix(joined, "CAMELLIA")
	}
	return joined
}

// aesName names an AES cipher by its key size and its mode, read from
// the rest of the suite's name: AES-128, AES-256-GCM, AES-128-CCM.
func aesName(bits, suite string) string {
	switch {
	case strings.Contains(suite, "GCM"):
		return "AES-" + bits + "-GCM"
	case strings.Contains(suite, "CCM"):
		return "AES-" + bits + "-CCM"
	}
	return "AES-" + bits
}

func kxName(parts []string) (kx, auth string) {
	switch {
	case len(parts) == 1 && parts[0] == "RSA":
		return "RSA", "RSA"
	case len(parts) >= 2 && parts[1] == "anon":
		return parts[0], "anon"
	case len(parts) >= 2:
		return parts[0], parts[1]
	case len(parts) == 1:
		return parts[0], ""
	}
	return "", ""
}

// ianaCiphers name the bulk ciphers of IANA suite names by the start
// of the name; AES is named by aesName.
var ianaCiphers = []struct{ prefix, name string }{
	{"CHACHA20", "CHACHA20-POLY1305"}, {"RC4", "RC4"}, {"3DES", "3DES"},
}

func cipherName(parts []string) string {
	j := strings.Join(parts, "_")
	if strings.HasPrefix(j, "AES_128") || strings.HasPrefix(j, "AES_256") {
		return aesName(j[4:7], j)
	}
	for _, c := range ianaCiphers {
		if strings.HasPrefix(j, c.prefix) {
			return c.name
		}
	}
	return strings.ReplaceAll(j, "_", "-")
}

func splitLast(s string) (string, string) {
	i := strings.LastIndexByte(s, '_')
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

func macName(m string) string {
	switch m {
	case "SHA":
		return "SHA-1"
	case "SHA256":
		return "SHA-256"
	case "SHA384":
		return "SHA-384"
	case "MD5":
		return "MD5"
	}
	return m
}

// NormalizeVersion maps the spellings MTAs and Go use (TLSv1, TLSv1.2,
// "TLS 1.3", SSLv3) to OpenSSL's: SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.
func NormalizeVersion(v string) string {
	v = strings.TrimSpace(v)
	switch strings.ReplaceAll(strings.ToUpper(v), " ", "") {
	case "":
		return ""
	case "SSLV3", "SSL3.0":
		return "SSLv3"
	case "TLSV1", "TLSV1.0", "TLS1.0":
		return "TLSv1"
	case "TLSV1.1", "TLS1.1":
		return "TLSv1.1"
	case "TLSV1.2", "TLS1.2":
		return "TLSv1.2"
	case "TLSV1.3", "TLS1.3":
		return "TLSv1.3"
	}
	return v
}
