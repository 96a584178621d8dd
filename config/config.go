// Package config holds snowrain's settings: a TOML file
// (/etc/snowrain/snowrain.conf) whose every option is also a command-line
// flag, flags winning.
package config

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where serve looks for its configuration.
const DefaultPath = "/etc/snowrain/snowrain.conf"

// DefaultSocketDir holds the sockets, below Postfix's queue directory so
// that a chrooted smtpd, cleanup and smtp reach them (as Debian's OpenDKIM
// does with /var/spool/postfix/opendkim).
const DefaultSocketDir = "/var/spool/postfix/snowrain"

// Config is every setting of snowrain serve.
type Config struct {
	Milter      string `toml:"milter"`       // inet:HOST:PORT or unix:PATH
	SocketMode  string `toml:"socket_mode"`  // octal, for unix sockets
	SocketOwner string `toml:"socket_owner"` // user[:group], for unix sockets
	DB          string `toml:"db"`           // SQLite file path, or postgres:// URL for a fleet's shared database
	Node        string `toml:"node"`         // this host's name in a shared database; default the host name
	Metrics     string `toml:"metrics"`      // listen address for /metrics, empty: off
	LogFormat   string `toml:"log_format"`
	Maillog     string `toml:"maillog"` // MTA log to follow for outbound deliveries, empty: off
	Journal     bool   `toml:"journal"` // follow the systemd journal instead of a file
	// StateDir holds this host's own state (the journal cursor); empty:
	// beside a SQLite db, /var/lib/snowrain for a PostgreSQL URL.
	StateDir  string `toml:"state_dir"`
	LogLevel  string `toml:"log_level"`
	LogTarget string `toml:"log_target"` // stderr (journald) or syslog (mail facility, /dev/log; syslog:PATH for another socket)

	// Milter connection limits (issue 10): bytes of one packet, time from
	// its first byte to its last, wait for the next one.
	MilterMaxPacket   int      `toml:"milter_max_packet"`
	MilterReadTimeout Duration `toml:"milter_read_timeout"`
	MilterIdleTimeout Duration `toml:"milter_idle_timeout"`

	DNS          []string `toml:"dns"` // empty: /etc/resolv.conf
	DNSTimeout   Duration `toml:"dns_timeout"`
	DNSBudget    Duration `toml:"dns_budget"`
	DNSCacheSize int      `toml:"dns_cache_size"`

	AuthServID        string   `toml:"authserv_id"`
	SubmissionDaemons []string `toml:"submission_daemons"`
	InternalNetworks  []string `toml:"internal_networks"`
	MaxSignatures     int      `toml:"max_signatures"`
	CheckHelo         bool     `toml:"check_helo"`
	StoreLocalparts   bool     `toml:"store_localparts"`
	MaxHeaderBytes    int      `toml:"max_header_bytes"` // per message; beyond it DKIM is not verified

	QueueSize     int      `toml:"queue_size"`
	BatchSize     int      `toml:"batch_size"`
	BatchInterval Duration `toml:"batch_interval"`
	DrainTimeout  Duration `toml:"drain_timeout"`

	Enforce Enforce `toml:"enforce"`
	Policy  Policy  `toml:"policy"`
	Reports Reports `toml:"reports"`
	// Providers names the mail providers of Table 6 whose host names
	// differ from their name: registered domain → provider, added to
	// (and overriding) the report's built-in map.
	Providers map[string]string `toml:"providers"`
}

// Policy is the TLS policy service.
type Policy struct {
	Socket         string            `toml:"socket"` // socketmap for smtp_tls_policy_maps; empty: off
	Overrides      map[string]string `toml:"overrides"`
	DANE           bool              `toml:"dane"`
	MTASTS         bool              `toml:"mta_sts"`
	MTASTSRoots    string            `toml:"mta_sts_roots"` // PEM bundle; empty: system roots
	MTASTSPort     int               `toml:"mta_sts_port"`  // for tests; 0: 443
	TempOnError    bool              `toml:"temp_on_error"`
	DecisionSample float64           `toml:"decision_sample"`
	Budget         Duration          `toml:"budget"`
	Refresh        Duration          `toml:"refresh"`     // MTA-STS refresh interval
	DowngradeN     int               `toml:"downgrade_n"` // a peer with TLS in N …
	DowngradeM     int               `toml:"downgrade_m"` // … of its last M connections, then plaintext, is flagged
	Learn          Learn             `toml:"learn"`
	Inbound        Inbound           `toml:"inbound"`

	// Timeouts of both policy listeners' connections: idle between
	// requests (0: 100 s socketmap, 5 min inbound, as Postfix's max_idle)
	// and reading one request once it started (0: 10 s).
	IdleTimeout Duration `toml:"idle_timeout"`
	ReadTimeout Duration `toml:"read_timeout"`
}

// Learn is trust on first use from delivery history.
type Learn struct {
	Enabled       bool   `toml:"enabled"`
	MinDeliveries int64  `toml:"min_deliveries"`
	Days          int    `toml:"days"`
	Answer        string `toml:"answer"`
}

// Inbound is the policy delegation service requiring TLS from senders.
type Inbound struct {
	Socket     string   `toml:"socket"`      // check_policy_service socket; empty: off
	RequireTLS []string `toml:"require_tls"` // sender domains that must use TLS
	Learned    bool     `toml:"learned"`     // also domains that always used TLS
	Action     string   `toml:"action"`      // defer (default), reject or record
	Milter     bool     `toml:"milter"`      // apply it in the milter too (Sendmail has no policy delegation)
	Budget     Duration `toml:"budget"`      // longest wait for one decision; then DUNNO
}

// Enforce is the optional DMARC enforcement.
type Enforce struct {
	DMARC      bool     `toml:"dmarc"`
	Domains    []string `toml:"domains"`
	Quarantine string   `toml:"quarantine"` // header or hold
	// InvalidFrom: reject, quarantine or accept a message whose From DMARC
	// cannot evaluate (missing, repeated, several domains, unparsable).
	InvalidFrom string `toml:"invalid_from"`
}

// Duration is a time.Duration written as "5s" in TOML and flags.
type Duration struct{ time.Duration }

// UnmarshalText parses "5s", "1m30s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// MarshalText renders the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the built-in settings: the one place snowrain's
// defaults are written. Commands clone it and override it with the file
// and the flags; a package's Config built without a file (NewFilter,
// NewEngine, NewWriter in tests) takes the same values for the fields it
// leaves out, through its ConfigFrom(Default()) and OrDefault.
//
// The milter's limits: Postfix sends body chunks of at most 65,535 bytes
// and header fields of at most header_size_limit (100 KB); Sendmail 8.14+
// may negotiate 1 MB chunks (1,048,575 bytes plus the command byte): a
// packet of 1 MiB fits both, and five connections declaring 128 MiB cost
// 5 MiB. The idle timeout outlasts a slow client's DATA, during which the
// milter connection is silent (Postfix smtpd_timeout and Sendmail
// Timeout.datablock are per read, so an upload may take long); libmilter
// uses 2 h.
func Default() Config {
	host := Hostname()
	return Config{
		Milter: "unix:" + DefaultSocketDir + "/milter.sock", SocketMode: "0660", DB: "/var/lib/snowrain/snowrain.db",
		Node:      host,
		LogFormat: "text", LogLevel: "info", LogTarget: "stderr",
		DNSTimeout: Duration{2 * time.Second}, DNSBudget: Duration{5 * time.Second}, DNSCacheSize: 10000,
		MilterMaxPacket: 1 << 20, MilterReadTimeout: Duration{30 * time.Second}, MilterIdleTimeout: Duration{time.Hour}, MaxHeaderBytes: 1 << 20,
		AuthServID: host, SubmissionDaemons: []string{"submission", "smtps", "submissions"},
		MaxSignatures: 8, CheckHelo: true,
		QueueSize: 10000, BatchSize: 500, BatchInterval: Duration{time.Second}, DrainTimeout: Duration{10 * time.Second},
		Enforce: Enforce{Quarantine: "header", InvalidFrom: "reject"},
		Policy: Policy{DANE: true, MTASTS: true, DecisionSample: 1, Budget: Duration{10 * time.Second},
			DowngradeN: 5, DowngradeM: 10,
			Refresh: Duration{time.Hour}, Learn: Learn{MinDeliveries: 10, Days: 30, Answer: "encrypt"},
			Inbound: Inbound{Action: "defer", Budget: Duration{2 * time.Second}}},
		Reports: defaultReports(),
	}
}

// Hostname is the default of authserv_id and node: the host name, or
// "localhost" when the system has none.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// OrDefault sets *v to def when *v is unset: the zero value, or a
// negative number. A package's Config fills the fields a caller left out
// with it, from the package's part of Default, so that no default is
// written twice.
func OrDefault[T cmp.Ordered](v *T, def T) {
	var zero T
	if *v <= zero {
		*v = def
	}
}

// Load reads a TOML file over c. A missing file is an error only when
// required.
func (c *Config) Load(path string, required bool) error {
	md, err := toml.DecodeFile(path, c)
	if errors.Is(err, os.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("config: %s: unknown option %q", path, und[0].String())
	}
	return c.Validate()
}

// Parse decodes TOML text over c (for tests and fuzzing).
func (c *Config) Parse(text string) error {
	md, err := toml.Decode(text, c)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("config: unknown option %q", und[0].String())
	}
	return c.Validate()
}

// Validate checks values that would otherwise fail late.
func (c *Config) Validate() error {
	if err := c.checkFile(); err != nil {
		return err
	}
	if _, err := c.Networks(); err != nil {
		return err
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("config: log_format %q: want text or json", c.LogFormat)
	}
	if c.LogTarget != "" && c.LogTarget != "stderr" && c.LogTarget != "syslog" && !strings.HasPrefix(c.LogTarget, "syslog:/") {
		return fmt.Errorf("config: log_target %q: want stderr, syslog or syslog:/PATH", c.LogTarget)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); c.LogLevel != "" && err != nil {
		return fmt.Errorf("config: log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.Enforce.Quarantine {
	case "", "header", "hold":
	default:
		return fmt.Errorf("config: enforce.quarantine %q: want header or hold", c.Enforce.Quarantine)
	}
	switch c.Enforce.InvalidFrom {
	case "", "reject", "quarantine", "accept":
	default:
		return fmt.Errorf("config: enforce.invalid_from %q: want reject, quarantine or accept", c.Enforce.InvalidFrom)
	}
	// Sendmail may send 1 MiB packets (body chunks of 1 MiB - 1 and the
	// command byte); the milter library reads at most 512 MiB.
	if c.MilterMaxPacket < 1<<20 || c.MilterMaxPacket > 512<<20 {
		return fmt.Errorf("config: milter_max_packet %d: want 1048576 (1 MiB) to 536870912", c.MilterMaxPacket)
	}
	if c.MilterReadTimeout.Duration <= 0 || c.MilterIdleTimeout.Duration <= 0 {
		return errors.New("config: milter_read_timeout and milter_idle_timeout must be positive")
	}
	if c.MaxHeaderBytes < 64<<10 {
		return fmt.Errorf("config: max_header_bytes %d: want at least 65536", c.MaxHeaderBytes)
	}
	if c.DB == "" {
		return errors.New("config: db is empty")
	}
	if err := validNode(c.Node); err != nil {
		return err
	}
	for _, sock := range []string{c.Policy.Socket, c.Policy.Inbound.Socket} {
		if sock != "" {
			if _, _, err := SplitListen(sock); err != nil {
				return err
			}
		}
	}
	switch c.Policy.Inbound.Action {
	case "", "defer", "reject", "record":
	default:
		return fmt.Errorf("config: policy.inbound.action %q: want defer, reject or record", c.Policy.Inbound.Action)
	}
	switch c.Policy.Learn.Answer {
	case "", "encrypt", "verify":
	default:
		return fmt.Errorf("config: policy.learn.answer %q: want encrypt or verify", c.Policy.Learn.Answer)
	}
	if p := c.Policy; p.DowngradeM < 1 || p.DowngradeM > 64 || p.DowngradeN < 1 || p.DowngradeN > p.DowngradeM {
		return fmt.Errorf("config: policy.downgrade_n %d of downgrade_m %d: want 1 ≤ n ≤ m ≤ 64", p.DowngradeN, p.DowngradeM)
	}
	// Postfix waits 100 s for a socketmap or policy service answer
	// (socketmap timeout, smtpd_policy_service_timeout): budgets stay
	// well under it.
	for name, d := range map[string]Duration{"policy.budget": c.Policy.Budget, "policy.inbound.budget": c.Policy.Inbound.Budget} {
		if d.Duration <= 0 || d.Duration > 60*time.Second {
			return fmt.Errorf("config: %s %v: want more than 0 and at most 60s", name, d.Duration)
		}
	}
	if c.Policy.IdleTimeout.Duration < 0 || c.Policy.ReadTimeout.Duration < 0 {
		return errors.New("config: policy.idle_timeout and policy.read_timeout must not be negative")
	}
	if c.Policy.DecisionSample < 0 || c.Policy.DecisionSample > 1 {
		return fmt.Errorf("config: policy.decision_sample %v: want 0 to 1", c.Policy.DecisionSample)
	}
	return c.Reports.validate()
}

// validNode accepts a host name's characters, as a fleet's reports print
// the node of each row.
func validNode(n string) error {
	if n == "" || len(n) > 253 || strings.Trim(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != "" {
		return fmt.Errorf("config: node %q: want 1 to 253 letters, digits, dots, hyphens or underscores", n)
	}
	return nil
}

// DefaultStateDir holds a host's own state when its database is not a
// file beside which it could go (a PostgreSQL URL).
const DefaultStateDir = "/var/lib/snowrain"

// State is the directory of this host's own state: StateDir, else the
// SQLite database's directory, else DefaultStateDir.
func (c *Config) State() string {
	switch {
	case c.StateDir != "":
		return c.StateDir
	case strings.Contains(c.DB, "://"):
		return DefaultStateDir
	}
	return filepath.Dir(c.DB)
}

// CheckNode checks a node name given on a command line (scan --node).
func CheckNode(n string) error { return validNode(n) }

// Networks parses InternalNetworks.
func (c *Config) Networks() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range c.InternalNetworks {
		p, err := netip.ParsePrefix(strings.TrimSpace(n))
		if err != nil {
			return nil, fmt.Errorf("config: internal_networks: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// SplitListen parses the --milter address into a Go network and address.
// It takes inet:HOST:PORT, inet6:[HOST]:PORT, Sendmail's inet:PORT@HOST,
// and unix:PATH (or local:PATH).
func SplitListen(s string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("config: milter address %q: want inet:HOST:PORT or unix:PATH", s)
	}
	switch kind {
	case "unix", "local":
		return "unix", rest, nil
	case "inet", "inet6", "tcp":
		if port, host, ok := strings.Cut(rest, "@"); ok {
			rest = host + ":" + port
		}
		if !strings.Contains(rest, ":") {
			return "", "", fmt.Errorf("config: milter address %q: missing port", s)
		}
		return "tcp", rest, nil
	}
	return "", "", fmt.Errorf("config: milter address %q: unknown kind %q", s, kind)
}

// listVar registers a repeatable flag whose values are appended to list.
func listVar(fs *flag.FlagSet, list *[]string, name, usage string) {
	fs.Func(name, usage, func(v string) error {
		*list = append(*list, v)
		return nil
	})
}

// Bind registers a flag for every option, writing into c.
func (c *Config) Bind(fs *flag.FlagSet) {
	fs.StringVar(&c.Milter, "milter", c.Milter, "milter socket: inet:HOST:PORT or unix:PATH")
	fs.StringVar(&c.SocketMode, "socket-mode", c.SocketMode, "unix socket mode (octal)")
	fs.StringVar(&c.SocketOwner, "socket-owner", c.SocketOwner, "unix socket owner user[:group]")
	fs.StringVar(&c.DB, "db", c.DB, "database: SQLite file path, or postgres://USER@HOST/DB URL shared by a fleet")
	fs.StringVar(&c.Node, "node", c.Node, "this host's name in a shared database (default: the host name)")
	fs.StringVar(&c.Metrics, "metrics", c.Metrics, "listen address for Prometheus /metrics (empty: off)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.Maillog, "maillog", c.Maillog, "MTA log file to follow for outbound delivery TLS (e.g. /var/log/mail.log)")
	fs.BoolVar(&c.Journal, "journal", c.Journal, "follow the systemd journal (journalctl) for outbound deliveries")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory of this host's own state, the journal cursor (default: beside a SQLite db, else /var/lib/snowrain)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.IntVar(&c.MilterMaxPacket, "milter-max-packet", c.MilterMaxPacket, "largest milter packet read, in bytes")
	fs.TextVar(&c.MilterReadTimeout, "milter-read-timeout", c.MilterReadTimeout, "time from the first byte of a milter packet to its last")
	fs.TextVar(&c.MilterIdleTimeout, "milter-idle-timeout", c.MilterIdleTimeout, "close a milter connection silent this long")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "header bytes per message; beyond, DKIM is not verified")
	fs.StringVar(&c.LogTarget, "log-target", c.LogTarget, "where logs go: stderr (journald) or syslog (mail facility, /dev/log)")
	listVar(fs, &c.DNS, "dns", "DNS server HOST:PORT (repeatable; default /etc/resolv.conf)")
	fs.TextVar(&c.DNSTimeout, "dns-timeout", c.DNSTimeout, "timeout of one DNS query")
	fs.TextVar(&c.DNSBudget, "dns-budget", c.DNSBudget, "DNS time budget of one message")
	fs.IntVar(&c.DNSCacheSize, "dns-cache-size", c.DNSCacheSize, "cached DNS answers (0: off)")
	fs.StringVar(&c.AuthServID, "authserv-id", c.AuthServID, "authserv-id of Authentication-Results")
	listVar(fs, &c.SubmissionDaemons, "submission-daemon", "daemon name whose mail is outbound (repeatable)")
	listVar(fs, &c.InternalNetworks, "internal-network", "CIDR whose mail is outbound (repeatable)")
	fs.IntVar(&c.MaxSignatures, "max-signatures", c.MaxSignatures, "DKIM signatures verified per message")
	fs.BoolVar(&c.CheckHelo, "check-helo", c.CheckHelo, "also check SPF of the HELO identity")
	fs.BoolVar(&c.StoreLocalparts, "store-localparts", c.StoreLocalparts, "store envelope local parts (privacy!)")
	fs.IntVar(&c.QueueSize, "queue-size", c.QueueSize, "events held in memory before drops")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "events per database transaction")
	fs.TextVar(&c.BatchInterval, "batch-interval", c.BatchInterval, "longest wait before writing a batch")
	fs.TextVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "wait for sessions and the queue on SIGTERM")
	fs.BoolVar(&c.Enforce.DMARC, "enforce-dmarc", c.Enforce.DMARC, "reject/quarantine per DMARC policy")
	listVar(fs, &c.Enforce.Domains, "enforce-domain", "enforce only for this From domain (repeatable)")
	fs.StringVar(&c.Enforce.Quarantine, "quarantine", c.Enforce.Quarantine, "quarantine action: header or hold")
	fs.StringVar(&c.Enforce.InvalidFrom, "enforce-invalid-from", c.Enforce.InvalidFrom, "enforcement for a From DMARC cannot evaluate: reject, quarantine or accept")
	fs.StringVar(&c.Policy.Socket, "policy-socket", c.Policy.Socket, "TLS policy socketmap: unix:PATH or inet:HOST:PORT (empty: off)")
	fs.StringVar(&c.Policy.Inbound.Socket, "policy-inbound-socket", c.Policy.Inbound.Socket, "inbound TLS policy delegation socket (empty: off)")
	fs.BoolVar(&c.Policy.DANE, "policy-dane", c.Policy.DANE, "answer dane for domains with authenticated TLSA records")
	fs.BoolVar(&c.Policy.MTASTS, "policy-mta-sts", c.Policy.MTASTS, "honour MTA-STS")
	fs.StringVar(&c.Policy.MTASTSRoots, "mta-sts-roots", c.Policy.MTASTSRoots, "PEM roots for MTA-STS fetches (default: system)")
	fs.IntVar(&c.Policy.MTASTSPort, "mta-sts-port", c.Policy.MTASTSPort, "HTTPS port of MTA-STS fetches (tests)")
	fs.TextVar(&c.Policy.Budget, "policy-budget", c.Policy.Budget, "longest wait for one TLS policy answer, then fail open")
	fs.TextVar(&c.Policy.Inbound.Budget, "policy-inbound-budget", c.Policy.Inbound.Budget, "longest wait for one inbound policy decision, then DUNNO")
	fs.TextVar(&c.Policy.IdleTimeout, "policy-idle-timeout", c.Policy.IdleTimeout, "close policy connections idle this long (0: per listener)")
	fs.TextVar(&c.Policy.ReadTimeout, "policy-read-timeout", c.Policy.ReadTimeout, "longest to read one policy request (0: 10s)")
	fs.BoolVar(&c.Policy.TempOnError, "policy-temp-on-error", c.Policy.TempOnError, "answer TEMP when no policy can be decided (defers mail!)")
	listVar(fs, &c.Policy.Inbound.RequireTLS, "require-tls", "sender domain (or .parent) whose mail must arrive over TLS (repeatable)")
	fs.BoolVar(&c.Policy.Inbound.Milter, "require-tls-milter", c.Policy.Inbound.Milter, "enforce require-tls in the milter (Sendmail)")
	fs.IntVar(&c.Policy.DowngradeN, "downgrade-n", c.Policy.DowngradeN, "flag a peer that used TLS in N …")
	fs.IntVar(&c.Policy.DowngradeM, "downgrade-m", c.Policy.DowngradeM, "… of its last M connections, then plaintext")
	fs.BoolVar(&c.Policy.Learn.Enabled, "policy-learn", c.Policy.Learn.Enabled, "learn encrypt policies from delivery history")
	fs.Int64Var(&c.Policy.Learn.MinDeliveries, "policy-learn-min", c.Policy.Learn.MinDeliveries, "authenticated-TLS deliveries before a policy is learned")
	fs.IntVar(&c.Policy.Learn.Days, "policy-learn-days", c.Policy.Learn.Days, "learning window in days")
	checkFlags(fs)
}
