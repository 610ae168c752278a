#include "conf.h"
#include "os.h"
#include "safety.h"

#include <string.h>

conf_t opt;

#ifdef TIDAL_SECURE_DEFAULT
#define TIDAL_SECURE_DEFAULT_STR "true"
#else
#define TIDAL_SECURE_DEFAULT_STR "false"
#endif

static const char *const thp_choices[] = { "default", "always", "never", NULL };
static const char *const stats_choices[] = { "false", "true", "json", NULL };

#define OFF(f) offsetof(conf_t, f)
const opt_desc_t conf_table[] = {
  { "background_thread", OPT_BOOL, "true", 0, 1, NULL,
    "Run a background thread that purges decayed memory and hugifies dense units while the program is idle. "
    "With false the same work happens inline in the allocation slow paths.", OFF(background_thread) },
  { "dirty_decay_ms", OPT_INT, "10000", -1, 3600000, NULL,
    "Time over which freed (dirty) pages decay to MADV_FREE (muzzy), on a smoothstep curve. "
    "0 purges at once, -1 never purges on time.", OFF(dirty_decay_ms) },
  { "muzzy_decay_ms", OPT_INT, "10000", -1, 3600000, NULL,
    "Time over which muzzy (MADV_FREE) pages decay to MADV_DONTNEED. 0 skips the muzzy stage.", OFF(muzzy_decay_ms) },
  { "dirty_mult", OPT_MILLI, "1", 0, 1000000, NULL,
    "Ceiling on dirty memory as a fraction of active memory (never below 32 MiB); "
    "above it dirty pages are purged regardless of their age. Lower values give memory back sooner "
    "while the program runs, at the cost of faulting in again the pages it reuses.", OFF(dirty_mult_milli) },
  { "hugify_threshold", OPT_MILLI, "0.95", 0, 1000, NULL,
    "Fraction of a 2 MiB unit's pages that must be in use before the unit is backed by a huge page.", OFF(hugify_threshold_milli) },
  { "hugify_delay_ms", OPT_INT, "10000", 0, 3600000, NULL,
    "How long a unit must stay dense before it is hugified (MADV_HUGEPAGE, then MADV_COLLAPSE from the background thread).",
    OFF(hugify_delay_ms) },
  { "thp", OPT_ENUM, "default", 0, 2, thp_choices,
    "Huge page policy: default (hugify dense units and fresh blocks over 2 MiB except calloc's, "
    "following the system's THP setting), "
    "always (mark all heap memory MADV_HUGEPAGE), never (mark it MADV_NOHUGEPAGE, hugify nothing).", OFF(thp) },
  { "stats_print", OPT_ENUM, "false", 0, 2, stats_choices,
    "Print statistics at exit to stderr: false, true (text) or json.", OFF(stats_print) },
  { "secure", OPT_BOOL, TIDAL_SECURE_DEFAULT_STR, 0, 1, NULL,
    "Hardened mode: guard pages after every slab and around every large block, a canary after every small "
    "block (checked on free), zero-on-free with a write-after-free check on reuse, randomized slot choice, "
    "a bounded quarantine that delays reuse, zero-size blocks that fault on access, and guard pages around "
    "metadata. Slower; the default checks stay on either way.", OFF(secure) },
  { "pressure", OPT_BOOL, "true", 0, 1, NULL,
    "Watch for memory pressure (PSI triggers and the cgroup's pressure events, polled by a watcher thread with "
    "a descriptor table of its own; the cgroup's limit, read by the background thread while a drain could "
    "release something) and drain caches when it comes: tidalloc's own at first, the application's cleaners "
    "too when it is critical.", OFF(pressure) },
  { "pressure_delay_ms", OPT_INT, "1000", 0, 3600000, NULL,
    "How long after the background thread starts the pressure watcher opens its PSI triggers and cgroup events, "
    "unless tidalloc holds 64 MiB or more before then. The kernel takes about 10 ms to close each PSI trigger "
    "when the process exits, so a program that ends sooner, or stays small, never pays it. 0: at once.",
    OFF(pressure_delay_ms) },
  { "memory_limit", OPT_INT, "0", 0, INT64_MAX, NULL,
    "Soft limit on the memory tidalloc keeps resident, in bytes (suffixes k, m, g); above it caches are "
    "drained as under pressure. 0: none.", OFF(memory_limit) },
  { "guard_sample", OPT_INT, "0", 0, 1000000000, NULL,
    "Place about one allocation in N (per thread) against a guard page, so an overflow or use-after-free of "
    "it faults and is reported with the block's size. 0 turns sampling off (and costs nothing).", OFF(guard_sample) },
  { "stats_signal", OPT_INT, "0", 0, 64, NULL,
    "Signal number on which the background thread writes the statistics to a file in /tmp that only the "
    "process's user can read (the tidalloc stats command sends it and reads the file; tidalloc run turns it "
    "on with SIGRTMIN+5). The handler only wakes the background thread, so only a process with background_thread:true answers. 0: off, the signal is left alone.",
    OFF(stats_signal) },
  { "prof", OPT_BOOL, "false", 0, 1, NULL,
    "Heap profiling: sample allocations (Poisson, by bytes) with their stacks, so that dumps, leak reports, "
    "tidal_prof_visit and the statistics can say where live memory was allocated (docs/profiling.md). "
    "Off, it costs nothing but one subtraction and branch per small allocation.", OFF(prof) },
  { "prof_sample", OPT_INT, "524288", 1, (int64_t)1 << 40, NULL,
    "Mean number of bytes allocated between two samples (per thread, exponentially distributed); "
    "1 samples every allocation.", OFF(prof_sample) },
  { "prof_prefix", OPT_STR, "tidalloc", 0, CONF_STR_MAX - 1, NULL,
    "Path prefix of dump files, which are named <prefix>.<pid>.<seq>.heap.", OFF(prof_prefix) },
  { "prof_final", OPT_BOOL, "false", 0, 1, NULL,
    "Write a dump at exit (from an exit handler registered at start-up).", OFF(prof_final) },
  { "prof_leak", OPT_BOOL, "false", 0, 1, NULL,
    "At exit, when sampled blocks are still live, write a dump and print one summary line and the top "
    "allocation sites, symbolized, to stderr.", OFF(prof_leak) },
  { "prof_leak_error", OPT_BOOL, "false", 0, 1, NULL,
    "With prof_leak: end the process with exit status 1 when blocks are still live at exit.", OFF(prof_leak_error) },
  { "prof_gdump", OPT_BOOL, "false", 0, 1, NULL,
    "Write a dump each time the sampled live heap reaches a new high-water mark, at most once per doubling "
    "(written by the background thread).", OFF(prof_gdump) },
  { "prof_signal", OPT_INT, "0", 0, 64, NULL,
    "A signal number (e.g. 12 for SIGUSR2) on which the background thread writes a dump; the handler only "
    "wakes it. 0: none.", OFF(prof_signal) },
  { "prof_seed", OPT_INT, "0", 0, INT64_MAX, NULL,
    "Seed of the per-thread sampling generators, for reproducible profiles (tests); 0: random.", OFF(prof_seed) },
  { "guard_unused", OPT_BOOL, "true", 0, 1, NULL,
    "Keep heap address space that holds no blocks inaccessible, so that wild writes far past (or before) a block "
    "fault: regions are reserved PROT_NONE with an inaccessible 2 MiB guard at their start, and each 2 MiB unit is "
    "opened in 256 KiB steps as its pages are first carved (the whole unit when it is backed by a huge page).",
    OFF(guard_unused) },
  { "large_quarantine", OPT_INT, "4", 0, 1000000, NULL,
    "Freed page-run blocks (above 32 KiB, up to 1 MiB) wait in FIFOs holding this many in all (at most 64; one FIFO "
    "per CPU, at most 8, each holding its share and at least one; a thread always uses the same FIFO) before their "
    "pages are reused: a double free of one is reported, the next block of that size comes at another address, "
    "and a write over the canary the free left in its first 64 bytes is reported when it leaves the FIFO. "
    "0 turns it off.", OFF(large_quarantine) },
  { "large_quarantine_protect", OPT_BOOL, "false", 0, 1, NULL,
    "Make the runs waiting in the large_quarantine FIFO inaccessible too, so a write after free faults at once. "
    "Off by default: its two mprotect calls per free made random_sizes 13 times slower, far over the default "
    "mode's 2 % budget.", OFF(large_quarantine_protect) },
  { "run_cache", OPT_INT, "1048576", 0, (int64_t)1 << 30, NULL,
    "Bytes of freed page runs (large blocks of up to 256 KiB) that each CPU's shard of the run cache keeps, at most "
    "32 runs, so that the next large block on that CPU takes one without the page layer's lock; a run waits at "
    "most a second and counts as dirty memory meanwhile. Shards: one per CPU, at most 8. 0 turns it off.",
    OFF(run_cache) },
};
const size_t conf_table_len = TD_ARRAY_LEN(conf_table);

static int64_t *slot_int(const opt_desc_t *d) { return (int64_t *)((char *)&opt + d->offset); }
static bool *slot_bool(const opt_desc_t *d) { return (bool *)((char *)&opt + d->offset); }

const opt_desc_t *conf_find(const char *name, size_t len) {
  for (size_t i = 0; i < conf_table_len; i++)
    if (strlen(conf_table[i].name) == len && memcmp(conf_table[i].name, name, len) == 0) return &conf_table[i];
  return NULL;
}

int64_t conf_get(const opt_desc_t *d) {
  if (d->type == OPT_STR) return 0;
  return d->type == OPT_BOOL ? (int64_t)*slot_bool(d) : *slot_int(d);
}

const char *conf_str(const opt_desc_t *d) {
  return d->type == OPT_STR ? (const char *)&opt + d->offset : "";
}

static bool text_eq(const char *s, size_t len, const char *word) {
  return strlen(word) == len && memcmp(s, word, len) == 0;
}

/* Decimal integer, optionally with a fraction scaled by `scale` (1 or 1000). */
static bool parse_num(const char *s, size_t len, int64_t scale, int64_t *out) {
  size_t i = 0;
  bool neg = false;
  if (i < len && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  if (i == len) return false;
  int64_t v = 0, frac_scale = scale;
  bool digits = false, dot = false;
  for (; i < len; i++) {
    char c = s[i];
    if (c == '.' && scale > 1 && !dot) { dot = true; continue; }
    if (c < '0' || c > '9') return false;
    digits = true;
    int64_t d = c - '0';
    if (!dot) {
      /* v = v * 10 + d * scale, refusing what does not fit (no signed overflow) */
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d * scale, &v)) return false;
    } else if (frac_scale > 1) {
      frac_scale /= 10;
      if (__builtin_add_overflow(v, d * frac_scale, &v)) return false;
    }
  }
  if (!digits) return false;
  *out = neg ? -v : v;
  return true;
}

/* An integer with an optional k/m/g suffix (powers of 1024). */
static bool parse_int_suffixed(const char *s, size_t len, int64_t *out) {
  int64_t mult = 1;
  if (len > 1) {
    char c = s[len - 1];
    if (c == 'k' || c == 'K') mult = (int64_t)1 << 10;
    else if (c == 'm' || c == 'M') mult = (int64_t)1 << 20;
    else if (c == 'g' || c == 'G') mult = (int64_t)1 << 30;
    if (mult != 1) len--;
  }
  int64_t v;
  if (!parse_num(s, len, 1, &v)) return false;
  if (v > INT64_MAX / mult || v < INT64_MIN / mult) return false;
  *out = v * mult;
  return true;
}

bool conf_set(const opt_desc_t *d, const char *value, size_t len) {
  int64_t v;
  switch (d->type) {
    case OPT_BOOL:
      if (text_eq(value, len, "true") || text_eq(value, len, "1")) *slot_bool(d) = true;
      else if (text_eq(value, len, "false") || text_eq(value, len, "0")) *slot_bool(d) = false;
      else return false;
      return true;
    case OPT_INT:
    case OPT_MILLI:
      if (!(d->type == OPT_MILLI ? parse_num(value, len, 1000, &v) : parse_int_suffixed(value, len, &v)) ||
          v < d->min || v > d->max) return false;
      *slot_int(d) = v;
      return true;
    case OPT_ENUM:
      for (int64_t i = 0; d->choices[i]; i++)
        if (text_eq(value, len, d->choices[i])) { *slot_int(d) = i; return true; }
      return false;
    case OPT_STR:
      if (len > (size_t)d->max) return false;
      memcpy((char *)&opt + d->offset, value, len);
      ((char *)&opt + d->offset)[len] = 0;
      return true;
  }
  return false;
}

size_t conf_format(const opt_desc_t *d, int64_t v, char *buf) {
  size_t n = 0;
  switch (d->type) {
    case OPT_BOOL: n = (size_t)(v ? 4 : 5); memcpy(buf, v ? "true" : "false", n); break;
    case OPT_ENUM: n = strlen(d->choices[v]); memcpy(buf, d->choices[v], n); break;
    case OPT_STR: n = 0; break;   /* no short form: conf_str */
    case OPT_INT:
      if (v < 0) { buf[n++] = '-'; v = -v; }
      n += fmt_u64(buf + n, (uint64_t)v);
      break;
    case OPT_MILLI: {
      n += fmt_u64(buf, (uint64_t)(v / 1000));
      int64_t f = v % 1000;
      if (f) {
        buf[n++] = '.';
        char d3[3] = { (char)('0' + f / 100), (char)('0' + f / 10 % 10), (char)('0' + f % 10) };
        size_t k = 3;
        while (k > 1 && d3[k - 1] == '0') k--;
        memcpy(buf + n, d3, k);
        n += k;
      }
      break;
    }
  }
  buf[n] = 0;
  return n;
}

/* "what it accepts", for warnings. */
static void describe(const opt_desc_t *d, char *buf, size_t cap) {
  char a[32], b[32];
  size_t n = 0;
#define PUT(s) do { size_t _l = strlen(s); if (n + _l >= cap) _l = cap - n - 1; memcpy(buf + n, s, _l); n += _l; } while (0)
  switch (d->type) {
    case OPT_BOOL: PUT("true or false"); break;
    case OPT_STR: PUT("text without commas"); break;
    case OPT_ENUM:
      for (int i = 0; d->choices[i]; i++) { if (i) PUT(", "); PUT(d->choices[i]); }
      break;
    case OPT_INT:
    case OPT_MILLI:
      conf_format(d, d->min, a);
      conf_format(d, d->max, b);
      PUT(d->type == OPT_INT ? "an integer from " : "a number from ");
      PUT(a); PUT(" to "); PUT(b);
      break;
  }
  buf[n] = 0;
#undef PUT
}

static void warn_option(const char *source, const char *name, size_t name_len, const char *value,
                        size_t value_len, const opt_desc_t *d) {
  char line[400], acc[200];
  size_t n = 0;
#define ADD(s, l) do { size_t _l = (l); if (n + _l >= sizeof line - 2) _l = sizeof line - 2 - n; memcpy(line + n, s, _l); n += _l; } while (0)
#define ADDS(s) ADD(s, strlen(s))
  ADDS("tidalloc: ");
  if (!d) {
    ADDS("unknown option '"); ADD(name, name_len); ADDS("' in "); ADDS(source); ADDS(", ignored");
  } else {
    describe(d, acc, sizeof acc);
    char defv[32];
    conf_format(d, conf_get(d), defv);
    if (d->type == OPT_STR) { size_t l = strlen(conf_str(d)); if (l > 31) l = 31; memcpy(defv, conf_str(d), l); defv[l] = 0; }
    ADDS("bad value '"); ADD(value, value_len); ADDS("' for option "); ADDS(d->name); ADDS(" in "); ADDS(source);
    ADDS(" (expects "); ADDS(acc); ADDS("); using "); ADDS(defv);
  }
  line[n++] = '\n';
  os_write_stderr(line, n);
#undef ADD
#undef ADDS
}

int conf_parse(const char *s, const char *source) {
  int rejected = 0;
  while (s && *s) {
    const char *item = s, *end = strchr(s, ',');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    s = end ? end + 1 : NULL;
    while (len && (*item == ' ')) { item++; len--; }
    if (!len) continue;
    const char *colon = memchr(item, ':', len);
    size_t name_len = colon ? (size_t)(colon - item) : len;
    const char *value = colon ? colon + 1 : item + len;
    size_t value_len = colon ? len - name_len - 1 : 0;
    const opt_desc_t *d = conf_find(item, name_len);
    if (!d || !colon || !conf_set(d, value, value_len)) {
      warn_option(source, item, name_len, value, value_len, d);
      rejected++;
    }
  }
  return rejected;
}

/* A program may set its own defaults: const char *tidalloc_conf = "…"; */
extern const char *tidalloc_conf __attribute__((weak));

void conf_init(void) {
  for (size_t i = 0; i < conf_table_len; i++) {
    bool ok = conf_set(&conf_table[i], conf_table[i].def, strlen(conf_table[i].def));
    TD_DASSERT(ok);
    (void)ok;
  }
  if (&tidalloc_conf && tidalloc_conf) conf_parse(tidalloc_conf, "the program's tidalloc_conf");
  conf_parse(os_getenv("TIDALLOC_CONF"), "TIDALLOC_CONF");
}
