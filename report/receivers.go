package report

import (
	"fmt"
	"strings"

	"github.com/snowrain/snowrain/feedback"
)

// receiverTables renders the section: one table for DMARC, one for TLS.
func (r *Report) receiverTables() []Table {
	rc := r.Receivers
	if rc == nil {
		rc = &feedback.Received{}
	}
	dmarc := Table{ID: "receivers_dmarc", Title: "How receivers see your mail: DMARC",
		Note: "From the DMARC aggregate reports receivers sent (RFC 7489); pass is an aligned DKIM or SPF pass. " +
			fmt.Sprintf("Failing sources: the %d sending addresses with the most failing messages.", min(r.opts.Top, 5)),
		Columns: []string{"Receiver", "Our domain", "Reports", "Messages", "Pass", "Fail", "Failing sources"}}
	for _, d := range rc.DMARC {
		var srcs []string
		for i, s := range d.Failing {
			if i == min(r.opts.Top, 5) {
				break
			}
			srcs = append(srcs, fmt.Sprintf("%s (%d)", s.IP, s.Messages))
		}
		dmarc.Rows = append(dmarc.Rows, []string{d.Receiver, d.Domain, fmt.Sprint(d.Reports), fmt.Sprint(d.Messages),
			fmt.Sprint(d.Pass), fmt.Sprint(d.Fail), strings.Join(srcs, ", ")})
	}
	tls := Table{ID: "receivers_tls", Title: "How receivers see your mail: TLS",
		Note:    "From the SMTP TLS reports senders sent about their sessions to our servers (RFC 8460).",
		Columns: []string{"Reporter", "Our domain", "Reports", "Sessions OK", "Sessions failed", "Failure types"}}
	for _, d := range rc.TLS {
		var types []string
		for _, f := range d.Failures {
			types = append(types, fmt.Sprintf("%s %d", f.Type, f.Sessions))
		}
		tls.Rows = append(tls.Rows, []string{d.Receiver, d.Domain, fmt.Sprint(d.Reports), fmt.Sprint(d.Successful),
			fmt.Sprint(d.Failed), strings.Join(types, ", ")})
	}
	if len(dmarc.Rows) == 0 {
		dmarc.NoData = "No data: no DMARC aggregate report about our domains covers this period " +
			"(snowrain ingest-reports reads the ones receivers mail to our rua= addresses)."
	}
	if len(tls.Rows) == 0 {
		tls.NoData = "No data: no SMTP TLS report about our domains covers this period " +
			"(snowrain ingest-reports reads the ones senders mail to our _smtp._tls rua= addresses)."
	}
	return []Table{dmarc, tls}
}
