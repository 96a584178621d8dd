#!/usr/bin/env bash
# Runs every Fuzz* target of the module for a while each (default 20s).
# A crasher is written by go test under the package's testdata/fuzz/ and
# makes this script fail; keep it there as a regression case once fixed.
set -uo pipefail
time=${1:-20s}
cd "$(dirname "$0")/.."
failed=()
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
		echo "== $pkg $f"
		before=$(find "$dir/testdata/fuzz/$f" -type f 2>/dev/null | wc -l)
		go test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "$time" 2>&1 | tail -3
		after=$(find "$dir/testdata/fuzz/$f" -type f 2>/dev/null | wc -l)
		if [ "$after" -gt "$before" ]; then failed+=("$pkg $f"); fi
	done
done
if [ ${#failed[@]} -gt 0 ]; then
	printf 'crashers found: %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: no crashers"
