package reportschema

import (
	"strings"
	"testing"
)

// TestTLSRPTExample: RFC 8460 Appendix B's example (mx-host as an array,
// erratum 6241; its "failure-error-code" is an unknown member, allowed)
// passes, and each broken variant is caught.
func TestTLSRPTExample(t *testing.T) {
	const example = `{
  "organization-name": "Company-X",
  "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
  "contact-info": "sts-reporting@company-x.example",
  "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
  "policies": [{
    "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
      "policy-domain": "company-y.example", "mx-host": ["*.mail.company-y.example"]},
    "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
    "failure-details": [
      {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:0012::1", "receiving-mx-hostname": "mx1.mail.company-y.example", "failed-session-count": 100},
      {"result-type": "validation-failure", "sending-mta-ip": "198.51.100.62", "receiving-ip": "203.0.113.58",
       "receiving-mx-hostname": "mx-backup.mail.company-y.example", "failed-session-count": 3, "failure-error-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"}]
  }]
}`
	if err := TLSRPT([]byte(example)); err != nil {
		t.Fatalf("RFC example: %v", err)
	}
	for name, c := range map[string][2]string{
		"no report-id":   {`"report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",`, ``},
		"bad date":       {`"2016-04-01T00:00:00Z"`, `"April 1st"`},
		"bad type":       {`"policy-type": "sts"`, `"policy-type": "dane"`},
		"bad result":     {`"certificate-expired"`, `"expired"`},
		"negative count": {`5326`, `-1`},
		"float count":    {`303`, `3.5`},
		"bad ip":         {`"198.51.100.62"`, `"198.51.100"`},
		"string count":   {`"failed-session-count": 100`, `"failed-session-count": "100"`},
	} {
		broken := strings.Replace(example, c[0], c[1], 1)
		if broken == example {
			t.Fatalf("%s: no change", name)
		}
		if err := TLSRPT([]byte(broken)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
