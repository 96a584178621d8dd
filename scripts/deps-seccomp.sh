#!/usr/bin/env bash
# Installs what the systemd unit test needs when missing: gcc and
# libseccomp-dev (to build the helper that loads the unit's
# SystemCallFilter= around the daemon) and systemd's systemd-analyze (to
# expand its @groups). Nothing is started or configured. Idempotent.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	echo "deps-seccomp: not root; cannot install libseccomp-dev (the unit test needs it)" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
need=()
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/include/seccomp.h ] || need+=(libseccomp-dev)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v prlimit >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
	apt-get install -y -q --no-install-recommends "${need[@]}" ||
		{ apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; }
fi
