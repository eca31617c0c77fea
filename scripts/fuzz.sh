#!/usr/bin/env bash
# Runs every Fuzz target of the core module for the given time each.
set -euo pipefail
t=${1:-15s}
cd "$(dirname "$0")/../core"
for pkg in $(go list ./...); do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "== $pkg $f ($t)"
    go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"
  done
done
