#!/usr/bin/env bash
# mta-state.sh save FILE | check FILE
# Records the machine's own Postfix as a contributor's live mail server has
# it: whether it runs (postfix status) and its master's PID, the sockets its
# master listens on, and a checksum of every file below /etc/postfix. make
# test saves it before the tests and checks it after: the tests may run
# their own instances but must leave this one running, on its ports, with
# its configuration unchanged (test instances add themselves to
# alternate_config_directories only while they run).
set -euo pipefail
mode=${1:?usage: mta-state.sh save|check FILE}
file=${2:?usage: mta-state.sh save|check FILE}

state() {
	local pid=""
	if command -v postfix >/dev/null && postfix status >/dev/null 2>&1; then
		pid=$(sed -n '1s/ //gp' "$(postconf -xh queue_directory)/pid/master.pid" 2>/dev/null || true)
		echo "postfix: running, master pid $pid"
	else
		echo "postfix: not running"
	fi
	if [ -n "$pid" ]; then
		ss -Hlntup 2>/dev/null | grep -F "pid=$pid," | awk '{print "listening:", $1, $5}' | sort -u
	fi
	if [ -d /etc/postfix ]; then
		(cd /etc/postfix && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) | sed 's/^/etc: /'
	fi
}

case "$mode" in
save)
	state >"$file"
	;;
check)
	now=$(mktemp)
	trap 'rm -f "$now"' EXIT
	state >"$now"
	if ! diff -u "$file" "$now" >&2; then
		echo "mta-state: the machine's own Postfix changed during the tests (above: - before, + after)" >&2
		exit 1
	fi
	echo "mta-state: the machine's own Postfix is as it was ($(head -n 1 "$now"))"
	;;
*)
	echo "usage: mta-state.sh save|check FILE" >&2
	exit 2
	;;
esac
