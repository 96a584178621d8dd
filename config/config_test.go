package config

import (
	"flag"
	"io"
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

func TestCheckAddresses(t *testing.T) {
	for _, c := range []struct {
		check func(string) error
		ok    []string
		bad   []string
	}{
		{CheckDNS, []string{"127.0.0.1:53", "[2001:db8::1]:5353", "ns1.example:53", "192.0.2.1", "2001:db8::1", "ns1.example"},
			[]string{"", "nonsense:abc", "192.0.2.1:0", "192.0.2.1:65536", "[::1]", "bad host:53", "-x.example:53", "::1:x:y"}},
		{CheckListen, []string{"unix:/run/x.sock", "local:/run/x.sock", "inet:127.0.0.1:8891", "inet:8891@127.0.0.1",
			"inet6:[::1]:8891", "inet:localhost:8891"},
			[]string{"", "tcp", "unix:", "unix:x.sock", "inet:127.0.0.1", "inet:127.0.0.1:0", "inet:127.0.0.1:x", "file:/x"}},
		{CheckHostPort, []string{"127.0.0.1:9425", ":9425", "[::1]:9425"}, []string{"9425", "127.0.0.1", "host name:1"}},
	} {
		for _, s := range c.ok {
			if err := c.check(s); err != nil {
				t.Errorf("%q: %v", s, err)
			}
		}
		for _, s := range c.bad {
			if err := c.check(s); err == nil {
				t.Errorf("%q accepted", s)
			}
		}
	}
}

// TestFlagsChecked: Bind's flags refuse a wrong value when parsed, and
// the file's same options when validated.
func TestFlagsChecked(t *testing.T) {
	for _, args := range [][]string{{"--milter", "unix:rel"}, {"--dns", "x:y"}, {"--log-format", "xml"},
		{"--dns-budget", "fast"}, {"--policy-socket", "tcp"}, {"--internal-network", "10.0.0.0/33"}} {
		c := Default()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.Bind(fs)
		if err := fs.Parse(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	for _, text := range []string{`milter = "unix:relative.sock"`, `dns = ["x:y"]`, `metrics = "9425"`,
		"[policy]\nsocket = \"inet:127.0.0.1\""} {
		c := Default()
		if err := c.Parse(text); err == nil {
			t.Errorf("%q accepted", text)
		}
	}
}
