package corpus

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// CheckRecords compares the store's records of cases with what the corpus says
// they must be. It is shared by the MTA end-to-end tests.
func CheckRecords(t testing.TB, store *measure.Store, cases []Case) {
	t.Helper()
	for _, c := range cases {
		var spf, spfClass, dkim, dmarc, policy, disp, authClass, tlsVersion string
		var id int64
		err := store.DB.QueryRow(`SELECT id, spf_result, spf_class, dkim_result, dmarc_result,
			dmarc_policy, dmarc_disposition, auth_class, tls_version FROM messages WHERE client_ip = ?`, c.ClientIP).
			Scan(&id, &spf, &spfClass, &dkim, &dmarc, &policy, &disp, &authClass, &tlsVersion)
		if err != nil {
			t.Errorf("%s: no record: %v", c.Name, err)
			continue
		}
		got := []string{spf, spfClass, dkim, dmarc, policy, disp, authClass}
		want := []string{c.SPF, c.SPFClass, c.DKIM, c.DMARC, c.Policy, c.Disposition, c.Auth}
		if !slices.Equal(got, want) {
			t.Errorf("%s: spf,class,dkim,dmarc,policy,disposition,auth = %q, want %q", c.Name, got, want)
		}
		fails, err := measure.Rows(context.Background(), store.DB,
			`SELECT class FROM signatures WHERE message_id = ? AND class <> '' ORDER BY seq`, []any{id}, measure.Column[string])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(fails, c.DKIMFails) {
			t.Errorf("%s: DKIM failure classes %q, want %q", c.Name, fails, c.DKIMFails)
		}
	}
}

// CheckReport compares the JSON report's maps with the corpus totals.
func CheckReport(t testing.TB, store *measure.Store, cases []Case) *measure.Report {
	t.Helper()
	r, err := store.BuildReport(context.Background(), measure.Scope{Since: time.Now().Add(-time.Hour), Until: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	in := r.Inbound
	if in.Messages != int64(len(cases)) {
		t.Errorf("report counts %d inbound messages, sent %d", in.Messages, len(cases))
	}
	want := Want(cases)
	got := map[string]map[string]int64{"spf": in.SPF, "spf_error_class": in.SPFErrorClass, "dkim": in.DKIM,
		"dkim_fail_class": in.DKIMFailClass, "dmarc": in.DMARC, "dmarc_policy": in.DMARCPolicy, "auth": in.Auth}
	for k, w := range want {
		for class, n := range w {
			if got[k][class] != n {
				t.Errorf("report %s[%s] = %d, want %d", k, class, got[k][class], n)
			}
		}
		for class, n := range got[k] {
			if w[class] == 0 {
				t.Errorf("report %s[%s] = %d, want none", k, class, n)
			}
		}
	}
	return r
}
