package feedback

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/snowrain/snowrain/dmarcrpt"
	"github.com/snowrain/snowrain/measure"
)

// Received is what the reports receivers sent about our domains say
// (`snowrain ingest-reports` stores them): the DMARC aggregate reports
// (RFC 7489) and TLS reports (RFC 8460) whose period begins in a period,
// by reporter and domain. The report's "How receivers see your mail"
// renders it. Reports are about domains, not the node that sent the mail:
// they are the whole fleet's.
type Received struct {
	DMARC []ReceivedDMARC
	TLS   []ReceivedTLS
}

// ReceivedDMARC is one receiver's view of one of our domains.
type ReceivedDMARC struct {
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

// ReceivedTLS is one reporter's TLS sessions to one of our domains, as it
// reported them (the sender's side of our inbound TLS).
type ReceivedTLS struct {
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

// ReceivedIn reads the received reports whose period begins in [since,
// until), by domain and reporter.
func ReceivedIn(ctx context.Context, st *measure.Store, since, until time.Time) (*Received, error) {
	// A store older than the reports' tables (a report opens it
	// read-only, without migrating) has nothing to show.
	if ok, err := st.HasTable(ctx, "received_reports"); err != nil || !ok {
		return &Received{}, err
	}
	r := &Received{}
	var err error
	if r.DMARC, err = receivedDMARC(ctx, st, since.Unix(), until.Unix()); err != nil {
		return nil, fmt.Errorf("feedback: received reports: %w", err)
	}
	if r.TLS, err = receivedTLS(ctx, st, since.Unix(), until.Unix()); err != nil {
		return nil, fmt.Errorf("feedback: received reports: %w", err)
	}
	sortReceived(r.DMARC, func(d ReceivedDMARC) (string, string) { return d.Domain, d.Receiver })
	sortReceived(r.TLS, func(d ReceivedTLS) (string, string) { return d.Domain, d.Receiver })
	return r, nil
}

type reporterDomain struct{ org, domain string }

// byReporter indexes rows by their receiver and domain.
func byReporter[T any](rows []T, key func(T) reporterDomain) map[reporterDomain]int {
	at := make(map[reporterDomain]int, len(rows))
	for i, r := range rows {
		at[key(r)] = i
	}
	return at
}

func receivedDMARC(ctx context.Context, st *measure.Store, from, to int64) ([]ReceivedDMARC, error) {
	out, err := measure.Rows(ctx, st.DB, `SELECT rr.org_name, rr.domain, COUNT(DISTINCT rr.id), COALESCE(SUM(d.count), 0),
		COALESCE(SUM(CASE WHEN d.dkim = ? OR d.spf = ? THEN d.count ELSE 0 END), 0)
		FROM received_reports rr LEFT JOIN received_dmarc_rows d ON d.report = rr.id
		WHERE rr.kind = ? AND rr.begin_at >= ? AND rr.begin_at < ? GROUP BY 1, 2 ORDER BY 2, 1`,
		[]any{string(dmarcrpt.Pass), string(dmarcrpt.Pass), KindDMARC, from, to}, func(r *sql.Rows) (ReceivedDMARC, error) {
			var d ReceivedDMARC
			err := r.Scan(&d.Receiver, &d.Domain, &d.Reports, &d.Messages, &d.Pass)
			d.Fail = d.Messages - d.Pass
			return d, err
		})
	if err != nil {
		return nil, err
	}
	at := byReporter(out, func(d ReceivedDMARC) reporterDomain { return reporterDomain{d.Receiver, d.Domain} })
	err = measure.Each(ctx, st.DB, `SELECT rr.org_name, rr.domain, d.source_ip, SUM(d.count)
		FROM received_reports rr JOIN received_dmarc_rows d ON d.report = rr.id
		WHERE rr.kind = ? AND rr.begin_at >= ? AND rr.begin_at < ? AND d.dkim <> ? AND d.spf <> ?
		GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3`, []any{KindDMARC, from, to, string(dmarcrpt.Pass), string(dmarcrpt.Pass)}, func(r *sql.Rows) error {
		var org, domain string
		var src Source
		if err := r.Scan(&org, &domain, &src.IP, &src.Messages); err != nil {
			return err
		}
		if i, ok := at[reporterDomain{org, domain}]; ok {
			out[i].Failing = append(out[i].Failing, src)
		}
		return nil
	})
	return out, err
}

func receivedTLS(ctx context.Context, st *measure.Store, from, to int64) ([]ReceivedTLS, error) {
	out, err := measure.Rows(ctx, st.DB, `SELECT rr.org_name, rr.domain, COUNT(DISTINCT rr.id),
		COALESCE(SUM(p.successful), 0), COALESCE(SUM(p.failed), 0)
		FROM received_reports rr LEFT JOIN received_tls_policies p ON p.report = rr.id
		WHERE rr.kind = ? AND rr.begin_at >= ? AND rr.begin_at < ? GROUP BY 1, 2 ORDER BY 2, 1`,
		[]any{KindTLSRPT, from, to}, func(r *sql.Rows) (ReceivedTLS, error) {
			var d ReceivedTLS
			err := r.Scan(&d.Receiver, &d.Domain, &d.Reports, &d.Successful, &d.Failed)
			return d, err
		})
	if err != nil {
		return nil, err
	}
	at := byReporter(out, func(d ReceivedTLS) reporterDomain { return reporterDomain{d.Receiver, d.Domain} })
	err = measure.Each(ctx, st.DB, `SELECT rr.org_name, rr.domain, f.result_type, SUM(f.count)
		FROM received_reports rr JOIN received_tls_failures f ON f.report = rr.id
		WHERE rr.kind = ? AND rr.begin_at >= ? AND rr.begin_at < ? GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3`,
		[]any{KindTLSRPT, from, to}, func(r *sql.Rows) error {
			var org, domain string
			var f FailureType
			if err := r.Scan(&org, &domain, &f.Type, &f.Sessions); err != nil {
				return err
			}
			if i, ok := at[reporterDomain{org, domain}]; ok {
				out[i].Failures = append(out[i].Failures, f)
			}
			return nil
		})
	return out, err
}

// sortReceived orders rows by domain, then reporter, as the report lists
// them (the queries' ORDER BY does; text sorts alike on both backends
// only under the C collation, so Go has the last word).
func sortReceived[T any](rows []T, key func(T) (string, string)) {
	slices.SortStableFunc(rows, func(a, b T) int {
		ad, ar := key(a)
		bd, br := key(b)
		return cmp.Or(cmp.Compare(ad, bd), cmp.Compare(ar, br))
	})
}
