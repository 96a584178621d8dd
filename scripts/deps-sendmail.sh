#!/usr/bin/env bash
# Extracts Debian's Sendmail into a scratch tree for the end-to-end tests.
# `apt-get install sendmail` would remove Postfix (both are the system
# MTA), so the packages are downloaded and unpacked, not installed; the
# libraries it links are installed (none conflicts with Postfix).
# Idempotent. Tree: $SENDMAIL_ROOT, default /opt/snowrain-test/sendmail.
set -euo pipefail
root=${SENDMAIL_ROOT:-/opt/snowrain-test/sendmail}
if [ "$(id -u)" != 0 ]; then
	[ -x "$root/usr/libexec/sendmail/sendmail" ] && exit 0
	echo "deps-sendmail: not root and no Sendmail tree in $root: run make test (or this script) as root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
libs="libwrap0 liblockfile1 libnsl2 libdb5.3 libldap-2.5-0 libsasl2-2 m4 util-linux"
missing=""
for p in $libs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
	apt-get install -y -q $missing || { apt-get update -q && apt-get install -y -q $missing; }
fi
if [ -x "$root/usr/libexec/sendmail/sendmail" ] && [ -f "$root/usr/share/sendmail/cf/m4/cf.m4" ]; then
	exit 0
fi
tmp=$(mktemp -d)
chmod 755 "$tmp" # apt-get download runs as _apt
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
apt-get download sendmail-bin sendmail-base sendmail-cf || { apt-get update -q && apt-get download sendmail-bin sendmail-base sendmail-cf; }
mkdir -p "$root"
for deb in ./*.deb; do dpkg -x "$deb" "$root"; done
test -x "$root/usr/libexec/sendmail/sendmail" || { echo "deps-sendmail: no sendmail binary in $root" >&2; exit 1; }
echo "deps-sendmail: Sendmail extracted into $root"
