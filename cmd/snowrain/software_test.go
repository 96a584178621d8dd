package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/internal/postfixtest"
	"github.com/snowrain/snowrain/internal/sendmailtest"
	"github.com/snowrain/snowrain/internal/smtpsink"
	"github.com/snowrain/snowrain/internal/testca"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/report"
	"github.com/snowrain/snowrain/scanner"
)

// TestTable5Reports grabs real Postfix (named and hidden banner), real
// Sendmail and a bare sink as a domain scan and as a port-25 sweep would,
// stores the results as those runs do, and reads Table 5 from `snowrain
// report scan` and `report hosts`: software × STARTTLS × TLS version with
// the rule of each.
func TestTable5Reports(t *testing.T) {
	ca := testca.New(t)
	cert, key := ca.Issue(t, "mx", "mx.test.example")
	servers := []struct{ addr, label string }{
		{postfixtest.Start(t, postfixtest.Options{CertFile: cert, KeyFile: key}).Addr, "192.0.2.1"},
		{postfixtest.Start(t, postfixtest.Options{CertFile: cert, KeyFile: key,
			Main: map[string]string{"smtpd_banner": "$myhostname ESMTP"}}).Addr, "192.0.2.2"},
		{sendmailtest.Start(t, sendmailtest.Options{CertFile: cert, KeyFile: key, CAFile: ca.CAFile()}).Addr, "192.0.2.3"},
		{smtpsink.Start(t, "127.0.0.1:0").Addr, "192.0.2.4"},
	}
	db := filepath.Join(t.TempDir(), "t5.db")
	store, err := measure.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	domains, _ := scanner.NewRun(ctx, store.DB, "domains", "table 5 test", nil)
	hosts, _ := scanner.NewRun(ctx, store.DB, "hosts", "table 5 test", nil)
	g := &scanner.Grabber{EHLOName: "scanner.test.example", Timeout: 20 * time.Second, Dialer: &scanner.Dialer{}}
	for _, s := range servers {
		ap := netip.MustParseAddrPort(s.addr)
		gr := g.Grab(ctx, ap.Addr(), int(ap.Port()))
		h := g.HostGrab(ctx, ap.Addr(), int(ap.Port()))
		// The fixtures share 127.0.0.1; a run keys its results by address,
		// so each is stored under a documentation address of its own.
		gr.IP, h.IP = s.label, s.label
		domains.SaveGrab(&gr)
		domains.SaveDomain(&scanner.DomainResult{Type: "domain", Domain: "d" + s.label + ".example", Status: "starttls",
			MX: []scanner.MX{{Host: "mx.d" + s.label + ".example", IPs: []string{s.label}}}, Connected: true})
		hosts.SaveHost(&h)
	}
	for _, r := range []*scanner.Run{domains, hosts} {
		if err := r.Finish(); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	want := [][]string{
		{"Postfix", "2", "yes", "TLSv1.3", "1", "25.00%", "postfix.banner"},
		{"Postfix", "2", "yes", "TLSv1.3", "1", "25.00%", "postfix.ehlo"},
		{"Sendmail", "1", "yes", "TLSv1.3", "1", "25.00%", "sendmail.banner"},
		{"unknown", "1", "no", "none", "1", "25.00%", "none"},
	}
	for _, kind := range []string{"scan", "hosts"} {
		js := run(t, "report", kind, "--db", db, "--format", "json")
		var doc struct{ Tables []report.Table }
		if err := json.Unmarshal([]byte(js), &doc); err != nil {
			t.Fatalf("%s: %v\n%s", kind, err, js)
		}
		var t5 *report.Table
		for i := range doc.Tables {
			if doc.Tables[i].ID == kind+"_table5" {
				t5 = &doc.Tables[i]
			}
		}
		if t5 == nil {
			t.Fatalf("report %s has no Table 5:\n%s", kind, js)
		}
		var got []string
		for _, r := range t5.Rows {
			got = append(got, strings.Join(r, " | "))
		}
		var exp []string
		for _, r := range want {
			exp = append(exp, strings.Join(r, " | "))
		}
		if strings.Join(got, "\n") != strings.Join(exp, "\n") {
			t.Errorf("report %s, Table 5:\n%s\nwant:\n%s", kind, strings.Join(got, "\n"), strings.Join(exp, "\n"))
		}
		if !strings.Contains(t5.Source, "Table 5 of Durumeric et al., IMC 2015, §3.3") {
			t.Errorf("report %s: Table 5 cites %q", kind, t5.Source)
		}
		text := run(t, "report", kind, "--db", db)
		if !strings.Contains(text, "Table 5: Mail server software") || !strings.Contains(text, "postfix.ehlo") {
			t.Errorf("report %s text lacks Table 5:\n%s", kind, text)
		}
	}
}
