package config

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadAndFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snowrain.conf")
	os.WriteFile(path, []byte(`
milter = "inet:127.0.0.1:9999"
db = "/tmp/x.db"
dns = ["127.0.0.1:5353"]
dns_budget = "3s"
internal_networks = ["10.0.0.0/8"]
[enforce]
dmarc = true
`), 0o644)
	c := Default()
	if err := c.Load(path, true); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.Bind(fs)
	if err := fs.Parse([]string{"--db", "/tmp/y.db", "--dns-budget", "1s"}); err != nil {
		t.Fatal(err)
	}
	if c.Milter != "inet:127.0.0.1:9999" || c.DB != "/tmp/y.db" || c.DNSBudget.Duration != time.Second ||
		!c.Enforce.DMARC || len(c.DNS) != 1 {
		t.Errorf("got %+v", c)
	}
}

func TestInvalid(t *testing.T) {
	for _, text := range []string{
		`milter = "tcp"`,
		`unknown_option = 1`,
		`log_format = "xml"`,
		`log_target = "file"`,
		`log_target = "syslog:relative/path"`,
		`log_level = "loud"`,
		`internal_networks = ["10.0.0.0/33"]`,
		`dns_budget = "fast"`,
		`[enforce]
quarantine = "drop"`,
		"[policy]\nbudget = \"0s\"",
		"[policy]\nbudget = \"120s\"",
		"[policy.inbound]\nbudget = \"-1s\"",
		"[policy]\nread_timeout = \"-1s\"",
	} {
		c := Default()
		if err := c.Parse(text); err == nil {
			t.Errorf("%q: no error", text)
		}
	}
}

func TestLogTarget(t *testing.T) {
	for _, text := range []string{`log_target = "stderr"`, `log_target = "syslog"`, `log_target = "syslog:/dev/log"`} {
		c := Default()
		if err := c.Parse(text); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}

func TestSplitListen(t *testing.T) {
	cases := map[string][2]string{
		"inet:127.0.0.1:8891": {"tcp", "127.0.0.1:8891"},
		"inet:8891@127.0.0.1": {"tcp", "127.0.0.1:8891"},
		"unix:/run/x.sock":    {"unix", "/run/x.sock"},
		"local:/run/x.sock":   {"unix", "/run/x.sock"},
	}
	for in, want := range cases {
		n, a, err := SplitListen(in)
		if err != nil || n != want[0] || a != want[1] {
			t.Errorf("SplitListen(%q) = %q %q %v", in, n, a, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`milter = "inet:127.0.0.1:1"` + "\n" + `dns_budget = "1s"`)
	f.Add(`[enforce]` + "\n" + `domains = ["a"]`)
	f.Fuzz(func(t *testing.T, text string) {
		c := Default()
		_ = c.Parse(text)
	})
}
