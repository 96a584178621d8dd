#!/usr/bin/env bash
# unit-exec.sh UNIT [ARG…]: runs a systemd unit's ExecStart (with ARGs
# appended) the way systemd would, as far as a machine without systemd as
# PID 1 allows, in the foreground and as the same process (exec all the way
# down, so the caller can signal it). Applied here:
#   User=, Group= (with the user's supplementary groups, as systemd's
#   initgroups), UMask=, NoNewPrivileges=, CapabilityBoundingSet= and
#   AmbientCapabilities= (setpriv); StateDirectory= and RuntimeDirectory=
#   (created and chowned); in a private mount namespace: ProtectSystem=strict
#   with ReadWritePaths= and the state and runtime directories writable,
#   PrivateTmp=, ProtectHome=, PrivateDevices=, ProtectKernelTunables= and
#   ProtectControlGroups=.
# Not applied (needs systemd or seccomp): SystemCallFilter=,
# SystemCallArchitectures=, RestrictAddressFamilies=, MemoryDenyWriteExecute=,
# LockPersonality=, RestrictNamespaces=, RestrictRealtime=, RestrictSUIDSGID=,
# MemoryMax=. Hook: when UNIT_EXEC_SECCOMP names a program, it runs as
#   $UNIT_EXEC_SECCOMP UNIT -- COMMAND…
# under the dropped privileges, to install the unit's syscall filter before
# it execs COMMAND.
set -euo pipefail
unit=${1:?usage: unit-exec.sh UNIT [ARG…]}
shift

# get KEY: the values of KEY in [Service], one per line.
get() { sed -n '/^\[Service\]/,/^\[/{s/^'"$1"'=//p}' "$unit"; }
last() { get "$1" | tail -n 1; }
yes() { case "$(last "$1")" in yes | true | 1 | on | strict | full) return 0 ;; *) return 1 ;; esac; }

exec_start=$(last ExecStart)
exec_start=${exec_start#[-@+!:]}
[ -n "$exec_start" ] || { echo "unit-exec: no ExecStart in $unit" >&2; exit 1; }
user=$(last User)
group=$(last Group)
umask_=$(last UMask)

rw=""
mode=$(last StateDirectoryMode)
for d in $(get StateDirectory); do
	install -d -m "${mode:-0755}" -o "${user:-root}" -g "${group:-root}" "/var/lib/$d"
	rw="$rw /var/lib/$d"
done
mode=$(last RuntimeDirectoryMode)
for d in $(get RuntimeDirectory); do
	install -d -m "${mode:-0755}" -o "${user:-root}" -g "${group:-root}" "/run/$d"
	rw="$rw /run/$d"
done
for p in $(get ReadWritePaths); do
	p=${p#-}
	[ -e "$p" ] && rw="$rw $p"
done

# The sandbox, built in a private mount namespace.
ns='set -euo pipefail
for p in '"$rw"'; do mount --bind "$p" "$p"; done
'
# Before ProtectSystem: the new /dev is built on a mount point in /run.
if yes PrivateDevices; then
	ns+='dev=$(mktemp -d /run/unit-exec-dev.XXXXXX)
mount -t tmpfs -o mode=0755,nosuid tmpfs "$dev"
for n in null zero full random urandom tty; do touch "$dev/$n"; mount --bind "/dev/$n" "$dev/$n"; done
ln -s /proc/self/fd "$dev/fd"; ln -s /proc/self/fd/0 "$dev/stdin"; ln -s /proc/self/fd/1 "$dev/stdout"; ln -s /proc/self/fd/2 "$dev/stderr"
mkdir "$dev/shm" "$dev/pts"; mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$dev/shm"
mount --move "$dev" /dev; rmdir "$dev"
'
fi
if [ "$(last ProtectSystem)" = strict ]; then
	ns+='findmnt -rn -o TARGET | while read -r m; do
	m=$(printf "%b" "$m")
	case "$m" in /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) continue ;; esac
	for p in '"$rw"'; do case "$m" in "$p" | "$p"/*) continue 2 ;; esac; done
	mount -o remount,bind,ro "$m" 2>/dev/null || true
done
'
fi
if yes PrivateTmp; then
	ns+='mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp; mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
'
fi
if yes ProtectHome; then
	ns+='for h in /home /root /run/user; do if [ -d "$h" ]; then mount -t tmpfs -o ro,mode=0755 tmpfs "$h"; fi; done
'
fi
if yes ProtectKernelTunables; then
	ns+='for p in /proc/sys /proc/sysrq-trigger /sys; do if [ -e "$p" ]; then mount --bind "$p" "$p" && mount -o remount,bind,ro "$p" 2>/dev/null || true; fi; done
'
elif yes ProtectControlGroups; then
	ns+='mount -o remount,bind,ro /sys/fs/cgroup 2>/dev/null || true
'
fi

priv=(setpriv)
if [ -n "$user" ]; then
	priv+=(--reuid "$user" --init-groups)
	priv+=(--regid "${group:-$(id -gn "$user")}")
fi
if yes NoNewPrivileges; then priv+=(--no-new-privs); fi
if get CapabilityBoundingSet | grep -qx ''; then priv+=(--bounding-set -all); fi
if get AmbientCapabilities | grep -qx ''; then priv+=(--inh-caps -all --ambient-caps -all); fi

filter=()
skipped=$(sed -n '/^\[Service\]/,/^\[/{s/^\(SystemCallFilter\|SystemCallArchitectures\|RestrictAddressFamilies\|MemoryDenyWriteExecute\|LockPersonality\|RestrictNamespaces\|RestrictRealtime\|RestrictSUIDSGID\|MemoryMax\)=.*/\1/p}' "$unit" | sort -u | tr '\n' ' ')
if [ -n "${UNIT_EXEC_SECCOMP:-}" ]; then
	filter=("$UNIT_EXEC_SECCOMP" "$unit" --)
elif [ -n "$skipped" ]; then
	echo "unit-exec: not applied on this machine: $skipped(UNIT_EXEC_SECCOMP: a syscall filter helper)" >&2
fi

# shellcheck disable=SC2086 # ExecStart is split on spaces, as systemd does for unquoted words
set -- $exec_start "$@"
ns+='exec '"$(printf '%q ' "${priv[@]}")"' -- /bin/sh -c '"'"'umask '"${umask_:-0022}"'; exec "$@"'"'"' sh '"$(printf '%q ' "${filter[@]}" "$@")"
exec unshare -m --propagation private bash -c "$ns"
