// Package unitexec runs a command under the parts of a systemd unit that
// apply without systemd as PID 1: User= and Group= (with the user's
// supplementary groups, as systemd sets them), UMask=, and the syscall
// filter (SystemCallFilter=, SystemCallErrorNumber=,
// SystemCallArchitectures=native), its @groups expanded by
// `systemd-analyze syscall-filter` and loaded with libseccomp by a small C
// helper (helper/seccomp-exec.c). Tests use it to show that the unit we ship lets
// the daemon do what it does, and that the filter really binds.
package unitexec

import (
	"bufio"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

//go:embed helper/seccomp-exec.c
var helperSource []byte

// Unit is what unitexec applies from a unit file's [Service] section.
type Unit struct {
	User, Group   string
	UMask         string   // octal; "" when unset
	Filter        []string // SystemCallFilter= values, in order
	ErrorNumber   string   // SystemCallErrorNumber=; "" means kill the process
	Architectures []string // SystemCallArchitectures=
}

// Parse reads the [Service] section of a unit file.
func Parse(text string) (*Unit, error) {
	u := &Unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if strings.HasSuffix(line, "\\") {
			return nil, fmt.Errorf("unitexec: line %d: continuation lines are not supported", n)
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section != "[Service]" {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "User":
			u.User = value
		case "Group":
			u.Group = value
		case "UMask":
			u.UMask = value
		case "SystemCallFilter":
			u.Filter = append(u.Filter, value)
		case "SystemCallErrorNumber":
			u.ErrorNumber = value
		case "SystemCallArchitectures":
			u.Architectures = strings.Fields(value)
		}
	}
	return u, sc.Err()
}

// Load reads a unit file.
func Load(path string) (*Unit, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(string(b))
}

// Syscalls computes the filter as systemd does (src/core/load-fragment.c,
// config_parse_syscall_filter): the first assignment decides the mode, an
// allow list when it has no "~" (and then @default is allowed too), a deny
// list when it has; each later name is added to the list when its "~"
// matches the mode's, removed from it otherwise; an empty assignment
// resets everything. expand lists a @group's syscalls.
func (u *Unit) Syscalls(expand func(group string) ([]string, error)) (allowList bool, names []string, err error) {
	set := map[string]bool{}
	started := false
	apply := func(name string, add bool) error {
		list := []string{name}
		if strings.HasPrefix(name, "@") {
			if list, err = expand(name); err != nil {
				return err
			}
		}
		for _, n := range list {
			if add {
				set[n] = true
			} else {
				delete(set, n)
			}
		}
		return nil
	}
	for _, value := range u.Filter {
		if value == "" {
			set, started, allowList = map[string]bool{}, false, false
			continue
		}
		invert := strings.HasPrefix(value, "~")
		value = strings.TrimPrefix(value, "~")
		if !started {
			started, allowList = true, !invert
			if allowList {
				if err := apply("@default", true); err != nil {
					return false, nil, err
				}
			}
		}
		for _, word := range strings.Fields(value) {
			if strings.Contains(word, ":") {
				return false, nil, fmt.Errorf("unitexec: %q: per-syscall errno is not supported", word)
			}
			if err := apply(word, invert != allowList); err != nil {
				return false, nil, err
			}
		}
	}
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	return allowList, names, nil
}

// SystemdAnalyze expands a @group with `systemd-analyze syscall-filter`,
// nested groups included.
func SystemdAnalyze(group string) ([]string, error) {
	out, err := exec.Command("systemd-analyze", "syscall-filter", group).Output()
	if err != nil {
		return nil, fmt.Errorf("unitexec: systemd-analyze syscall-filter %s: %w", group, err)
	}
	var names []string
	lines := strings.Split(string(out), "\n")
	for _, line := range lines[1:] { // the first line is the group's name
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "@"):
			sub, err := SystemdAnalyze(line)
			if err != nil {
				return nil, err
			}
			names = append(names, sub...)
		default:
			names = append(names, line)
		}
	}
	return names, nil
}

// errnos are the SystemCallErrorNumber= names units use.
var errnos = map[string]int{"EPERM": 1, "ENOENT": 2, "EACCES": 13, "EINVAL": 22, "ENOSYS": 38, "EAFNOSUPPORT": 97}

// Action is the helper's --action for the unit: "kill" (systemd's default,
// SCMP_ACT_KILL_PROCESS) or "errno:N".
func (u *Unit) Action() (string, error) {
	switch e := u.ErrorNumber; {
	case e == "" || e == "kill":
		return "kill", nil
	case errnos[e] != 0:
		return "errno:" + strconv.Itoa(errnos[e]), nil
	default:
		if n, err := strconv.Atoi(e); err == nil && n > 0 && n < 4096 {
			return "errno:" + e, nil
		}
		return "", fmt.Errorf("unitexec: SystemCallErrorNumber=%s not supported", e)
	}
}

// Build compiles the helper into dir (gcc and libseccomp-dev:
// scripts/deps-seccomp.sh installs them).
func Build(dir string) (string, error) {
	src := filepath.Join(dir, "seccomp-exec.c")
	bin := filepath.Join(dir, "seccomp-exec")
	if err := os.WriteFile(src, helperSource, 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-o", bin, src, "-lseccomp").CombinedOutput(); err != nil {
		return "", fmt.Errorf("unitexec: gcc: %v\n%s", err, out)
	}
	return bin, nil
}

// Credentials are the user and groups the command runs as.
type Credentials struct {
	UID, GID int
	Groups   []int // supplementary
}

// LookupCredentials resolves user and group as systemd does: the group
// defaults to the user's primary one, and the user's groups are its
// supplementary groups.
func LookupCredentials(userName, groupName string) (Credentials, error) {
	u, err := user.Lookup(userName)
	if err != nil {
		return Credentials{}, err
	}
	c := Credentials{}
	c.UID, _ = strconv.Atoi(u.Uid)
	c.GID, _ = strconv.Atoi(u.Gid)
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			return Credentials{}, err
		}
		c.GID, _ = strconv.Atoi(g.Gid)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return Credentials{}, err
	}
	for _, id := range ids {
		n, _ := strconv.Atoi(id)
		c.Groups = append(c.Groups, n)
	}
	return c, nil
}

// Command returns argv run by helper under the unit's filter and umask,
// as creds. The filter's syscall list is written into dir.
func (u *Unit) Command(helper, dir string, creds Credentials, argv ...string) (*exec.Cmd, error) {
	for _, a := range u.Architectures {
		if a != "native" {
			return nil, fmt.Errorf("unitexec: SystemCallArchitectures=%s not supported", a)
		}
	}
	allow, names, err := u.Syscalls(SystemdAnalyze)
	if err != nil {
		return nil, err
	}
	action, err := u.Action()
	if err != nil {
		return nil, err
	}
	list := filepath.Join(dir, "syscalls.list")
	if err := os.WriteFile(list, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	mode := "deny"
	if allow {
		mode = "allow"
	}
	args := []string{"--mode", mode, "--action", action, "--list", list,
		"--uid", strconv.Itoa(creds.UID), "--gid", strconv.Itoa(creds.GID)}
	var groups []string
	for _, g := range creds.Groups {
		groups = append(groups, strconv.Itoa(g))
	}
	args = append(args, "--groups", strings.Join(groups, ","))
	if u.UMask != "" {
		args = append(args, "--umask", u.UMask)
	}
	return exec.Command(helper, append(append(args, "--"), argv...)...), nil
}
