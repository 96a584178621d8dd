package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ListenForms is what CheckListen accepts, for error messages.
const ListenForms = "unix:/PATH, inet:HOST:PORT or inet6:[HOST]:PORT"

// CheckListen checks a listen address as --milter and the policy sockets
// take it: unix:/PATH (local:/PATH) with an absolute path, or
// inet:HOST:PORT, inet6:[HOST]:PORT (Sendmail's inet:PORT@HOST too) with
// an IP address or host name and a port from 1 to 65535.
func CheckListen(s string) error {
	network, addr, err := SplitListen(s)
	if err != nil {
		return fmt.Errorf("want %s", ListenForms)
	}
	if network == "unix" {
		if !strings.HasPrefix(addr, "/") {
			return fmt.Errorf("want %s: the socket path must be absolute", ListenForms)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want %s", ListenForms)
	}
	if err := checkHost(host); err != nil {
		return err
	}
	return checkPort(port)
}

// CheckDNS checks one DNS server address: HOST:PORT, [IPv6]:PORT, or a
// bare HOST or IP address (the resolver then asks port 53).
func CheckDNS(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// A bare address: "192.0.2.1", "2001:db8::1", "ns.example".
		if s == "" || strings.ContainsAny(s, "[]") || (strings.Contains(s, ":") && !isIP(s)) {
			return errors.New("want HOST:PORT, e.g. 127.0.0.1:53 or [2001:db8::1]:53")
		}
		return checkHost(s)
	}
	if err := checkHost(host); err != nil {
		return err
	}
	return checkPort(port)
}

// CheckHostPort checks a TCP listen address HOST:PORT; an empty HOST
// means every address.
func CheckHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want HOST:PORT, e.g. 127.0.0.1:9425")
	}
	if host != "" {
		if err := checkHost(host); err != nil {
			return err
		}
	}
	return checkPort(port)
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// checkHost accepts an IP address or a host name (RFC 1123 2.1 labels;
// underscores too, as resolvers' names sometimes have them).
func checkHost(h string) error {
	if isIP(h) {
		return nil
	}
	name := strings.TrimSuffix(h, ".")
	ok := name != "" && len(name) <= 253
	for _, label := range strings.Split(name, ".") {
		ok = ok && label != "" && len(label) <= 63 && label[0] != '-' && label[len(label)-1] != '-'
		for _, r := range label {
			ok = ok && (r == '-' || r == '_' || r >= '0' && r <= '9' || r|0x20 >= 'a' && r|0x20 <= 'z')
		}
	}
	if !ok {
		return fmt.Errorf("host %q is neither an IP address nor a host name", h)
	}
	return nil
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", p)
	}
	return nil
}

func oneOf(values ...string) func(string) error {
	return func(s string) error {
		for _, v := range values {
			if s == v {
				return nil
			}
		}
		return fmt.Errorf("want %s or %s", strings.Join(values[:len(values)-1], ", "), values[len(values)-1])
	}
}

func checkDuration(s string) error {
	if _, err := time.ParseDuration(s); err != nil {
		return errors.New("want a duration such as 5s or 1m30s")
	}
	return nil
}

func orEmpty(check func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return check(s)
	}
}

// flagChecks are the checks Bind's flags make when they are parsed, so
// that a wrong value is an error naming the flag before anything starts;
// Validate makes the same checks on the file.
var flagChecks = map[string]func(string) error{
	"milter":                CheckListen,
	"policy-socket":         orEmpty(CheckListen),
	"policy-inbound-socket": orEmpty(CheckListen),
	"dns":                   CheckDNS,
	"metrics":               orEmpty(CheckHostPort),
	"log-format":            oneOf("text", "json"),
	"log-level": func(s string) error {
		var l slog.Level
		if l.UnmarshalText([]byte(s)) != nil {
			return errors.New("want debug, info, warn or error")
		}
		return nil
	},
	"quarantine":           oneOf("header", "hold"),
	"enforce-invalid-from": oneOf("reject", "quarantine", "accept"),
	"socket-mode": orEmpty(func(s string) error {
		if m, err := strconv.ParseUint(s, 8, 32); err != nil || m > 0o777 {
			return errors.New("want an octal mode such as 0660")
		}
		return nil
	}),
	"socket-owner": orEmpty(func(s string) error {
		u, g, grouped := strings.Cut(s, ":")
		if u == "" || grouped && g == "" || strings.ContainsAny(s, " \t\n") {
			return errors.New("want USER or USER:GROUP")
		}
		return nil
	}),
	"internal-network": func(s string) error {
		if _, err := netip.ParsePrefix(strings.TrimSpace(s)); err != nil {
			return errors.New("want a CIDR prefix such as 192.0.2.0/24")
		}
		return nil
	},
}

// checkedValue makes a flag's value check its argument before taking it.
type checkedValue struct {
	flag.Value
	check func(string) error
}

func (v checkedValue) Set(s string) error {
	if err := v.check(s); err != nil {
		return err
	}
	return v.Value.Set(s)
}

// String is called on the zero value too (flag.PrintDefaults).
func (v checkedValue) String() string {
	if v.Value == nil {
		return ""
	}
	return v.Value.String()
}

// Unwrap is the value without the check (for help texts).
func (v checkedValue) Unwrap() flag.Value { return v.Value }

// checkFlags puts flagChecks, and a duration check for Duration options,
// in front of the flags Bind registered.
func checkFlags(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		check := flagChecks[f.Name]
		if g, ok := f.Value.(flag.Getter); ok && check == nil {
			if _, ok := g.Get().(*Duration); ok {
				check = checkDuration
			}
		}
		if check != nil {
			f.Value = checkedValue{Value: f.Value, check: check}
		}
	})
}

// checkFile is Validate's part of flagChecks: the addresses and lists of
// the file, named by their options.
func (c *Config) checkFile() error {
	for _, s := range []struct {
		option string
		values []string
		check  func(string) error
	}{
		{"milter", []string{c.Milter}, CheckListen},
		{"policy.socket", []string{c.Policy.Socket}, orEmpty(CheckListen)},
		{"policy.inbound.socket", []string{c.Policy.Inbound.Socket}, orEmpty(CheckListen)},
		{"dns", c.DNS, CheckDNS},
		{"metrics", []string{c.Metrics}, orEmpty(CheckHostPort)},
		{"socket_mode", []string{c.SocketMode}, flagChecks["socket-mode"]},
		{"socket_owner", []string{c.SocketOwner}, flagChecks["socket-owner"]},
	} {
		for _, v := range s.values {
			if err := s.check(v); err != nil {
				return fmt.Errorf("config: %s %q: %w", s.option, v, err)
			}
		}
	}
	return nil
}
