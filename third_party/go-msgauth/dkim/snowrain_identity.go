package dkim

import (
	"encoding/hex"
	"strings"
)

// parseIdentity reads the signature's i= tag (snowrain patch): its value
// is dkim-quoted-printable (RFC 6376 3.5, 2.11), and its domain must be
// d= or a subdomain of it, compared without regard to case as domain
// names are. Upstream compared the raw text case-sensitively, so a
// signer writing i=@Example.COM beside d=example.com failed.
func parseIdentity(i, domain string) (string, error) {
	id := decodeDKIMQuotedPrintable(stripWhitespace(i))
	low, dom := strings.ToLower(id), strings.ToLower(domain)
	if !strings.HasSuffix(low, "@"+dom) && !strings.HasSuffix(low, "."+dom) {
		return id, ErrDomainMismatch
	}
	return id, nil
}

// decodeDKIMQuotedPrintable decodes RFC 6376 2.11's dkim-quoted-printable
// ("=" and two hex digits for an octet; snowrain patch). A "=" not
// followed by two hex digits is kept as it is: the identity then does not
// match d= and the signature fails as before.
func decodeDKIMQuotedPrintable(s string) string {
	if !strings.Contains(s, "=") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '=' && i+2 < len(s) {
			if octet, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
				b.Write(octet)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
