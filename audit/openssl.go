package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Protocols in order, as Postfix and OpenSSL name them.
var protocols = []string{"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}

// protoIndex returns the position of p in protocols, or -1.
func protoIndex(p string) int {
	for i, q := range protocols {
		if strings.EqualFold(q, p) {
			return i
		}
	}
	return -1
}

// OpenSSL is what the machine's OpenSSL allows whatever an MTA asks: the
// library the MTA links (Debian's libssl3) is the one the openssl command
// runs on.
type OpenSSL struct {
	Bin     string // the openssl command
	Version string // "OpenSSL 3.0.19 27 Jan 2026"
	Major   int
	Minor   int
	// SecLevel is the default security level: openssl.cnf's
	// system_default CipherString @SECLEVEL, else the one the library was
	// built with (-DOPENSSL_TLS_SECURITY_LEVEL), else OpenSSL's 1.
	SecLevel       int
	SecLevelSource string
	// MinProtocol is openssl.cnf's system_default MinProtocol, if any.
	MinProtocol string
	// Disabled are the algorithms `openssl list -disabled` names (SSL3…).
	Disabled map[string]bool
}

// ProbeOpenSSL asks the openssl command about the library.
func ProbeOpenSSL(ctx context.Context, bin string) (*OpenSSL, error) {
	if bin == "" {
		bin = "openssl"
	}
	o := &OpenSSL{Bin: bin, SecLevel: 1, SecLevelSource: "OpenSSL's default", Disabled: map[string]bool{}}
	out, err := run(ctx, bin, "version", "-a")
	if err != nil {
		return nil, fmt.Errorf("audit: openssl version: %w", err)
	}
	dir := ""
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "OpenSSL "):
			o.Version, _, _ = strings.Cut(line, " (Library")
			fmt.Sscanf(strings.TrimPrefix(o.Version, "OpenSSL "), "%d.%d", &o.Major, &o.Minor)
		case strings.HasPrefix(line, "compiler:"):
			if m := builtLevel.FindStringSubmatch(line); m != nil {
				o.SecLevel, _ = strconv.Atoi(m[1])
				o.SecLevelSource = "built in (-DOPENSSL_TLS_SECURITY_LEVEL=" + m[1] + ")"
			}
		case strings.HasPrefix(line, "OPENSSLDIR:"):
			dir = strings.Trim(strings.TrimSpace(strings.TrimPrefix(line, "OPENSSLDIR:")), `"`)
		}
	}
	if o.Version == "" {
		return nil, fmt.Errorf("audit: %s is not OpenSSL: %.60q", bin, out)
	}
	if out, err := run(ctx, bin, "list", "-disabled"); err == nil {
		for _, line := range strings.Split(out, "\n")[1:] {
			if s := strings.TrimSpace(line); s != "" {
				o.Disabled[strings.ToUpper(s)] = true
			}
		}
	}
	conf := os.Getenv("OPENSSL_CONF")
	if conf == "" && dir != "" {
		conf = filepath.Join(dir, "openssl.cnf")
	}
	if conf != "" {
		if sd, err := systemDefault(conf); err == nil {
			if m := listLevel.FindStringSubmatch(sd["CipherString"]); m != nil {
				o.SecLevel, _ = strconv.Atoi(m[1])
				o.SecLevelSource = conf + " (system_default CipherString)"
			}
			o.MinProtocol = sd["MinProtocol"]
		}
	}
	return o, nil
}

var (
	builtLevel = regexp.MustCompile(`-DOPENSSL_TLS_SECURITY_LEVEL=(\d)`)
	listLevel  = regexp.MustCompile(`@SECLEVEL=(\d)`)
)

// String names the library and its security level.
func (o *OpenSSL) String() string {
	s := fmt.Sprintf("%s, security level %d (%s)", o.Version, o.SecLevel, o.SecLevelSource)
	if o.MinProtocol != "" {
		s += ", MinProtocol " + o.MinProtocol
	}
	return s
}

// systemDefault reads the [system_default] section an openssl.cnf applies
// to every TLS context (openssl_conf → ssl_conf → system_default), which
// Postfix honours with tls_config_file = default.
func systemDefault(path string) (map[string]string, error) {
	sections, err := readINI(path)
	if err != nil {
		return nil, err
	}
	init := sections[""]["openssl_conf"]
	ssl := sections[init]["ssl_conf"]
	sd := sections[ssl]["system_default"]
	if init == "" || ssl == "" || sd == "" {
		return map[string]string{}, nil
	}
	return sections[sd], nil
}

// readINI reads an OpenSSL config file: [sections] of name = value,
// # comments; .include lines are not followed (Debian's has none).
func readINI(path string) (map[string]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]map[string]string{"": {}}
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			cur = strings.TrimSpace(line[1 : len(line)-1])
			if out[cur] == nil {
				out[cur] = map[string]string{}
			}
		default:
			if k, v, ok := strings.Cut(line, "="); ok {
				out[cur][strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return out, sc.Err()
}

// Cipher is one line of `openssl ciphers -v`.
type Cipher struct {
	Name, Protocol, Kx, Au, Enc, Mac string
}

// Weakness names what is wrong with a cipher, or "".
func (c Cipher) Weakness() string {
	switch {
	case c.Enc == "None":
		return "NULL (no encryption)"
	case strings.HasPrefix(c.Name, "EXP") || strings.Contains(c.Kx, "export"):
		return "export grade"
	case strings.HasPrefix(c.Enc, "RC4"):
		return "RC4"
	case strings.HasPrefix(c.Enc, "3DES"):
		return "3DES"
	case strings.HasPrefix(c.Enc, "DES"), strings.HasPrefix(c.Enc, "RC2"), strings.HasPrefix(c.Enc, "IDEA"):
		return "weak cipher " + c.Enc
	case c.Mac == "MD5":
		return "MD5 MAC"
	}
	return ""
}

// Anonymous reports a suite without server authentication (aNULL).
func (c Cipher) Anonymous() bool { return c.Au == "None" }

// ForwardSecret reports an ephemeral key exchange (TLS 1.3 always is).
func (c Cipher) ForwardSecret() bool {
	switch c.Kx {
	case "ECDH", "DH", "any", "ECDHEPSK", "DHEPSK":
		return true
	}
	return false
}

// PSK reports suites that need a pre-shared key or SRP password: never
// used by an MTA, which configures none.
func (c Cipher) PSK() bool {
	return strings.Contains(c.Kx, "PSK") || strings.Contains(c.Au, "PSK") || c.Kx == "SRP"
}

// Ciphers evaluates an OpenSSL cipher list as the library applies it at
// security level: `openssl ciphers -s -v` keeps only the suites usable
// there (a @SECLEVEL in the list itself, coming later, wins).
func (o *OpenSSL) Ciphers(ctx context.Context, list string, level int) ([]Cipher, error) {
	if !strings.Contains(list, "@SECLEVEL=") {
		list += fmt.Sprintf(":@SECLEVEL=%d", level) // after: DEFAULT must come first
	}
	out, err := run(ctx, o.Bin, "ciphers", "-s", "-v", list)
	if err != nil {
		return nil, fmt.Errorf("audit: openssl ciphers %q: %w", list, err)
	}
	return parseCiphers(out), nil
}

// parseCiphers reads `openssl ciphers -v` lines:
// "NAME PROTO Kx=… Au=… Enc=… Mac=…".
func parseCiphers(out string) []Cipher {
	var cs []Cipher
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		c := Cipher{Name: f[0], Protocol: f[1]}
		fields := map[string]*string{"Kx": &c.Kx, "Au": &c.Au, "Enc": &c.Enc, "Mac": &c.Mac}
		for _, kv := range f[2:] {
			k, v, _ := strings.Cut(kv, "=")
			if p := fields[k]; p != nil {
				*p = v
			}
		}
		cs = append(cs, c)
	}
	return cs
}

// SecLevelOf is the security level a cipher list runs at when the MTA
// sets level: the list's own @SECLEVEL wins.
func SecLevelOf(list string, level int) int {
	for _, m := range listLevel.FindAllStringSubmatch(list, -1) {
		level, _ = strconv.Atoi(m[1])
	}
	return level
}

// Refuses says why the library never negotiates protocol p with a cipher
// list at security level level, or "" when it may.
func (o *OpenSSL) Refuses(p string, level int) string {
	i := protoIndex(p)
	switch {
	case p == "SSLv2" && (o.Major > 1 || o.Major == 1 && o.Minor >= 1):
		return "removed from OpenSSL 1.1.0"
	case p == "SSLv3" && o.Disabled["SSL3"]:
		return "OpenSSL " + versionNumber(o.Version) + " is built without SSLv3"
	case (p == "TLSv1" || p == "TLSv1.1" || p == "SSLv3") && o.Major >= 3 && level >= 1:
		return fmt.Sprintf("OpenSSL %s refuses it at security level %d (its SHA-1/MD5 handshake signatures are below 80 bits; SSL_CTX_set_security_level(3))",
			versionNumber(o.Version), level)
	case o.MinProtocol != "" && i >= 0 && i < protoIndex(o.MinProtocol):
		return "below openssl.cnf's MinProtocol " + o.MinProtocol
	}
	return ""
}

func versionNumber(v string) string {
	f := strings.Fields(v)
	if len(f) > 1 {
		return f[1]
	}
	return v
}

// run runs a command with a deadline and returns its standard output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && stderr.Len() > 0 {
			return string(out), fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(firstLine(stderr.String())))
		}
		return string(out), fmt.Errorf("%s: %w", name, err)
	}
	return string(out), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
