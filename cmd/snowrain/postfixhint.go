package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/snowrain/snowrain/config"
)

// postfixSite is what the local Postfix says about itself (postconf, which
// honours MAIL_CONFIG): where its queue directory is, which daemons
// master.cf runs chrooted there, and the current raw values of the
// parameters the hint appends to.
type postfixSite struct {
	Found    bool              // postconf answered, and Current holds every hintParams value
	QueueDir string            // queue_directory, expanded
	Chroot   map[string]bool   // daemon command (smtpd, cleanup, smtp, proxymap) → some master.cf service runs it chrooted
	Current  map[string]string // parameter → its value as written (postconf -h, not expanded)
}

// debianQueueDir is Postfix's default queue_directory on Debian.
const debianQueueDir = "/var/spool/postfix"

// hintParams are the parameters whose current values the hint extends.
var hintParams = []string{"smtpd_milters", "non_smtpd_milters", "smtp_tls_policy_maps",
	"proxy_read_maps", "smtpd_recipient_restrictions"}

// probePostfix asks postconf, with a deadline; without Postfix it returns
// Debian's defaults (queue directory /var/spool/postfix, Found false).
func probePostfix(ctx context.Context) postfixSite {
	site := postfixSite{QueueDir: debianQueueDir, Chroot: map[string]bool{}, Current: map[string]string{}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	q, err := exec.CommandContext(ctx, "postconf", "-xh", "queue_directory").Output()
	if err != nil {
		return site
	}
	if v := strings.TrimSpace(string(q)); v != "" {
		site.QueueDir = v
	}
	// One line per parameter, empty ones included: a value read wrong
	// would make the hint replace a list instead of extending it.
	vals, err := exec.CommandContext(ctx, "postconf", append([]string{"-h"}, hintParams...)...).Output()
	lines := strings.Split(strings.TrimSuffix(string(vals), "\n"), "\n")
	if err != nil || len(lines) != len(hintParams) {
		return site
	}
	for i, k := range hintParams {
		site.Current[k] = strings.TrimSpace(lines[i])
	}
	site.Found = true
	if master, err := exec.CommandContext(ctx, "postconf", "-F").Output(); err == nil {
		site.Chroot = chrootedDaemons(string(master))
	}
	return site
}

// chrootedDaemons reads `postconf -F` output ("smtp/inet/chroot = y",
// "smtp/inet/command = smtpd -o …") and tells which daemon commands run
// chrooted in some service. Since Postfix 3.0 "-" means n.
func chrootedDaemons(master string) map[string]bool {
	chroot, command := map[string]bool{}, map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(master))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), " = ")
		if !ok {
			continue
		}
		i := strings.LastIndexByte(key, '/')
		if i < 0 {
			continue
		}
		svc, field := key[:i], key[i+1:]
		switch field {
		case "chroot":
			chroot[svc] = val == "y" || val == "Y"
		case "command":
			if f := strings.Fields(val); len(f) > 0 {
				command[svc] = f[0]
			}
		}
	}
	out := map[string]bool{}
	for svc, cmd := range command {
		out[cmd] = out[cmd] || chroot[svc]
	}
	return out
}

// postfixAddr is how a Postfix daemon names a socket of ours: relative to
// the queue directory when the socket is below it (daemons chdir there, and
// a chrooted one sees it at that relative path too), else absolute. inChroot
// tells whether the relative form was used.
func postfixAddr(listen, queueDir string) (addr string, inChroot bool) {
	network, a, err := config.SplitListen(listen)
	if err != nil {
		return listen, false
	}
	if network != "unix" {
		return "inet:" + a, true // TCP reaches out of any chroot
	}
	rel, err := filepath.Rel(filepath.Clean(queueDir), filepath.Clean(a))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "unix:" + a, false
	}
	return "unix:" + rel, true
}

// proxyAddr names a socket for proxymap, which runs outside the chroot:
// always the absolute path.
func proxyAddr(listen string) string {
	network, a, err := config.SplitListen(listen)
	if err != nil {
		return listen
	}
	if network == "unix" {
		return "unix:" + a
	}
	return "inet:" + a
}

// listHas tells whether a Postfix list (whitespace or commas) holds item.
func listHas(list, item string) bool {
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if f == item {
			return true
		}
	}
	return false
}

// appendList appends item to a Postfix list unless it is there.
func appendList(list, item, sep string) string {
	switch {
	case strings.TrimSpace(list) == "":
		return item
	case listHas(list, item):
		return list
	}
	return strings.TrimRight(list, ", ") + sep + item
}

// postfixHint returns the main.cf lines for cfg, each ready for
// `postconf -e 'LINE'`: nothing it prints sets a key twice or drops a
// value the site already has; and the warnings to log (a socket a chrooted
// daemon cannot reach).
func postfixHint(cfg config.Config, site postfixSite) (string, []string) {
	var b strings.Builder
	var warns []string
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	cur := func(k string) string { return site.Current[k] }

	milter, reachable := postfixAddr(cfg.Milter, site.QueueDir)
	w("")
	w("# Postfix: apply each line below with postconf -e 'LINE' (or put it in main.cf), then: postfix reload")
	w("# Milter: records TLS, SPF, DKIM and DMARC. While snowrain is down, Postfix accepts mail unchecked.")
	if !site.Found {
		w("# (if smtpd_milters is set already, append instead: postconf -e \"smtpd_milters = $(postconf -h smtpd_milters) %s\")", milter)
	}
	w("smtpd_milters = %s", appendList(cur("smtpd_milters"), milter, " "))
	switch nm := cur("non_smtpd_milters"); {
	case nm == "" || listHas(nm, "$smtpd_milters") || listHas(nm, "${smtpd_milters}"):
		w("non_smtpd_milters = $smtpd_milters")
	default:
		w("non_smtpd_milters = %s", appendList(nm, milter, " "))
	}
	w("milter_default_action = accept")
	if !reachable && (site.Chroot["smtpd"] || site.Chroot["cleanup"]) {
		warns = append(warns, fmt.Sprintf("milter socket %s is outside Postfix's queue directory %s, and master.cf runs smtpd chrooted there: Postfix cannot reach it and mail passes unrecorded; put the socket below %s (default %s)",
			cfg.Milter, site.QueueDir, site.QueueDir, "unix:"+config.DefaultSocketDir+"/milter.sock"))
	}

	if cfg.Policy.Socket != "" {
		m := "proxy:socketmap:" + proxyAddr(cfg.Policy.Socket) + ":tls"
		w("")
		w("# Outbound TLS policy (opt-in), looked up through proxymap outside the chroot.")
		w("# While snowrain is down, Postfix DEFERS outbound mail (dsn 4.7.5, TLS policy lookup error): remove it from smtp_tls_policy_maps to stop that.")
		switch prm := cur("proxy_read_maps"); {
		case !site.Found:
			w(`# run: postconf -e "smtp_tls_policy_maps = $(postconf -h smtp_tls_policy_maps) %s"`, m)
			w(`# and, unless proxy_read_maps holds $smtp_tls_policy_maps (its default does):`)
			w(`# postconf -e "proxy_read_maps = $(postconf -h proxy_read_maps) %s"`, m)
		case listHas(prm, "$smtp_tls_policy_maps") || listHas(prm, "${smtp_tls_policy_maps}"):
			w("smtp_tls_policy_maps = %s", appendList(cur("smtp_tls_policy_maps"), m, " "))
			w("# (proxy_read_maps holds $smtp_tls_policy_maps: nothing to add there)")
		default:
			w("smtp_tls_policy_maps = %s", appendList(cur("smtp_tls_policy_maps"), m, " "))
			w("proxy_read_maps = %s", appendList(prm, m, " "))
		}
		if network, a, _ := config.SplitListen(cfg.Policy.Socket); network == "unix" && site.Chroot["proxymap"] {
			if _, in := postfixAddr(cfg.Policy.Socket, site.QueueDir); !in {
				warns = append(warns, fmt.Sprintf("policy socket %s is outside Postfix's queue directory, and master.cf runs proxymap chrooted: Postfix cannot reach it", a))
			}
		}
	}

	if in := cfg.Policy.Inbound.Socket; in != "" {
		addr, reachable := postfixAddr(in, site.QueueDir)
		svc := "check_policy_service { " + addr + ", default_action=DUNNO, timeout=10s }"
		w("")
		w("# Inbound TLS requirement (opt-in). While snowrain is down, Postfix takes DUNNO for this check")
		w("# (default_action overrides smtpd_policy_service_default_action, 451 4.3.5, for this service only) and mail is accepted.")
		rr := cur("smtpd_recipient_restrictions")
		if !site.Found {
			w(`# run: postconf -e "smtpd_recipient_restrictions = $(postconf -h smtpd_recipient_restrictions), %s"`, svc)
		} else if listHas(rr, addr) {
			w("smtpd_recipient_restrictions = %s", rr)
		} else {
			w("smtpd_recipient_restrictions = %s", appendList(rr, svc, ", "))
		}
		for _, stop := range []string{"permit", "reject", "defer"} {
			if listHas(rr, stop) {
				warns = append(warns, fmt.Sprintf("smtpd_recipient_restrictions has a plain %s before snowrain's check_policy_service, which then never runs: move the check before it", stop))
			}
		}
		if !reachable && site.Chroot["smtpd"] {
			warns = append(warns, fmt.Sprintf("inbound policy socket %s is outside Postfix's queue directory %s, and master.cf runs smtpd chrooted: Postfix cannot reach it (mail flows, unchecked)", in, site.QueueDir))
		}
	}
	w("")
	return b.String(), warns
}

// printPostfixHint prints the main.cf lines for this configuration to
// stderr and logs a warning for each socket Postfix cannot reach. It asks
// postconf in the background: startup (and the installation of serve's
// signal handlers) does not wait for it.
func printPostfixHint(cfg config.Config) {
	log := slog.Default()
	go func() { writePostfixHint(os.Stderr, cfg, probePostfix(context.Background()), log) }()
}

func writePostfixHint(out io.Writer, cfg config.Config, site postfixSite, log *slog.Logger) {
	text, warns := postfixHint(cfg, site)
	for _, w := range warns {
		log.Warn(w)
	}
	io.WriteString(out, text)
}
