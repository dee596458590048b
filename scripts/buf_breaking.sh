#!/usr/bin/env bash
# Compares the contracts with the previous ones: with uncommitted changes to proto/ against
# HEAD, otherwise against HEAD~1 (the contracts before the last commit landed on main).
set -euo pipefail
buf="${1:-npx buf}"
cd "$(git rev-parse --show-toplevel)"
if ! git diff --quiet HEAD -- proto buf.yaml 2>/dev/null || ! git rev-parse -q --verify HEAD~1 >/dev/null; then
  ref=HEAD
else
  ref=HEAD~1
fi
if ! git cat-file -e "$ref:proto" 2>/dev/null; then
  echo "buf breaking: $ref has no proto/ folder, so there are no previous contracts to compare with"
  exit 0
fi
echo "buf breaking: comparing proto/ with $ref ($(git rev-parse --short "$ref"))"
$buf breaking --against ".git#ref=$ref"
