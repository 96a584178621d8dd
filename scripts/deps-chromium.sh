#!/usr/bin/env bash
# Installs Debian's Chromium for the HTML report test. Idempotent.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	echo "deps-chromium: not root; the HTML report test will be skipped" >&2
	exit 0
fi
command -v chromium >/dev/null && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends chromium || { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }
