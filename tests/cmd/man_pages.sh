#!/usr/bin/env bash
# The manual pages: tidalloc.conf(5) is exactly what the options table
# generates (stale: regenerate with 'cmake --build build --target options_doc');
# every page renders with man -l without a warning, has its sections, and
# tidalloc.conf(5) describes every option of the table.
# Usage: man_pages.sh GEN_OPTIONS_DOC DOCS_MAN_DIR
set -euo pipefail
gen=$1; dir=$2
fail() { echo "FAIL: $*"; exit 1; }
diff <("$gen" --man) "$dir/tidalloc.conf.5" >/dev/null ||
  fail "docs/man/tidalloc.conf.5 is stale: run 'cmake --build build --target options_doc'"
command -v man >/dev/null || fail "man is not installed (scripts/deps.sh test installs man-db)"
for page in tidalloc.1 tidalloc.3 tidalloc.conf.5; do
  warn=$(MANWIDTH=80 man --warnings -l "$dir/$page" 2>&1 >/dev/null) || fail "$page does not render"
  [ -z "$warn" ] || fail "$page: $warn"
  text=$(MANWIDTH=80 man -l "$dir/$page" 2>/dev/null)
  for section in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
    grep -q "^$section" <<<"$text" || fail "$page has no $section section"
  done
done
text=$(MANWIDTH=80 man -l "$dir/tidalloc.conf.5" 2>/dev/null)
names=$("$gen" --c | grep -oE '^  \{ "[a-z_]+"' | tr -d ' {"')
for name in $names; do
  grep -qE "^       $name( |$)" <<<"$text" || fail "tidalloc.conf(5) does not describe $name"
done
echo "man pages: OK ($(wc -w <<<"$names") options)"
