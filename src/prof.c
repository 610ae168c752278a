#include "prof.h"
#include "conf.h"
#include "large.h"
#include "lock.h"
#include "meta.h"
#include "os.h"
#include "pagemap.h"
#include "safety.h"
#include "tidalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- state ------------------------------------------------------------------ */

#define PROF_BUCKETS   4096          /* stack hash table (a power of two) */
#define PROF_SKIP_MAX  24            /* frames inside tidalloc above the caller's */
#define PROF_TOP_LEAK  5             /* stacks printed by the leak report */
/* Counts are kept in fixed point (1/1024 of a block), so that sums add and
 * subtract exactly and the invariant holds with equality. */
#define PROF_FX_SHIFT  10
#define PROF_FX_ROUND(x) (((x) + (1u << (PROF_FX_SHIFT - 1))) >> PROF_FX_SHIFT)

typedef struct prof_stack_s prof_stack_t;
struct prof_stack_s {
  prof_stack_t *next;          /* hash chain */
  prof_stack_t *all_next;      /* every stack, newest first */
  uint64_t hash;
  uint64_t count, bytes;       /* live, unbiased: sums of the records' (fixed point, exact) */
  uint64_t samples;            /* live sampled blocks */
  uint32_t depth;
  uintptr_t pcs[];             /* return addresses, innermost first */
};

/* One live sampled block: on its span (span_t.prof) and on the live list. */
typedef struct prof_rec_s prof_rec_t;
struct prof_rec_s {
  prof_rec_t *next, *prev;
  prof_stack_t *stack;         /* NULL once prof.reset dropped it */
  size_t size;                 /* requested */
  double weight;               /* w = 1/q */
  uint64_t count, bytes;       /* w in PROF_FX units, s*w rounded: what it adds to its stack */
};

static td_mutex_t prof_lock = TD_MUTEX_INIT("prof", RANK_PROF);
static prof_stack_t *buckets[PROF_BUCKETS];
static prof_stack_t *all_stacks;
static prof_rec_t *live;
static meta_pool_t rec_pool = { .size = sizeof(prof_rec_t) };
static struct {
  uint64_t count, bytes;       /* live totals */
  uint64_t samples, stacks, meta_bytes, recs, recs_high;
  uint64_t gdump_next;         /* live bytes that trigger the next gdump */
} tot;
static bool active = true;               /* prof.active (__atomic_*) */
static uint64_t dump_seq, dumps;         /* __atomic_* */
static uintptr_t self_lo, self_hi;       /* tidalloc's code (shared object) */
static bool warmed;

/* Hooks (__atomic_*). */
static tidal_prof_backtrace_hook hook_bt;
static tidal_prof_sample_hook hook_sample, hook_sample_free;
static tidal_prof_dump_hook hook_dump;
static void (*wake_hook)(void);

/* Dumps asked for from a signal handler or an allocation (bits). */
enum { PEND_SIGNAL = 1, PEND_GDUMP = 2 };
static uint32_t pending;

static __thread uint8_t tls_busy __attribute__((tls_model("initial-exec")));

bool prof_enabled(void) { return opt.prof && !opt.secure; }

/* ---- random numbers and weights -------------------------------------------- */

static uint64_t rng_next(heap_t *h) {
  /* xorshift64* */
  uint64_t x = h->prof_rng;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  h->prof_rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

/* Natural logarithm of x > 0: x = m * 2^e, m in [1, 2), then the atanh series
 * (|t| <= 1/3: 12 terms give double precision). No libm in the library. */
static double td_ln(double x) {
  uint64_t b;
  memcpy(&b, &x, sizeof b);
  int e = (int)((b >> 52) & 0x7ff) - 1023;
  b = (b & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  double m;
  memcpy(&m, &b, sizeof m);
  double t = (m - 1) / (m + 1), t2 = t * t, sum = 0, pw = t;
  for (int k = 1; k <= 25; k += 2) { sum += pw / k; pw *= t2; }
  return 2 * sum + e * 0.6931471805599453;
}

/* exp(-x) for x >= 0 (range reduction by ln 2, Taylor series). */
static double td_exp_neg(double x) {
  if (x > 700) return 0;
  int n = (int)(x / 0.6931471805599453);
  double r = x - n * 0.6931471805599453, term = 1, sum = 1;
  for (int k = 1; k < 20; k++) { term *= -r / k; sum += term; }
  uint64_t b = (uint64_t)(1023 - n) << 52;     /* 2^-n */
  double scale;
  memcpy(&scale, &b, sizeof scale);
  return sum * scale;
}

/* q = 1 - exp(-s/R): the probability that a block of s bytes is sampled. */
static double sample_probability(double s, double r) {
  double x = s / r;
  if (x < 0.5) {   /* the series of 1 - exp(-x), without cancellation */
    double term = x, sum = x;
    for (int k = 2; k < 20; k++) { term *= -x / k; sum += term; }
    return sum;
  }
  return 1 - td_exp_neg(x);
}

static int64_t draw(heap_t *h) {
  double u = (double)((rng_next(h) >> 11) + 1) * (1.0 / 9007199254740992.0);   /* (0, 1] */
  double v = -td_ln(u) * (double)__atomic_load_n(&opt.prof_sample, __ATOMIC_RELAXED);
  return v >= 4e18 ? (int64_t)4e18 : (int64_t)v;
}

/* The thread's first crossing only starts its generator (the initial count
 * is 0); afterwards a crossing means this allocation is sampled. */
static bool countdown_fired(heap_t *h, size_t size) {
  if (!prof_enabled()) {
    h->prof_left = INT64_MAX;
    return false;
  }
  if (!h->prof_rng) {
    uint64_t seed = opt.prof_seed ? (uint64_t)opt.prof_seed * 0x9e3779b97f4a7c15ull + h->id : os_random64();
    h->prof_rng = seed ? seed : 1;
    h->prof_left = draw(h) - (int64_t)size;
    if (h->prof_left >= 0) return false;
  }
  h->prof_left = draw(h);
  return true;
}

/* ---- stacks ------------------------------------------------------------------- */

static unsigned capture(uintptr_t *out, const void *ra) {
  tidal_prof_backtrace_hook hook = __atomic_load_n(&hook_bt, __ATOMIC_ACQUIRE);
  void *buf[PROF_MAX_DEPTH + PROF_SKIP_MAX];
  int n, i = 0;
  if (hook) {
    n = (int)hook(buf, PROF_MAX_DEPTH);
    n = n < 0 ? 0 : TD_MIN(n, PROF_MAX_DEPTH);
  } else {
    n = os_backtrace(buf, (int)TD_ARRAY_LEN(buf));
    if (self_hi) {
      while (i < n && (uintptr_t)buf[i] >= self_lo && (uintptr_t)buf[i] < self_hi) i++;
    } else {   /* a static link: drop the frames above the return into the API entry */
      for (int k = 0; k < n && k < PROF_SKIP_MAX; k++)
        if (buf[k] == ra) { i = k; break; }   /* ra: in the entry, or in its caller after a tail call */
    }
  }
  unsigned d = 0;
  for (; i < n && d < PROF_MAX_DEPTH; i++) out[d++] = (uintptr_t)buf[i];
  return d;
}

static uint64_t stack_hash(const uintptr_t *pcs, unsigned depth) {
  uint64_t h = 0x84222325cbf29ce4ull ^ depth;
  for (unsigned i = 0; i < depth; i++) {
    h ^= pcs[i];
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  return h;
}

/* The stack record for pcs, created on first sight (prof_lock held). */
static prof_stack_t *stack_get(const uintptr_t *pcs, unsigned depth) {
  mutex_assert_held(&prof_lock);
  uint64_t hash = stack_hash(pcs, depth);
  prof_stack_t **b = &buckets[hash & (PROF_BUCKETS - 1)];
  for (prof_stack_t *s = *b; s; s = s->next)
    if (s->hash == hash && s->depth == depth && memcmp(s->pcs, pcs, depth * sizeof *pcs) == 0) return s;
  size_t bytes = sizeof(prof_stack_t) + depth * sizeof(uintptr_t);
  prof_stack_t *s = meta_alloc(bytes, 16);
  if (!s) return NULL;
  s->hash = hash;
  s->depth = depth;
  memcpy(s->pcs, pcs, depth * sizeof *pcs);
  s->next = *b;
  *b = s;
  s->all_next = all_stacks;
  all_stacks = s;
  tot.stacks++;
  tot.meta_bytes += bytes;
  return s;
}

/* ---- sampling -------------------------------------------------------------------- */

static void wake(void) {
  void (*hook)(void) = __atomic_load_n(&wake_hook, __ATOMIC_ACQUIRE);
  if (hook) hook();
}

/* Enter the sample into the table; false when metadata ran out. */
static bool record_add(span_t *s, const uintptr_t *pcs, unsigned depth, size_t size, double w) {
  bool gdump = false;
  mutex_lock(&prof_lock);
  prof_stack_t *st = stack_get(pcs, depth);
  prof_rec_t *r = st ? meta_pool_get(&rec_pool) : NULL;
  if (r) {
    r->stack = st;
    r->size = size;
    r->weight = w;
    r->count = (uint64_t)(w * (1 << PROF_FX_SHIFT) + 0.5);
    r->bytes = (uint64_t)((double)size * w + 0.5);
    r->prev = NULL;
    r->next = live;
    if (live) live->prev = r;
    live = r;
    st->count += r->count; st->bytes += r->bytes; st->samples++;
    tot.count += r->count; tot.bytes += r->bytes; tot.samples++;
    if (++tot.recs > tot.recs_high) tot.recs_high = tot.recs;
    if (opt.prof_gdump && tot.bytes > tot.gdump_next) {
      tot.gdump_next = tot.bytes * 2;   /* at most once per doubling */
      gdump = true;
    }
    s->prof = r;
  }
  mutex_unlock(&prof_lock);
  if (gdump) {
    __atomic_fetch_or(&pending, PEND_GDUMP, __ATOMIC_RELEASE);
    wake();
  }
  return r != NULL;
}

void *prof_sample(heap_t *h, size_t size, size_t align, bool zero, unsigned cls, const void *ra) {
  if (!countdown_fired(h, size) || tls_busy || !__atomic_load_n(&active, __ATOMIC_RELAXED)) return NULL;
  tls_busy = 1;
  uintptr_t pcs[PROF_MAX_DEPTH];
  unsigned depth = capture(pcs, ra);
  double w = 1.0 / sample_probability((double)size, (double)__atomic_load_n(&opt.prof_sample, __ATOMIC_RELAXED));
  void *p = large_alloc(size ? size : 1, align, zero);
  span_t *s = p ? pagemap_lookup(p) : NULL;
  if (s) {
    s->req_size = cls ? sc_info[cls].size : large_usable(s);
    if (record_add(s, pcs, depth, size, w)) {
      s->prof_kind = s->kind;
      s->kind = SPAN_SAMPLED;   /* the block is not visible to any other thread yet */
      tidal_prof_sample_hook hook = __atomic_load_n(&hook_sample, __ATOMIC_ACQUIRE);
      if (hook) hook(p, size, w, (void *const *)pcs, depth);
    } else {
      large_free(s);
      p = NULL;
    }
  }
  tls_busy = 0;
  return p;
}

void prof_free(span_t *s) {
  prof_rec_t *r = s->prof;
  mutex_lock(&prof_lock);
  prof_stack_t *st = r->stack;
  if (st) {
    st->count -= r->count; st->bytes -= r->bytes; st->samples--;
    tot.count -= r->count; tot.bytes -= r->bytes; tot.samples--;
    if (r->prev) r->prev->next = r->next; else live = r->next;
    if (r->next) r->next->prev = r->prev;
  }
  size_t size = r->size;
  double w = r->weight;
  tot.recs--;
  meta_pool_put(&rec_pool, r);
  mutex_unlock(&prof_lock);
  tidal_prof_sample_hook hook = __atomic_load_n(&hook_sample_free, __ATOMIC_ACQUIRE);
  if (hook && st) {   /* stacks are never freed: st->pcs stays valid */
    uint8_t was = tls_busy;
    tls_busy = 1;
    hook((const void *)s->start, size, w, (void *const *)st->pcs, st->depth);
    tls_busy = was;
  }
  s->prof = NULL;
  s->kind = s->prof_kind;
}

/* ---- snapshots ---------------------------------------------------------------------- */

typedef struct snap_site_s {
  const prof_stack_t *stack;
  uint64_t count, bytes;
} snap_site_t;

typedef struct snap_s {
  snap_site_t *sites;
  size_t n, map_bytes;
  uint64_t count, bytes;
} snap_t;

/* Rounded sums, at least one block for a live site (the tools reject a
 * site with bytes and no count). */
static void snap_fill(snap_t *sn, size_t cap) {
  mutex_assert_held(&prof_lock);
  sn->n = 0; sn->count = sn->bytes = 0;
  for (const prof_stack_t *s = all_stacks; s && sn->n < cap; s = s->all_next) {
    if (!s->samples) continue;
    uint64_t c = PROF_FX_ROUND(s->count), b = s->bytes;
    if (c == 0) c = 1;
    sn->sites[sn->n++] = (snap_site_t){ s, c, b };
    sn->count += c; sn->bytes += b;
  }
}

/* A copy of the live sites, in a mapping of its own (snap_free). */
static bool snap_take(snap_t *sn) {
  memset(sn, 0, sizeof *sn);
  mutex_lock(&prof_lock);
  size_t want = tot.stacks + 64;
  mutex_unlock(&prof_lock);
  sn->map_bytes = td_align_up(want * sizeof(snap_site_t), TD_PAGE);
  sn->sites = os_map_aligned(sn->map_bytes, TD_PAGE);
  if (!sn->sites) return false;
  mutex_lock(&prof_lock);
  snap_fill(sn, want);
  mutex_unlock(&prof_lock);
  return true;
}

static void snap_free(snap_t *sn) {
  if (sn->sites) os_unmap(sn->sites, sn->map_bytes);
  sn->sites = NULL;
}

/* ---- dumps --------------------------------------------------------------------------- */

typedef struct writer_s {
  int fd;
  bool ok;
  size_t n;
  char buf[4096];
} writer_t;

static void w_flush(writer_t *w) {
  if (w->n && !os_file_write(w->fd, w->buf, w->n)) w->ok = false;
  w->n = 0;
}

static void w_str(writer_t *w, const char *s, size_t len) {
  if (w->n + len > sizeof w->buf) w_flush(w);
  if (len > sizeof w->buf) { if (!os_file_write(w->fd, s, len)) w->ok = false; return; }
  memcpy(w->buf + w->n, s, len);
  w->n += len;
}

static void w_cstr(writer_t *w, const char *s) { w_str(w, s, strlen(s)); }
static void w_u64(writer_t *w, uint64_t v) { char b[24]; w_str(w, b, fmt_u64(b, v)); }
static void w_hex(writer_t *w, uint64_t v) { char b[24]; w_str(w, b, fmt_hex(b, v)); }

/* "<count>: <bytes> [0: 0]": in-use figures, already unbiased; no
 * allocation totals are kept (zeros, which every reader accepts). */
static void w_counts(writer_t *w, uint64_t count, uint64_t bytes) {
  w_u64(w, count); w_cstr(w, ": "); w_u64(w, bytes); w_cstr(w, " [0: 0]");
}

/* The gperftools heap-profile text format. The header's "heapprofile" tells
 * jeprof, google-pprof and go tool pprof that the figures need no
 * unsampling (with heap_v2/RATE they would divide a second time). */
static bool dump_write(const char *path, const snap_t *sn) {
  writer_t *w = os_map_aligned(td_align_up(sizeof(writer_t), TD_PAGE), TD_PAGE);
  if (!w) return false;
  w->fd = os_file_create(path);
  w->ok = w->fd >= 0;
  w->n = 0;
  if (w->ok) {
    w_cstr(w, "heap profile: "); w_counts(w, sn->count, sn->bytes); w_cstr(w, " @ heapprofile\n");
    for (size_t i = 0; i < sn->n; i++) {
      const prof_stack_t *s = sn->sites[i].stack;
      if (!s->depth) continue;   /* nothing to attribute it to */
      w_counts(w, sn->sites[i].count, sn->sites[i].bytes);
      w_cstr(w, " @");
      for (unsigned k = 0; k < s->depth; k++) { w_cstr(w, " "); w_hex(w, s->pcs[k]); }
      w_cstr(w, "\n");
    }
    w_cstr(w, "\nMAPPED_LIBRARIES:\n");
    w_flush(w);
    if (w->ok && !os_file_copy("/proc/self/maps", w->fd)) w->ok = false;
    os_close(w->fd);
  }
  bool ok = w->ok;
  os_unmap(w, td_align_up(sizeof(writer_t), TD_PAGE));
  return ok;
}

/* <prefix>.<pid>.<seq>.heap */
static void dump_name(char *buf, size_t cap) {
  char num[24];
  size_t n = 0;
  const char *prefix = opt.prof_prefix;
  size_t pl = strlen(prefix);
  if (pl > cap - 64) pl = cap - 64;
  memcpy(buf, prefix, pl); n = pl;
  buf[n++] = '.';
  size_t k = fmt_u64(num, (uint64_t)os_getpid()); memcpy(buf + n, num, k); n += k;
  buf[n++] = '.';
  k = fmt_u64(num, __atomic_fetch_add(&dump_seq, 1, __ATOMIC_RELAXED)); memcpy(buf + n, num, k); n += k;
  memcpy(buf + n, ".heap", 6);
}

/* Write a dump (to path, or to the next default name, copied to out);
 * no lock held while writing. */
static bool dump(const char *path, char *out, size_t outcap, snap_t *keep) {
  char name[CONF_STR_MAX + 64];
  if (!path) { dump_name(name, sizeof name); path = name; }
  snap_t sn;
  uint8_t was = tls_busy;
  tls_busy = 1;
#ifdef TIDAL_DEBUG
  const char *why = prof_validate();   /* tier 3, in debug builds: every dump checks the table */
  if (why) safety_assert_fail(__FILE__, __LINE__, why);
#endif
  bool ok = snap_take(&sn) && dump_write(path, &sn);
  tls_busy = was;
  if (keep) *keep = sn; else snap_free(&sn);
  if (!ok) return false;
  __atomic_fetch_add(&dumps, 1, __ATOMIC_RELAXED);
  if (out) { size_t l = TD_MIN(strlen(path), outcap - 1); memcpy(out, path, l); out[l] = 0; }
  tidal_prof_dump_hook hook = __atomic_load_n(&hook_dump, __ATOMIC_ACQUIRE);
  if (hook) {
    tls_busy = 1;
    hook(path);
    tls_busy = was;
  }
  return true;
}

/* ---- background work, signals ------------------------------------------------------------ */

void prof_set_wake_hook(void (*hook)(void)) { __atomic_store_n(&wake_hook, hook, __ATOMIC_RELEASE); }

bool prof_work_pending(void) { return __atomic_load_n(&pending, __ATOMIC_ACQUIRE) != 0; }

void prof_deferred_work(void) {
  if (__atomic_exchange_n(&pending, 0, __ATOMIC_ACQ_REL)) dump(NULL, NULL, 0, NULL);
}

/* The prof_signal handler: async-signal-safe, it only records the request
 * and wakes the background thread (an atomic store and a futex wake), which
 * writes the dump. */
static void on_signal(int sig, void *info, void *ctx) {
  (void)sig; (void)info; (void)ctx;
  int saved = errno;
  __atomic_fetch_or(&pending, PEND_SIGNAL, __ATOMIC_RELEASE);
  wake();
  errno = saved;
}

/* ---- exit: final dump and leak report ---------------------------------------------------- */

/* "12.0 MiB" */
static size_t fmt_bytes(char *buf, uint64_t b) {
  static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  unsigned u = 0;
  uint64_t scale = 1;
  while (u < 4 && b >= scale * 1024) { scale *= 1024; u++; }
  uint64_t tenths = (b * 10 + scale / 2) / scale;
  size_t n = fmt_u64(buf, tenths / 10);
  buf[n++] = '.';
  buf[n++] = (char)('0' + tenths % 10);
  buf[n++] = ' ';
  size_t l = strlen(unit[u]);
  memcpy(buf + n, unit[u], l);
  return n + l;
}

static void err_str(const char *s) { os_write_stderr(s, strlen(s)); }

/* One stack, symbolized: "    f (+0x1c) < g (+0x40) < main (+0x2a)" */
static void leak_print_site(const snap_site_t *site) {
  char line[1024], sym[200], num[24];
  size_t n = 0;
  n += fmt_bytes(line + n, site->bytes);
  memcpy(line + n, " in ", 4); n += 4;
  n += fmt_u64(line + n, site->count);
  const char *what = site->count == 1 ? " block at " : " blocks at ";
  memcpy(line + n, what, strlen(what)); n += strlen(what);
  err_str("  ");
  os_write_stderr(line, n);
  const prof_stack_t *s = site->stack;
  for (unsigned k = 0; k < s->depth && k < 8; k++) {
    uintptr_t off = 0;
    n = 0;
    if (k) { memcpy(line, " < ", 3); n = 3; }
    const char *name = os_symbolize((const void *)(s->pcs[k] - 1), sym, sizeof sym, &off) ? sym : "?";
    size_t l = strlen(name);
    memcpy(line + n, name, l); n += l;
    memcpy(line + n, " (+", 3); n += 3;
    size_t h = fmt_hex(num, off + 1); memcpy(line + n, num, h); n += h;
    line[n++] = ')';
    os_write_stderr(line, n);
  }
  err_str("\n");
}

static void leak_report(const snap_t *sn, const char *path) {
  char line[CONF_STR_MAX + 200];
  size_t n = 0;
  static const char a[] = "tidalloc: ", b[] = " allocation sites still live at exit (sampled estimate); profile in ";
  memcpy(line, a, sizeof a - 1); n += sizeof a - 1;
  n += fmt_bytes(line + n, sn->bytes);
  memcpy(line + n, " in ", 4); n += 4;
  n += fmt_u64(line + n, sn->n);
  memcpy(line + n, b, sizeof b - 1); n += sizeof b - 1;
  size_t l = TD_MIN(strlen(path), sizeof line - n - 2);
  memcpy(line + n, path, l); n += l;
  line[n++] = '\n';
  os_write_stderr(line, n);
  /* the largest sites first: a selection, the snapshot is left in order */
  uint64_t last = UINT64_MAX;
  size_t last_i = SIZE_MAX;
  for (unsigned t = 0; t < PROF_TOP_LEAK; t++) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < sn->n; i++) {
      uint64_t b2 = sn->sites[i].bytes;
      bool after = b2 < last || (b2 == last && i > last_i);
      if (after && (best == SIZE_MAX || b2 > sn->sites[best].bytes)) best = i;
    }
    if (best == SIZE_MAX) break;
    leak_print_site(&sn->sites[best]);
    last = sn->sites[best].bytes;
    last_i = best;
  }
}

static void prof_at_exit(void) {
  tls_busy = 1;   /* nothing allocated from here on is sampled */
  char path[CONF_STR_MAX + 64] = "";
  snap_t sn;
  memset(&sn, 0, sizeof sn);
  bool have = false;
  if (opt.prof_final) have = dump(NULL, path, sizeof path, &sn);
  if (opt.prof_leak) {
    if (!have) {
      snap_free(&sn);
      have = snap_take(&sn);
      if (have && sn.n && !dump(NULL, path, sizeof path, NULL)) memcpy(path, "(no dump: write failed)", 24);
    }
    bool leaked = have && sn.n > 0;
    if (leaked) leak_report(&sn, path);
    snap_free(&sn);
    if (leaked && opt.prof_leak_error) os_exit_now(1);
  }
  snap_free(&sn);
}

/* ---- start-up ------------------------------------------------------------------------------- */

void prof_init(void) {
  mutex_register(&prof_lock);
  if (!prof_enabled()) return;
  bool main_program = false;
  if (os_text_range((const void *)prof_init, &self_lo, &self_hi, &main_program) && main_program)
    self_lo = self_hi = 0;   /* linked into the program: prof_sample's ra marks the boundary */
  if (opt.prof_final || opt.prof_leak) atexit(prof_at_exit);
  static const char msg[] = "tidalloc: prof_signal ignored: that signal cannot be caught\n";
  if (opt.prof_signal > 0 && !os_catch_signal((int)opt.prof_signal, on_signal)) os_write_stderr(msg, sizeof msg - 1);
}

void prof_warm(void) {
  if (!prof_enabled() || warmed) return;
  warmed = true;
  void *pcs[4];
  tls_busy = 1;
  os_backtrace(pcs, 4);
  tls_busy = 0;
}

/* ---- controls, visiting, statistics ------------------------------------------------------------ */

long prof_visit(prof_visit_fn fn, void *arg) {
  if (!prof_enabled()) return -1;
  snap_t sn;
  if (!snap_take(&sn)) return -1;
  uint8_t was = tls_busy;
  tls_busy = 1;   /* the callback may allocate: not sampled */
  for (size_t i = 0; i < sn.n; i++)
    fn(arg, (void *const *)sn.sites[i].stack->pcs, sn.sites[i].stack->depth, sn.sites[i].bytes, sn.sites[i].count);
  tls_busy = was;
  long n = (long)sn.n;
  snap_free(&sn);
  return n;
}

static void site_text(char *buf, size_t cap, const prof_stack_t *s) {
  size_t n = 0;
  char h[24];
  for (unsigned k = 0; k < s->depth && k < 4; k++) {
    size_t l = fmt_hex(h, s->pcs[k]);
    if (n + l + 2 >= cap) break;
    if (k) buf[n++] = ' ';
    memcpy(buf + n, h, l); n += l;
  }
  buf[n] = 0;
}

void prof_stats_get(prof_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->enabled = prof_enabled();
  if (!out->enabled) return;
  mutex_lock(&prof_lock);
  out->live_bytes = tot.bytes;
  out->live_count = PROF_FX_ROUND(tot.count);
  out->samples = tot.samples;
  out->stacks = tot.stacks;
  out->metadata = tot.meta_bytes + tot.recs_high * sizeof(prof_rec_t);
  /* the top sites by bytes (insertion into a short sorted array) */
  for (const prof_stack_t *s = all_stacks; s; s = s->all_next) {
    if (!s->samples) continue;
    uint64_t b = s->bytes;
    unsigned i = out->ntop < PROF_TOP_SITES ? out->ntop++ : PROF_TOP_SITES;
    if (i == PROF_TOP_SITES) { if (b <= out->top[i - 1].bytes) continue; i--; }
    while (i > 0 && out->top[i - 1].bytes < b) { out->top[i] = out->top[i - 1]; i--; }
    out->top[i].bytes = b;
    out->top[i].count = TD_MAX(PROF_FX_ROUND(s->count), 1);
    site_text(out->top[i].site, sizeof out->top[i].site, s);
  }
  mutex_unlock(&prof_lock);
  out->dumps = __atomic_load_n(&dumps, __ATOMIC_RELAXED);
}

const char *prof_validate(void) {
  const char *why = NULL;
  mutex_lock(&prof_lock);
  uint64_t c = 0, b = 0, n = 0, lc = 0, lb = 0, ln = 0;
  for (prof_stack_t *s = all_stacks; s; s = s->all_next) { c += s->count; b += s->bytes; n += s->samples; }
  for (prof_rec_t *r = live; r; r = r->next) { lc += r->count; lb += r->bytes; ln++; }
  if (n != tot.samples || ln != tot.samples) why = "prof: sample count";
  else if (c != lc || c != tot.count) why = "prof: stack counts";
  else if (b != lb || b != tot.bytes) why = "prof: stack bytes";
  mutex_unlock(&prof_lock);
  return why;
}

/* prof.reset: every live sample leaves the profile (its block stays, and
 * its free no longer counts); optionally a new mean sample interval. */
static void reset(void) {
  mutex_lock(&prof_lock);
  for (prof_rec_t *r = live; r; r = r->next) r->stack = NULL;
  live = NULL;
  for (prof_stack_t *s = all_stacks; s; s = s->all_next) { s->count = s->bytes = 0; s->samples = 0; }
  tot.count = tot.bytes = 0;
  tot.samples = 0;
  tot.gdump_next = 0;
  mutex_unlock(&prof_lock);
}

static int off_error(const char *name) {
  static const char a[] = "tidalloc: tidal_ctl(\"", b[] = "\"): heap profiling is off (start with TIDALLOC_CONF=prof:true)\n";
  char line[256];
  size_t n = 0, l = TD_MIN(strlen(name), (size_t)100);
  memcpy(line, a, sizeof a - 1); n += sizeof a - 1;
  memcpy(line + n, name, l); n += l;
  memcpy(line + n, b, sizeof b - 1); n += sizeof b - 1;
  os_write_stderr(line, n);
  return EPERM;
}

static int rw_ptr(void **slot, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (newp && newlen != sizeof(void *)) return EINVAL;
  if (oldp || oldlenp) {
    if (!oldp || !oldlenp || *oldlenp != sizeof(void *)) return EINVAL;
    void *cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    memcpy(oldp, &cur, sizeof cur);
  }
  if (newp) {
    void *v;
    memcpy(&v, newp, sizeof v);
    __atomic_store_n(slot, v, __ATOMIC_RELEASE);
  }
  return 0;
}

static int ctl_dump(const void *newp, size_t newlen) {
  const char *path = NULL;
  if (newp) {
    if (newlen != sizeof(const char *)) return EINVAL;
    memcpy(&path, newp, sizeof path);
  }
  return dump(path, NULL, 0, NULL) ? 0 : EIO;
}

static int ctl_active(void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (newp && newlen != sizeof(bool)) return EINVAL;
  bool cur = prof_enabled() && __atomic_load_n(&active, __ATOMIC_RELAXED);
  if (oldp || oldlenp) {
    if (!oldp || !oldlenp || *oldlenp != sizeof(bool)) return EINVAL;
    memcpy(oldp, &cur, sizeof cur);
  }
  if (newp) __atomic_store_n(&active, *(const bool *)newp, __ATOMIC_RELAXED);
  return 0;
}

static int ctl_reset(void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  if (oldp || oldlenp) return EINVAL;
  if (newp) {
    if (newlen != sizeof(size_t)) return EINVAL;
    size_t rate;
    memcpy(&rate, newp, sizeof rate);
    if (rate == 0 || rate > ((size_t)1 << 40)) return EINVAL;
    __atomic_store_n(&opt.prof_sample, (int64_t)rate, __ATOMIC_RELAXED);
  }
  reset();
  return 0;
}

int prof_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  bool on = prof_enabled();
  if (strcmp(name, "active") == 0) {
    if (newp && !on) return off_error("prof.active");
    return ctl_active(oldp, oldlenp, newp, newlen);
  }
  if (strcmp(name, "dump") == 0) {
    if (oldp || oldlenp) return EINVAL;
    return on ? ctl_dump(newp, newlen) : off_error("prof.dump");
  }
  if (strcmp(name, "reset") == 0) return on ? ctl_reset(oldp, oldlenp, newp, newlen) : off_error("prof.reset");
  void **slot = strcmp(name, "hooks.backtrace") == 0 ? (void **)&hook_bt
              : strcmp(name, "hooks.sample") == 0 ? (void **)&hook_sample
              : strcmp(name, "hooks.sample_free") == 0 ? (void **)&hook_sample_free
              : strcmp(name, "hooks.dump") == 0 ? (void **)&hook_dump : NULL;
  if (!slot) return ENOENT;
  if (newp && !on) return off_error("prof.hooks");
  return rw_ptr(slot, oldp, oldlenp, newp, newlen);
}

/* ---- fork ---------------------------------------------------------------------------------------- */

void prof_prefork(void) { mutex_lock(&prof_lock); }
void prof_postfork_parent(void) { mutex_unlock(&prof_lock); }
void prof_postfork_child(void) { mutex_postfork_child(&prof_lock); }
