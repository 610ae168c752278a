#!/usr/bin/python3
"""Run the tidalloc benchmark suite against glibc and the Debian peers.

Every workload runs under every allocator (chosen with LD_PRELOAD; glibc means
no preload), interleaved: for each repetition, for each workload, the
allocators run in a freshly shuffled order, so drift on the machine spreads
over all allocators instead of biasing one.  Per run we record wall time and
peak RSS (ru_maxrss from wait4, or the server's VmHWM for redis), check the
exit status and compare the workload's checksum with glibc's.  Medians over
the repetitions go into a Markdown table with tidalloc's ratio to each peer
and geometric means.

Outputs in --out (default bench/results):
  results.csv  one row per run
  summary.md   the tables plus machine details (date, kernel, CPU, THP)
  bench.png    time and peak RSS normalised to glibc, one panel each

Exit status: 0 if every run succeeded and every checksum matched, 1 if any
run crashed, timed out or produced a different checksum, 2 on usage errors.
See bench/README.md.
"""
import argparse
import csv
import datetime
import hashlib
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PROGRAMS = BENCH / "programs"

# Debian package and soname of each peer allocator.
PEERS = {
    "jemalloc": ("libjemalloc2", "libjemalloc.so.2"),
    "mimalloc": ("libmimalloc2.0", "libmimalloc.so.2"),
    "tcmalloc": ("libtcmalloc-minimal4", "libtcmalloc_minimal.so.4"),
}
ALL_ALLOCATORS = ["tidalloc", "glibc", "jemalloc", "mimalloc", "tcmalloc"]
SUBJECT = "tidalloc"
BASELINE = "glibc"
# --variant NAME=LIB[,TIDALLOC_CONF]: extra tidalloc builds or settings,
# measured in the same run (e.g. checks compiled out, or secure mode).
VARIANT_CONF = {}
CURRENT_CONF = None

# Environment variables that tune an allocator; removed so every allocator
# runs with its defaults.
TUNING_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "MIMALLOC_", "TCMALLOC_", "JE_MALLOC_CONF",
                   "TIDAL_", "LD_PRELOAD")


# --------------------------------------------------------------------------
# Workload table
# --------------------------------------------------------------------------
class Workload:
    def __init__(self, name, kind, desc, full, quick, requires=(), env=None,
                 checksum="line", stdin=None, libc_preload=False, prog=None):
        self.name = name
        self.prog = prog or name      # "bin": runs bench_<prog> (several entries may share one)
        self.kind = kind              # "bin" (bench/workloads), "cmd" or "redis"
        self.desc = desc
        self.full = full              # argument list (or dict for redis)
        self.quick = quick
        self.requires = requires      # executables that must exist
        self.env = env or {}
        self.checksum = checksum      # "line": a "checksum X" line; "stdout": hash of stdout
        self.stdin = stdin            # callable(last arg) -> bytes: the last element of
                                      # full/quick feeds stdin instead of argv
        # the program links another malloc (redis-server links Debian's
        # libjemalloc.so.2), so "glibc" must preload libc itself to win
        self.libc_preload = libc_preload


def sqlite_stdin(rows):
    rows = int(rows)
    head = "CREATE TEMP TABLE cfg(n); INSERT INTO cfg VALUES(%d);\n" % rows
    return head.encode() + (PROGRAMS / "sqlite_workload.sql").read_bytes()


WORKLOADS = [
    Workload("small_churn", "bin", "1 thread, 8-256 B objects, ring of 20k live",
             [], ["1500000", "5000"]),
    Workload("threads_local", "bin", "4 threads, private burst alloc/free 16 B-1 KiB",
             [], ["4", "15000"]),
    Workload("prodcons", "bin", "2 producers -> 2 consumers, every free remote",
             [], ["2", "2", "300000"]),
    Workload("larson", "bin", "larson-style server, slot arrays handed to new threads",
             [], ["4", "1000", "15000", "4"]),
    Workload("thread_churn", "bin", "short-lived threads, leftovers freed by main",
             [], ["40"]),
    Workload("random_sizes", "bin", "power-law sizes 8 B-1 MiB, 4k live, 1/8 calloc",
             [], ["40000", "1000"]),
    Workload("realloc_growth", "bin", "48 interleaved buffers grown by realloc to 8 MiB",
             [], ["8"]),
    Workload("large_repeat", "bin", "1-32 MiB blocks, every page touched, 2 live",
             [], ["30"]),
    Workload("fragmentation", "bin", "alloc waves, free random 85%, new size mix",
             [], ["24", "3"]),
    # The three shapes where issue 14 found tidalloc trailing: random
    # replacement in a large working set (every free touches cold memory), on
    # one thread and on two; and many threads in short bursts of mixed sizes.
    Workload("random_replace", "bin", "256k live 8 B-1 KiB, free a random one, allocate anew",
             ["1", "262144", "6000000"], ["1", "20000", "200000"]),
    Workload("random_replace_2t", "bin", "random_replace on 2 threads, 256k live each",
             ["2", "262144", "3000000"], ["2", "20000", "100000"], prog="random_replace"),
    Workload("bursts_16t", "bin", "16 threads, short bursts of 16 B-1 KiB, small rings",
             ["16", "40000", "16", "64"], ["16", "2000", "16", "64"], prog="threads_local"),
    Workload("large_threads", "bin", "16 threads, 64-256 KiB blocks, half freed by another thread",
             ["16", "5000"], ["4", "300"]),
    Workload("python", "cmd", "python3 objects/dicts/strings/json (PYTHONMALLOC=malloc)",
             ["/usr/bin/python3", str(PROGRAMS / "py_workload.py"), "6"],
             ["/usr/bin/python3", str(PROGRAMS / "py_workload.py"), "1"],
             requires=["/usr/bin/python3"],
             env={"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0",
                  "PYTHONDONTWRITEBYTECODE": "1"}),
    Workload("sqlite", "cmd", "sqlite3 in-memory DB: insert, index, update, delete, join",
             ["sqlite3", "-batch", ":memory:", "60000"],   # last element: rows, via stdin
             ["sqlite3", "-batch", ":memory:", "5000"],
             requires=["sqlite3"], checksum="stdout", stdin=sqlite_stdin),
    Workload("redis", "redis", "redis-server under redis-benchmark (set/get/lpush/lpop)",
             {"phases": [("set,get,lpush,lpop", 200000, 128), ("set", 100000, 1024)],
              "keyspace": 200000},
             {"phases": [("set,get,lpush,lpop", 20000, 128), ("set", 10000, 1024)],
              "keyspace": 20000},
             requires=["redis-server", "redis-benchmark"], libc_preload=True),
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def warn(msg):
    print("WARNING: " + msg, file=sys.stderr, flush=True)


def loud(msg):
    bar = "!" * 78
    print("\n%s\n!! %s\n%s\n" % (bar, msg, bar), file=sys.stderr, flush=True)


def find_shared_lib(soname):
    """Path of a shared library for this machine's architecture, via ldconfig."""
    arch_tag = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(platform.machine(), "")
    candidates = []
    try:
        out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            name, _, rest = line.strip().partition(" ")
            if name == soname and "=>" in rest:
                path = rest.split("=>")[-1].strip()
                if os.path.exists(path):
                    candidates.append((arch_tag not in rest, path))
    except OSError:
        pass
    if candidates:
        return sorted(candidates)[0][1]
    for d in ("/usr/lib/%s-linux-gnu" % platform.machine(), "/lib/%s-linux-gnu" % platform.machine(),
              "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        p = os.path.join(d, soname)
        if os.path.exists(p):
            return p
    return None


def which(exe):
    return exe if os.path.isabs(exe) and os.access(exe, os.X_OK) else shutil.which(exe)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp_command(port, *args, timeout=10.0):
    """Send one command to redis and return the decoded reply (or None)."""
    payload = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        payload += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        kind, rest = buf[:1], buf[1:]
        line, _, tail = rest.partition(b"\r\n")
        if kind in (b"+", b"-"):
            return line.decode()
        if kind == b":":
            return int(line)
        if kind == b"$":
            n = int(line)
            while len(tail) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                tail += chunk
            return tail[:n].decode(errors="replace")
        return buf.decode(errors="replace")


def read_status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def clean_env(extra=None, preload=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(TUNING_PREFIXES)}
    if CURRENT_CONF:
        env["TIDALLOC_CONF"] = CURRENT_CONF
    if extra:
        env.update(extra)
    if preload:
        env["LD_PRELOAD"] = preload
    return env


class Result:
    def __init__(self, workload, allocator, rep):
        self.workload, self.allocator, self.rep = workload, allocator, rep
        self.seconds = float("nan")
        self.maxrss_kb = 0
        self.ok = False
        self.checksum = ""
        self.error = ""


def wait_child(proc, timeout):
    """wait4 the child; kill its process group after `timeout` seconds."""
    timed_out = []

    def kill():
        timed_out.append(True)
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            pass
    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru, bool(timed_out)


def describe_exit(code, timed_out, timeout):
    if timed_out:
        return "timed out after %ds" % timeout
    if code < 0:
        try:
            return "killed by signal %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit status %d" % code


# --------------------------------------------------------------------------
# running one workload under one allocator
# --------------------------------------------------------------------------
def run_process(wl, argv, preload, res, args, stdin_bytes=None):
    """Run argv through tidal_spawn, which forks it from a small process and
    reports wall time and ru_maxrss from wait4 (see bench/tools/tidal_spawn.c)."""
    env = clean_env(wl.env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryFile() as inp, \
            tempfile.NamedTemporaryFile(prefix="tidal-spawn-", mode="r") as rf:
        if stdin_bytes is not None:
            inp.write(stdin_bytes)
            inp.seek(0)
        launcher = [args.spawn] + (["-p", preload] if preload else []) + [rf.name]
        t0 = time.perf_counter()
        proc = subprocess.Popen(launcher + argv,
                                stdin=inp if stdin_bytes is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, env=env, start_new_session=True)
        lcode, _, timed_out = wait_child(proc, args.timeout)
        res.seconds = time.perf_counter() - t0
        fields = rf.read().split()
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        stderr = err.read().decode(errors="replace")
    if timed_out or lcode != 0 or len(fields) != 3:
        code = lcode
    else:
        res.seconds, res.maxrss_kb, code = float(fields[0]), int(fields[1]), int(fields[2])
    if code != 0 or timed_out:
        res.error = describe_exit(code, timed_out, args.timeout)
        tail = stderr.strip().splitlines()[-3:]
        if tail:
            res.error += ": " + " | ".join(tail)
        return
    if wl.checksum == "stdout":
        res.checksum = hashlib.sha1(stdout).hexdigest()[:16]
    else:
        m = re.search(rb"^checksum (\S+)\s*$", stdout, re.M)
        if not m:
            res.error = "no checksum line in output"
            return
        res.checksum = m.group(1).decode()
    res.ok = True


def run_redis(wl, spec, alloc_name, preload, res, timeout):
    server_bin, bench_bin = which("redis-server"), which("redis-benchmark")
    port = free_port()
    tmpdir = tempfile.mkdtemp(prefix="tidal-redis-")
    log = open(os.path.join(tmpdir, "server.log"), "wb")
    server = subprocess.Popen(
        [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", tmpdir,
         "--logfile", ""],
        stdout=log, stderr=subprocess.STDOUT, env=clean_env(None, preload),
        start_new_session=True)
    try:
        deadline = time.time() + 15
        while True:
            try:
                if resp_command(port, "PING", timeout=1) == "PONG":
                    break
            except OSError:
                pass
            if server.poll() is not None:
                res.error = "redis-server died at start (%s)" % describe_exit(
                    server.returncode, False, 0)
                return
            if time.time() > deadline:
                res.error = "redis-server did not answer PING"
                return
            time.sleep(0.05)
        tests = []
        t0 = time.perf_counter()
        for tlist, n, size in spec["phases"]:
            argv = [bench_bin, "-h", "127.0.0.1", "-p", str(port), "-q", "-n", str(n),
                    "-r", str(spec["keyspace"]), "-P", "16", "-c", "32", "-d", str(size),
                    "-t", tlist]
            p = subprocess.run(argv, capture_output=True, env=clean_env(), timeout=timeout)
            text = p.stdout.decode(errors="replace").replace("\r", "\n")
            if p.returncode != 0:
                res.error = "redis-benchmark %s" % describe_exit(p.returncode, False, 0)
                return
            done = re.findall(r"^\s*([A-Z_]+)(?: \([^)]*\))?: [\d.]+ requests per second", text, re.M)
            tests += done
            if server.poll() is not None:
                break
        res.seconds = time.perf_counter() - t0
        if server.poll() is not None:
            res.error = "redis-server %s during the benchmark" % describe_exit(
                server.returncode, False, 0)
            return
        info = resp_command(port, "INFO", "memory") or ""
        dbsize = resp_command(port, "DBSIZE")
        m = re.search(r"allocator_allocated:(\d+)", info)
        je_bytes = int(m.group(1)) if m else 0
        # Debian's redis links libjemalloc.so.2: make sure the preload really
        # replaced it (its own stats stay near zero when it is not used).
        if alloc_name != "jemalloc" and je_bytes > 16 << 20:
            res.error = ("preload had no effect: redis' jemalloc holds %d MiB"
                         % (je_bytes >> 20))
        elif not isinstance(dbsize, int) or dbsize <= 0:
            res.error = "redis has no keys after the benchmark (DBSIZE=%r)" % (dbsize,)
        hwm = read_status_kb(server.pid, "VmHWM")
        try:
            resp_command(port, "SHUTDOWN", "NOSAVE", timeout=5)
        except OSError:
            pass
        code, ru, timed_out = wait_child(server, 30)
        res.maxrss_kb = hwm if hwm else ru.ru_maxrss
        if res.error:
            return
        if code != 0:
            res.error = "redis-server shutdown: %s" % describe_exit(code, timed_out, 30)
            return
        res.checksum = ",".join(tests)
        res.ok = True
    except subprocess.TimeoutExpired:
        res.error = "redis-benchmark timed out after %ds" % timeout
    finally:
        if server.returncode is None:
            try:
                os.killpg(server.pid, 9)
            except OSError:
                pass
            wait_child(server, 10)
        log.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


def run_one(wl, alloc_name, alloc_lib, libc_path, rep, args):
    global CURRENT_CONF
    CURRENT_CONF = VARIANT_CONF.get(alloc_name)
    res = Result(wl.name, alloc_name, rep)
    preload = alloc_lib
    if alloc_name == BASELINE and wl.libc_preload:
        preload = libc_path
    spec = wl.quick if args.quick else wl.full
    if wl.kind == "redis":
        run_redis(wl, spec, alloc_name, preload, res, args.timeout)
    elif wl.kind == "bin":
        argv = [str(Path(args.bin_dir) / ("bench_" + wl.prog))] + list(spec)
        run_process(wl, argv, preload, res, args)
    else:
        argv = list(spec)
        stdin = None
        if wl.stdin:
            stdin = wl.stdin(argv.pop())
        argv[0] = which(argv[0])
        run_process(wl, argv, preload, res, args, stdin)
    return res


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------
def geomean(xs):
    xs = [x for x in xs if x and x > 0 and not math.isnan(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def machine_info():
    info = {}
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info["kernel"] = platform.release()
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu"] = "%s, %d CPUs online" % (cpu, os.cpu_count() or 0)
    for key, path in (("thp", "/sys/kernel/mm/transparent_hugepage/enabled"),
                      ("thp_defrag", "/sys/kernel/mm/transparent_hugepage/defrag")):
        try:
            txt = open(path).read().strip()
            m = re.search(r"\[(\w+)\]", txt)
            info[key] = m.group(1) if m else txt
        except OSError:
            info[key] = "n/a"
    try:
        mem = [l for l in open("/proc/meminfo") if l.startswith("MemTotal")][0]
        info["memory"] = "%.1f GiB" % (int(mem.split()[1]) / 1048576)
    except (OSError, IndexError):
        info["memory"] = "?"
    info["glibc"] = platform.libc_ver()[1] or "?"
    return info


def package_version(pkg):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                             capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else "?"
    except OSError:
        return "?"


def tidalloc_revision():
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                             capture_output=True, text=True)
        if rev.returncode == 0 and rev.stdout.strip():
            return rev.stdout.strip()
    except OSError:
        pass
    return "uncommitted work tree"


def aggregate(results, workloads, allocs):
    """Per (workload, allocator): median seconds/RSS over ok runs, or None if any run failed."""
    agg = {}
    for wl in workloads:
        for a in allocs:
            runs = [r for r in results if r.workload == wl.name and r.allocator == a]
            if not runs:
                continue
            if any(not r.ok for r in runs):
                agg[wl.name, a] = None
            else:
                agg[wl.name, a] = (statistics.median(r.seconds for r in runs),
                                   statistics.median(r.maxrss_kb for r in runs))
    return agg


def common_set(agg, names, allocs):
    """Workloads on which every allocator succeeded: geometric means use only
    these, so every allocator is averaged over the same programs."""
    return [n for n in names if all(agg.get((n, a)) for a in allocs)]


def fmt_ratio(x):
    return "–" if x is None or math.isnan(x) else "%.2f" % x


def build_table(agg, workloads, allocs, idx, title, fmt_abs):
    subject = SUBJECT if SUBJECT in allocs else None
    peers = [a for a in allocs if a != SUBJECT]
    base = BASELINE if BASELINE in allocs else None
    cols = ["workload"] + allocs
    if subject:
        cols += ["%s/%s" % ("tid", p) for p in peers]
    lines = ["### " + title, "",
             "| " + " | ".join(cols) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    norm = {a: [] for a in allocs}
    ratios = {p: [] for p in peers}
    common = common_set(agg, [w.name for w in workloads], allocs)
    for wl in workloads:
        row = [wl.name]
        if not any((wl.name, a) in agg for a in allocs):
            continue
        for a in allocs:
            v = agg.get((wl.name, a))
            row.append("FAIL" if v is None else fmt_abs(v[idx]))
            if base and wl.name in common:
                norm[a].append(v[idx] / agg[wl.name, base][idx])
        if subject:
            s = agg.get((wl.name, subject))
            for p in peers:
                v = agg.get((wl.name, p))
                r = s[idx] / v[idx] if s and v and v[idx] > 0 else None
                if r is not None and wl.name in common:
                    ratios[p].append(r)
                row.append(fmt_ratio(r))
        lines.append("| " + " | ".join(row) + " |")
    if base:
        row = ["**geomean, ÷ glibc**"] + [fmt_ratio(geomean(norm[a])) for a in allocs]
        if subject:
            row += ["**%s**" % fmt_ratio(geomean(ratios[p])) for p in peers]
        lines.append("| " + " | ".join(row) + " |")
    elif subject:
        row = ["**geomean**"] + [""] * len(allocs) + ["**%s**" % fmt_ratio(geomean(ratios[p]))
                                                       for p in peers]
        lines.append("| " + " | ".join(row) + " |")
    left_out = [w.name for w in workloads if w.name not in common and
                any((w.name, a) in agg for a in allocs)]
    if left_out:
        lines += ["", "Geometric means leave out %s (a run failed)." % ", ".join(left_out)]
    return lines


def write_plot(path, agg, workloads, allocs):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        warn("matplotlib is not installed (Debian: python3-matplotlib): no plot written")
        return False
    ref = BASELINE if BASELINE in allocs else allocs[0]
    names = [wl.name for wl in workloads if agg.get((wl.name, ref))]
    common = common_set(agg, names, allocs)
    allocs = [a for a in allocs if a != ref]      # the reference is the line at 1
    colors = {"tidalloc": "#d62728", "glibc": "#7f7f7f", "jemalloc": "#1f77b4",
              "mimalloc": "#2ca02c", "tcmalloc": "#ff7f0e"}
    extra = iter(["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"])   # variants
    for a in allocs:
        if a not in colors:
            colors[a] = next(extra, None)
    if not allocs:
        return False
    fig, axes = plt.subplots(2, 1, figsize=(max(9, 1.0 * (len(names) + 1) + 2), 9))
    width = 0.8 / len(allocs)
    for ax, idx, label in ((axes[0], 0, "wall time"), (axes[1], 1, "peak RSS")):
        lo, hi = 1.0, 1.0
        for i, a in enumerate(allocs):
            vals = []
            for n in names:
                v, b = agg.get((n, a)), agg[n, ref]
                vals.append(v[idx] / b[idx] if v and b[idx] > 0 else float("nan"))
            xs = [k + (i - (len(allocs) - 1) / 2) * width for k in range(len(names) + 1)]
            fails = [x for x, v in zip(xs, vals) if math.isnan(v)]
            vals.append(geomean([v for n, v in zip(names, vals) if n in common]))
            ok = [(x, v) for x, v in zip(xs, vals) if not math.isnan(v)]
            # bars grow from 1 (= as good as the reference): up is worse, down is better
            ax.bar([x for x, _ in ok], [v - 1.0 for _, v in ok], width, bottom=1.0, label=a,
                   color=colors.get(a), edgecolor="black", linewidth=0.3)
            if ok:
                lo, hi = min(lo, min(v for _, v in ok)), max(hi, max(v for _, v in ok))
                gx, gv = xs[-1], vals[-1]
                if not math.isnan(gv):
                    ax.annotate("%.2f" % gv, (gx, gv), ha="center", fontsize=7, rotation=90,
                                va="bottom" if gv >= 1 else "top",
                                xytext=(0, 2 if gv >= 1 else -2), textcoords="offset points")
            if fails:
                ax.plot(fails, [1.0] * len(fails), "x", color=colors.get(a), markersize=9,
                        markeredgewidth=2)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylim(lo / 1.4, hi * 1.4)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: "%g" % y))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(range(len(names) + 1))
        ax.set_xticklabels(names + ["geomean"], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(names) + 0.6)
        ax.set_ylabel("%s ÷ %s\n(below 1 = better)" % (label, ref))
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.axvline(len(names) - 0.5, color="gray", linewidth=0.6, linestyle=":")
        ax.set_title("%s, median per allocator, normalised to %s (= 1)%s" % (
            label, ref, "; x = failed" if idx == 0 else ""), fontsize=10)
    axes[0].legend(ncol=len(allocs), loc="lower center", bbox_to_anchor=(0.5, 1.08), fontsize=9,
                   frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Workloads: " + ", ".join(w.name for w in WORKLOADS))
    ap.add_argument("--build-dir", default=str(REPO / "build-bench"),
                    help="CMake build directory (default: <repo>/build-bench)")
    ap.add_argument("--bin-dir", help="directory of the bench_* programs "
                    "(default: <build-dir>/bench)")
    ap.add_argument("--lib", help="tidalloc shared library to preload "
                    "(default: <build-dir>/libtidalloc.so)")
    ap.add_argument("--build", action="store_true",
                    help="configure and build a Release build in --build-dir first")
    ap.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small scales, 1 rep (smoke test)")
    ap.add_argument("--only", help="comma-separated workloads to run")
    ap.add_argument("--skip", help="comma-separated workloads to leave out")
    ap.add_argument("--allocators", help="comma-separated subset of " + ",".join(ALL_ALLOCATORS))
    ap.add_argument("--out", help="output directory (default: bench/results; "
                    "<build-dir>/bench-quick with --quick)")
    ap.add_argument("--timeout", type=int, help="seconds per run before it counts as failed "
                    "(default 600, 120 with --quick)")
    ap.add_argument("--seed", type=int, help="seed of the allocator shuffling (default: time)")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    ap.add_argument("--replot", metavar="CSV", help="only redraw bench.png in --out from a results.csv")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=LIB[,CONF]",
                    help="also run this tidalloc build (LIB) under NAME, optionally with "
                    "TIDALLOC_CONF=CONF; repeatable (e.g. tidalloc-nochecks=build-nochecks/libtidalloc.so)")
    args = ap.parse_args(argv)
    args.bin_dir = args.bin_dir or str(Path(args.build_dir) / "bench")
    args.lib = args.lib or str(Path(args.build_dir) / "libtidalloc.so")
    args.reps = args.reps or (1 if args.quick else 3)
    args.out = args.out or str(Path(args.build_dir) / "bench-quick" if args.quick
                               else BENCH / "results")
    args.timeout = args.timeout or (120 if args.quick else 600)
    args.seed = args.seed if args.seed is not None else int(time.time())
    return args


def replot(args):
    results, order = [], []
    with open(args.replot) as f:
        for row in csv.DictReader(f):
            r = Result(row["workload"], row["allocator"], int(row["rep"]))
            r.seconds, r.maxrss_kb = float(row["seconds"]), int(row["maxrss_kb"])
            r.ok, r.checksum, r.error = row["ok"] == "1", row["checksum"], row["error"]
            results.append(r)
            if r.allocator not in order:
                order.append(r.allocator)
    names = {r.workload for r in results}
    workloads = [w for w in WORKLOADS if w.name in names]
    base = [a for a in ALL_ALLOCATORS if a in order]
    allocs = base[:1] + [a for a in order if a not in ALL_ALLOCATORS] + base[1:]
    agg = aggregate(results, workloads, allocs)
    ok = write_plot(Path(args.out) / "bench.png", agg, workloads, allocs)
    print("wrote %s" % (Path(args.out) / "bench.png") if ok else "no plot")
    return 0 if ok else 1


def main(argv):
    args = parse_args(argv)
    if args.replot:
        return replot(args)
    if args.list:
        for w in WORKLOADS:
            print("%-15s %s" % (w.name, w.desc))
        return 0

    if args.build:
        subprocess.run(["cmake", "-S", str(REPO), "-B", args.build_dir,
                        "-DCMAKE_BUILD_TYPE=Release", "-DTIDAL_BUILD_TESTS=OFF"], check=True)
        subprocess.run(["cmake", "--build", args.build_dir, "-j%d" % (os.cpu_count() or 1)],
                       check=True)

    # ---- workloads
    names = [w.name for w in WORKLOADS]
    chosen = WORKLOADS
    if args.only:
        want = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = [s for s in want if s not in names]
        if bad:
            print("unknown workload(s): %s (have: %s)" % (", ".join(bad), ", ".join(names)),
                  file=sys.stderr)
            return 2
        chosen = [w for w in WORKLOADS if w.name in want]
    if args.skip:
        drop = {s.strip() for s in args.skip.split(",")}
        chosen = [w for w in chosen if w.name not in drop]
    args.spawn = str(Path(args.bin_dir) / "tidal_spawn")
    if not os.access(args.spawn, os.X_OK):
        print("missing %s: build the benchmarks first (scripts/bench.sh, or "
              "cmake --build %s)" % (args.spawn, args.build_dir), file=sys.stderr)
        return 2
    workloads = []
    for w in chosen:
        if w.kind == "bin":
            exe = Path(args.bin_dir) / ("bench_" + w.prog)
            if not os.access(exe, os.X_OK):
                print("missing %s: build the benchmarks first (scripts/bench.sh, or "
                      "cmake --build %s)" % (exe, args.build_dir), file=sys.stderr)
                return 2
        missing = [r for r in w.requires if not which(r)]
        if missing:
            warn("skipping %s: %s not installed" % (w.name, ", ".join(missing)))
            continue
        workloads.append(w)

    # ---- allocators
    explicit = args.allocators is not None
    want = [a.strip() for a in (args.allocators or ",".join(ALL_ALLOCATORS)).split(",") if a.strip()]
    bad = [a for a in want if a not in ALL_ALLOCATORS]
    if bad:
        print("unknown allocator(s): %s" % ", ".join(bad), file=sys.stderr)
        return 2
    libs = {}
    for a in want:
        if a == "glibc":
            libs[a] = None
        elif a == "tidalloc":
            if os.path.exists(args.lib):
                libs[a] = os.path.abspath(args.lib)
            elif explicit:
                print("tidalloc library not found: %s (build it, or pass --lib)" % args.lib,
                      file=sys.stderr)
                return 2
            else:
                warn("%s not found: running the peers only" % args.lib)
        else:
            path = find_shared_lib(PEERS[a][1])
            if path:
                libs[a] = path
            else:
                warn("skipping %s: %s not found (Debian package %s)" % (a, PEERS[a][1], PEERS[a][0]))
    allocs = [a for a in ALL_ALLOCATORS if a in libs]   # fixed display order
    for v in args.variant:
        name, _, rest = v.partition("=")
        lib, _, conf = rest.partition(",")
        if not name or not os.path.exists(lib):
            print("bad --variant %s (library %s not found)" % (v, lib), file=sys.stderr)
            return 2
        libs[name] = os.path.abspath(lib)
        VARIANT_CONF[name] = conf or None
        allocs.insert(allocs.index(SUBJECT) + 1 if SUBJECT in allocs else 0, name)
    if not allocs or not workloads:
        print("nothing to run", file=sys.stderr)
        return 2
    libc_path = find_shared_lib("libc.so.6")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("allocators: " + ", ".join("%s=%s" % (a, libs[a] or "(no preload)") for a in allocs))
    print("workloads:  " + ", ".join(w.name for w in workloads))
    print("reps %d, %s scale, shuffle seed %d, output %s" % (
        args.reps, "quick" if args.quick else "full", args.seed, out), flush=True)

    # ---- the interleaved runs
    rng = random.Random(args.seed)
    results = []
    started = time.time()
    for rep in range(1, args.reps + 1):
        for wl in workloads:
            order = allocs[:]
            rng.shuffle(order)
            for a in order:
                r = run_one(wl, a, libs[a], libc_path, rep, args)
                results.append(r)
                status = "ok" if r.ok else "FAILED: " + r.error
                print("[rep %d/%d] %-15s %-9s %8.3f s %9.1f MiB  %s" % (
                    rep, args.reps, wl.name, a, r.seconds, r.maxrss_kb / 1024, status), flush=True)
                if not r.ok:
                    loud("%s crashed or failed under %s: %s" % (wl.name, a, r.error))
    elapsed = time.time() - started

    # ---- checksum comparison against glibc (or the majority without glibc)
    mismatches = []
    for wl in workloads:
        runs = [r for r in results if r.workload == wl.name and r.ok]
        ref_runs = [r for r in runs if r.allocator == BASELINE] or runs
        if not ref_runs:
            continue
        counts = {}
        for r in ref_runs:
            counts[r.checksum] = counts.get(r.checksum, 0) + 1
        ref = max(counts, key=counts.get)
        for r in runs:
            if r.checksum != ref:
                r.ok = False
                r.error = "checksum %s differs from %s's %s" % (
                    r.checksum, BASELINE if BASELINE in allocs else "majority", ref)
                mismatches.append(r)
    for r in mismatches:
        loud("CHECKSUM MISMATCH: %s under %s (rep %d): %s" % (
            r.workload, r.allocator, r.rep, r.error))

    # ---- outputs
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "allocator", "rep", "seconds", "maxrss_kb", "ok", "checksum", "error"])
        for r in results:
            w.writerow([r.workload, r.allocator, r.rep, "%.4f" % r.seconds, r.maxrss_kb,
                        int(r.ok), r.checksum, r.error])

    agg = aggregate(results, workloads, allocs)
    info = machine_info()
    versions = []
    for a in allocs:
        if a == "glibc":
            versions.append("glibc %s" % info["glibc"])
        elif a == "tidalloc":
            versions.append("tidalloc %s (%s)" % (tidalloc_revision(), libs[a]))
        elif a in VARIANT_CONF:
            versions.append("%s: %s%s" % (a, libs[a], ", TIDALLOC_CONF=" + VARIANT_CONF[a] if VARIANT_CONF[a] else ""))
        else:
            versions.append("%s %s" % (a, package_version(PEERS[a][0])))
    failures = [r for r in results if not r.ok]
    md = ["# tidalloc benchmark results", "",
          "- date: %s" % info["date"],
          "- machine: %s, %s RAM" % (info["cpu"], info["memory"]),
          "- kernel: %s, transparent huge pages: %s (defrag: %s)" % (
              info["kernel"], info["thp"], info["thp_defrag"]),
          "- allocators: " + "; ".join(versions),
          "- %d repetition(s), %s scale, allocators interleaved in shuffled order (seed %d); "
          "medians shown; run took %.0f s" % (args.reps, "quick" if args.quick else "full",
                                                 args.seed, elapsed),
          "- command: `bench/run.py %s`" % " ".join(argv),
          "",
          "`tid/X` = tidalloc ÷ X: below 1 means tidalloc is faster (time) or smaller (RSS). "
          "The geomean row gives each allocator's geometric mean normalised to glibc, and the "
          "geometric mean of each tid/X ratio.", ""]
    md += build_table(agg, workloads, allocs, 0, "Wall time (s, median)",
                      lambda v: "%.3f" % v)
    md += [""]
    md += build_table(agg, workloads, allocs, 1, "Peak RSS (MiB, median)",
                      lambda v: "%.1f" % (v / 1024))
    md += [""]
    if failures:
        md += ["### Failures", ""]
        for r in failures:
            md.append("- %s under %s (rep %d): %s" % (r.workload, r.allocator, r.rep, r.error))
        md += [""]
    md += ["### Workloads", ""] + ["- `%s`: %s" % (w.name, w.desc) for w in workloads] + [""]
    (out / "summary.md").write_text("\n".join(md))
    plotted = write_plot(out / "bench.png", agg, workloads, allocs)

    print()
    print("\n".join(md[md.index("### Wall time (s, median)"):]))
    print("wrote %s, %s%s (runs took %.0f s)" % (
        out / "results.csv", out / "summary.md", ", " + str(out / "bench.png") if plotted else "",
        elapsed))
    if failures:
        loud("%d run(s) FAILED (see above and summary.md)" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
