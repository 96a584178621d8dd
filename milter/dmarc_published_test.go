package milter

import "testing"

// TestDMARCPublishedStored: the DMARC record that applied is stored with
// the message, as the aggregate reports (feedback/) read it: the
// record's tags in order, keywords lower-cased.
func TestDMARCPublishedStored(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	h.send(postfixFlavor, pick(t, "dmarc-pct-zero"))
	h.send(postfixFlavor, pick(t, "spf-pass"))
	h.flush()
	rows, err := h.store.DB.Query(`SELECT from_domain, dmarc_result, COALESCE(dmarc_record_domain, ''),
		COALESCE(dmarc_published, '') FROM messages ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var from, result, at, published string
		if err := rows.Scan(&from, &result, &at, &published); err != nil {
			t.Fatal(err)
		}
		got = append(got, from+" "+result+" "+at+" "+published)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "pct.example fail pct.example v=DMARC1;p=reject;pct=0;" || got[1] != "spf-pass.example none  " {
		t.Errorf("stored %q", got)
	}
}
