package feedback

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/snowrain/snowrain/tlsrpt"
)

// TestDKIMSignedReports: with a key configured, a TLS report message
// carries a DKIM signature that verifies and covers the RFC 8460 headers.
func TestDKIMSignedReports(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	c := knownConfig(t)
	c.DKIM = &DKIM{Domain: "ours.example", Selector: "reports", Signer: priv}
	c.defaults()
	r := &TLSReport{Domain: "receiver.example"}
	r.Report = sampleTLS()
	msg, err := c.compose(c.tlsLetter(r, fixtureDay, []byte("gz")), "tlsrpt@receiver.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name != "reports._domainkey.ours.example" {
			t.Errorf("lookup %s", name)
		}
		return []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}, nil
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "ours.example" {
		t.Fatalf("verifications %+v %v", vs, err)
	}
	for _, h := range []string{"tls-report-domain", "tls-report-submitter", "subject", "from"} {
		found := false
		for _, k := range vs[0].HeaderKeys {
			found = found || strings.EqualFold(k, h)
		}
		if !found {
			t.Errorf("%s not signed: %v", h, vs[0].HeaderKeys)
		}
	}
}

func sampleTLS() *tlsrpt.Report {
	return &tlsrpt.Report{OrganizationName: "mx.ours.example", ContactInfo: "postmaster@ours.example",
		ReportID: "tls.1.receiver.example@mx.ours.example", DateRange: tlsrpt.DateRange{Start: fixtureDay.Begin, End: fixtureDay.End.Add(-time.Second)}}
}
