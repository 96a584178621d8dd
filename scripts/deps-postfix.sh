#!/usr/bin/env bash
# Installs Postfix and swaks for the end-to-end tests when missing, and
# makes sure the default instance has a main.cf (throwaway test instances
# register themselves in its alternate_config_directories). Idempotent.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	echo "deps-postfix: not root; the Postfix tests will be skipped" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v postfix >/dev/null || ! command -v swaks >/dev/null; then
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get install -y -q postfix swaks || { apt-get update -q && apt-get install -y -q postfix swaks; }
fi
if [ ! -f /etc/postfix/main.cf ]; then
	cat > /etc/postfix/main.cf <<'CF'
# Minimal main.cf written by snowrain's scripts/deps-postfix.sh: the
# default instance stays stopped; test instances live elsewhere.
compatibility_level = 3.6
inet_interfaces = loopback-only
mydestination =
CF
fi
# The default instance must not hold port 25 for the tests.
postfix status >/dev/null 2>&1 && postfix stop >/dev/null 2>&1 || true
postconf -e 'multi_instance_wrapper =' >/dev/null
