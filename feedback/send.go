package feedback

import (
	"bytes"
	"context"
	"crypto/tls"

	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/smtp"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/dmarcrpt"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/resolver"
)

// Kinds of report.
const (
	KindDMARC  = "dmarc"
	KindTLSRPT = "tlsrpt"
)

// Statuses of a destination.
const (
	StatusSent        = "sent"
	StatusDryRun      = "dry-run"
	StatusAlreadySent = "already-sent"
	StatusTooBig      = "too-big" // the RFC 7489 7.2.2 notice went instead
	StatusRefused     = "refused" // not a destination we send to (unauthorised, bad URI)
	StatusFailed      = "failed"  // tried and failed; tried again next run
)

// Delivery is what happened to one report at one destination.
type Delivery struct {
	Kind        string `json:"kind"`
	Domain      string `json:"domain"`
	ReportID    string `json:"report_id"`
	Destination string `json:"destination"`
	Status      string `json:"status"`
	Reason      string `json:"reason,omitempty"`
	Bytes       int    `json:"bytes"`
	File        string `json:"file,omitempty"` // with a dry run: the message or document written
}

// Sender gathers a day's reports from the store and sends them.
type Sender struct {
	Config Config
	Store  *measure.Store
	// DryRun, when set, is a directory: documents and messages are
	// written there, nothing is sent or recorded.
	DryRun string
}

// Send gathers and sends the reports of day of the kinds asked for.
func (s *Sender) Send(ctx context.Context, day Day, kinds ...string) ([]Delivery, error) {
	s.Config.defaults()
	if s.DryRun != "" {
		if err := os.MkdirAll(s.DryRun, 0o755); err != nil {
			return nil, err
		}
	}
	var out []Delivery
	for _, k := range kinds {
		var ds []Delivery
		var err error
		switch k {
		case KindDMARC:
			ds, err = s.sendDMARC(ctx, day)
		case KindTLSRPT:
			ds, err = s.sendTLS(ctx, day)
		default:
			err = fmt.Errorf("feedback: unknown report kind %q", k)
		}
		out = append(out, ds...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (s *Sender) sendDMARC(ctx context.Context, day Day) ([]Delivery, error) {
	c := &s.Config
	reports, err := DMARCReports(ctx, s.Store, *c, day)
	if err != nil {
		return nil, err
	}
	list := make([]outgoing, 0, len(reports))
	for _, r := range reports {
		list = append(list, outgoing{base: Delivery{Kind: KindDMARC, Domain: r.Domain, ReportID: r.Feedback.Metadata.ReportID},
			notHost: "policy domain is not a host name", marshal: r.Feedback.Marshal,
			file: dmarcFilename(c.Submitter, r.Domain, day), rua: r.RUA,
			to: func(uri string, gz []byte, d Delivery) []Delivery { return s.dmarcTo(ctx, r, day, uri, gz, d) }})
	}
	return s.sendAll(list)
}

// outgoing is one report to send: its delivery record so far, the
// reason a domain that is no host name is refused with, its document and
// file name, its destinations and how to send to one.
type outgoing struct {
	base          Delivery
	notHost, file string
	marshal       func() ([]byte, error)
	rua           []string
	to            func(uri string, gz []byte, d Delivery) []Delivery
}

// sendAll prepares each report and sends it to each of its destinations.
func (s *Sender) sendAll(list []outgoing) ([]Delivery, error) {
	var out []Delivery
	for _, o := range list {
		gz, refused, err := s.prepare(o.base, o.notHost, o.marshal, o.file)
		if err != nil {
			return out, err
		}
		if refused != nil {
			out = append(out, *refused)
			continue
		}
		for _, uri := range o.rua {
			d := o.base
			d.Destination = uri
			out = append(out, o.to(uri, gz, d)...)
		}
	}
	return out, nil
}

// prepare readies one report for its destinations: refused (with
// notHost as the reason) when its domain is not a host name, else its
// document, gzipped, and in a dry run the document written as file
// (without the .gz) too.
func (s *Sender) prepare(base Delivery, notHost string, marshal func() ([]byte, error), file string) (gz []byte, refused *Delivery, err error) {
	if !validDomain(base.Domain) {
		base.Status, base.Reason = StatusRefused, notHost
		return nil, &base, nil
	}
	doc, err := marshal()
	if err != nil {
		return nil, nil, err
	}
	if s.DryRun != "" {
		if err := os.WriteFile(filepath.Join(s.DryRun, strings.TrimSuffix(file, ".gz")), doc, 0o644); err != nil {
			return nil, nil, err
		}
	}
	return dmarcrpt.Gzip(doc), nil, nil
}

// dmarcTo sends one aggregate report to one rua= URI: mailto: only
// (RFC 7489 defines no other), within the URI's size limit, and to a
// host outside the policy domain's organizational domain only when that
// host's DNS says it takes reports for the domain (7.1).
func (s *Sender) dmarcTo(ctx context.Context, r *DMARCReport, day Day, uri string, gz []byte, base Delivery) []Delivery {
	c := &s.Config
	d := base
	u, limit, err := parseRUA(uri)
	if err != nil {
		d.Status, d.Reason = StatusRefused, err.Error()
		return []Delivery{d}
	}
	addrs, err := c.authorise(ctx, r.Domain, u)
	if err != nil {
		d.Status, d.Reason = StatusRefused, err.Error()
		if errors.Is(err, errTemporary) {
			d.Status = StatusFailed
		}
		return []Delivery{d}
	}
	var out []Delivery
	for _, addr := range addrs {
		d := base
		d.Destination = "mailto:" + addr
		if orig, _ := mailAddress(u.Opaque); addr != orig {
			d.Reason = "destination replaced by " + r.Domain + "._report._dmarc record (RFC 7489 7.1)"
		}
		msg, err := c.compose(c.dmarcLetter(r, day, gz), addr, c.Now())
		if err == nil {
			d.Status = StatusSent
			if limit > 0 && int64(len(msg)) > limit {
				d.Status, d.Reason = StatusTooBig, fmt.Sprintf("%d bytes, over the limit of %d: notice sent instead", len(msg), limit)
				msg, err = c.compose(c.tooBigLetter(r, int64(len(msg)), limit), addr, c.Now())
			}
		}
		if err != nil {
			d.Status, d.Reason = StatusRefused, err.Error()
			out = append(out, d)
			continue
		}
		d.Bytes = len(msg)
		s.mail(ctx, KindDMARC, r.Domain, day, d.Destination, msg, &d)
		out = append(out, d)
	}
	return out
}

// mail sends msg to the mailto: destination, unless already sent or dry.
func (s *Sender) mail(ctx context.Context, kind, domain string, day Day, dest string, msg []byte, d *Delivery) {
	c := &s.Config
	if s.DryRun != "" {
		d.File = filepath.Join(s.DryRun, fmt.Sprintf("%s-%s-%s.eml", kind, domain, strings.TrimPrefix(dest, "mailto:")))
		if err := os.WriteFile(d.File, msg, 0o644); err != nil {
			d.Status, d.Reason = StatusFailed, err.Error()
			return
		}
		if d.Status == StatusSent {
			d.Status = StatusDryRun
		}
		return
	}
	if s.alreadySent(ctx, kind, domain, day, dest, d) {
		return
	}
	to := strings.TrimPrefix(dest, "mailto:")
	var err error
	if c.SMTPRelay != "" {
		err = c.smtpSend(ctx, to, msg)
	} else {
		err = c.sendmail(ctx, to, msg)
	}
	if err != nil {
		d.Status, d.Reason = StatusFailed, err.Error()
	}
	s.record(ctx, kind, domain, day, dest, d)
}

// sendmail hands msg to the local MTA: "-i" so a lone dot is no end,
// "-f" the envelope sender, "--" so no recipient is read as an option.
func (c *Config) sendmail(ctx context.Context, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	args := append(append([]string{}, c.Sendmail[1:]...), "-i", "-f", c.From, "--", to)
	cmd := exec.CommandContext(ctx, c.Sendmail[0], args...)
	cmd.Stdin = bytes.NewReader(msg)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", c.Sendmail[0], err, strings.TrimSpace(out.String()))
	}
	return nil
}

// smtpSend sends msg through the configured relay, with a deadline on
// the whole exchange.
func (c *Config) smtpSend(ctx context.Context, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", c.SMTPRelay)
	if err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(c.SMTPRelay)
	cl, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	defer cl.Close()
	if err := cl.Hello(c.Submitter); err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	if ok, _ := cl.Extension("STARTTLS"); ok {
		if err := cl.StartTLS(&tls.Config{ServerName: host, RootCAs: c.RootCAs}); err != nil {
			return fmt.Errorf("smtp relay: %w", err)
		}
	}
	if err := cl.Mail(c.From); err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	if err := cl.Rcpt(to); err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	w, err := cl.Data()
	if err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	return cl.Quit()
}

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

var errTemporary = errors.New("temporary DNS failure")

// parseRUA reads a dmarc-uri (RFC 7489 6.4): a URI and an optional
// "!" size with k, m, g or t units.
func parseRUA(uri string) (*url.URL, int64, error) {
	limit := int64(0)
	if i := strings.LastIndexByte(uri, '!'); i >= 0 {
		n, err := parseSize(uri[i+1:])
		if err != nil {
			return nil, 0, fmt.Errorf("rua %.80q: size: %v", uri, err)
		}
		uri, limit = uri[:i], n
	}
	u, err := url.Parse(strings.TrimSpace(uri))
	if err != nil {
		return nil, 0, fmt.Errorf("rua %.80q: %v", uri, err)
	}
	if !strings.EqualFold(u.Scheme, "mailto") {
		return nil, 0, fmt.Errorf("rua %.80q: only mailto: is defined for aggregate reports", uri)
	}
	if _, ok := mailAddress(u.Opaque); !ok {
		return nil, 0, fmt.Errorf("rua %.80q: not a usable address", uri)
	}
	return u, limit, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return 0, fmt.Errorf("bad size %.20q", s)
	}
	return n * mult, nil
}

// authorise applies RFC 7489 7.1: a rua host outside the policy domain's
// organizational domain must publish "<domain>._report._dmarc.<host>"
// TXT starting with v=DMARC1; a rua= there replaces the destination, if
// its URIs keep the same host. It returns the addresses to send to.
func (c *Config) authorise(ctx context.Context, domain string, u *url.URL) ([]string, error) {
	addr, _ := mailAddress(u.Opaque)
	host := strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
	if orgDomainOf(host) == orgDomainOf(domain) {
		return []string{addr}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.DNSTimeout)
	defer cancel()
	name := domain + "._report._dmarc." + host
	txts, err := c.Resolver.LookupTXT(ctx, name)
	switch {
	case resolver.IsNotFound(err):
		return nil, fmt.Errorf("unauthorised external destination: no TXT at %s (RFC 7489 7.1)", name)
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %v", errTemporary, name, err)
	}
	for _, t := range txts {
		tags := recordTags(t)
		if !strings.EqualFold(strings.TrimSpace(strings.SplitN(t, ";", 2)[0]), "v=DMARC1") &&
			!strings.EqualFold(tags["v"], "DMARC1") {
			continue
		}
		if tags["rua"] == "" {
			return []string{addr}, nil
		}
		var out []string
		for _, o := range strings.Split(tags["rua"], ",") {
			ou, _, err := parseRUA(strings.TrimSpace(o))
			if err != nil {
				continue
			}
			oa, _ := mailAddress(ou.Opaque)
			if strings.EqualFold(oa[strings.LastIndexByte(oa, '@')+1:], host) {
				out = append(out, oa)
			}
		}
		if len(out) == 0 {
			return []string{addr}, nil
		}
		return out, nil
	}
	return nil, fmt.Errorf("unauthorised external destination: no v=DMARC1 record at %s (RFC 7489 7.1)", name)
}

func (s *Sender) sendTLS(ctx context.Context, day Day) ([]Delivery, error) {
	c := &s.Config
	reports, err := TLSReports(ctx, s.Store, *c, day)
	if err != nil {
		return nil, err
	}
	list := make([]outgoing, 0, len(reports))
	for _, r := range reports {
		list = append(list, outgoing{base: Delivery{Kind: KindTLSRPT, Domain: r.Domain, ReportID: r.Report.ReportID},
			notHost: "domain is not a host name", marshal: r.Report.Marshal,
			file: tlsFilename(c.Submitter, r.Domain, day), rua: r.RUA,
			to: func(uri string, gz []byte, d Delivery) []Delivery {
				return []Delivery{s.tlsTo(ctx, r, day, uri, gz, d)}
			}})
	}
	return s.sendAll(list)
}

// tlsTo sends one TLS report to one rua= URI (RFC 8460 3): mailto: or
// https:.
func (s *Sender) tlsTo(ctx context.Context, r *TLSReport, day Day, uri string, gz []byte, d Delivery) Delivery {
	c := &s.Config
	u, _ := url.Parse(uri)
	switch strings.ToLower(u.Scheme) {
	case "mailto":
		addr, ok := mailAddress(u.Opaque)
		if !ok {
			d.Status, d.Reason = StatusRefused, "not a usable address"
			break
		}
		msg, err := c.compose(c.tlsLetter(r, day, gz), addr, c.Now())
		if err != nil {
			d.Status, d.Reason = StatusRefused, err.Error()
			break
		}
		d.Status, d.Bytes = StatusSent, len(msg)
		s.mail(ctx, KindTLSRPT, r.Domain, day, "mailto:"+addr, msg, &d)
	case "https":
		d.Bytes = len(gz)
		s.post(ctx, r.Domain, day, u, gz, &d)
	}
	return d
}

// post sends a TLS report by HTTPS POST (RFC 8460 5.4): no redirects
// followed, a deadline on the whole request, the answer read at most
// 64 KiB.
func (s *Sender) post(ctx context.Context, domain string, day Day, u *url.URL, gz []byte, d *Delivery) {
	c := &s.Config
	if s.DryRun != "" {
		d.Status = StatusDryRun
		return
	}
	if s.alreadySent(ctx, KindTLSRPT, domain, day, u.String(), d) {
		return
	}
	dial := c.Dial
	if dial == nil {
		dial = publicDialer().DialContext
	}
	client := &http.Client{Timeout: c.HTTPTimeout,
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: c.RootCAs},
			TLSHandshakeTimeout: c.HTTPTimeout, ResponseHeaderTimeout: c.HTTPTimeout, MaxResponseHeaderBytes: 16 << 10},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(gz))
	if err == nil {
		req.Header.Set("Content-Type", "application/tlsrpt+gzip")
		var resp *http.Response
		if resp, err = client.Do(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("HTTP %s", resp.Status)
			}
		}
	}
	d.Status = StatusSent
	if err != nil {
		d.Status, d.Reason = StatusFailed, err.Error()
	}
	s.record(ctx, KindTLSRPT, domain, day, u.String(), d)
}

// publicDialer connects only to global unicast addresses: report URIs
// come from other people's DNS and must not reach our own network.
func publicDialer() *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, Control: func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		a := ap.Addr().Unmap()
		if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			return fmt.Errorf("feedback: refusing to connect to non-public address %s", a)
		}
		return nil
	}}
}

// sent reports whether a report already went to dest.
func (s *Sender) sent(ctx context.Context, kind, domain string, day Day, dest string) (bool, error) {
	var n int
	err := s.Store.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM sent_reports WHERE kind = ? AND domain = ? AND begin_at = ?
		AND destination = ? AND status IN (?, ?)`, kind, domain, day.Begin.Unix(), dest, StatusSent, StatusTooBig).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sent reports: %w", err)
	}
	return n > 0, nil
}

// alreadySent sets d's status when the report went to dest already, or
// when the store cannot say: then it is not sent twice, and is tried
// again next run.
func (s *Sender) alreadySent(ctx context.Context, kind, domain string, day Day, dest string, d *Delivery) bool {
	sent, err := s.sent(ctx, kind, domain, day, dest)
	switch {
	case err != nil:
		d.Status, d.Reason = StatusFailed, err.Error()
	case sent:
		d.Status = StatusAlreadySent
	}
	return err != nil || sent
}

func (s *Sender) record(ctx context.Context, kind, domain string, day Day, dest string, d *Delivery) {
	if _, err := s.Store.DB.ExecContext(ctx, `INSERT INTO sent_reports (kind, domain, begin_at, end_at, report_id,
		destination, sent_at, status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (kind, domain, begin_at, destination) DO UPDATE SET sent_at = excluded.sent_at,
		status = excluded.status, error = excluded.error, report_id = excluded.report_id`,
		kind, domain, day.Begin.Unix(), day.End.Unix(), d.ReportID, dest, s.Config.Now().Unix(), d.Status, d.Reason); err != nil {
		s.Config.Log.Warn("feedback: recording a sent report", "err", err)
	}
}
