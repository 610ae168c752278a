#include "large.h"
#include "conf.h"
#include "heap.h"
#include "huge.h"
#include "lock.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"
#include "runcache.h"
#include "safety.h"

#include <string.h>

/* ---- the quarantine of freed page runs (large_quarantine) ------------------
 * FIFO rings of the last runs freed by the threads of each ring
 * (opt.large_quarantine runs in all, shared out: lq_cap per ring, at least
 * one; one ring per CPU, at most LQ_SHARDS, each with its lock and lines; a
 * thread keeps its ring, so what it frees leaves in the order it freed it,
 * wherever it runs), released to the pagemap (a second free is reported)
 * and not yet given back (the next block of that size comes from other
 * pages). The free writes a canary over the run's first LQ_CANARY_BYTES;
 * when the run leaves the ring the canary is checked, so a write after free
 * there (or a zeroing of the block) is reported a few large frees later.
 * With large_quarantine_protect the run is PROT_NONE instead while it waits
 * (a late access faults at once), and no canary is written.
 *
 *   run in a ring:  [ canary: LQ_CANARY_BYTES | the rest, as the program left it ]
 *   canary word i  =  span_free_key ^ base ^ (i * LQ_CANARY_MUL)
 *
 * Invariant, per ring: count <= lq_cap <= LQ_MAX; every run in a ring has
 * its pagemap entry span_released and its canary intact (or is PROT_NONE).
 * mprotect calls and canary checks happen outside the lock. */
#define LQ_MAX 64
#define LQ_SHARDS 8
#define LQ_CANARY_BYTES 64
#define LQ_CANARY_MUL 0x9e3779b97f4a7c15ull
typedef struct lq_ring_s {
  td_mutex_t lock;
  size_t head, count;
  uint64_t held;
  span_t *ring[LQ_MAX];
} TD_ALIGNED(TD_CACHELINE) lq_ring_t;
static lq_ring_t lq[LQ_SHARDS];
static size_t lq_cap;               /* runs per ring: opt.large_quarantine shared out, read once */
static unsigned lq_n;               /* rings: one per CPU, at most LQ_SHARDS */
static unsigned lq_next;            /* the ring the next thread gets */
static __thread uint8_t tls_lq_ring __attribute__((tls_model("initial-exec")));   /* 1 + its ring; 0: none yet */
static bool lq_protect;             /* opt.large_quarantine_protect, read once */
static uint64_t lq_protect_failures;

void large_init(void) {
  lq_n = TD_MIN(os_ncpus(), (unsigned)LQ_SHARDS);
  /* large_quarantine runs in all, shared out (at least one per ring), so
   * that more CPUs do not hold more memory. */
  lq_cap = (size_t)TD_MIN(opt.large_quarantine, LQ_MAX);
  if (lq_cap > 0) lq_cap = TD_MAX((size_t)1, (lq_cap + lq_n - 1) / lq_n);
  lq_protect = opt.large_quarantine_protect;
  for (unsigned i = 0; i < LQ_SHARDS; i++) {
    lq[i].lock = (td_mutex_t)TD_MUTEX_INIT("large_quarantine", RANK_LARGE_QUARANTINE);
    if (i < lq_n) mutex_register(&lq[i].lock);
  }
}

static uint64_t canary_word(uintptr_t base, size_t i) { return span_free_key ^ base ^ (i * LQ_CANARY_MUL); }

static void canary_write(uintptr_t base) {
  uint64_t *w = (uint64_t *)base;
  for (size_t i = 0; i < LQ_CANARY_BYTES / 8; i++) w[i] = canary_word(base, i);
}

/* The run leaves the ring: its canary must be intact. */
static void canary_check(const span_t *s) {
  const uint64_t *w = (const uint64_t *)s->base;
  for (size_t i = 0; i < LQ_CANARY_BYTES / 8; i++)
    if (TD_UNLIKELY(w[i] != canary_word(s->base, i)))
      safety_report("write after free", (void *)(s->base + i * 8), "a freed large block was written while in the quarantine",
                    (long)s->bytes, "free");
}

/* Hold s (released, its pages not yet given back) in the thread's ring;
 * returns the run to give back now: s itself when it cannot be held, the
 * ring's oldest when it is full, or NULL. */
static span_t *quarantine_push(span_t *s) {
  size_t cap = lq_cap;
  if (lq_protect) {
    if (!os_protect((void *)s->base, s->bytes, false)) {   /* e.g. a run not of whole OS pages */
      __atomic_fetch_add(&lq_protect_failures, 1, __ATOMIC_RELAXED);
      return s;
    }
  } else {
    canary_write(s->base);
  }
  span_t *out = NULL;
  if (TD_UNLIKELY(tls_lq_ring == 0)) tls_lq_ring = (uint8_t)(1 + __atomic_fetch_add(&lq_next, 1, __ATOMIC_RELAXED) % lq_n);
  lq_ring_t *q = &lq[tls_lq_ring - 1];
  mutex_lock(&q->lock);
  if (q->count == cap) {
    out = q->ring[q->head];
    q->head = (q->head + 1) % cap;
    q->count--;
  }
  q->ring[(q->head + q->count) % cap] = s;
  q->count++;
  q->held++;
  TD_DASSERT(q->count <= cap && cap <= LQ_MAX);
  mutex_unlock(&q->lock);
  if (out) {
    if (lq_protect) (void)os_protect((void *)out->base, out->bytes, true);
    else canary_check(out);
  }
  return out;
}

size_t large_quarantine_flush(void) {
  size_t n = 0;
  for (unsigned k = 0; k < lq_n; k++) {
    lq_ring_t *q = &lq[k];
    for (;;) {
      mutex_lock(&q->lock);
      span_t *out = NULL;
      if (q->count) {
        out = q->ring[q->head];
        q->head = (q->head + 1) % lq_cap;
        q->count--;
      }
      mutex_unlock(&q->lock);
      if (!out) break;
      if (lq_protect) (void)os_protect((void *)out->base, out->bytes, true);
      else canary_check(out);
      n += out->bytes;
      page_free(out);
    }
  }
  return n;
}

void large_prefork(void) {
  for (unsigned k = 0; k < lq_n; k++) mutex_lock(&lq[k].lock);
}
void large_postfork_parent(void) {
  for (unsigned k = lq_n; k-- > 0;) mutex_unlock(&lq[k].lock);
}
void large_postfork_child(void) {
  for (unsigned k = 0; k < lq_n; k++) mutex_postfork_child(&lq[k].lock);
}

span_t *large_run_alloc(struct pager_s *pager, struct heap_s *owner, size_t size, size_t align, bool zero) {
  size_t npages = td_pages_of(size);
  span_t *s = pager == NULL && align <= TD_PAGE ? runcache_take(npages) : NULL;
  if (!s) s = page_alloc_in(pager, npages, align > TD_PAGE ? align >> TD_PAGE_SHIFT : 1);
  if (!s) return NULL;
  s->kind = SPAN_LARGE;
  s->owner = owner;
  s->start = s->base;
  if (zero && !s->zeroed) memset((void *)s->base, 0, size);
  pagemap_set(s->base, 1, s);
  return s;
}

static void *run_alloc(size_t size, size_t align, bool zero) {
  span_t *s = large_run_alloc(NULL, NULL, size, align, zero);
  if (!s) return NULL;
  heap_count_large(tls_heap, s->bytes, true, false);
  return (void *)s->base;
}

void *large_alloc(size_t size, size_t align, bool zero) {
  if (size <= LARGE_RUN_MAX && align <= TD_UNIT) return run_alloc(size, align, zero);
  void *p = huge_alloc(size, align, zero);
  if (p) heap_count_large(tls_heap, pagemap_lookup(p)->bytes, true, true);
  return p;
}

void large_free(span_t *s) {
  if (s->kind == SPAN_HUGE) {
    heap_count_large(tls_heap, s->bytes, false, true);
    huge_free(s);
    return;
  }
  heap_count_large(tls_heap, s->bytes, false, false);
  pagemap_set(s->base, 1, &span_released);
  s->kind = SPAN_RELEASED;
  if (lq_cap > 0) s = quarantine_push(s);
  if (s && !(page_of_default(s) && runcache_put(s))) page_free(s);
}

/* A resize in place counts as a free and an allocation. */
static void count_resize(size_t old_bytes, size_t new_bytes, bool huge) {
  heap_count_large(tls_heap, old_bytes, false, huge);
  heap_count_large(tls_heap, new_bytes, true, huge);
}

static void *run_resize(span_t *s, size_t size) {
  if (size <= SC_SMALL_MAX || size > LARGE_RUN_MAX) return NULL;   /* another kind of block */
  size_t want = td_pages_of(size), have = s->bytes >> TD_PAGE_SHIFT;
  if (want == have) return (void *)s->start;
  if (want < have) page_shrink(s, want);
  else if (!page_grow(s, want)) return NULL;
  count_resize(have << TD_PAGE_SHIFT, s->bytes, false);
  return (void *)s->start;
}

void *large_resize(span_t *s, size_t size) {
  if (s->kind == SPAN_LARGE) return run_resize(s, size);
  if (size <= LARGE_RUN_MAX) return NULL;
  size_t old = s->bytes;
  void *q = huge_realloc(s, size);
  if (q) count_resize(old, s->bytes, true);
  return q;
}
