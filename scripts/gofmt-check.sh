#!/bin/sh
# Fails, naming the files, when gofmt would change a tracked .go file.
# third_party/ is left out: its patched library copies stay as close to
# upstream as possible (upstream's formatting included), so a diff against
# upstream shows only our patches. Outside a git checkout every .go file
# outside third_party/ is checked.
set -eu
cd "$(dirname "$0")/.."
GOFMT=${GOFMT:-$(${GO:-go} env GOROOT)/bin/gofmt}
if git rev-parse --git-dir >/dev/null 2>&1; then
	list() { git ls-files -z -- '*.go' ':(exclude)third_party/**'; }
else
	list() { find . -name '*.go' -not -path './third_party/*' -print0; }
fi
# A tracked file deleted in the work tree is not there to format.
bad=$(list | xargs -0 -r sh -c 'for f; do [ -f "$f" ] && printf "%s\n" "$f"; done' sh |
	tr '\n' '\0' | xargs -0 -r "$GOFMT" -l)
if [ -n "$bad" ]; then
	echo "gofmt: these files are not formatted (run gofmt -w on them):" >&2
	echo "$bad" >&2
	exit 1
fi
