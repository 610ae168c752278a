#!/usr/bin/env bash
# tidalloc report on a profile of known stacks (report_fixture.c): the sites
# are symbolized to the fixture's functions and lines, ranked by bytes in
# use (or allocated with --alloc), the allocator's own frame is skipped,
# sampled profiles are unsampled, and --svg draws a well-formed flame graph
# whose frames nest as the calls did. Usage: cmd_report.sh TIDALLOC FIXTURE WORKDIR
set -euo pipefail
cmd=$1; fixture=$2; dir=$3
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$dir"; cd "$dir"
"$fixture" prof.heap || fail "fixture could not write its profile"

out=$("$cmd" report prof.heap --top 2) || fail "report failed: $out"
echo "$out"
sites=$(echo "$out" | grep -E '(big_site|small_site) \(report_fixture\.c:[0-9]+\)' | awk '{print $NF, $(NF-1)}')
[ "$(echo "$sites" | wc -l)" = 2 ] || fail "expected both sites with their source lines"
echo "$out" | grep -E 'report_fixture\.c' | head -1 | grep -q big_site || fail "big_site should rank first by bytes in use"
echo "$out" | grep big_site | grep -q '8.0 MiB' || fail "big_site's 8 MiB in use"
echo "$out" | grep -q 'in use: 8.0 MiB in 104 blocks' || fail "totals line"
echo "$out" | grep -q 'tidal_version' && fail "the allocator's frame was reported as a site"

out=$("$cmd" report prof.heap --alloc --top 1 --svg flame.svg)
echo "$out" | grep -E 'report_fixture\.c' | grep -q small_site || fail "--alloc ranks small_site first: $out"
[ "$(echo "$out" | grep -c 'report_fixture\.c')" = 1 ] || fail "--top 1 printed more than one site"

# heap_v2/524288: big_site's blocks average 2 MiB, scaled by 1/(1-exp(-4)) = 1.0187
sed '1s@heap_v2/1@heap_v2/524288@' prof.heap > sampled.heap
out=$("$cmd" report sampled.heap); grep big_site <<<"$out" | grep -q '8.1 MiB' || fail "sampled profile not unsampled"

python3 - flame.svg <<'PY'
import sys, xml.etree.ElementTree as ET
ns = {"s": "http://www.w3.org/2000/svg"}
root = ET.parse(sys.argv[1]).getroot()
frames = {}
for g in root.findall("s:g", ns):
    name = g.find("s:title", ns).text.split(" (")[0]
    r = g.find("s:rect", ns)
    frames[name] = (float(r.get("x")), float(r.get("y")), float(r.get("width")))
for f in ("all", "main", "middle", "big_site", "small_site"):
    assert f in frames, f"{f} missing from the flame graph: {sorted(frames)}"
x, y, w = frames["middle"]; bx, by, bw = frames["big_site"]
assert by < y and bx >= x and bx + bw <= x + w + 0.1, "big_site must sit on top of middle"
assert frames["small_site"][2] > bw, "widths follow bytes allocated (--alloc)"
assert "tidal_version" not in frames
print("flame graph: OK")
PY

echo "heap profile: broken" > bad.heap
if "$cmd" report bad.heap 2>err; then fail "a bad profile was accepted"; fi
grep -q "not a heap profile" err || fail "bad profile message: $(cat err)"
set +e; "$cmd" report >/dev/null 2>&1; rc=$?; set -e
[ $rc = 2 ] || fail "report without a PROFILE: exit $rc, expected 2"
echo "cmd report: OK"
