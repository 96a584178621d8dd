package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/config"
)

// listen opens cfg.Milter: a TCP socket, or a unix socket with the
// configured mode and owner. A unix socket path that a running process
// still answers on is never taken over (a second `snowrain serve` must not
// steal the first one's sockets); a stale one is replaced.
func listen(cfg config.Config) (net.Listener, error) {
	network, addr, err := config.SplitListen(cfg.Milter)
	if err != nil {
		return nil, err
	}
	if network != "unix" {
		return net.Listen(network, addr)
	}
	if err := os.MkdirAll(filepath.Dir(addr), 0o755); err != nil {
		return nil, err
	}
	if err := clearStale(addr); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// We unlink the path ourselves, and only while it is still ours.
	ln.SetUnlinkOnClose(false)
	s := &unixSocket{UnixListener: ln, path: addr}
	if s.ino, err = inode(addr); err != nil {
		ln.Close()
		return nil, err
	}
	if err := socketPerms(addr, cfg.SocketMode, cfg.SocketOwner); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// ErrSocketInUse means another process answers on a unix socket path.
var ErrSocketInUse = errors.New("in use by a running process")

// clearStale removes a socket file nobody answers on; one that answers is
// ErrSocketInUse.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	switch err := probeUnix(path); {
	case err == nil:
		return fmt.Errorf("%s is %w (another snowrain serve?); not taking it over", path, ErrSocketInUse)
	case errors.Is(err, syscall.ECONNREFUSED):
		return os.Remove(path) // stale socket of a previous run
	default:
		return fmt.Errorf("%s: %w", path, err)
	}
}

// probeUnix connects to a unix socket: nil means something listens.
func probeUnix(path string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// unixSocket is a unix listener that knows its file: Close removes the
// path only while it is still the socket we bound, and check tells when
// the file was removed or replaced (tmpfiles cleaning, an admin's rm), so
// the supervisor opens a new one.
type unixSocket struct {
	*net.UnixListener
	path string
	ino  uint64
}

func (s *unixSocket) Close() error {
	err := s.UnixListener.Close()
	if ino, ierr := inode(s.path); ierr == nil && ino == s.ino {
		os.Remove(s.path)
	}
	return err
}

func (s *unixSocket) check() error {
	ino, err := inode(s.path)
	if err != nil {
		return fmt.Errorf("socket file: %w", err)
	}
	if ino != s.ino {
		return fmt.Errorf("socket file %s was replaced", s.path)
	}
	return nil
}

// checkListener is the supervisor's Check for any listener we opened.
func checkListener(ln net.Listener) error {
	if s, ok := ln.(*unixSocket); ok {
		return s.check()
	}
	return nil
}

func inode(path string) (uint64, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no inode", path)
	}
	return st.Ino, nil
}

// socketPerms applies socket_mode and socket_owner. The chown is skipped
// when the socket already has that owner (the unit's User= and Group=
// create it so), so no chown(2) is needed under the unit's syscall filter.
func socketPerms(path, mode, owner string) error {
	if mode != "" {
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil {
			return fmt.Errorf("socket_mode %q: %w", mode, err)
		}
		if err := os.Chmod(path, os.FileMode(m)); err != nil {
			return err
		}
	}
	if owner == "" {
		return nil
	}
	uid, gid, err := lookupOwner(owner)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
		return nil
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("socket_owner %q: %w", owner, err)
	}
	return nil
}

// lookupOwner resolves "user[:group]" (the user's primary group when no
// group is named).
func lookupOwner(owner string) (uid, gid int, err error) {
	uname, gname, _ := strings.Cut(owner, ":")
	u, err := user.Lookup(uname)
	if err != nil {
		return 0, 0, fmt.Errorf("socket_owner: %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if gname != "" {
		g, err := user.LookupGroup(gname)
		if err != nil {
			return 0, 0, fmt.Errorf("socket_owner: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}
