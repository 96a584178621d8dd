package measure

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/snowrain/snowrain/measure/maillog"
)

// logLines feeds MTA log lines to a Parser and, beside it, to a
// TLSTracker, keeping each delivery's TLS outcome in step with the
// deliveries read.
type logLines struct {
	tls  *maillog.TLSTracker
	outs []*maillog.TLSOutcome
}

// feed returns the deliveries the line completes (a Sendmail line names
// several recipients of one session) and appends their outcome (nil for
// deliveries without an SMTP session) to outs, one per delivery.
func (ll *logLines) feed(p *maillog.Parser, line string) []*maillog.Delivery {
	if ll.tls == nil {
		ll.tls = maillog.NewTLSTracker()
		ll.tls.Loc, ll.tls.Now = p.Loc, p.Now
	}
	ds, _ := p.Feed(line)
	var first *maillog.Delivery
	if len(ds) > 0 {
		first = ds[0]
	}
	o, ok := ll.tls.Feed(line, first)
	for range ds {
		if ok {
			ll.outs = append(ll.outs, &o)
		} else {
			ll.outs = append(ll.outs, nil)
		}
	}
	return ds
}

// LogReader reads log lines into deliveries with their TLS outcomes, for
// followers outside this package (the journal).
type LogReader struct {
	Parser *maillog.Parser
	lines  logLines
	batch  []*maillog.Delivery
}

// Feed reads one line and reports whether it completed a delivery.
func (lr *LogReader) Feed(line string) bool {
	ds := lr.lines.feed(lr.Parser, line)
	lr.batch = append(lr.batch, ds...)
	return len(ds) > 0
}

// Pending is how many deliveries await Flush.
func (lr *LogReader) Pending() int { return len(lr.batch) }

// Flush writes the deliveries read so far with pos (nil: none).
func (lr *LogReader) Flush(ctx context.Context, s *Store, pos *LogPosition) error {
	if len(lr.batch) == 0 {
		return nil
	}
	err := s.RecordDeliveriesTLS(ctx, lr.batch, lr.lines.outs, pos)
	lr.batch, lr.lines.outs = lr.batch[:0], lr.lines.outs[:0]
	return err
}

const insertDeliveryTLS = `INSERT INTO delivery_tls (delivery_id, session, result, detail) VALUES (?, ?, ?, ?)`

func recordOutcome(ctx context.Context, st *sql.Stmt, res sql.Result, o *maillog.TLSOutcome) error {
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("measure: delivery tls: %w", err)
	}
	if _, err := st.ExecContext(ctx, id, o.Session, string(o.Result), nullable(o.Reason)); err != nil {
		return fmt.Errorf("measure: delivery tls: %w", err)
	}
	return nil
}
