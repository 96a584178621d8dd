package audit

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/snowrain/snowrain/policy"
)

// PostfixConfig is Postfix's effective configuration as postconf prints
// it: every main.cf parameter with its default filled in and $names
// expanded, which of them main.cf sets, and master.cf's services with
// their -o overrides.
type PostfixConfig struct {
	Dir      string            // config_directory ("" for the default instance)
	Main     map[string]string // postconf -x: every parameter, expanded
	Set      map[string]bool   // postconf -n: the ones main.cf sets
	Services []Service
}

// Service is one master.cf entry.
type Service struct {
	Name      string            // "smtp", "127.0.0.1:2525", "submission"
	Type      string            // inet, unix, …
	Chroot    bool              // chroot column, "-" resolved by postconf -F
	Command   string            // daemon program: smtpd, smtp, …
	Overrides map[string]string // -o name=value, expanded
}

// Key is "name/type", as postconf -P names a service.
func (s Service) Key() string { return s.Name + "/" + s.Type }

// Param returns the effective value of a parameter for this service: its
// -o override, else main.cf's (or the default).
func (c *PostfixConfig) Param(s *Service, name string) string {
	if s != nil {
		if v, ok := s.Overrides[name]; ok {
			return v
		}
	}
	return c.Main[name]
}

// Where says where a parameter's effective value for s comes from, as a
// reader finds it: a master.cf override, a main.cf line, or the default.
func (c *PostfixConfig) Where(s *Service, name string) string {
	if s != nil {
		if v, ok := s.Overrides[name]; ok {
			return fmt.Sprintf("master.cf %s: -o %s=%s", s.Key(), name, v)
		}
	}
	where := "Postfix default"
	if c.Set[name] {
		where = "main.cf"
	}
	if c.Main[name] == "" {
		return fmt.Sprintf("%s: %s (empty)", where, name)
	}
	return fmt.Sprintf("%s: %s = %s", where, name, c.Main[name])
}

// FixLine is the command that sets name to value where it is in force
// for s: postconf -P for a master.cf override, postconf -e for main.cf.
func (c *PostfixConfig) FixLine(s *Service, name, value string) string {
	dir := ""
	if c.Dir != "" {
		dir = "-c " + c.Dir + " "
	}
	if s != nil {
		if _, ok := s.Overrides[name]; ok {
			return fmt.Sprintf("postconf %s-P '%s/%s=%s'", dir, s.Key(), name, value)
		}
	}
	return fmt.Sprintf("postconf %s-e '%s = %s'", dir, name, value)
}

// LoadPostfix runs postconf (with -c dir for a non-default instance).
func LoadPostfix(ctx context.Context, postconf, dir string) (*PostfixConfig, error) {
	if postconf == "" {
		postconf = "postconf"
	}
	args := func(a ...string) []string {
		if dir != "" {
			return append([]string{"-c", dir}, a...)
		}
		return a
	}
	c := &PostfixConfig{Dir: dir}
	all, err := run(ctx, postconf, args("-x")...)
	if err != nil {
		return nil, fmt.Errorf("audit: postconf: %w", err)
	}
	c.Main = parseParams(all)
	set, err := run(ctx, postconf, args("-n")...)
	if err != nil {
		return nil, fmt.Errorf("audit: postconf -n: %w", err)
	}
	c.Set = map[string]bool{}
	for k := range parseParams(set) {
		c.Set[k] = true
	}
	fields, err := run(ctx, postconf, args("-F")...)
	if err != nil {
		return nil, fmt.Errorf("audit: postconf -F: %w", err)
	}
	overrides, err := run(ctx, postconf, args("-P", "-x")...)
	if err != nil {
		return nil, fmt.Errorf("audit: postconf -P: %w", err)
	}
	c.Services = parseServices(fields, overrides)
	return c, nil
}

// parseParams reads "name = value" lines; a value may be empty.
func parseParams(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, " =")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			continue
		}
		m[k] = strings.TrimSpace(v)
	}
	return m
}

// parseServices joins postconf -F (service/type/field = value) and
// postconf -P (service/type/parameter = value). Service names may hold
// colons (127.0.0.1:25) but not slashes.
func parseServices(fields, overrides string) []Service {
	var order []string
	by := map[string]*Service{}
	get := func(name, typ string) *Service {
		k := name + "/" + typ
		if s, ok := by[k]; ok {
			return s
		}
		s := &Service{Name: name, Type: typ, Overrides: map[string]string{}}
		by[k] = s
		order = append(order, k)
		return s
	}
	for k, v := range parseParams(fields) {
		parts := strings.Split(k, "/")
		if len(parts) != 3 {
			continue
		}
		s := get(parts[0], parts[1])
		switch parts[2] {
		case "chroot":
			s.Chroot = v == "y"
		case "command":
			s.Command, _, _ = strings.Cut(v, " ")
		}
	}
	for k, v := range parseParams(overrides) {
		parts := strings.Split(k, "/")
		if len(parts) != 3 {
			continue
		}
		get(parts[0], parts[1]).Overrides[parts[2]] = v
	}
	out := make([]Service, 0, len(order))
	for _, k := range sortedKeys(by) {
		out = append(out, *by[k])
	}
	return out
}

// Service returns the named service of a type, or nil.
func (c *PostfixConfig) Service(name, typ string) *Service {
	for i := range c.Services {
		if c.Services[i].Name == name && c.Services[i].Type == typ {
			return &c.Services[i]
		}
	}
	return nil
}

// listValues splits a Postfix list parameter (commas and white space).
func listValues(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// levelOf is the TLS security level in force: the *_tls_security_level
// parameter, else the obsolete booleans it replaced (postconf(5):
// smtp_enforce_tls implies encrypt, smtp_use_tls may).
func (c *PostfixConfig) levelOf(s *Service, prefix string) (level policy.Level, where string) {
	param := prefix + "_tls_security_level"
	if v := c.Param(s, param); v != "" {
		return policy.Level(strings.ToLower(v)), c.Where(s, param)
	}
	if yes(c.Param(s, prefix+"_enforce_tls")) {
		return policy.LevelEncrypt, c.Where(s, prefix+"_enforce_tls")
	}
	if yes(c.Param(s, prefix+"_use_tls")) {
		return policy.LevelMay, c.Where(s, prefix+"_use_tls")
	}
	return policy.LevelNone, c.Where(s, param) + " (and neither " + prefix + "_use_tls nor " + prefix + "_enforce_tls)"
}

func yes(v string) bool { return strings.EqualFold(v, "yes") || strings.EqualFold(v, "true") }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
