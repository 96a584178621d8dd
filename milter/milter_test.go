package milter

import (
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
)

var (
	checkRecords = corpus.CheckRecords
	checkReport  = corpus.CheckReport
)

func TestCorpusBothFlavors(t *testing.T) {
	for _, fl := range []flavor{postfixFlavor, sendmailFlavor} {
		t.Run(fl.Name, func(t *testing.T) {
			h := newHarness(t, Config{AuthServID: "mx.test.example"})
			cases := corpus.Cases()
			for _, c := range cases {
				r := h.send(fl, c)
				if r.act.Type != gomilter.ActionAccept && r.act.Type != gomilter.ActionContinue {
					t.Errorf("%s: action %v, want accept", c.Name, r.act)
				}
				ar, ok := header(r.mods, "Authentication-Results")
				if !ok {
					t.Errorf("%s: no Authentication-Results", c.Name)
				} else if !strings.HasPrefix(ar, "mx.test.example") || !strings.Contains(ar, "spf="+c.SPF) ||
					!strings.Contains(ar, "dmarc="+c.DMARC) {
					t.Errorf("%s: Authentication-Results %q", c.Name, ar)
				}
			}
			h.flush()
			checkRecords(t, h.store, cases)
			r := checkReport(t, h.store, cases)
			if r.Inbound.TLSMessages != int64(2*len(cases)/3) {
				t.Errorf("TLS messages %d of %d", r.Inbound.TLSMessages, len(cases))
			}
			if r.Inbound.ByCipher["TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"] == 0 {
				t.Errorf("by_cipher %v", r.Inbound.ByCipher)
			}
			var mta, ptr string
			if err := h.store.DB.QueryRow(`SELECT mta, client_ptr FROM connections WHERE client_ip = ?`, cases[0].ClientIP).Scan(&mta, &ptr); err != nil {
				t.Fatal(err)
			}
			if fl.Name == "sendmail" && (mta != "8.17.1" || ptr != "client.example") {
				t.Errorf("sendmail connection: mta %q ptr %q", mta, ptr)
			}
		})
	}
}
