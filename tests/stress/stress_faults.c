/* Fault injection: the kernel refuses memory at random. tidalloc's objects
 * are linked into this program (as in tests/unit), which installs OS hooks
 * (os_hooks_t) that make map, commit, purge, hugify, remap and thread
 * creation fail at random, seeded (TIDAL_TEST_SEED), at FAULT_PERMILLE per
 * call, and always the first call of each kind. Threads allocate, calloc,
 * realloc, align and free blocks of every size class, and free each other's
 * blocks (remote frees), while faults are
 * on; then faults are turned off and the same work must succeed again.
 * Checked:
 * - every allocation either succeeds or returns NULL with errno ENOMEM; a
 *   failed realloc leaves the block as it was;
 * - every block keeps its contents until freed; calloc's blocks read as zero
 *   (a refused purge must not be taken for a purge);
 * - nothing leaks: after everything is freed the program's allocated bytes
 *   and live huge mappings are back where they started, and every byte
 *   mapped through the hooks is accounted for by the page layer, the huge
 *   cache or the metadata;
 * - the structure validators (page_validate, heap_validate) hold at the end.
 * FAULT_THREADS=always: every thread creation fails (the background worker
 * never starts; its work is done inline). FAULT_STRICT=1: strict overcommit
 * (regions reserved PROT_NONE, units committed when used and decommitted
 * when purged empty), so commits fail too; the reservations are not made
 * through the hooks, so the mapping account is not checked then. */
#include "testutil.h"
#include "background.h"
#include "heap.h"
#include "huge.h"
#include "meta.h"
#include "os.h"
#include "page.h"
#include "tidalloc.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

enum { F_MAP, F_COMMIT, F_PURGE, F_HUGIFY, F_REMAP, F_THREAD, F_KINDS };
static const char *const fault_name[F_KINDS] = { "map", "commit", "purge", "hugify", "remap", "thread" };
/* Per mille of the calls refused, by kind: maps are rare (regions are
 * reserved 1 GiB at a time), so they fail more often. */
static const unsigned fault_permille[F_KINDS] = { 100, 100, 30, 30, 100, 300 };

static uint64_t fault_seed, fault_calls, injected[F_KINDS];
static int faults_on, threads_always_fail, strict, refused_once[F_KINDS];
static int64_t mapped_net;   /* bytes mapped minus unmapped through the hooks since they were installed */

static int inject(int kind) {
  if (kind == F_THREAD && threads_always_fail) { __atomic_fetch_add(&injected[kind], 1, __ATOMIC_RELAXED); return 1; }
  if (!__atomic_load_n(&faults_on, __ATOMIC_RELAXED)) return 0;
  uint64_t n = __atomic_fetch_add(&fault_calls, 1, __ATOMIC_RELAXED);
  /* The first call of each kind while faults are on is refused, so a kind
   * that is called at all is exercised (a kind called a few times, as commit
   * is, would otherwise go unrefused in some runs); then at random. */
  if (__atomic_exchange_n(&refused_once[kind], 1, __ATOMIC_RELAXED) &&
      tt_mix64(fault_seed + n * 0x9e3779b97f4a7c15ull) % 1000 >= fault_permille[kind]) return 0;
  __atomic_fetch_add(&injected[kind], 1, __ATOMIC_RELAXED);
  return 1;
}

static void *f_map(size_t size) {
  if (inject(F_MAP)) return NULL;
  void *p = os_hooks_default.map(size);
  if (p) __atomic_fetch_add(&mapped_net, (int64_t)td_align_up(size, os_page()), __ATOMIC_RELAXED);
  return p;
}
static bool f_unmap(void *a, size_t size) {
  bool ok = os_hooks_default.unmap(a, size);   /* never refused: callers cannot do anything about it */
  if (ok) __atomic_fetch_sub(&mapped_net, (int64_t)td_align_up(size, os_page()), __ATOMIC_RELAXED);
  return ok;
}
static bool f_purge(void *a, size_t size, os_purge_t how) { return !inject(F_PURGE) && os_hooks_default.purge(a, size, how); }
static bool f_hugify(void *a, size_t size, os_huge_t how) { return !inject(F_HUGIFY) && os_hooks_default.hugify(a, size, how); }
static bool f_commit(void *a, size_t size, bool c) { return !inject(F_COMMIT) && os_hooks_default.commit(a, size, c); }
static bool f_remap(void *a, size_t old_size, size_t new_size, void *dest) {
  if (inject(F_REMAP)) return false;
  bool ok = os_hooks_default.remap(a, old_size, new_size, dest);
  /* A move replaces dest (already counted by its map) and releases a. */
  if (ok) __atomic_fetch_add(&mapped_net, dest ? -(int64_t)td_align_up(old_size, os_page())
                                               : (int64_t)td_align_up(new_size, os_page()) - (int64_t)td_align_up(old_size, os_page()),
                            __ATOMIC_RELAXED);
  return ok;
}
static bool f_move(void *a, size_t size, void *dest) {
  if (inject(F_REMAP)) return false;
  bool ok = os_hooks_default.move(a, size, dest);
  if (ok) __atomic_fetch_sub(&mapped_net, (int64_t)td_align_up(size, os_page()), __ATOMIC_RELAXED);   /* dest was counted by its map */
  return ok;
}
static int f_thread(void *t, void *(*fn)(void *), void *arg) {
  return inject(F_THREAD) ? EAGAIN : os_hooks_default.thread_create(t, fn, arg);
}

/* Bytes that the layers say they hold in mappings made through the hooks. */
static int64_t accounted(void) {
  page_stats_t ps;
  huge_stats_t hs;
  size_t meta_mapped, meta_alloc, meta_sep;
  page_stats_get(&ps);
  huge_stats_get(&hs);
  meta_stats(&meta_mapped, &meta_alloc, &meta_sep);
  return (int64_t)(ps.mapped + ps.arena_reserved + hs.live_bytes + hs.cached_bytes + meta_mapped + meta_sep);
}

/* ---- the workload ---------------------------------------------------------- */

enum { NSLOTS = 512, NTHREADS = 4 };
typedef struct { unsigned char *p; size_t size; uint64_t tag; } slot_t;
static slot_t slots[NSLOTS];
static int slot_lock[NSLOTS];
static long ops_per_thread;
static uint64_t nulls, oks;

static void lock_slot(int i) { while (__atomic_exchange_n(&slot_lock[i], 1, __ATOMIC_ACQUIRE)) sched_yield(); }
static void unlock_slot(int i) { __atomic_store_n(&slot_lock[i], 0, __ATOMIC_RELEASE); }

static size_t pick_size(tt_rng *r) {
  uint64_t k = tt_below(r, 100);
  if (k < 60) return 1 + tt_below(r, 1024);
  if (k < 85) return 1024 + tt_below(r, 60000);
  if (k < 98) return 65536 + tt_below(r, 900000);
  return ((size_t)1 << 20) + tt_below(r, (size_t)6 << 20);   /* huge */
}

/* Pattern: sampled every 4 KiB and at both ends (big blocks would be slow). */
static void fill(const slot_t *s) {
  for (size_t i = 0; i < s->size; i += i < 64 ? 1 : 4096) s->p[i] = tt_pat_byte(s->tag, i);
  s->p[s->size - 1] = tt_pat_byte(s->tag, s->size - 1);
}
static void verify(const slot_t *s, const char *what) {
  for (size_t i = 0; i < s->size; i += i < 64 ? 1 : 4096)
    CHECK(s->p[i] == tt_pat_byte(s->tag, i), "%s: block %p (%zu bytes) corrupt at %zu", what, (void *)s->p, s->size, i);
  CHECK(s->p[s->size - 1] == tt_pat_byte(s->tag, s->size - 1), "%s: block %p corrupt at its end", what, (void *)s->p);
}
/* The sampled bytes below n (a realloc keeps the common prefix). */
static void verify_prefix(const slot_t *s, size_t n) {
  for (size_t i = 0; i < n; i += i < 64 ? 1 : 4096)
    CHECK(s->p[i] == tt_pat_byte(s->tag, i), "after realloc: block %p corrupt at %zu", (void *)s->p, i);
  if (n == s->size) CHECK(s->p[n - 1] == tt_pat_byte(s->tag, n - 1), "after realloc: block %p corrupt at its end", (void *)s->p);
}
static void zero_check(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i += i < 4096 ? 1 : 509) CHECK(p[i] == 0, "calloc(%zu) byte %zu is %d", n, i, p[i]);
  CHECK(p[n - 1] == 0, "calloc(%zu): last byte not zero", n);
}

/* Call as failed(call, what, size): errno is read after the call returned. */
#define failed(call, what, size) checked((errno = 0, (call)), what, size)
static void *checked(void *p, const char *what, size_t size) {
  int err = errno;
  if (!p) {
    CHECK(err == ENOMEM, "%s(%zu) returned NULL with errno %d, not ENOMEM", what, size, err);
    __atomic_fetch_add(&nulls, 1, __ATOMIC_RELAXED);
  } else {
    __atomic_fetch_add(&oks, 1, __ATOMIC_RELAXED);
  }
  return p;
}

static void one_op(tt_rng *r, int i) {
  slot_t *s = &slots[i];
  if (s->p) {
    verify(s, "before free");
    if (tt_below(r, 4) == 0) {   /* realloc: grows or shrinks, or fails leaving the block */
      size_t n = pick_size(r);
      unsigned char *q = failed(realloc(s->p, n), "realloc", n);
      if (!q) { verify(s, "after a failed realloc"); return; }
      s->p = q;
      verify_prefix(s, TD_MIN(n, s->size));   /* the common prefix moved with it */
      s->size = n;
      fill(s);
      return;
    }
    free(s->p);
    s->p = NULL;
    return;
  }
  size_t n = pick_size(r);
  uint64_t how = tt_below(r, 4);
  unsigned char *p;
  if (how == 0) {
    p = failed(calloc(1, n), "calloc", n);
    if (p) zero_check(p, n);
  } else if (how == 1) {
    size_t align = (size_t)64 << tt_below(r, 11);   /* 64 B .. 64 KiB */
    p = failed(aligned_alloc(align, td_align_up(n, align)), "aligned_alloc", n);
    if (p) { CHECK((uintptr_t)p % align == 0); n = td_align_up(n, align); }
  } else {
    p = failed(malloc(n), "malloc", n);
  }
  if (!p) return;
  s->p = p;
  s->size = n;
  s->tag = tt_next(r);
  fill(s);
}

static void *worker(void *arg) {
  tt_rng r = { tt_seed * 1000 + (uint64_t)(uintptr_t)arg };
  bool toggler = (uintptr_t)arg == 1;
  for (long k = 0; k < ops_per_thread; k++) {
    if (toggler && k % 500 == 250) {
      /* The worker leaves and must be started again: thread creation
       * happens (and fails at random) while faults are on. */
      bool on = k % 1000 != 250;
      tidal_ctl("background_thread", NULL, NULL, &on, sizeof on);
    }
    int i = (int)tt_below(&r, NSLOTS);   /* any slot: blocks are freed by other threads too */
    lock_slot(i);
    one_op(&r, i);
    unlock_slot(i);
  }
  return NULL;
}

static void run_threads(void) {
  pthread_t t[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0);
  for (int i = 0; i < NTHREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
}

static void free_all(void) {
  for (int i = 0; i < NSLOTS; i++)
    if (slots[i].p) { verify(&slots[i], "at the end"); free(slots[i].p); slots[i].p = NULL; }
}

static uint64_t stat_u64(const char *name) {
  uint64_t v = 0, e = 1;
  size_t len = sizeof v;
  tidal_ctl("epoch", NULL, NULL, &e, sizeof e);
  CHECK(tidal_ctl(name, &v, &len, NULL, 0) == 0, "tidal_ctl(%s)", name);
  return v;
}

static void *idle_thread(void *arg) { return arg; }

/* stats.allocated once glibc holds thread memory (the TLS vector of each
 * thread stack it keeps, from malloc) for live threads only. The tests run
 * with glibc.pthread.stack_cache_size=0 (CMakeLists.txt), so glibc frees the
 * stack of every thread that has ended whenever a thread is joined; a thread
 * created and joined here sweeps those of threads that ended since. The
 * background worker is switched off first (it is detached and leaves on its
 * own, after the switch returns; its watcher is joined by it). Waits until
 * the figure equals want (want != 0) or holds still for 5 readings, up to
 * 3 s: a leak stays. */
static uint64_t settled_allocated(uint64_t want) {
  bool off = false;
  tidal_ctl("background_thread", NULL, NULL, &off, sizeof off);
  uint64_t last = UINT64_MAX, v = 0;
  int same = 0;
  for (int i = 0; i < 300; i++) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, idle_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    v = stat_u64("stats.allocated");
    if (want ? v == want : (!background_running() && (same = v == last ? same + 1 : 0) >= 5)) break;
    last = v;
    usleep(10000);
  }
  return v;
}

int main(void) {
  tt_init_seed(1717);
  tt_watchdog(300, "stress_faults");
  const char *ft = getenv("FAULT_THREADS");
  threads_always_fail = ft && strcmp(ft, "always") == 0;
  strict = getenv("FAULT_STRICT") != NULL;
  fault_seed = tt_mix64(tt_seed);
  /* The hooks go in first, faults off: the background worker and the
   * pressure watcher are started lazily, later, through them. */
  static os_hooks_t h;
  h = os_hooks_default;
  h.map = f_map; h.unmap = f_unmap; h.purge = f_purge; h.hugify = f_hugify;
  h.commit = f_commit; h.remap = f_remap; h.move = f_move; h.thread_create = f_thread;
  int64_t acc0 = accounted();
  os_hooks_set(&h);
  free(malloc(1));
  ops_per_thread = tt_scaled(6000, 500);
  uint64_t allocated0 = settled_allocated(0);
  bool on = true;
  tidal_ctl("background_thread", NULL, NULL, &on, sizeof on);
  huge_stats_t hs0;
  huge_stats_get(&hs0);

  if (strict) os_system.overcommit_strict = true;

  /* Round 1: faults on. Round 2: off; everything works again. */
  for (int round = 0; round < 2; round++) {
    __atomic_store_n(&faults_on, round == 0, __ATOMIC_RELAXED);
    uint64_t nulls0 = nulls;
    run_threads();
    if (round == 1) CHECK(nulls == nulls0, "%llu allocations failed with faults off", (unsigned long long)(nulls - nulls0));
  }
  __atomic_store_n(&faults_on, 1, __ATOMIC_RELAXED);
  free_all();   /* freeing while the kernel refuses purges */
  __atomic_store_n(&faults_on, 0, __ATOMIC_RELAXED);
  tidal_thread_flush();
  tidal_purge();

  uint64_t allocated = settled_allocated(allocated0);
  CHECK(allocated == allocated0, "allocated bytes %llu, %llu before",
        (unsigned long long)allocated, (unsigned long long)allocated0);
  huge_stats_t hs;
  huge_stats_get(&hs);
  CHECK(hs.live_count == hs0.live_count && hs.live_bytes == hs0.live_bytes, "huge mappings leaked");
  int64_t acc = accounted() - acc0, net = __atomic_load_n(&mapped_net, __ATOMIC_RELAXED);
  if (!strict) CHECK(net == acc, "%lld bytes mapped through the hooks, %lld accounted for", (long long)net, (long long)acc);
  page_validate();
  if (tls_heap) heap_validate(tls_heap);
  os_hooks_set(NULL);

  uint64_t total = 0;
  printf("stress_faults: %llu allocations, %llu refused (ENOMEM); injected:", (unsigned long long)oks,
         (unsigned long long)nulls);
  for (int k = 0; k < F_KINDS; k++) { printf(" %s %llu", fault_name[k], (unsigned long long)injected[k]); total += injected[k]; }
  printf(" (seed %llu)\n", tt_seed);
  CHECK(total > 0 && nulls > 0, "no fault was injected");
  /* Fresh memory comes through map (regions, huge blocks, metadata) or, with
   * guard_unused on, through commit (units opened as they are carved): at a
   * small scale one of the two may see no fault. */
  CHECK(injected[F_MAP] + injected[F_COMMIT] > 0 && injected[F_PURGE] > 0,
        "map/commit and purge faults were not exercised");
  if (strict) CHECK(injected[F_COMMIT] > 0, "commit faults were not exercised");
  if (threads_always_fail) CHECK(injected[F_THREAD] > 0, "thread creation was not refused");
  return 0;
}
