#include "large.h"
#include "conf.h"
#include "heap.h"
#include "huge.h"
#include "lock.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"

#include <string.h>

/* ---- the quarantine of freed page runs (large_quarantine) ------------------
 * A FIFO ring of the last opt.large_quarantine freed runs, each PROT_NONE
 * while it waits (a write after free faults) and released to the pagemap (a
 * second free is reported), so the next block of the size comes from other
 * pages. The oldest is opened and given to the page layer when a new one
 * comes. Invariant: lq.count <= lq.cap <= LQ_MAX, every run in
 * the ring is PROT_NONE and its pagemap entry is span_released. The
 * mprotect calls happen outside the lock. */
#define LQ_MAX 64
static td_mutex_t lq_lock = TD_MUTEX_INIT("large_quarantine", RANK_LARGE_QUARANTINE);
static struct {
  span_t *ring[LQ_MAX];
  size_t cap, head, count;          /* cap: opt.large_quarantine, read once */
  uint64_t held, protect_failures;
} lq;

void large_init(void) {
  mutex_register(&lq_lock);
  lq.cap = (size_t)TD_MIN(opt.large_quarantine, LQ_MAX);
}

/* Hold s (released, its pages not yet given back); returns the run to give
 * back now: s itself when it cannot be held, the oldest when the ring is
 * full, or NULL. */
static span_t *quarantine_push(span_t *s) {
  size_t cap = lq.cap;
  if (!os_protect((void *)s->base, s->bytes, false)) {   /* e.g. a run not of whole OS pages */
    __atomic_fetch_add(&lq.protect_failures, 1, __ATOMIC_RELAXED);
    return s;
  }
  span_t *out = NULL;
  mutex_lock(&lq_lock);
  if (lq.count == cap) {
    out = lq.ring[lq.head];
    lq.head = (lq.head + 1) % cap;
    lq.count--;
  }
  lq.ring[(lq.head + lq.count) % cap] = s;
  lq.count++;
  lq.held++;
  TD_DASSERT(lq.count <= cap && cap <= LQ_MAX);
  mutex_unlock(&lq_lock);
  if (out) (void)os_protect((void *)out->base, out->bytes, true);
  return out;
}

void large_prefork(void) { mutex_lock(&lq_lock); }
void large_postfork_parent(void) { mutex_unlock(&lq_lock); }
void large_postfork_child(void) { mutex_postfork_child(&lq_lock); }

static void *run_alloc(size_t size, size_t align, bool zero) {
  span_t *s = page_alloc(td_pages_of(size), align > TD_PAGE ? align >> TD_PAGE_SHIFT : 1);
  if (!s) return NULL;
  s->kind = SPAN_LARGE;
  s->owner = NULL;
  s->start = s->base;
  if (zero && !s->zeroed) memset((void *)s->base, 0, size);
  pagemap_set(s->base, 1, s);
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
  if (lq.cap > 0) s = quarantine_push(s);
  if (s) page_free(s);
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
