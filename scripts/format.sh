#!/usr/bin/env bash
# Formats every C file with .clang-format; --check only reports.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find proxy cache tests -name '*.[ch]')
[ -n "$files" ] || exit 0
if ! command -v clang-format >/dev/null 2>&1; then
  echo "format: clang-format not installed; skipping" >&2
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  clang-format --dry-run --Werror $files
  echo "format: $(echo "$files" | wc -w) files clean"
else
  clang-format -i $files
fi
