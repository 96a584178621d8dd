#!/bin/sh
# snowrain, part 3 of 3 (opt-in): require TLS from chosen sender domains
# (policy delegation). Needs in /etc/snowrain/snowrain.conf:
#   [policy.inbound]
#   socket = "unix:/var/spool/postfix/snowrain/inbound.sock"
#   require_tls = ["bank.example"]
#
# When snowrain is down, Postfix takes DUNNO for this check and the mail is
# accepted: default_action=DUNNO overrides smtpd_policy_service_default_action
# (451 4.3.5 "Server configuration problem") for this service only, and
# timeout=10s bounds the wait. The relative socket name is what Debian's
# chrooted smtpd sees.
#
# This appends to smtpd_recipient_restrictions; nothing you have is
# replaced. The check must come before any plain permit, reject or defer in
# that list (it would never run after one). Run once, then `postfix reload`.
set -e
svc='check_policy_service { unix:snowrain/inbound.sock, default_action=DUNNO, timeout=10s }'
cur=$(postconf -h smtpd_recipient_restrictions)
case "$cur" in
*snowrain/inbound.sock*) exit 0 ;;
'') postconf -e "smtpd_recipient_restrictions = $svc" ;;
*) postconf -e "smtpd_recipient_restrictions = $cur, $svc" ;;
esac
