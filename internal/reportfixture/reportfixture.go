// Package reportfixture writes, for tests, a Maildir of the reports
// receivers send: DMARC aggregate reports (RFC 7489) as .xml.gz, .zip,
// plain .xml and a whole gzip body, TLS reports (RFC 8460) as
// application/tlsrpt+gzip and +json, duplicates, and hostile messages
// (compression bombs, too many zip entries, entity declarations,
// malformed MIME, an oversized message, a message without a report).
package reportfixture

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/dmarcrpt"
	"github.com/snowrain/snowrain/tlsrpt"
)

// Expect is what reading one Maildir file must give.
type Expect struct {
	Status string // stored, duplicate, refused
	Class  string // refusal class
	Kind   string // dmarc or tlsrpt, for reports
}

// Fixture is the Maildir written and what it holds.
type Fixture struct {
	Dir   string
	DMARC []*dmarcrpt.Feedback // the distinct reports in it
	TLS   []*tlsrpt.Report
	Files map[string]Expect // by file name in new/
}

// Week is the ISO week the reports cover (2026-W48, UTC).
const Week = "2026-W48"

var day = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

func row(ip string, n int64, dkim, spf dmarcrpt.Result, from string) dmarcrpt.Record {
	return dmarcrpt.Record{Row: dmarcrpt.Row{SourceIP: ip, Count: n, PolicyEvaluated: dmarcrpt.PolicyEvaluated{
		Disposition: dmarcrpt.DispositionNone, DKIM: dkim, SPF: spf}},
		Identifiers: dmarcrpt.Identifiers{HeaderFrom: from},
		AuthResults: dmarcrpt.AuthResults{SPF: []dmarcrpt.SPFResult{{Domain: from, Result: string(spf)}}}}
}

func feedback(org, id, domain string, d int, records ...dmarcrpt.Record) *dmarcrpt.Feedback {
	b := day.AddDate(0, 0, d)
	return &dmarcrpt.Feedback{Metadata: dmarcrpt.ReportMetadata{OrgName: org, Email: "noreply@" + strings.ToLower(strings.Fields(org)[0]) + ".example",
		ReportID: id, DateRange: dmarcrpt.DateRange{Begin: b.Unix(), End: b.Unix() + 86399}},
		Policy:  dmarcrpt.PolicyPublished{Domain: domain, P: dmarcrpt.DispositionQuarantine, SP: dmarcrpt.DispositionQuarantine, Pct: 100},
		Records: records}
}

func tlsReport(org, id string, d int, runs ...tlsrpt.PolicyRun) *tlsrpt.Report {
	b := day.AddDate(0, 0, d)
	return &tlsrpt.Report{OrganizationName: org, ContactInfo: "smtp-tls-reporting@" + strings.ToLower(strings.Fields(org)[0]) + ".example",
		ReportID: id, DateRange: tlsrpt.DateRange{Start: b, End: b.Add(24*time.Hour - time.Second)}, Policies: runs}
}

// Maildir writes the fixture into dir (made a Maildir: new/, cur/, tmp/).
func Maildir(t testing.TB, dir string) *Fixture {
	t.Helper()
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := &Fixture{Dir: dir, Files: map[string]Expect{}}
	google := feedback("google.com", "13657271389023476210", "our.example", 0,
		row("198.51.100.25", 12, dmarcrpt.Pass, dmarcrpt.Pass, "our.example"),
		row("203.0.113.9", 2, dmarcrpt.Fail, dmarcrpt.Fail, "our.example"))
	yahoo := feedback("Yahoo", "1764892800.591234", "our.example", 1,
		row("198.51.100.25", 5, dmarcrpt.Pass, dmarcrpt.Fail, "our.example"),
		row("203.0.113.77", 3, dmarcrpt.Fail, dmarcrpt.Fail, "our.example"))
	outlook := feedback("Enterprise Outlook", "4f1c8a1e0b2d4a6c9e3f5a7b9c1d3e5f", "sub.our.example", 2,
		row("198.51.100.26", 4, dmarcrpt.Fail, dmarcrpt.Pass, "sub.our.example"),
		row("192.0.2.66", 1, dmarcrpt.Fail, dmarcrpt.Fail, "sub.our.example"))
	fastmail := feedback("Fastmail Pty Ltd", "fm-2026-11-27-1", "our.example", 3,
		row("198.51.100.25", 7, dmarcrpt.Pass, dmarcrpt.Pass, "our.example"))
	f.DMARC = []*dmarcrpt.Feedback{google, yahoo, outlook, fastmail}
	gtls := tlsReport("Google Inc.", "2026-11-24T00:00:00Z_our.example", 0, tlsrpt.PolicyRun{
		Policy:  tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "our.example", String: []string{"version: STSv1", "mode: enforce", "mx: mx.our.example", "max_age: 604800"}, MXHost: []string{"mx.our.example"}},
		Summary: tlsrpt.Summary{Successful: 100, Failed: 3},
		FailureDetails: []tlsrpt.FailureDetail{
			{ResultType: tlsrpt.ResultCertificateExpired, SendingMTAIP: "209.85.220.41", ReceivingMXHostname: "mx.our.example", ReceivingIP: "192.0.2.25", FailedSessionCount: 2},
			{ResultType: tlsrpt.ResultSTARTTLSNotSupported, SendingMTAIP: "209.85.220.42", ReceivingMXHostname: "mx2.our.example", FailedSessionCount: 1}}})
	mtls := tlsReport("Microsoft Corporation", "133456789012345678+our.example", 1, tlsrpt.PolicyRun{
		Policy: tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: "our.example"}, Summary: tlsrpt.Summary{Successful: 50}})
	f.TLS = []*tlsrpt.Report{gtls, mtls}

	xml := func(fb *dmarcrpt.Feedback) []byte {
		b, err := fb.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	js := func(r *tlsrpt.Report) []byte {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	put := func(name string, msg []byte, e Expect) {
		if err := os.WriteFile(filepath.Join(dir, "new", name), msg, 0o644); err != nil {
			t.Fatal(err)
		}
		f.Files[name] = e
	}
	stored := func(kind string) Expect { return Expect{Status: "stored", Kind: kind} }
	refused := func(class string) Expect { return Expect{Status: "refused", Class: class} }

	// Each format and compression.
	put("1764000001.M1.google", Message("google.com", "multipart/mixed", Part{"application/gzip", "google.com!our.example!1.xml.gz", Gzip(xml(google))}), stored("dmarc"))
	put("1764000002.M2.yahoo", Message("yahoo.com", "multipart/mixed", Part{"application/zip", "yahoo.com!our.example!2.zip", Zip(t, map[string][]byte{"yahoo.com!our.example!2.xml": xml(yahoo)})}), stored("dmarc"))
	put("1764000003.M3.outlook", Message("outlook.com", "multipart/mixed", Part{"text/xml", "enterprise.protection.outlook.com!sub.our.example!3.xml", xml(outlook)}), stored("dmarc"))
	put("1764000004.M4.fastmail", Message("fastmail.com", "application/gzip; name=\"fastmail.com!our.example!4.xml.gz\"", Part{Data: Gzip(xml(fastmail))}), stored("dmarc"))
	put("1764000005.M5.googletls", Message("google.com", `multipart/report; report-type="tlsrpt"`, Part{"application/tlsrpt+gzip", "google.com!our.example!5.json.gz", Gzip(js(gtls))}), stored("tlsrpt"))
	put("1764000006.M6.mstls", Message("microsoft.com", `multipart/report; report-type="tlsrpt"`, Part{"application/tlsrpt+json", "microsoft.com!our.example!6.json", js(mtls)}), stored("tlsrpt"))
	// The same reports again.
	put("1764000007.M7.google-again", Message("google.com", "multipart/mixed", Part{"application/gzip", "google.com!our.example!1.xml.gz", Gzip(xml(google))}), Expect{Status: "duplicate", Kind: "dmarc"})
	put("1764000008.M8.googletls-again", Message("google.com", `multipart/report; report-type="tlsrpt"`, Part{"application/tlsrpt+gzip", "x.json.gz", Gzip(js(gtls))}), Expect{Status: "duplicate", Kind: "tlsrpt"})
	// Hostile.
	put("1764000009.M9.zipbomb", Message("bomb.example", "multipart/mixed", Part{"application/zip", "bomb.zip", Zip(t, map[string][]byte{"r.xml": make([]byte, 64<<20)})}), refused("compression_bomb"))
	put("1764000010.M10.gzbomb", Message("bomb.example", "multipart/mixed", Part{"application/gzip", "bomb.xml.gz", Gzip(make([]byte, 40<<20))}), refused("compression_bomb"))
	entries := map[string][]byte{}
	for i := 0; i < 20; i++ {
		entries[fmt.Sprintf("r%d.xml", i)] = xml(google)
	}
	put("1764000011.M11.entries", Message("bomb.example", "multipart/mixed", Part{"application/zip", "many.zip", Zip(t, entries)}), refused("too_many_entries"))
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
		`<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><feedback><report_metadata><org_name>&lol2;</org_name></report_metadata></feedback>`
	put("1764000012.M12.laughs", Message("laughs.example", "multipart/mixed", Part{"text/xml", "laughs.xml", []byte(laughs)}), refused("xml_entities"))
	put("1764000013.M13.badmime", []byte("From: a@bad.example\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n"), refused("malformed_mime"))
	put("1764000014.M14.badbase64", []byte("From: a@bad.example\r\nMIME-Version: 1.0\r\nContent-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!! not base64 ****\r\n"), refused("malformed_mime"))
	huge := append([]byte("From: a@big.example\r\nSubject: big\r\n\r\n"), bytes.Repeat([]byte("x\r\n"), 12<<20)...)
	put("1764000015.M15.huge", huge, refused("too_large"))
	put("1764000016.M16.text", []byte("From: a@friend.example\r\nSubject: hello\r\n\r\nNo report here.\r\n"), refused("no_report"))
	return f
}

// Part is one MIME part of a Message.
type Part struct {
	Type, Name string
	Data       []byte
}

// Message writes a report message: multipart with a text part and p, or
// (p.Type empty) a single part of type ct whose body is p.
func Message(from, ct string, p Part) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <noreply@%s>\r\nFrom: noreply@%s\r\nTo: dmarc@our.example\r\nSubject: Report Domain: our.example Submitter: %s\r\nMIME-Version: 1.0\r\n", from, from, from)
	enc := func(data []byte) {
		s := base64.StdEncoding.EncodeToString(data)
		for len(s) > 76 {
			b.WriteString(s[:76] + "\r\n")
			s = s[76:]
		}
		b.WriteString(s + "\r\n")
	}
	if p.Type == "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Transfer-Encoding: base64\r\n\r\n", ct)
		enc(p.Data)
		return b.Bytes()
	}
	fmt.Fprintf(&b, "Content-Type: %s; boundary=\"b0\"\r\n\r\n--b0\r\nContent-Type: text/plain\r\n\r\nA report.\r\n", ct)
	fmt.Fprintf(&b, "--b0\r\nContent-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", p.Type, p.Name, p.Name)
	enc(p.Data)
	b.WriteString("--b0--\r\n")
	return b.Bytes()
}

// Gzip compresses b, as report senders do.
func Gzip(b []byte) []byte { return dmarcrpt.Gzip(b) }

// Zip archives files (deflated).
func Zip(t testing.TB, files map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// DMARCRow is what the weekly report's DMARC table must say for one
// receiver and domain.
type DMARCRow struct {
	Receiver, Domain              string
	Reports, Messages, Pass, Fail int64
	Failing                       map[string]int64
}

// TLSRow is what its TLS table must say.
type TLSRow struct {
	Receiver, Domain   string
	Reports            int64
	Successful, Failed int64
	Types              map[string]int64
}

// Expected sums the fixture's distinct reports as the weekly report's
// section must: DMARC pass is an aligned DKIM or SPF pass.
func (f *Fixture) Expected() (map[[2]string]*DMARCRow, map[[2]string]*TLSRow) {
	dm := map[[2]string]*DMARCRow{}
	for _, fb := range f.DMARC {
		k := [2]string{fb.Metadata.OrgName, fb.Policy.Domain}
		r := dm[k]
		if r == nil {
			r = &DMARCRow{Receiver: k[0], Domain: k[1], Failing: map[string]int64{}}
			dm[k] = r
		}
		r.Reports++
		for _, rec := range fb.Records {
			pe := rec.Row.PolicyEvaluated
			r.Messages += rec.Row.Count
			if pe.DKIM == dmarcrpt.Pass || pe.SPF == dmarcrpt.Pass {
				r.Pass += rec.Row.Count
			} else {
				r.Fail += rec.Row.Count
				r.Failing[rec.Row.SourceIP] += rec.Row.Count
			}
		}
	}
	tm := map[[2]string]*TLSRow{}
	for _, rep := range f.TLS {
		k := [2]string{rep.OrganizationName, rep.Policies[0].Policy.Domain}
		r := tm[k]
		if r == nil {
			r = &TLSRow{Receiver: k[0], Domain: k[1], Types: map[string]int64{}}
			tm[k] = r
		}
		r.Reports++
		for _, p := range rep.Policies {
			r.Successful += p.Summary.Successful
			r.Failed += p.Summary.Failed
			for _, fd := range p.FailureDetails {
				r.Types[string(fd.ResultType)] += fd.FailedSessionCount
			}
		}
	}
	return dm, tm
}
