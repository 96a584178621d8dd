#!/bin/sh
# snowrain, part 2 of 3 (opt-in): outbound TLS policies per destination
# (manual overrides, DANE, MTA-STS, learned) from snowrain's socketmap.
# Needs in /etc/snowrain/snowrain.conf:
#   [policy]
#   socket = "unix:/var/spool/postfix/snowrain/policy.sock"
#
# WHEN SNOWRAIN IS DOWN, POSTFIX DEFERS OUTBOUND MAIL: every delivery that
# consults the map is deferred (dsn 4.7.5, "TLS policy lookup error" /
# "client TLS configuration problem") until snowrain answers again or the
# map is removed from smtp_tls_policy_maps. When snowrain is up but cannot
# decide (DNS down, a broken MTA-STS server), it answers NOTFOUND and
# Postfix uses its own smtp_tls_security_level.
#
# The map is read through proxymap, which runs outside the chroot, so a
# chrooted smtp reaches it. These commands append; nothing you have is
# replaced. Run them once, then `postfix reload`.
set -e
map=proxy:socketmap:unix:/var/spool/postfix/snowrain/policy.sock:tls
case " $(postconf -h smtp_tls_policy_maps) " in
*" $map "*) ;;
*) postconf -e "smtp_tls_policy_maps = $(postconf -h smtp_tls_policy_maps) $map" ;;
esac
# proxymap serves only the tables listed in proxy_read_maps; its default
# lists $smtp_tls_policy_maps, a customised one may not:
case " $(postconf -h proxy_read_maps) " in
*'$smtp_tls_policy_maps'* | *'${smtp_tls_policy_maps}'* | *" $map "*) ;;
*) postconf -e "proxy_read_maps = $(postconf -h proxy_read_maps) $map" ;;
esac
# Postfix only uses the answers (dane, verify, secure…) if TLS is on at all:
[ -n "$(postconf -h smtp_tls_security_level)" ] || postconf -e 'smtp_tls_security_level = may'
# DANE answers also need a local validating resolver (unbound) and:
#   postconf -e 'smtp_dns_support_level = dnssec'
