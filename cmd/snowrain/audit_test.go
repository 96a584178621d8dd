package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/snowrain/snowrain/audit"
	"github.com/snowrain/snowrain/internal/dnstest"
	"github.com/snowrain/snowrain/internal/postfixtest"
)

// TestAuditCLI runs `snowrain audit` on a throwaway Postfix in both
// formats: the JSON parses into the findings the text shows.
func TestAuditCLI(t *testing.T) {
	dns := dnstest.Start(t, "mx.cli.example. A 127.0.0.1\ncli.example. TXT \"v=spf1 -all\"\n")
	pf := postfixtest.Start(t, postfixtest.Options{Hostname: "mx.cli.example", Main: map[string]string{
		"mydestination": "cli.example", "default_transport": "smtp", "smtp_tls_security_level": "may"}})
	etc := filepath.Join(pf.Dir, "etc")
	js := run(t, "audit", "--config-dir", etc, "--dns", dns.Addr, "--format", "json")
	var r audit.Report
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	if r.MTA != "postfix" || r.Config != etc || len(r.Domains) != 1 || r.Domains[0].Name != "cli.example" {
		t.Errorf("report %+v", r)
	}
	f, ok := r.Find("", "domain.spf")
	if !ok || f.Status != audit.StatusOK || !strings.Contains(f.Value, "v=spf1 -all") {
		t.Errorf("SPF finding %+v", f)
	}
	if f, _ := r.Find("", "inbound.starttls"); f.Status != audit.StatusFail {
		t.Errorf("inbound STARTTLS without a certificate: %+v", f)
	}
	text := run(t, "audit", "--config-dir", etc, "--dns", "off")
	for _, s := range []string{"snowrain audit: Postfix ", "[FAIL] Offers STARTTLS to senders: no", "Change: postconf -c " + etc,
		"DNS lookups are off"} {
		if !strings.Contains(text, s) {
			t.Errorf("text lacks %q:\n%s", s, text)
		}
	}
	if out, err := exec.Command(binary, "audit", "--format", "xml").CombinedOutput(); err == nil {
		t.Errorf("--format xml accepted: %s", out)
	}

	// -o FILE replaces the file whole and prints nothing; -o DIR/ writes
	// a file named for the audit and the day and prints its path.
	out := t.TempDir()
	file := filepath.Join(out, "audit.json")
	os.WriteFile(file, []byte(strings.Repeat("an older, longer audit ", 1<<12)), 0o644)
	if got := run(t, "audit", "--config-dir", etc, "--dns", "off", "--format", "json", "-o", file); got != "" {
		t.Errorf("-o FILE printed %q", got)
	}
	var fromFile audit.Report
	if b, _ := os.ReadFile(file); json.Unmarshal(b, &fromFile) != nil || fromFile.MTA != "postfix" || fromFile.Config != etc {
		t.Errorf("-o FILE wrote:\n%.300s", b)
	}
	sub := filepath.Join(out, "audits") + "/"
	path := strings.TrimSpace(run(t, "audit", "--config-dir", etc, "--dns", "off", "-o", sub))
	if filepath.Dir(path) != filepath.Clean(sub) || !regexp.MustCompile(`^snowrain-audit-\d{4}-\d\d-\d\d\.txt$`).MatchString(filepath.Base(path)) {
		t.Errorf("-o DIR/ printed %q", path)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "snowrain audit: Postfix ") {
		t.Errorf("-o DIR/ wrote:\n%.300s", b)
	}
}
