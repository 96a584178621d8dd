package dmarcrpt

import (
	"bytes"
	"strings"
	"testing"

	"github.com/snowrain/snowrain/internal/reportschema"
)

func sample() *Feedback {
	ip6, _ := SourceIP("2001:db8::25")
	return &Feedback{Version: "1.0",
		Metadata: ReportMetadata{OrgName: "mx.receiver.example", Email: "dmarc-reports@receiver.example",
			ReportID: "1764460800.example.org@mx.receiver.example", DateRange: DateRange{Begin: 1764460800, End: 1764547199}},
		Policy: PolicyPublished{Domain: "example.org", ADKIM: "r", ASPF: "s", P: DispositionReject, SP: DispositionQuarantine, Pct: 100, Fo: "0"},
		Records: []Record{
			{Row: Row{SourceIP: "192.0.2.1", Count: 3, PolicyEvaluated: PolicyEvaluated{Disposition: DispositionNone, DKIM: Pass, SPF: Pass}},
				Identifiers: Identifiers{EnvelopeFrom: "example.org", HeaderFrom: "example.org"},
				AuthResults: AuthResults{DKIM: []DKIMResult{{Domain: "example.org", Selector: "s1", Result: "pass"}},
					SPF: []SPFResult{{Domain: "example.org", Scope: "mfrom", Result: "pass"}}}},
			{Row: Row{SourceIP: ip6, Count: 1, PolicyEvaluated: PolicyEvaluated{Disposition: DispositionNone, DKIM: Fail, SPF: Fail,
				Reasons: []Reason{{Type: ReasonLocalPolicy, Comment: "monitoring only"}}}},
				Identifiers: Identifiers{EnvelopeFrom: "", HeaderFrom: "example.org"},
				AuthResults: AuthResults{SPF: []SPFResult{{Domain: "mx.forger.example", Scope: "mfrom", Result: "softfail"}}}},
		}}
}

// TestSchema validates what Marshal writes against RFC 7489's schema with
// xmllint, and shows the check bites: a compressed IPv6 address or a
// missing <fo> is refused.
func TestSchema(t *testing.T) {
	doc, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := reportschema.DMARC(t, doc); err != nil {
		t.Fatalf("generated report does not validate:\n%v\n%s", err, doc)
	}
	for name, broken := range map[string]string{
		"compressed IPv6": strings.Replace(string(doc), "2001:0db8:0000:0000:0000:0000:0000:0025", "2001:db8::25", 1),
		"no fo":           strings.Replace(string(doc), "<fo>0</fo>", "", 1),
		"bad disposition": strings.Replace(string(doc), "<p>reject</p>", "<p>drop</p>", 1),
	} {
		if broken == string(doc) {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if err := reportschema.DMARC(t, []byte(broken)); err == nil {
			t.Errorf("%s: xmllint accepted it", name)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	doc, _ := sample().Marshal()
	f, err := Parse(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := f.Marshal()
	if !bytes.Equal(doc, again) {
		t.Errorf("round trip differs:\n%s\n%s", doc, again)
	}
}
