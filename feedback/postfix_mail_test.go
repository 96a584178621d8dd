package feedback

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/reportschema"
	"github.com/snowrain/snowrain/measure"
)

// mailboxes of the receivers' Postfix, as virtual(8) Maildirs.
var mailboxes = map[string]string{
	"dmarc@example.org":      "example.org/dmarc/",
	"x@example.net":          "example.net/x/",
	"agg@reports.example":    "reports.example/agg/",
	"small@reports.example":  "reports.example/small/",
	"tlsrpt@reports.example": "reports.example/tlsrpt/",
	"agg@evil.example":       "evil.example/agg/",
}

// receiversPostfix is a real Postfix delivering the report domains' mail
// into Maildirs under its directory (virtual_mailbox_base).
func receiversPostfix(t *testing.T) (*postfixtest.Instance, string) {
	base, err := os.MkdirTemp("/var/tmp", "snowrain-maildirs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	var mapText strings.Builder
	for addr, box := range mailboxes {
		fmt.Fprintf(&mapText, "%s %s\n", addr, box)
	}
	mapFile := filepath.Join(base, "vmailbox")
	os.WriteFile(mapFile, []byte(mapText.String()), 0o644)
	boxes := filepath.Join(base, "mail")
	os.Mkdir(boxes, 0o755)
	if out, err := exec.Command("chown", "65534:65534", boxes).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	pf := postfixtest.Start(t, postfixtest.Options{Hostname: "mx.receivers.example", Main: map[string]string{
		"virtual_mailbox_domains": "example.org, example.net, reports.example, evil.example",
		"virtual_mailbox_base":    boxes,
		"virtual_mailbox_maps":    "texthash:" + mapFile,
		"virtual_uid_maps":        "static:65534",
		"virtual_gid_maps":        "static:65534",
		"virtual_transport":       "virtual",
	}})
	return pf, boxes
}

// maildir reads the messages delivered to a mailbox.
func maildir(t *testing.T, boxes, addr string) [][]byte {
	t.Helper()
	dir := filepath.Join(boxes, mailboxes[addr], "new")
	ents, _ := os.ReadDir(dir)
	var out [][]byte
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// attachment returns the message's report attachment: its headers and
// decoded bytes.
func attachment(t *testing.T, msg []byte) (*mail.Message, string, map[string]string, []byte) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return m, "", nil, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		ct := p.Header.Get("Content-Type")
		if strings.HasPrefix(ct, "text/plain") {
			continue
		}
		_, dp, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		return m, ct, dp, b
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReportsThroughPostfix sends the known store's reports through the
// local MTA's sendmail into a real Postfix that delivers each rua address
// to a Maildir, and reads what landed: the RFC's subjects, headers, file
// names and media types, documents that validate and equal the goldens.
// An external rua without the RFC 7489 7.1 record gets nothing; one whose
// !1k limit the report exceeds gets the 7.2.2 notice. Sending again sends
// nothing; reading the Maildirs back stores every report once.
func TestReportsThroughPostfix(t *testing.T) {
	pf, boxes := receiversPostfix(t)
	s := knownStore(t, filepath.Join(t.TempDir(), "known.db"))
	w := measure.NewWriter(s, measure.WriterConfig{})
	w.Enqueue(inbound(at(8, 0), "192.0.2.8", "example.com", "example.com", "pass", "example.com", true, nil, false,
		"pass", "none", "none", "example.com", "v=DMARC1;p=none;rua=mailto:agg@evil.example;", "accept"))
	w.Enqueue(inbound(at(8, 1), "192.0.2.9", "bigrua.example", "bigrua.example", "pass", "bigrua.example", true, nil, false,
		"pass", "none", "none", "bigrua.example", "v=DMARC1;p=none;rua=mailto:small@reports.example!1k;", "accept"))
	w.Close(context.Background())
	cfg := knownConfig(t, `bigrua.example._report._dmarc.reports.example. TXT "v=DMARC1;"`)
	cfg.Sendmail = []string{"/usr/sbin/sendmail", "-C", filepath.Join(pf.Dir, "etc")}
	sender := &Sender{Config: cfg, Store: s}
	ds, err := sender.Send(context.Background(), fixtureDay, KindDMARC, KindTLSRPT)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, d := range ds {
		status[d.Kind+" "+d.Domain+" "+d.Destination] = d.Status
		if d.Status != StatusSent {
			t.Logf("%s %s → %s: %s %s", d.Kind, d.Domain, d.Destination, d.Status, d.Reason)
		}
	}
	for k, v := range map[string]string{
		"dmarc example.org mailto:dmarc@example.org":        StatusSent,
		"dmarc example.net mailto:agg@reports.example":      StatusSent, // external, authorised by its TXT
		"dmarc example.net mailto:x@example.net":            StatusSent,
		"dmarc example.com mailto:agg@evil.example":         StatusRefused, // external, no TXT
		"dmarc bigrua.example mailto:small@reports.example": StatusTooBig,
	} {
		if status[k] != v {
			t.Errorf("%s: %q, want %q", k, status[k], v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := pf.WaitIdle(ctx); err != nil {
		t.Fatalf("%v\n%s", err, pf.Log())
	}

	// Aggregate reports.
	subject := regexp.MustCompile(`^Report Domain: (\S+) Submitter: mx\.ours\.example Report-ID: <(\S+@mx\.ours\.example)>$`)
	for addr, domain := range map[string]string{"dmarc@example.org": "example.org", "agg@reports.example": "example.net", "x@example.net": "example.net"} {
		msgs := maildir(t, boxes, addr)
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages\n%s", addr, len(msgs), pf.Log())
		}
		m, ct, dp, gz := attachment(t, msgs[0])
		if sm := subject.FindStringSubmatch(m.Header.Get("Subject")); sm == nil || sm[1] != domain {
			t.Errorf("%s: subject %q", addr, m.Header.Get("Subject"))
		}
		if m.Header.Get("From") != "reports@ours.example" || m.Header.Get("To") != addr {
			t.Errorf("%s: From %q To %q", addr, m.Header.Get("From"), m.Header.Get("To"))
		}
		wantName := fmt.Sprintf("mx.ours.example!%s!%d!%d.xml.gz", domain, fixtureDay.Begin.Unix(), fixtureDay.End.Unix()-1)
		if ct != "application/gzip" || dp["filename"] != wantName {
			t.Errorf("%s: attachment %s %q, want application/gzip %q", addr, ct, dp["filename"], wantName)
		}
		doc := gunzip(t, gz)
		if err := reportschema.DMARC(t, doc); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
		if golden, _ := os.ReadFile("testdata/dmarc-" + domain + ".xml"); !bytes.Equal(doc, golden) {
			t.Errorf("%s: report differs from the golden", addr)
		}
	}
	if n := len(maildir(t, boxes, "agg@evil.example")); n != 0 {
		t.Errorf("unauthorised external destination got %d messages", n)
	}
	if msgs := maildir(t, boxes, "small@reports.example"); len(msgs) != 1 {
		t.Errorf("size-limited destination: %d messages, want the notice", len(msgs))
	} else if _, ct, _, _ := attachment(t, msgs[0]); ct != "" || !bytes.Contains(msgs[0], []byte("limit of 1024 bytes")) {
		t.Errorf("size-limited destination got an attachment or no notice:\n%s", msgs[0])
	}

	// TLS reports.
	tlsMsgs := maildir(t, boxes, "tlsrpt@reports.example")
	if len(tlsMsgs) != 13 {
		t.Fatalf("%d TLS reports, want 13", len(tlsMsgs))
	}
	var domains []string
	for _, msg := range tlsMsgs {
		m, ct, dp, gz := attachment(t, msg)
		domain := m.Header.Get("TLS-Report-Domain")
		domains = append(domains, domain)
		mt, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
		if mt != "multipart/report" || params["report-type"] != "tlsrpt" {
			t.Errorf("%s: Content-Type %q", domain, m.Header.Get("Content-Type"))
		}
		if m.Header.Get("TLS-Report-Submitter") != "mx.ours.example" {
			t.Errorf("%s: TLS-Report-Submitter %q", domain, m.Header.Get("TLS-Report-Submitter"))
		}
		if sm := subject.FindStringSubmatch(m.Header.Get("Subject")); sm == nil || sm[1] != domain {
			t.Errorf("%s: subject %q", domain, m.Header.Get("Subject"))
		}
		wantName := fmt.Sprintf("mx.ours.example!%s!%d!%d.json.gz", domain, fixtureDay.Begin.Unix(), fixtureDay.End.Unix()-1)
		if ct != "application/tlsrpt+gzip" || dp["filename"] != wantName {
			t.Errorf("%s: attachment %s %q, want application/tlsrpt+gzip %q", domain, ct, dp["filename"], wantName)
		}
		doc := gunzip(t, gz)
		if err := reportschema.TLSRPT(doc); err != nil {
			t.Errorf("%s: %v", domain, err)
		}
		if golden, _ := os.ReadFile("testdata/tls-" + domain + ".json"); !bytes.Equal(doc, golden) {
			t.Errorf("%s: report differs from the golden", domain)
		}
	}
	sort.Strings(domains)
	t.Logf("TLS reports for %v", domains)

	// Again: nothing new goes out.
	again, err := sender.Send(context.Background(), fixtureDay, KindDMARC, KindTLSRPT)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range again {
		if d.Status == StatusSent || d.Status == StatusTooBig {
			t.Errorf("sent again: %+v", d)
		}
	}

	// What we sent, we read: each report stored once.
	in := &Ingester{Store: s}
	for round, wantStatus := range []string{IngestStored, IngestDuplicate} {
		res, err := in.Ingest(context.Background(), filepath.Join(boxes, "reports.example", "tlsrpt"),
			filepath.Join(boxes, "example.org", "dmarc"))
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 14 { // 13 TLS reports and example.org's aggregate report
			t.Errorf("round %d: %d results, want 14", round, len(res))
		}
		for _, r := range res {
			if r.Status != wantStatus {
				t.Errorf("round %d: %s: %s %s %s", round, r.Source, r.Status, r.Class, r.Error)
			}
		}
	}
}
