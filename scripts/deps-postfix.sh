#!/usr/bin/env bash
# Installs Postfix and swaks for the end-to-end tests when missing, and
# makes sure the default instance has a main.cf (postconf needs one; test
# instances run from their own config directories and do not touch it).
# Idempotent. A Postfix already running on
# this machine is left alone: running, on its ports, its files unchanged.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	command -v postfix >/dev/null && command -v swaks >/dev/null && [ -f /etc/postfix/main.cf ] && exit 0
	echo "deps-postfix: not root and Postfix or swaks missing: run make test (or this script) as root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v postfix >/dev/null || ! command -v swaks >/dev/null; then
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get install -y -q postfix swaks || { apt-get update -q && apt-get install -y -q postfix swaks; }
fi
if [ ! -f /etc/postfix/main.cf ]; then
	cat > /etc/postfix/main.cf <<'CF'
# Minimal main.cf written by snowrain's scripts/deps-postfix.sh (Postfix was
# installed with "No configuration"): the default instance is not started.
compatibility_level = 3.6
inet_interfaces = loopback-only
mydestination =
CF
fi
