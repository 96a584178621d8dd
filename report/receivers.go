package report

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/snowrain/snowrain/measure"
)

// Receivers is "How receivers see your mail": what the DMARC aggregate
// reports (RFC 7489) and TLS reports (RFC 8460) that receivers sent about
// our domains say, for the reports whose period begins in the report's
// period (`snowrain ingest-reports` stores them).
type Receivers struct {
	DMARC []ReceiverDMARC
	TLS   []ReceiverTLS
}

// ReceiverDMARC is one receiver's view of one of our domains.
type ReceiverDMARC struct {
	Receiver, Domain string
	Reports          int64
	Messages         int64
	Pass, Fail       int64    // DMARC pass: an aligned DKIM or SPF pass
	Failing          []Source // sources of failing messages, most first
}

// Source is a sending address and its message count.
type Source struct {
	IP       string
	Messages int64
}

// ReceiverTLS is one reporter's TLS sessions to one of our domains, as it
// reported them (the sender's side of our inbound TLS).
type ReceiverTLS struct {
	Receiver, Domain   string
	Reports            int64
	Successful, Failed int64
	Failures           []FailureType // by result type, most first
}

// FailureType counts failed sessions of one RFC 8460 result type.
type FailureType struct {
	Type     string
	Sessions int64
}

// receivers reads the received reports of the period.
func receivers(ctx context.Context, s *measure.Store, p Period) (*Receivers, error) {
	var n int
	// A database older than the reports' tables (report opens it read-only,
	// without migrating) has nothing to show.
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'received_reports'`).Scan(&n); err != nil || n == 0 {
		return &Receivers{}, err
	}
	r := &Receivers{}
	from, to := p.Since.Unix(), p.Until.Unix()
	dm := map[[2]string]*ReceiverDMARC{}
	rows, err := s.DB.QueryContext(ctx, `SELECT rr.org_name, rr.domain, COUNT(DISTINCT rr.id), COALESCE(SUM(d.count), 0),
		COALESCE(SUM(CASE WHEN d.dkim = 'pass' OR d.spf = 'pass' THEN d.count END), 0)
		FROM received_reports rr LEFT JOIN received_dmarc_rows d ON d.report = rr.id
		WHERE rr.kind = 'dmarc' AND rr.begin_at >= ? AND rr.begin_at < ? GROUP BY 1, 2`, from, to)
	if err != nil {
		return nil, fmt.Errorf("report: receivers: %w", err)
	}
	for rows.Next() {
		var d ReceiverDMARC
		if err := rows.Scan(&d.Receiver, &d.Domain, &d.Reports, &d.Messages, &d.Pass); err != nil {
			rows.Close()
			return nil, fmt.Errorf("report: receivers: %w", err)
		}
		d.Fail = d.Messages - d.Pass
		dm[[2]string{d.Receiver, d.Domain}] = &d
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: receivers: %w", err)
	}
	rows, err = s.DB.QueryContext(ctx, `SELECT rr.org_name, rr.domain, d.source_ip, SUM(d.count)
		FROM received_reports rr JOIN received_dmarc_rows d ON d.report = rr.id
		WHERE rr.kind = 'dmarc' AND rr.begin_at >= ? AND rr.begin_at < ? AND d.dkim <> 'pass' AND d.spf <> 'pass'
		GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3`, from, to)
	if err != nil {
		return nil, fmt.Errorf("report: receivers: %w", err)
	}
	for rows.Next() {
		var org, domain string
		var src Source
		if err := rows.Scan(&org, &domain, &src.IP, &src.Messages); err != nil {
			rows.Close()
			return nil, fmt.Errorf("report: receivers: %w", err)
		}
		if d := dm[[2]string{org, domain}]; d != nil {
			d.Failing = append(d.Failing, src)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: receivers: %w", err)
	}
	for _, d := range dm {
		r.DMARC = append(r.DMARC, *d)
	}
	sort.Slice(r.DMARC, func(i, j int) bool {
		a, b := r.DMARC[i], r.DMARC[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		return a.Receiver < b.Receiver
	})

	tm := map[[2]string]*ReceiverTLS{}
	rows, err = s.DB.QueryContext(ctx, `SELECT rr.org_name, rr.domain, COUNT(DISTINCT rr.id),
		COALESCE(SUM(p.successful), 0), COALESCE(SUM(p.failed), 0)
		FROM received_reports rr LEFT JOIN received_tls_policies p ON p.report = rr.id
		WHERE rr.kind = 'tlsrpt' AND rr.begin_at >= ? AND rr.begin_at < ? GROUP BY 1, 2`, from, to)
	if err != nil {
		return nil, fmt.Errorf("report: receivers: %w", err)
	}
	for rows.Next() {
		var d ReceiverTLS
		if err := rows.Scan(&d.Receiver, &d.Domain, &d.Reports, &d.Successful, &d.Failed); err != nil {
			rows.Close()
			return nil, fmt.Errorf("report: receivers: %w", err)
		}
		tm[[2]string{d.Receiver, d.Domain}] = &d
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: receivers: %w", err)
	}
	rows, err = s.DB.QueryContext(ctx, `SELECT rr.org_name, rr.domain, f.result_type, SUM(f.count)
		FROM received_reports rr JOIN received_tls_failures f ON f.report = rr.id
		WHERE rr.kind = 'tlsrpt' AND rr.begin_at >= ? AND rr.begin_at < ? GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3`, from, to)
	if err != nil {
		return nil, fmt.Errorf("report: receivers: %w", err)
	}
	for rows.Next() {
		var org, domain string
		var f FailureType
		if err := rows.Scan(&org, &domain, &f.Type, &f.Sessions); err != nil {
			rows.Close()
			return nil, fmt.Errorf("report: receivers: %w", err)
		}
		if d := tm[[2]string{org, domain}]; d != nil {
			d.Failures = append(d.Failures, f)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: receivers: %w", err)
	}
	for _, d := range tm {
		r.TLS = append(r.TLS, *d)
	}
	sort.Slice(r.TLS, func(i, j int) bool {
		a, b := r.TLS[i], r.TLS[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		return a.Receiver < b.Receiver
	})
	return r, nil
}

// receiverTables renders the section: one table for DMARC, one for TLS.
func (r *Report) receiverTables() []Table {
	rc := r.Receivers
	if rc == nil {
		rc = &Receivers{}
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
