#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the tests when missing: each
# test runs a throwaway cluster of its own (internal/pgtest: initdb and
# pg_ctl from /usr/lib/postgresql/15/bin in a temporary directory, as the
# postgres user, on a unix socket only). Idempotent.
#
# The machine's own clusters are left alone. On a machine without
# PostgreSQL, the install creates no "main" cluster (createcluster.d) and
# starts nothing (policy-rc.d for the length of the install, unless the
# machine has its own); where PostgreSQL is already installed this script
# changes nothing.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
if [ -x "$BIN/initdb" ] && [ -x "$BIN/pg_ctl" ] && [ -x "$BIN/postgres" ] && id postgres >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps-postgres: PostgreSQL 15 server missing ($BIN): run make test (or this script) as root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s postgresql-common >/dev/null 2>&1; then
	mkdir -p /etc/postgresql-common/createcluster.d
	cat > /etc/postgresql-common/createcluster.d/snowrain-tests.conf <<'CONF'
# Written by snowrain's scripts/deps-postgres.sh, which installed
# PostgreSQL for the tests: no "main" cluster is created; the tests make
# their own throwaway clusters. Remove this file to get the default.
create_main_cluster = false
CONF
fi
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	policy=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\n# snowrain deps-postgres.sh: start no service during the install\nexit 101\n' > "$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -q postgresql || { apt-get update -q && apt-get install -y -q postgresql; }
