package feedback

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/snowrain/snowrain/dmarcrpt"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/tlsrpt"
)

// Ingested is the fate of one report, or of one input that held none.
type Ingested struct {
	Source   string `json:"source"`         // file, file#message for mbox, plus the attachment
	Kind     string `json:"kind,omitempty"` // dmarc or tlsrpt
	Org      string `json:"org,omitempty"`  // the reporter
	ReportID string `json:"report_id,omitempty"`
	Domain   string `json:"domain,omitempty"` // our domain it is about
	Status   string `json:"status"`           // stored, duplicate, refused
	Class    string `json:"class,omitempty"`  // why refused (Class)
	Error    string `json:"error,omitempty"`
}

// Statuses of Ingested.
const (
	IngestStored    = "stored"
	IngestDuplicate = "duplicate"
	IngestRefused   = "refused"
)

// Ingester reads reports into the store.
type Ingester struct {
	Store *measure.Store
	Now   func() time.Time
}

// Ingest reads each path: a Maildir (cur/ and new/), an mbox, a single
// message (.eml), or a raw report (xml, xml.gz, zip, json, json.gz).
func (in *Ingester) Ingest(ctx context.Context, paths ...string) ([]Ingested, error) {
	var out []Ingested
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return out, err
		}
		if st.IsDir() {
			files, err := maildirFiles(p)
			if err != nil {
				return out, err
			}
			for _, f := range files {
				res, err := in.file(ctx, f)
				out = append(out, res...)
				if err != nil {
					return out, err
				}
			}
			continue
		}
		res, err := in.file(ctx, p)
		out = append(out, res...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// maildirFiles lists a Maildir's messages (new/ and cur/, not tmp/), or
// a directory's files when it is not one.
func maildirFiles(dir string) ([]string, error) {
	var out []string
	subs := []string{"new", "cur"}
	if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
		subs = []string{""}
	}
	for _, sub := range subs {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				out = append(out, filepath.Join(dir, sub, e.Name()))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// file reads one file, bounded: what it is decides how.
func (in *Ingester) file(ctx context.Context, path string) ([]Ingested, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(8)
	switch {
	case bytes.HasPrefix(head, []byte("From ")):
		return in.mbox(ctx, path, br)
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}), bytes.HasPrefix(head, []byte("PK\x03\x04")),
		bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("<")), bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("{")),
		bytes.HasPrefix(head, []byte("\xef\xbb\xbf")):
		data, err := readBounded(br, MaxMessage)
		if err != nil {
			return []Ingested{refused(path, err)}, nil
		}
		docs, err := ExtractPayload(filepath.Base(path), data)
		return in.store(ctx, path, Found{Docs: docs, Refused: errs(err)})
	}
	data, err := readBounded(br, MaxMessage)
	if err != nil {
		return []Ingested{refused(path, err)}, nil
	}
	return in.message(ctx, path, data)
}

func errs(err error) []error {
	if err == nil {
		return nil
	}
	return []error{err}
}

func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

func (in *Ingester) message(ctx context.Context, source string, msg []byte) ([]Ingested, error) {
	found, err := ExtractMessage(msg)
	if err != nil {
		return []Ingested{refused(source, err)}, nil
	}
	return in.store(ctx, source, found)
}

// mbox splits an mbox at its "From " lines (mboxrd: ">From " unquoted),
// each message bounded, each line bounded.
func (in *Ingester) mbox(ctx context.Context, path string, br *bufio.Reader) ([]Ingested, error) {
	var out []Ingested
	var msg bytes.Buffer
	n, tooBig := 0, false
	flush := func() error {
		if n == 0 {
			return nil
		}
		src := fmt.Sprintf("%s#%d", path, n)
		if tooBig {
			out = append(out, refused(src, fmt.Errorf("%w: message over %d bytes", ErrTooLarge, MaxMessage)))
			return nil
		}
		res, err := in.message(ctx, src, msg.Bytes())
		out = append(out, res...)
		return err
	}
	for {
		line, err := readLine(br, 1<<20)
		if len(line) > 0 || err == nil {
			switch {
			case bytes.HasPrefix(line, []byte("From ")):
				if ferr := flush(); ferr != nil {
					return out, ferr
				}
				n++
				msg.Reset()
				tooBig = false
			case !tooBig:
				if q := bytes.TrimLeft(line, ">"); len(q) < len(line) && bytes.HasPrefix(q, []byte("From ")) {
					line = line[1:]
				}
				if msg.Len()+len(line) > MaxMessage || errors.Is(err, ErrTooLarge) {
					tooBig = true
					msg.Reset()
				} else {
					msg.Write(line)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return out, flush()
		}
		if err != nil && !errors.Is(err, ErrTooLarge) {
			return out, err
		}
	}
}

// readLine reads one line with its end; a longer one is consumed and
// reported as ErrTooLarge.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) <= limit {
			line = append(line, chunk...)
		} else {
			line = nil
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == nil {
				return nil, fmt.Errorf("%w: line over %d bytes", ErrTooLarge, limit)
			}
			return nil, err
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

func refused(source string, err error) Ingested {
	return Ingested{Source: source, Status: IngestRefused, Class: Class(err), Error: err.Error()}
}

// store writes the documents found, each once: a report already stored
// (same kind, reporter and report ID) is a duplicate.
func (in *Ingester) store(ctx context.Context, source string, f Found) ([]Ingested, error) {
	var out []Ingested
	for _, err := range f.Refused {
		out = append(out, refused(source, err))
	}
	for _, d := range f.Docs {
		src := source
		if d.Name != "" && !strings.HasSuffix(source, d.Name) {
			src += ":" + safeName(d.Name)
		}
		var res Ingested
		var err error
		switch {
		case d.DMARC != nil:
			res, err = in.storeDMARC(ctx, d.DMARC)
		case d.TLS != nil:
			res, err = in.storeTLS(ctx, d.TLS)
		}
		if err != nil {
			return out, err
		}
		res.Source = src
		out = append(out, res)
	}
	return out, nil
}

func (in *Ingester) now() int64 {
	if in.Now != nil {
		return in.Now().Unix()
	}
	return time.Now().Unix()
}

func (in *Ingester) storeDMARC(ctx context.Context, f *dmarcrpt.Feedback) (Ingested, error) {
	m := f.Metadata
	res := Ingested{Kind: KindDMARC, Org: clean(m.OrgName), ReportID: clean(m.ReportID), Domain: cleanDomain(f.Policy.Domain)}
	tx, err := in.Store.DB.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer tx.Rollback()
	id, dup, err := insertReport(ctx, tx, KindDMARC, res.Org, res.ReportID, clean(m.Email), res.Domain,
		m.DateRange.Begin, m.DateRange.End, in.now())
	if err != nil || dup {
		res.Status = IngestDuplicate
		return res, err
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO received_dmarc_rows (report, source_ip, count, disposition,
		dkim, spf, header_from, envelope_from, dkim_results, spf_results) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return res, err
	}
	defer st.Close()
	for _, r := range f.Records {
		var dk, sp []string
		for _, d := range r.AuthResults.DKIM {
			dk = append(dk, clean(d.Domain)+":"+clean(d.Result))
		}
		for _, s := range r.AuthResults.SPF {
			sp = append(sp, clean(s.Domain)+":"+clean(s.Result))
		}
		pe := r.Row.PolicyEvaluated
		if _, err := st.ExecContext(ctx, id, clean(r.Row.SourceIP), r.Row.Count, clean(string(pe.Disposition)),
			clean(string(pe.DKIM)), clean(string(pe.SPF)), cleanDomain(r.Identifiers.HeaderFrom),
			cleanDomain(r.Identifiers.EnvelopeFrom), strings.Join(dk, " "), strings.Join(sp, " ")); err != nil {
			return res, err
		}
	}
	res.Status = IngestStored
	return res, tx.Commit()
}

func (in *Ingester) storeTLS(ctx context.Context, r *tlsrpt.Report) (Ingested, error) {
	domain := ""
	for _, p := range r.Policies {
		if domain = cleanDomain(p.Policy.Domain); domain != "" {
			break
		}
	}
	res := Ingested{Kind: KindTLSRPT, Org: clean(r.OrganizationName), ReportID: clean(r.ReportID), Domain: domain}
	tx, err := in.Store.DB.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer tx.Rollback()
	id, dup, err := insertReport(ctx, tx, KindTLSRPT, res.Org, res.ReportID, clean(r.ContactInfo), domain,
		r.DateRange.Start.Unix(), r.DateRange.End.Unix(), in.now())
	if err != nil || dup {
		res.Status = IngestDuplicate
		return res, err
	}
	for i, p := range r.Policies {
		if _, err := tx.ExecContext(ctx, `INSERT INTO received_tls_policies (report, seq, policy_type, policy_domain,
			mx_host, successful, failed) VALUES (?, ?, ?, ?, ?, ?, ?)`, id, i, string(p.Policy.Type),
			cleanDomain(p.Policy.Domain), clean(strings.Join(p.Policy.MXHost, " ")), p.Summary.Successful, p.Summary.Failed); err != nil {
			return res, err
		}
		for _, fd := range p.FailureDetails {
			if _, err := tx.ExecContext(ctx, `INSERT INTO received_tls_failures (report, seq, result_type, sending_ip,
				receiving_mx, receiving_ip, count, reason_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, id, i,
				clean(string(fd.ResultType)), clean(fd.SendingMTAIP), cleanDomain(fd.ReceivingMXHostname),
				clean(fd.ReceivingIP), fd.FailedSessionCount, clean(fd.FailureReasonCode)); err != nil {
				return res, err
			}
		}
	}
	res.Status = IngestStored
	return res, tx.Commit()
}

// insertReport adds the report's row unless (kind, reporter, report ID)
// is there already.
func insertReport(ctx context.Context, tx *sql.Tx, kind, org, reportID, contact, domain string, begin, end, now int64) (int64, bool, error) {
	// The new row's id comes back with it (pgx has no LastInsertId); a
	// duplicate inserts no row and returns none.
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO received_reports (kind, org_name, report_id, contact, domain,
		begin_at, end_at, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (kind, org_name, report_id) DO NOTHING RETURNING id`, kind, org, reportID, contact, domain, begin, end, now).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("feedback: store report: %w", err)
	}
	return id, false, nil
}

// clean bounds and sanitises a peer's string before it is stored: it
// will be shown in reports and terminals.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	for len(s) > 255 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

func cleanDomain(s string) string {
	return strings.ToLower(strings.TrimSuffix(clean(s), "."))
}
