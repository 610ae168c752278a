#!/usr/bin/env python3
"""Validate tidalloc's JSON statistics against the schema in docs/stats.md.
Usage: check_stats_json.py FILE   (FILE may hold other lines: the last line that
parses as a JSON object with a "version" key is checked). Exits 1 on mismatch."""
import json
import sys

INT = "int"
SCHEMA = {
    "version": str, "allocated": INT, "active": INT, "resident": INT, "mapped": INT,
    "retained": INT, "metadata": INT, "pagemap_mapped": INT, "secure_allocated": INT,
    "guarded_mapped": INT, "options": dict,
    "small": {"allocated": INT, "classes": [{
        "class": INT, "size": INT, "requests": INT, "frees": INT, "live": INT, "slabs": INT,
        "utilization": float}]},
    "large": {"allocated": INT, "requests": INT, "frees": INT},
    "huge": {k: INT for k in ("live_bytes", "live_count", "cached_bytes", "cached_count",
                              "cache_hits", "cache_misses", "remaps", "donated_bytes")},
    "pages": {k: INT for k in ("mapped", "arena_reserved", "units", "hugified_units", "active", "dirty", "muzzy",
                               "purged_lazy_bytes", "purged_now_bytes", "purge_passes", "hugifies",
                               "dehugifies", "collapses", "collapse_failures", "decommits",
                               "holes", "holes_resident", "holes_given", "holes_taken")},
    "caches": {k: INT for k in ("span_cache", "pooled_slabs", "remote_buffers", "hole_passes", "hole_pages",
                                 "run_cache", "run_cache_hits", "run_cache_misses")},
    "syscalls": {k: INT for k in ("mmap", "munmap", "madvise_free", "madvise_dontneed",
                                  "madvise_hugepage", "madvise_nohugepage", "madvise_collapse",
                                  "mremap", "commit")},
    "mutexes": [{"name": str, "acquisitions": INT, "contended": INT, "wait_ns": INT, "hold_ns": INT, "hold_max_ns": INT}],
    "heaps": [{"name": str, "allocated": INT, "active": INT, "mapped": INT, "maps": INT, "map_failures": INT,
               "unmaps": INT, "purges": INT}],
    "pressure": {"events_psi": INT, "events_cgroup": INT, "events_limit": INT, "events_explicit": INT,
                 "drains": INT, "released": INT,
                 "cleaners": [{"name": str, "calls": INT, "released": INT}]},
    "threads": {"heaps_active": INT, "heaps_pooled": INT, "background_running": bool,
                "background_wakeups": INT},
    "prof": {"enabled": bool, "live_bytes": INT, "live_count": INT, "samples": INT, "stacks": INT,
             "metadata": INT, "dumps": INT, "sites": [{"bytes": INT, "count": INT, "site": str}]},
}
OPTIONS = {"background_thread": bool, "dirty_decay_ms": INT, "muzzy_decay_ms": INT,
           "dirty_mult": float, "hugify_threshold": float, "hugify_delay_ms": INT,
           "thp": str, "stats_print": str, "secure": bool, "guard_sample": INT,
           "pressure": bool, "pressure_delay_ms": INT, "memory_limit": INT,
           "stats_signal": INT, "prof": bool, "prof_sample": INT,
           "prof_prefix": str, "prof_final": bool, "prof_leak": bool, "prof_leak_error": bool,
           "prof_gdump": bool, "prof_signal": INT, "prof_seed": INT,
           "guard_unused": bool, "large_quarantine": INT, "large_quarantine_protect": bool,
           "run_cache": INT}


def check(value, schema, path, errors):
    if schema is INT:
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            errors.append(f"{path}: expected a non-negative integer, got {value!r}")
    elif schema is float:
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            errors.append(f"{path}: expected a number, got {value!r}")
    elif schema in (str, bool, dict):
        if not isinstance(value, schema) or (schema is not bool and isinstance(value, bool)):
            errors.append(f"{path}: expected {schema.__name__}, got {value!r}")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            errors.append(f"{path}: expected an array")
            return
        for i, item in enumerate(value):
            check(item, schema[0], f"{path}[{i}]", errors)
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object")
            return
        for key, sub in schema.items():
            if key not in value:
                errors.append(f"{path}.{key}: missing")
            else:
                check(value[key], sub, f"{path}.{key}", errors)
        for key in value:
            if key not in schema:
                errors.append(f"{path}.{key}: not in the documented schema")


def main():
    doc = None
    for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and "version" in obj:
                doc = obj
    if doc is None:
        print("FAIL: no tidalloc statistics JSON found")
        return 1
    errors = []
    check(doc, SCHEMA, "$", errors)
    check(doc.get("options", {}), OPTIONS, "$.options", errors)
    if not errors:
        a, b, c, d = (doc[k] for k in ("allocated", "active", "resident", "mapped"))
        if not (a <= b <= c <= d):
            errors.append(f"invariant allocated<=active<=resident<=mapped broken: {a} {b} {c} {d}")
        for k in doc["small"]["classes"]:
            if k["live"] != k["requests"] - k["frees"]:
                errors.append(f"class {k['class']}: live != requests - frees")
    for e in errors:
        print("FAIL:", e)
    if not errors:
        print(f"stats JSON OK ({len(doc['small']['classes'])} classes, {len(doc['mutexes'])} mutexes)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
