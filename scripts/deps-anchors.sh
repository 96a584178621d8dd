#!/usr/bin/env bash
# Installs the anchors of `make bench-anchors` when missing: OpenDKIM 2.11
# (opendkim, and opendkim-tools for opendkim-testkey) and OpenDMARC 1.4.2,
# from Debian's packages. Idempotent. The packages' own services are not
# used: the benchmark starts each daemon by hand with a config file and
# sockets of its own in a temp dir, and stops it again.
set -euo pipefail
missing=()
command -v opendkim >/dev/null || missing+=(opendkim)
command -v opendkim-testkey >/dev/null || missing+=(opendkim-tools)
command -v opendmarc >/dev/null || missing+=(opendmarc)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps-anchors: not root; cannot install ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }
