#!/bin/bash
# What the report tests need (issue 17): libxml2's xmllint validates our
# DMARC aggregate reports against RFC 7489's schema. Installed when
# missing; as root, as make test runs.
set -euo pipefail
if command -v xmllint >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps-reports: xmllint missing; run as root to install libxml2-utils" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends libxml2-utils
