#!/usr/bin/env bash
# Runs every Fuzz* target of the module for a while each.
set -euo pipefail
time=${1:-20s}
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
		echo "== $pkg $f"
		go test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "$time"
	done
done
