package measure

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMigrateDKIMResults: a store written before RFC 8601 DKIM results
// (every non-passing signed message stored as "fail") is migrated to the
// verdict its signatures give, its hourly rollup moved along, and its
// signatures counted by result.
func TestMigrateDKIMResults(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	target := -1
	for i, m := range migrations {
		if strings.Contains(m, "CREATE TABLE hourly_dkim_results") {
			target = i
		}
	}
	if target < 0 {
		t.Fatal("no hourly_dkim_results migration")
	}
	saved := migrations
	migrations = saved[:target]
	s, err := Open(ctx, path)
	migrations = saved
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Unix() / 3600 * 3600
	msgs := []struct {
		id      int
		verdict string
		sigs    []string
	}{
		{1, "fail", []string{"temperror"}},
		{2, "fail", []string{"permerror", "temperror"}},
		{3, "fail", []string{"fail", "permerror"}},
		{4, "fail", []string{"permerror"}},
		{5, "fail", []string{"policy"}},
		{6, "pass", []string{"pass", "fail"}},
		{7, "none", nil},
		{8, "fail", []string{"permerror"}},
	}
	for _, m := range msgs {
		if _, err := s.DB.Exec(`INSERT INTO messages (id, conn_uid, received_at, direction, dkim_result,
			dkim_signatures, action, tls_version) VALUES (?, 'c', ?, 'inbound', ?, ?, 'accept', '')`,
			m.id, hour+int64(m.id), m.verdict, len(m.sigs)); err != nil {
			t.Fatal(err)
		}
		for i, r := range m.sigs {
			if _, err := s.DB.Exec(`INSERT INTO signatures (message_id, seq, result, class) VALUES (?, ?, ?, 'other')`,
				m.id, i, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The rollup as the old writer kept it.
	if _, err := s.DB.Exec(`INSERT INTO hourly_messages SELECT received_at / 3600, direction, action,
		COALESCE(tls_version, ''), COALESCE(cipher, ''), forward_secret, COALESCE(spf_result, ''),
		COALESCE(spf_class, ''), COALESCE(dkim_result, ''), COALESCE(dmarc_result, ''),
		COALESCE(dmarc_policy, ''), COALESCE(auth_class, ''), COALESCE(fail_open, ''), COUNT(*)
		FROM messages GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13`); err != nil {
		t.Fatal(err)
	}
	// Message 8 was pruned from the raw tables but its hour's rollup kept
	// it: it stays "fail", which is all that is known of it.
	s.DB.Exec(`DELETE FROM signatures WHERE message_id = 8`)
	s.DB.Exec(`DELETE FROM messages WHERE id = 8`)
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[int]string{1: "temperror", 2: "temperror", 3: "fail", 4: "permerror", 5: "policy", 6: "pass", 7: "none"}
	for id, w := range want {
		var got string
		if err := s.DB.QueryRow(`SELECT dkim_result FROM messages WHERE id = ?`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != w {
			t.Errorf("message %d: dkim_result %q, want %q", id, got, w)
		}
	}
	r, err := s.BuildReport(ctx, Scope{Since: time.Unix(hour, 0), Until: time.Unix(hour+3600, 0)})
	if err != nil {
		t.Fatal(err)
	}
	wantMsgs := map[string]int64{"temperror": 2, "fail": 2, "permerror": 1, "policy": 1, "pass": 1, "none": 1}
	if !sameCounts(r.Inbound.DKIM, wantMsgs) || r.Inbound.Messages != 8 {
		t.Errorf("report DKIM messages %v (%d), want %v", r.Inbound.DKIM, r.Inbound.Messages, wantMsgs)
	}
	wantSigs := map[string]int64{"temperror": 2, "permerror": 3, "fail": 2, "policy": 1, "pass": 1}
	if !sameCounts(r.Inbound.DKIMResults, wantSigs) {
		t.Errorf("report DKIM signatures %v, want %v", r.Inbound.DKIMResults, wantSigs)
	}
}

func sameCounts(a, b map[string]int64) bool {
	for k, v := range a {
		if v != 0 && b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
