#!/usr/bin/env bash
# Every option in docs/options.md round-trips through TIDALLOC_CONF and
# tidal_ctl("opt.<name>"); bad input gives one warning line per problem and
# leaves the default; docs/options.md is exactly what the table generates.
# Usage: options_roundtrip.sh API_STATS_BINARY GEN_OPTIONS_DOC DOCS_OPTIONS_MD
set -euo pipefail
prog=$1; gen=$2; doc=$3
fail() { echo "FAIL: $*"; exit 1; }

diff <("$gen") "$doc" >/dev/null || fail "docs/options.md is stale: run 'cmake --build build --target options_doc'"

# name, type and default from the generated table
mapfile -t rows < <(grep -E '^\| `[a-z_]+` \|' "$doc")
[ ${#rows[@]} -ge 8 ] || fail "options table has ${#rows[@]} rows"
args=(); conf=(); expect=(); defaults=()
for row in "${rows[@]}"; do
  name=$(echo "$row" | cut -d'|' -f2 | tr -d ' `')
  type=$(echo "$row" | cut -d'|' -f3 | tr -d ' ')
  def=$(echo "$row" | cut -d'|' -f4 | tr -d ' `')
  case "$type" in   # a value different from the default, as printed back
    bool) if [ "$def" = true ]; then v=false; else v=true; fi; out=$v ;;
    integer) hi=$(echo "$row" | cut -d'|' -f5 | sed -n 's/.* to \([0-9]*\) *$/\1/p')
             v=1234; [ -n "$hi" ] && [ "$hi" -lt 1234 ] && v=$hi; out=$v ;;
    ratio) v=0.5; out=0.5 ;;
    text) v=/tmp/x; out=$v ;;
    enum) v=$(echo "$row" | cut -d'|' -f5 | tr -d ' `' | tr ',' '\n' | grep -vx "$def" | head -1); out=$v ;;
    *) fail "unknown type $type for $name" ;;
  esac
  [ "$name" = stats_print ] && { v=false; out=false; }   # keep the output clean
  [ "$name" = prof ] && { v=false; out=false; }          # no dumps or leak reports from this test
  [ "$name" = prof_signal ] && { v=12; out=12; }         # a signal number
  args+=("$name=$type"); conf+=("$name:$v"); expect+=("$name:$out")
  case "$type" in
    ratio) defaults+=("$name:$(printf '%g' "$def")") ;;
    *) defaults+=("$name:$def") ;;
  esac
done

# 1. defaults
got=$("$prog" options "${args[@]}")
[ "$got" = "$(printf '%s\n' "${defaults[@]}")" ] || fail "defaults differ:"$'\n'"$got"
# 2. every option set through TIDALLOC_CONF reads back through tidal_ctl
joined=$(IFS=,; echo "${conf[*]}")
got=$(TIDALLOC_CONF="$joined" "$prog" options "${args[@]}" 2>/tmp/tidal_conf_err.$$)
[ "$got" = "$(printf '%s\n' "${expect[@]}")" ] || fail "TIDALLOC_CONF=$joined read back as:"$'\n'"$got"
[ ! -s /tmp/tidal_conf_err.$$ ] || fail "warnings for a valid TIDALLOC_CONF: $(cat /tmp/tidal_conf_err.$$)"
# 3. bad input: one clear line each, defaults kept, the program carries on
got=$(TIDALLOC_CONF="dirty_decay_ms:banana,no_such_option:1,thp:sometimes,dirty_mult:-2,background_thread" \
      "$prog" options dirty_decay_ms=integer thp=enum dirty_mult=ratio background_thread=bool 2>/tmp/tidal_conf_err.$$)
[ "$got" = $'dirty_decay_ms:10000\nthp:default\ndirty_mult:1\nbackground_thread:true' ] || fail "bad values changed options: $got"
err=$(cat /tmp/tidal_conf_err.$$); rm -f /tmp/tidal_conf_err.$$
[ "$(echo "$err" | wc -l)" -eq 5 ] || fail "expected 5 warning lines, got:"$'\n'"$err"
echo "$err" | grep -q "bad value 'banana' for option dirty_decay_ms in TIDALLOC_CONF (expects an integer from -1 to 3600000); using 10000" || fail "warning for dirty_decay_ms: $err"
echo "$err" | grep -q "unknown option 'no_such_option' in TIDALLOC_CONF, ignored" || fail "warning for unknown option: $err"
echo "$err" | grep -q "bad value 'sometimes' for option thp .*expects default, always, never" || fail "warning for thp: $err"
echo "$err" | grep -q "bad value '-2' for option dirty_mult .*expects a number from 0 to 1000" || fail "warning for dirty_mult: $err"
echo "options round trip: OK (${#rows[@]} options)"
