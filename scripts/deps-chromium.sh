#!/usr/bin/env bash
# Installs Debian's Chromium for the HTML report test. Idempotent.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	command -v chromium >/dev/null && exit 0
	echo "deps-chromium: not root and Chromium missing: run make test (or this script) as root" >&2
	exit 1
fi
command -v chromium >/dev/null && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends chromium || { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }
