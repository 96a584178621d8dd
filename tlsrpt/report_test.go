package tlsrpt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/reportschema"
)

func sample() *Report {
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	return &Report{OrganizationName: "sender.example", ContactInfo: "tlsrpt@sender.example",
		ReportID:  "2026-11-30T00:00:00Z_receiver.example@mx.sender.example",
		DateRange: DateRange{Start: day, End: day.Add(24*time.Hour - time.Second)},
		Policies: []PolicyRun{{
			Policy:  Policy{Type: PolicySTS, String: []string{"version: STSv1", "mode: enforce", "mx: mx.receiver.example", "max_age: 86400"}, Domain: "receiver.example", MXHost: []string{"mx.receiver.example"}},
			Summary: Summary{Successful: 10, Failed: 2},
			FailureDetails: []FailureDetail{{ResultType: ResultCertificateExpired, SendingMTAIP: "192.0.2.1",
				ReceivingMXHostname: "mx.receiver.example", ReceivingIP: "198.51.100.7", FailedSessionCount: 2,
				FailureReasonCode: "certificate has expired"}},
		}, {
			Policy:  Policy{Type: PolicyNoPolicyFound, Domain: "receiver.example"},
			Summary: Summary{Successful: 1},
		}}}
}

func TestSchema(t *testing.T) {
	b, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := reportschema.TLSRPT(b); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	r, err := Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := r.Marshal()
	if !bytes.Equal(b, again) {
		t.Errorf("round trip:\n%s\n%s", b, again)
	}
}

func TestParseRefuses(t *testing.T) {
	big := `{"report-id": "` + strings.Repeat("x", MaxReportSize) + `"}`
	for name, c := range map[string]struct {
		in   string
		want error
	}{
		"huge":          {big, ErrTooLarge},
		"not json":      {"<feedback/>", ErrMalformed},
		"no id":         {`{"date-range":{"start-datetime":"2026-11-30T00:00:00Z","end-datetime":"2026-11-30T23:59:59Z"}}`, ErrMalformed},
		"bad type":      {`{"report-id":"x","date-range":{"start-datetime":"2026-11-30T00:00:00Z","end-datetime":"2026-11-30T23:59:59Z"},"policies":[{"policy":{"policy-type":"x"}}]}`, ErrMalformed},
		"negative":      {`{"report-id":"x","date-range":{"start-datetime":"2026-11-30T00:00:00Z","end-datetime":"2026-11-30T23:59:59Z"},"policies":[{"policy":{"policy-type":"sts"},"summary":{"total-successful-session-count":-4}}]}`, ErrMalformed},
		"reverse range": {`{"report-id":"x","date-range":{"start-datetime":"2026-11-30T00:00:00Z","end-datetime":"2026-11-29T23:59:59Z"}}`, ErrMalformed},
	} {
		if _, err := Parse(strings.NewReader(c.in)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// The zone-less times one large sender writes are read as UTC.
	r, err := Parse(strings.NewReader(`{"report-id":"x","date-range":{"start-datetime":"2026-11-30T00:00:00","end-datetime":"2026-11-30T23:59:59"}}`))
	if err != nil || !r.DateRange.Start.Equal(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("zone-less date: %v %v", r, err)
	}
}

func TestRecord(t *testing.T) {
	for _, c := range []struct {
		txts []string
		want string // URIs joined, or error text
	}{
		{[]string{"v=TLSRPTv1; rua=mailto:tlsrpt@example.org"}, "mailto:tlsrpt@example.org"},
		{[]string{"v=TLSRPTv1;rua=mailto:a@example.org,https://r.example/tlsrpt"}, "mailto:a@example.org https://r.example/tlsrpt"},
		{[]string{"v=TLSRPTv1; rua=ftp://x.example/,mailto:b@example.org"}, "mailto:b@example.org"},
		{[]string{"v=spf1 -all", "v=TLSRPTv1; rua=mailto:c@example.org"}, "mailto:c@example.org"},
		{[]string{"v=TLSRPTv1; rua=http://insecure.example/"}, "invalid"},
		{[]string{"rua=mailto:x@example.org; v=TLSRPTv1"}, "not a TLSRPTv1"},
		{[]string{"v=TLSRPTv1; rua=mailto:a@example.org", "v=TLSRPTv1; rua=mailto:b@example.org"}, "invalid"},
		{nil, "not a TLSRPTv1"},
	} {
		r, err := FindRecord(c.txts)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			var us []string
			for _, u := range r.RUA {
				us = append(us, u.String())
			}
			got = strings.Join(us, " ")
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%q: %q, want %q", c.txts, got, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	b, _ := sample().Marshal()
	f.Add(b)
	f.Add([]byte(`{"report-id":"x","date-range":{"start-datetime":"2026-11-30T00:00:00","end-datetime":"2026-11-30T23:59:59"},"policies":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		if r.ReportID == "" {
			t.Fatal("accepted a report without an id")
		}
		if _, err := r.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzRecord(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:a@example.org,https://r.example/x")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err == nil && len(r.RUA) == 0 {
			t.Fatal("record without destinations")
		}
	})
}
