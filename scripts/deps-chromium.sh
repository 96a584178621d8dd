#!/usr/bin/env bash
# Installs Debian's Chromium for the HTML report tests and cmark-gfm
# (GitHub's Markdown renderer) for the Markdown report tests. Idempotent.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	if command -v chromium >/dev/null && command -v cmark-gfm >/dev/null; then exit 0; fi
	echo "deps-chromium: not root and Chromium or cmark-gfm missing: run make test (or this script) as root" >&2
	exit 1
fi
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v cmark-gfm >/dev/null || missing+=(cmark-gfm)
[ ${#missing[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" || { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
