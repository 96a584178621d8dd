package feedback

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/resolver"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The known store's day.
var (
	fixtureDay = DayOf(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	at         = func(h, m int) time.Time { return time.Date(2026, 11, 30, h, m, 0, 0, time.UTC) }
)

const (
	recOrg = "v=DMARC1;p=reject;sp=quarantine;adkim=s;rua=mailto:dmarc@example.org;"
	recPct = "v=DMARC1;p=reject;pct=50;rua=mailto:dmarc@example.org;fo=1;"
	recNet = "v=DMARC1;p=none;rua=mailto:agg@reports.example!10m,mailto:x@example.net;"
)

// inbound is a stored inbound message of the known store.
func inbound(t time.Time, ip, mailFrom, from, spf, spfDomain string, spfAligned bool, sigs []measure.Signature,
	dkimAligned bool, result, policy, disposition, recDomain, rec, action string) *measure.Message {
	return &measure.Message{ConnUID: "c", Received: t, Direction: "inbound", ClientIP: ip, MailFromDomain: mailFrom,
		FromDomain: from, SPFResult: auth.SPFStatus(spf), SPFDomain: spfDomain, SPFAligned: spfAligned, Signatures: sigs,
		DKIMAligned: dkimAligned, DMARCResult: auth.DMARCStatus(result), DMARCPolicy: auth.DMARCPolicy(policy),
		DMARCDisposition: auth.DMARCPolicy(disposition), DMARCRecord: recDomain, DMARCPublished: rec,
		Action: measure.Action(action)}
}

var pass = []measure.Signature{{Domain: "example.org", Selector: "s1", Algorithm: "rsa-sha256", Result: "pass"}}

// knownMessages are the inbound mail of the known store.
func knownMessages() []*measure.Message {
	var ms []*measure.Message
	for i := 0; i < 3; i++ { // aligned, three times from one source: one record, count 3
		ms = append(ms, inbound(at(1, i), "192.0.2.1", "example.org", "example.org", "pass", "example.org", true, pass, true,
			"pass", "reject", "none", "example.org", recOrg, "accept"))
	}
	ms = append(ms,
		// A forgery: reject asked, not enforced here (monitoring).
		inbound(at(2, 0), "203.0.113.9", "forger.example", "example.org", "softfail", "forger.example", false, nil, false,
			"fail", "reject", "reject", "example.org", recOrg, "accept"),
		// The same, enforced by an operator who turned it on.
		inbound(at(2, 5), "203.0.113.9", "forger.example", "example.org", "softfail", "forger.example", false, nil, false,
			"fail", "reject", "reject", "example.org", recOrg, "reject"),
		// pct=50 sampled this one out: quarantine instead of reject.
		inbound(at(3, 0), "2001:db8::25", "", "example.org", "none", "mx.forger.example", false,
			[]measure.Signature{{Domain: "example.org", Selector: "s1", Result: "fail", Class: "body_hash"}}, false,
			"fail", "reject", "quarantine", "example.org", recPct, "accept"),
		// A subdomain's mail under the organizational domain's record.
		inbound(at(4, 0), "192.0.2.2", "bounces.example.org", "sub.example.org", "pass", "bounces.example.org", false,
			[]measure.Signature{{Domain: "example.org", Selector: "s2", Result: "pass"}, {Domain: "esp.example", Selector: "k", Result: "pass"}}, false,
			"fail", "quarantine", "quarantine", "example.org", recOrg, "quarantine"),
		inbound(at(5, 0), "198.51.100.7", "example.net", "example.net", "pass", "example.net", true, nil, false,
			"pass", "none", "none", "example.net", recNet, "accept"),
		// Not reported: no DMARC record, another day, outbound, no rua.
		inbound(at(6, 0), "192.0.2.3", "none.example", "none.example", "pass", "none.example", false, nil, false,
			"none", "absent", "none", "", "", "accept"),
		inbound(at(6, 0).AddDate(0, 0, 1), "192.0.2.1", "example.org", "example.org", "pass", "example.org", true, pass, true,
			"pass", "reject", "none", "example.org", recOrg, "accept"),
		inbound(at(6, 1), "192.0.2.4", "norua.example", "norua.example", "pass", "norua.example", true, nil, false,
			"pass", "none", "none", "norua.example", "v=DMARC1;p=none;", "accept"),
	)
	out := inbound(at(7, 0), "127.0.0.1", "example.org", "example.org", "pass", "example.org", true, pass, true,
		"pass", "reject", "none", "example.org", recOrg, "accept")
	out.Direction = "outbound"
	return append(ms, out)
}

// knownStore builds the store: the messages above through the writer;
// the deliveries of testdata/known.log through the log ingest (parser and
// TLS tracker); the policy engine's decisions and MTA-STS cache as
// policy/ records them.
func knownStore(t *testing.T, dsn string) *measure.Store {
	t.Helper()
	ctx := context.Background()
	s, err := measure.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w := measure.NewWriter(s, measure.WriterConfig{})
	for _, m := range knownMessages() {
		w.Enqueue(m)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/known.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := maillog.NewParser()
	p.Loc, p.Now = time.UTC, func() time.Time { return fixtureDay.End }
	if _, err := s.IngestReader(ctx, f, p); err != nil {
		t.Fatal(err)
	}
	day := fixtureDay.Begin.Unix()
	for _, d := range []struct {
		at                    int64
		domain, source, error string
	}{
		{day + 36000, "sts-ok.example", "mta-sts", ""},
		{day + 36000, "sts-untrusted.example", "mta-sts", ""},
		{day + 36000, "sts-expired.example", "mta-sts", ""},
		{day + 36000, "sts-mismatch.example", "mta-sts", ""},
		{day + 36000, "sts-notls.example", "mta-sts", ""},
		{day + 36000, "sts-testing.example", "none", ""},
		{day + 36000, "sts-testing-mx.example", "none", ""},
		{day + 36000, "dane-ok.example", "dane", ""},
		{day + 36000, "dane-bad.example", "dane", ""},
		{day + 36000, "sts-fetch.example", "error", "sts_fetch: mta-sts: policy fetch failed: HTTP 404"},
		{day + 36000, "plain.example", "none", ""},
		{day + 36000, "failtls.example", "mta-sts", ""},
		{day + 36000, "multi.example", "none", ""},
	} {
		if _, err := s.DB.Exec(`INSERT INTO policy_decisions (decided_at, domain, source, answer, latency_us, error)
			VALUES (?, ?, ?, 'x', 1, ?)`, d.at, d.domain, d.source, d.error); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []struct{ domain, mode string }{
		{"sts-ok.example", "enforce"}, {"sts-untrusted.example", "enforce"}, {"sts-expired.example", "enforce"},
		{"sts-mismatch.example", "enforce"}, {"sts-notls.example", "enforce"}, {"sts-testing.example", "testing"},
		{"failtls.example", "enforce"}, {"sts-testing-mx.example", "testing"},
	} {
		text := "version: STSv1\nmode: " + p.mode + "\nmx: mx." + p.domain + "\nmax_age: 86400\n"
		if _, err := s.DB.Exec(`INSERT INTO mta_sts_policies VALUES (?, '1', ?, ?, 86400, ?, ?, ?)`,
			p.domain, p.mode, "mx."+p.domain, day, day+86400, text); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// knownDNS publishes the rua of each receiver and the TLSA records, and
// extra.
func knownDNS(t *testing.T, extra ...string) resolver.Resolver {
	var zone strings.Builder
	for _, e := range extra {
		zone.WriteString(e + "\n")
	}
	for _, d := range []string{"sts-ok", "sts-untrusted", "sts-expired", "sts-mismatch", "sts-notls", "sts-testing",
		"sts-testing-mx", "dane-ok", "dane-bad", "sts-fetch", "plain", "failtls", "multi"} {
		zone.WriteString("_smtp._tls." + d + ".example. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@reports.example\"\n")
	}
	zone.WriteString("_25._tcp.mx.dane-ok.example. TLSA 3 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d\n")
	zone.WriteString("_25._tcp.mx.dane-bad.example. TLSA 3 1 1 0000000000000000000000000000000000000000000000000000000000000000\n")
	zone.WriteString("example.net._report._dmarc.reports.example. TXT \"v=DMARC1\"\n")
	srv := dnstest.Start(t, zone.String())
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func knownConfig(t *testing.T, extraDNS ...string) Config {
	return Config{OrgName: "mx.ours.example", Submitter: "mx.ours.example", From: "reports@ours.example",
		Contact: "postmaster@ours.example", SendingIP: "192.0.2.250", Resolver: knownDNS(t, extraDNS...),
		Now: func() time.Time { return fixtureDay.End.Add(time.Hour) }}
}
