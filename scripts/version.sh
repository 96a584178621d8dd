#!/bin/sh
# Prints snowrain's version from git, in a form Debian sorts right:
#   tag v1.2.3 exactly    → 1.2.3
#   3 commits after it    → 1.2.3+3.gabc1234
#   no tag yet            → 0.0.0+git20261130.abc1234 (commit date)
#   uncommitted changes   → … with .dirty appended
# Outside a git checkout: $SNOWRAIN_VERSION, else 0.0.0+unknown.
set -eu
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "${SNOWRAIN_VERSION:-0.0.0+unknown}"
	exit 0
fi
dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty=".dirty"
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	v=${d#v}
	case "$v" in
	*-*-g*) base=${v%-*-g*}; rest=${v#"$base"-}; n=${rest%%-g*}; hash=${rest#*-g}; v="$base+$n.g$hash" ;;
	esac
else
	v="0.0.0+git$(TZ=UTC git log -1 --date=format-local:%Y%m%d --format=%cd).$(git rev-parse --short=7 HEAD)"
fi
echo "$v$dirty"
