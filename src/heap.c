#include "heap.h"
#include <string.h>
#include "conf.h"
#include "secure.h"
#include "lock.h"
#include "meta.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"
#include "safety.h"

#include <errno.h>
#include <pthread.h>

__thread heap_t *tls_heap __attribute__((tls_model("initial-exec"))) = &heap_empty;
static __thread uint8_t tls_exited __attribute__((tls_model("initial-exec")));
/* The bound heap's byte counters when this thread got it (per-thread stats). */
static __thread uint64_t tls_base_alloc __attribute__((tls_model("initial-exec")));
static __thread uint64_t tls_base_freed __attribute__((tls_model("initial-exec")));
/* Large/huge traffic of threads that have no heap. */
static heap_counters_t orphan_cnt;
/* Frees by threads without a heap, counted apart in shards picked by the
 * thread, so that two such threads (consumers of a queue) do not bounce one
 * cache line on every free. */
#define ORPHAN_FREE_SHARDS 8
static struct { uint64_t nfree[SC_NCLASSES]; } TD_ALIGNED(TD_CACHELINE) orphan_frees[ORPHAN_FREE_SHARDS];

static unsigned orphan_shard(void) {
  uint64_t a = (uint64_t)(uintptr_t)&tls_heap;   /* a per-thread address */
  return (unsigned)((a * 0x9e3779b97f4a7c15ull) >> 61) & (ORPHAN_FREE_SHARDS - 1);
}
static td_mutex_t orphan_lock = TD_MUTEX_INIT("heap_orphan_counters", RANK_HEAP_ORPHANS);

span_t span_empty = { .free = SPAN_FREE_END, .kind = SPAN_NONE };
heap_t heap_empty = { .cur = { [0 ... SC_NCLASSES - 1] = &span_empty }, .prof_left = INT64_MAX, .state = HEAP_DEAD };

static td_mutex_t registry_lock = TD_MUTEX_INIT("heap_registry", RANK_HEAP_REGISTRY);
static td_mutex_t global_lock = TD_MUTEX_INIT("heap_global", RANK_HEAP_GLOBAL);
static heap_t *all_heaps, *heap_pool, *global_heap;
static uint32_t heap_next_id;
static pthread_key_t heap_tsd;

static void heap_thread_exit(void *arg);
static heap_t *heap_bind(void);
static void (*exit_hook)(void);

void heap_set_exit_hook(void (*hook)(void)) { __atomic_store_n(&exit_hook, hook, __ATOMIC_RELEASE); }
static void heap_bytes(const heap_t *h, uint64_t *allocated, uint64_t *freed);

static heap_t *heap_create(uint32_t state) {
  heap_t *h = meta_alloc(sizeof(heap_t), TD_CACHELINE);
  if (!h) return NULL;
  for (unsigned c = 0; c < SC_NCLASSES; c++) h->cur[c] = &span_empty;
  h->state = state;
  mutex_lock(&registry_lock);
  h->id = heap_next_id++;
  h->all_next = all_heaps;
  all_heaps = h;
  mutex_unlock(&registry_lock);
  return h;
}

void heap_user_init(heap_t *h, struct pager_s *pager) {
  memset(h, 0, sizeof *h);
  for (unsigned c = 0; c < SC_NCLASSES; c++) h->cur[c] = &span_empty;
  h->state = HEAP_USER;
  h->pager = pager;
  h->prof_left = INT64_MAX;   /* a heap of the program's: never sampled */
}

void heap_user_forget(heap_t *h) { heap_user_init(h, h->pager); }

void heap_init(void) {
  pthread_key_create(&heap_tsd, heap_thread_exit);
  global_heap = heap_create(HEAP_GLOBAL);
  mutex_register(&registry_lock);
  mutex_register(&global_lock);
}

/* ---- slab spans ----------------------------------------------------------- */

static void slab_init(heap_t *h, span_t *s, unsigned cls) {
  const sc_info_t *ci = &sc_info[cls];
  TD_DASSERT(ci->pages <= SPAN_HOLE_MAX_PAGES && ci->capacity <= SPAN_HOLE_MAX_BLOCKS);   /* the hole maps fit */
  h->cnt.nslabs[cls]++;
  s->owner = h;
  s->kind = SPAN_SLAB;
  s->cls = (uint16_t)cls;
  span_set_size(s, ci->size);
  s->capacity = ci->capacity;
  __atomic_store_n(&s->carved, 0, __ATOMIC_RELAXED);   /* grows as blocks are carved (read by other threads) */
  s->start = s->base;
  s->bump = s->base;
  s->bump_end = s->base + (size_t)ci->capacity * ci->size;
  span_free_clear(s);
  s->used = 0;
  s->holes[0] = s->holes[1] = 0;
  s->nholes = 0;
  s->hole_used = ~0u;   /* never scanned */
  s->next = s->prev = NULL;
}

/* Give a slab back to the page layer; its pages now resolve to span_released. */
static void slab_release(span_t *s) {
  s->owner = NULL;
  s->holes[0] = s->holes[1] = 0;   /* the page layer frees the holes with the run */
  s->nholes = 0;
  s->kind = SPAN_RELEASED;
  pagemap_set(s->base, s->bytes >> TD_PAGE_SHIFT, &span_released);
  page_free(s);
}

static span_t *slab_new(heap_t *h, unsigned cls) {
  size_t pages = sc_info[cls].pages;
  for (span_t *s = h->span_cache; s; s = s->next) {
    if (s->bytes == pages * TD_PAGE) {
      span_list_remove(&h->span_cache, s);
      h->span_cache_n--;
      h->cnt.span_cache_bytes -= s->bytes;
      slab_init(h, s, cls);
      return s;
    }
  }
  span_t *s = page_alloc_in(h->pager, pages, 1);
  if (!s) return NULL;
  slab_init(h, s, cls);
  pagemap_set(s->base, pages, s);
  return s;
}

/* An empty slab leaves its class: keep a few for reuse (none with holes:
 * part of it is purged already), release the rest. */
static void slab_retire(heap_t *h, span_t *s) {
  h->cnt.nslabs[s->cls]--;
  if (h->span_cache_n < HEAP_SPAN_CACHE && h->state == HEAP_ACTIVE && !s->nholes &&
      h->cnt.span_cache_bytes + s->bytes <= HEAP_SPAN_CACHE_BYTES) {
    span_free_clear(s);
    s->used = 0;
    s->bump = s->bump_end = s->start;   /* nothing to carve until re-initialised */
    __atomic_store_n(&s->carved, 0, __ATOMIC_RELAXED);
    s->stamp_ns = h->cnt.hole_passes;   /* its age, in hole passes */
    span_list_push(&h->span_cache, s);
    h->span_cache_n++;
    h->cnt.span_cache_bytes += s->bytes;
    return;
  }
  slab_release(s);
}

/* ---- holes (span.h, page.h) ---------------------------------------------------- */

/* Take every hole of s back and put its blocks on the free list; false when
 * the page layer is purging its unit right now. */
static bool slab_holes_reuse(span_t *s) {
  uint64_t pages[SPAN_HOLE_WORDS] = { s->holes[0], s->holes[1] };
  if (!page_hole_take(s, pages)) return false;
  span_hole_fill(s, pages);
  return span_has_free(s);
}

/* Give the all-free pages of slab s (partial, or current) to the page
 * layer; *due: the page layer's deferred work may be due. */
static size_t slab_holes_give(span_t *s, bool force, bool current, bool *due) {
  if (!force && s->hole_used == s->used) return 0;   /* nothing freed or taken since the last look */
  uint64_t pages[SPAN_HOLE_WORDS];
  size_t n = span_hole_scan(s, pages);
  s->hole_used = s->used;
  if (!n || !page_hole_allowed(s, force)) return 0;
  span_hole_cut(s, pages);          /* off the list before the page layer may purge them */
  s->hole_used = s->used;
  *due |= page_hole_give(s, pages);
  SPAN_DASSERT_CONSISTENT(s, current);
  return n;
}

/* Release the cached empty slabs that stayed over two passes (all: force). */
static void span_cache_age(heap_t *h, bool force) {
  for (span_t *s = h->span_cache, *nx; s; s = nx) {
    nx = s->next;
    if (!force && s->stamp_ns + 2 > h->cnt.hole_passes) continue;
    span_list_remove(&h->span_cache, s);
    h->span_cache_n--;
    h->cnt.span_cache_bytes -= s->bytes;
    slab_release(s);
  }
}

size_t heap_holes_pass(heap_t *h, unsigned flags) {
  size_t n = 0;
  bool due = false, force = flags & HOLES_FORCE;
  h->cnt.hole_passes++;
  span_cache_age(h, force);
  for (unsigned c = 1; c < SC_NCLASSES; c++) {
    for (span_t *s = h->partial[c]; s; s = s->next) n += slab_holes_give(s, force, false, &due);
    if ((flags & HOLES_CURRENT) && h->cur[c] != &span_empty) n += slab_holes_give(h->cur[c], force, true, &due);
  }
  h->cnt.hole_pages += n;
  if (due) page_work_kick(h->pager);   /* once per pass: the ceiling, or inline decay */
  return n;
}

static uint64_t hole_period_ns(void) {
  if (opt.dirty_decay_ms < 0) return TD_NEVER;
  uint64_t p = (uint64_t)opt.dirty_decay_ms * 1000000u / HEAP_HOLE_PERIOD_DIV;
  return TD_MIN(TD_MAX(p, HEAP_HOLE_PERIOD_MIN_NS), HEAP_HOLE_PERIOD_MAX_NS);
}

/* Slow paths of the owner: a pass when another thread asked for one, or when
 * one is due (the clock is read once per HEAP_HOLE_TICK calls). */
static void heap_holes_maybe(heap_t *h) {
  if (TD_UNLIKELY(__atomic_load_n(&h->hole_request, __ATOMIC_RELAXED))) {
    __atomic_store_n(&h->hole_request, 0, __ATOMIC_RELAXED);
    heap_holes_pass(h, HOLES_FORCE | HOLES_CURRENT);
    return;
  }
  if (++h->hole_tick < HEAP_HOLE_TICK) return;
  h->hole_tick = 0;
  uint64_t now = os_now_ns(), period = hole_period_ns();
  if (now < h->hole_next_ns || period == TD_NEVER) return;
  h->hole_next_ns = now + period;
  heap_holes_pass(h, 0);
}

/* Move up to one batch of never-used blocks onto the free list. */
static void slab_carve(span_t *s) {
  uint32_t size = s->size;
  size_t n = TD_MIN((size_t)sc_info[s->cls].batch, (size_t)(s->bump_end - s->bump) / size);
  uintptr_t first = s->bump, p = first;
  /* Carved blocks carry their free marker too: freeing one that was never
   * handed out is caught like a double free. Pushed last to first, so the
   * list hands them out in address order. */
  s->bump = first + n * size;
  __atomic_store_n(&s->carved, s->carved + n, __ATOMIC_RELAXED);
  for (p = first + (n - 1) * size;; p -= size) {
    span_push(s, (block_t *)p);
    if (p == first) break;
  }
  SPAN_DASSERT_CONSISTENT(s, s->owner && s->owner->cur[s->cls] == s);
}

/* ---- allocation slow path ------------------------------------------------ */

static heap_t *heap_bind(void) {
  if (tls_exited) return NULL;
  mutex_lock(&registry_lock);
  heap_t *h = heap_pool;
  if (h) { heap_pool = h->pool_next; h->pool_next = NULL; h->state = HEAP_ACTIVE; }
  mutex_unlock(&registry_lock);
  if (!h && !(h = heap_create(HEAP_ACTIVE))) return NULL;
  tls_heap = h;                          /* before setspecific, which may allocate */
  if (!h->sample_left) h->sample_left = opt.guard_sample;
  if (!h->prof_rng) h->prof_left = opt.prof ? 0 : INT64_MAX;   /* prof.c draws on the first crossing */
  heap_bytes(h, &tls_base_alloc, &tls_base_freed);
  pthread_setspecific(heap_tsd, h);
  return h;
}

/* A partial list is a queue: a span joins at the head when it gets a free
 * block and is taken from the tail, so the span taken is the one that has
 * waited longest and gathered the most frees (under random frees, the
 * newest has just one: taking it meant a refill for every allocation). */
static void partial_push(heap_t *h, span_t *s) {
  span_list_push(&h->partial[s->cls], s);
  if (!h->partial_tail[s->cls]) h->partial_tail[s->cls] = s;
}

static void partial_remove(heap_t *h, span_t *s) {
  if (h->partial_tail[s->cls] == s) h->partial_tail[s->cls] = s->prev;
  span_list_remove(&h->partial[s->cls], s);
}

/* The next partial span of class cls with a block to hand out (its holes
 * taken back if they are all it has), or NULL. */
static span_t *partial_take(heap_t *h, unsigned cls) {
  span_t *s;
  while ((s = h->partial_tail[cls]) != NULL) {
    partial_remove(h, s);
    if (span_has_free(s) || (s->nholes && slab_holes_reuse(s))) return s;
    /* Its free blocks are all in holes being purged right now: set aside as
     * full (on no list) until one of its blocks is freed. */
    s->used |= SPAN_FULL_FLAG | SPAN_SLOW_FLAG;
  }
  return NULL;
}

static void *heap_refill(heap_t *h, unsigned cls) {
  span_t *s = h->cur[cls];
  heap_holes_maybe(h);
  if (s != &span_empty) {
    /* Holes first: re-carved before fresh space. */
    if (s->nholes && slab_holes_reuse(s)) return heap_alloc_small(h, cls);
    if (s->bump < s->bump_end) {
      slab_carve(s);
      return heap_alloc_small(h, cls);
    }
  }
  if (h->out_pending) heap_flush_out(h);
  if (__atomic_load_n(&h->inbox, __ATOMIC_RELAXED)) {
    heap_collect(h);
    if (span_has_free(h->cur[cls])) return heap_alloc_small(h, cls);
  }
  if (s != &span_empty) {
    h->cur[cls] = &span_empty;
    if (span_cur_unused(s)) { s->used -= SPAN_CUR_BIAS; slab_retire(h, s); }   /* all free, all in holes */
    else span_cur_leave_full(s);   /* every block is out (or in a hole): on no list at all */
  }
  if ((s = partial_take(h, cls)) != NULL) {
    /* from the partial list */
  } else if (!(s = slab_new(h, cls))) {
    h->cur[cls] = &span_empty;
    return NULL;
  } else {
    slab_carve(s);
  }
  span_cur_enter(s);
  h->cur[cls] = s;
  SPAN_DASSERT_CONSISTENT(s, true);
  return heap_alloc_small(h, cls);
}

/* guard_sample mode: cur[] stays empty so that every allocation comes here
 * and is counted; the real current spans wait in parked[]. */
static void *heap_alloc_sampling(heap_t *h, unsigned cls) {
  if (--h->sample_left <= 0) {
    h->sample_left = opt.guard_sample;
    void *g = secure_guarded_alloc(sc_info[cls].size, 0, false);
    if (g) return g;
  }
  span_t *s = h->parked[cls] ? h->parked[cls] : &span_empty;
  h->cur[cls] = s;
  void *p = heap_pop(h, s, cls);
  if (!p) p = heap_refill(h, cls);
  h->parked[cls] = h->cur[cls];
  h->cur[cls] = &span_empty;
  return p;
}

void *heap_alloc_slow(heap_t *h, unsigned cls) {
  if (TD_UNLIKELY(opt.guard_sample > 0) && h != &heap_empty && h->state == HEAP_ACTIVE)
    return heap_alloc_sampling(h, cls);
  if (TD_UNLIKELY(h == &heap_empty)) {
    h = heap_bind();
    if (!h) {
      /* The thread is past its heap's destructor: share the global heap. */
      mutex_lock(&global_lock);
      if (__atomic_load_n(&global_heap->inbox, __ATOMIC_RELAXED)) heap_collect(global_heap);
      void *p = heap_alloc_small(global_heap, cls);
      mutex_unlock(&global_lock);
      return p;
    }
    return heap_alloc_small(h, cls);
  }
  return heap_refill(h, cls);
}

/* ---- the shared heap (percpu.h) ------------------------------------------------ */

const heap_t *heap_shared(void) { return global_heap; }

size_t heap_shared_take(unsigned cls, void **out, size_t n) {
  size_t i = 0;
  mutex_lock(&global_lock);
  if (__atomic_load_n(&global_heap->inbox, __ATOMIC_RELAXED)) heap_collect(global_heap);
  for (; i < n; i++) {
    void *p = heap_alloc_small(global_heap, cls);
    if (!p) break;
    out[i] = p;
  }
  mutex_unlock(&global_lock);
  return i;
}

void heap_shared_give(void *const *blocks, size_t n) {
  mutex_lock(&global_lock);
  for (size_t i = 0; i < n; i++) {
    span_t *s = pagemap_lookup(blocks[i]);
    TD_DASSERT(s != NULL && s->owner == global_heap);
    heap_free_local(global_heap, s, blocks[i]);
  }
  mutex_unlock(&global_lock);
}

/* ---- free slow paths ------------------------------------------------------ */

/* After the owner pushed a block onto s and decremented used, when the span
 * was full or became empty. */
static void free_local_moved(heap_t *h, span_t *s) {
  if (span_is_full(s)) {
    if (span_unfull(s)) slab_retire(h, s);
    else partial_push(h, s);
    return;
  }
  if (span_count(s) != 0) return;   /* a span with holes and blocks out: slow only for the hole check */
  /* used == 0: a partial span (a current span holds the bias) */
  TD_DASSERT(s != h->cur[s->cls]);
  partial_remove(h, s);
  slab_retire(h, s);
}

void heap_free_local_edge(heap_t *h, span_t *s) {
  int saved = errno;
  /* The fast path pushed the block: it is the head. A block of a hole is
   * free already, even if its page (purged) no longer shows its marker. */
  if (TD_UNLIKELY(s->nholes) && span_in_hole(s, (const void *)s->free)) span_misuse((const void *)s->free, s, "free");
  free_local_moved(h, s);   /* the fast path dropped the count: empty, full or holed */
  heap_holes_maybe(h);
  errno = saved;
}

bool heap_resize_in_place(const span_t *s, size_t size) {
  /* Stay when the new size fits and would not fit a much smaller class. */
  return size <= s->size && (size > s->size / 2 || s->size <= HEAP_TIGHT_CLASS_MAX);
}

static void inbox_push(heap_t *dest, block_t *head, block_t *tail) {
  block_t *old = __atomic_load_n(&dest->inbox, __ATOMIC_RELAXED);
  do tail->next = span_link_encode((uintptr_t)old);
  while (!__atomic_compare_exchange_n(&dest->inbox, &old, head, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

static void outbuf_flush(outbuf_t *o) {
  inbox_push(o->dest, o->head, o->tail);
  o->head = o->tail = NULL;
  o->n = 0;
  o->bytes = 0;
}

void heap_free_remote(heap_t *h, span_t *s, block_t *b) {
  heap_t *dest = s->owner;
  b->key = span_marker(b);   /* free from now on: a second free is caught at once */
  if (h->state != HEAP_ACTIVE) {
    /* A thread without a heap (it never allocated, or it is past its heap's
     * destructor): push the block alone, count it on the orphans. */
    __atomic_fetch_add(&orphan_frees[orphan_shard()].nfree[s->cls], 1, __ATOMIC_RELAXED);
    inbox_push(dest, b, b);
    return;
  }
  HEAP_COUNT(h->cnt.nfree[s->cls]);
  outbuf_t *o = &h->out[dest->id & (HEAP_OUT_SLOTS - 1)];
  if (o->dest != dest) {
    if (o->n) outbuf_flush(o);
    o->dest = dest;
  }
  b->next = span_link_encode((uintptr_t)o->head);
  o->head = b;
  if (o->n++ == 0) o->tail = b;
  o->bytes += s->size;
  h->out_pending = 1;
  if (o->n >= HEAP_OUT_BATCH) outbuf_flush(o);
}

void heap_flush_out(heap_t *h) {
  for (unsigned i = 0; i < HEAP_OUT_SLOTS; i++)
    if (h->out[i].n) outbuf_flush(&h->out[i]);
  h->out_pending = 0;
}

void heap_collect(heap_t *h) {
  block_t *b = __atomic_exchange_n(&h->inbox, NULL, __ATOMIC_ACQUIRE);
  while (b) {
    uintptr_t nx = span_link_decode(b->next);
    span_t *s = pagemap_lookup(b);
    if (TD_UNLIKELY(span_link_bad(nx) || !s || s->owner != h)) span_corrupt(b, s, "free");
    if (TD_UNLIKELY(s->nholes) && span_in_hole(s, b)) span_misuse(b, s, "free");   /* freed twice, remotely */
    block_t *next = (block_t *)nx;
    span_push(s, b);   /* the freeing thread checked it (span_block_bad) */
    if (TD_UNLIKELY(span_used_drop(s))) free_local_moved(h, s);
    b = next;
  }
}

/* Return empty slabs (cached, or current but unused) to the page layer. */
static void heap_trim(heap_t *h) {
  while (h->span_cache) {
    span_t *s = h->span_cache;
    span_list_remove(&h->span_cache, s);
    slab_release(s);
  }
  h->span_cache_n = 0;
  h->cnt.span_cache_bytes = 0;
  for (unsigned c = 1; c < SC_NCLASSES; c++) {
    span_t *s = h->cur[c];
    if (s != &span_empty && span_cur_unused(s)) {
      h->cur[c] = &span_empty;
      h->cnt.nslabs[c]--;
      slab_release(s);
    }
  }
}

void heap_thread_bind(void) {
  if (tls_heap == &heap_empty) heap_bind();
}

void heap_thread_flush(void) {
  heap_t *h = tls_heap;
  if (h == &heap_empty) return;
  heap_flush_out(h);
  heap_collect(h);
  heap_trim(h);
  heap_holes_pass(h, HOLES_CURRENT);
}

void heap_holes_request(void) {
  heap_t *self = tls_heap;
  mutex_lock(&registry_lock);
  for (heap_t *h = all_heaps; h; h = h->all_next)
    if (h->state == HEAP_ACTIVE && h != self) __atomic_store_n(&h->hole_request, 1, __ATOMIC_RELAXED);
  mutex_unlock(&registry_lock);
  if (self != &heap_empty) heap_holes_pass(self, HOLES_FORCE | HOLES_CURRENT);
}

static void heap_thread_exit(void *arg) {
  heap_t *h = arg;
  heap_flush_out(h);
  heap_collect(h);
  heap_trim(h);
  tls_heap = &heap_empty;
  tls_exited = 1;
  mutex_lock(&registry_lock);
  h->state = HEAP_POOLED;
  h->pool_next = heap_pool;
  heap_pool = h;
  mutex_unlock(&registry_lock);
  void (*hook)(void) = __atomic_load_n(&exit_hook, __ATOMIC_ACQUIRE);
  if (hook) hook();
}

void heap_sweep_pool(bool force) {
  /* Take the pool out so that no lock is held while slabs go back to the
   * page layer (lock order: page before registry). */
  mutex_lock(&registry_lock);
  heap_t *list = heap_pool;
  heap_pool = NULL;
  mutex_unlock(&registry_lock);
  heap_t *last = NULL;
  for (heap_t *h = list; h; h = h->pool_next) {
    heap_collect(h);
    heap_trim(h);
    heap_holes_pass(h, force ? HOLES_FORCE | HOLES_CURRENT : HOLES_CURRENT);   /* no owner uses its current slabs */
    last = h;
  }
  if (last) {
    mutex_lock(&registry_lock);
    last->pool_next = heap_pool;
    heap_pool = list;
    mutex_unlock(&registry_lock);
  }
  mutex_lock(&global_lock);
  heap_collect(global_heap);
  mutex_unlock(&global_lock);
}

/* ---- statistics -------------------------------------------------------------- */

/* Bytes in h's outgoing buffers: racy reads of words its owner writes
 * without atomics (statistics; suppressed for TSan like counters_add). */
static uint64_t outbuf_bytes_sum(const heap_t *h) {
  uint64_t n = 0;
  for (unsigned i = 0; i < HEAP_OUT_SLOTS; i++) n += __atomic_load_n(&h->out[i].bytes, __ATOMIC_RELAXED);
  return n;
}

/* pooled: c is a pooled heap's, whose slabs count as pooled_slab_bytes. */
static void counters_add(heap_counters_t *sum, const heap_counters_t *c, bool pooled) {
  for (unsigned k = 0; k < SC_NCLASSES; k++) {
    sum->nmalloc[k] += __atomic_load_n(&c->nmalloc[k], __ATOMIC_RELAXED);
    sum->nfree[k] += __atomic_load_n(&c->nfree[k], __ATOMIC_RELAXED);
    uint64_t slabs = __atomic_load_n(&c->nslabs[k], __ATOMIC_RELAXED);
    sum->nslabs[k] += slabs;
    if (pooled && k) sum->pooled_slab_bytes += slabs * sc_info[k].pages * TD_PAGE;
  }
  sum->large_nmalloc += __atomic_load_n(&c->large_nmalloc, __ATOMIC_RELAXED);
  sum->large_nfree += __atomic_load_n(&c->large_nfree, __ATOMIC_RELAXED);
  sum->large_bytes_alloc += __atomic_load_n(&c->large_bytes_alloc, __ATOMIC_RELAXED);
  sum->large_bytes_free += __atomic_load_n(&c->large_bytes_free, __ATOMIC_RELAXED);
  sum->huge_bytes_alloc += __atomic_load_n(&c->huge_bytes_alloc, __ATOMIC_RELAXED);
  sum->huge_bytes_free += __atomic_load_n(&c->huge_bytes_free, __ATOMIC_RELAXED);
  sum->span_cache_bytes += __atomic_load_n(&c->span_cache_bytes, __ATOMIC_RELAXED);
  sum->hole_passes += __atomic_load_n(&c->hole_passes, __ATOMIC_RELAXED);
  sum->hole_pages += __atomic_load_n(&c->hole_pages, __ATOMIC_RELAXED);
}

void heap_counters_merge(heap_counters_t *sum, uint64_t *active_heaps, uint64_t *pooled_heaps) {
  uint64_t na = 0, np = 0;
  mutex_lock(&registry_lock);
  for (heap_t *h = all_heaps; h; h = h->all_next) {
    counters_add(sum, &h->cnt, h->state == HEAP_POOLED);
    sum->outbuf_bytes += outbuf_bytes_sum(h);
    na += h->state == HEAP_ACTIVE;
    np += h->state == HEAP_POOLED;
  }
  mutex_unlock(&registry_lock);
  mutex_lock(&orphan_lock);
  counters_add(sum, &orphan_cnt, false);
  for (unsigned k = 0; k < ORPHAN_FREE_SHARDS; k++)
    for (unsigned c = 0; c < SC_NCLASSES; c++) sum->nfree[c] += __atomic_load_n(&orphan_frees[k].nfree[c], __ATOMIC_RELAXED);
  mutex_unlock(&orphan_lock);
  if (active_heaps) *active_heaps = na;
  if (pooled_heaps) *pooled_heaps = np;
}

void heap_count_large(heap_t *h, size_t bytes, bool alloc, bool huge) {
  bool orphan = h == &heap_empty;
  if (orphan) { mutex_lock(&orphan_lock); h = NULL; }
  heap_counters_t *c = orphan ? &orphan_cnt : &h->cnt;
  if (alloc) c->large_nmalloc++; else c->large_nfree++;
  uint64_t *bytes_ctr = huge ? (alloc ? &c->huge_bytes_alloc : &c->huge_bytes_free)
                             : (alloc ? &c->large_bytes_alloc : &c->large_bytes_free);
  *bytes_ctr += bytes;
  if (orphan) mutex_unlock(&orphan_lock);
}

/* Bytes ever handed out and freed through this heap. */
static void heap_bytes(const heap_t *h, uint64_t *allocated, uint64_t *freed) {
  uint64_t a = h->cnt.large_bytes_alloc + h->cnt.huge_bytes_alloc;
  uint64_t f = h->cnt.large_bytes_free + h->cnt.huge_bytes_free;
  for (unsigned k = 1; k < SC_NCLASSES; k++) {
    a += h->cnt.nmalloc[k] * sc_info[k].size;
    f += h->cnt.nfree[k] * sc_info[k].size;
  }
  *allocated = a;
  *freed = f;
}

void heap_thread_bytes(uint64_t *allocated, uint64_t *freed) {
  heap_t *h = tls_heap;
  if (h == &heap_empty) { *allocated = *freed = 0; return; }
  uint64_t a, f;
  heap_bytes(h, &a, &f);
  *allocated = a - tls_base_alloc;
  *freed = f - tls_base_freed;
}

/* ---- validation ------------------------------------------------------------ */

static void span_validate(heap_t *h, span_t *s, unsigned cls) {
  TD_CHECK(s->owner == h && s->kind == SPAN_SLAB && s->cls == cls, "span ownership", (void *)s->start, "heap_validate");
  const char *why = span_check(s, s == h->cur[cls]);
  TD_CHECK(why == NULL, why, (void *)s->start, "heap_validate");
  TD_CHECK(pagemap_lookup((void *)s->start) == s, "pagemap", (void *)s->start, "heap_validate");
}

void heap_validate(heap_t *h) {
  for (unsigned c = 1; c < SC_NCLASSES; c++) {
    if (h->cur[c] != &span_empty) {
      span_validate(h, h->cur[c], c);
      TD_CHECK(!span_is_full(h->cur[c]), "current span marked full", (void *)h->cur[c]->start, "heap_validate");
    }
    span_t *last = NULL;
    for (span_t *s = h->partial[c]; s; s = s->next) {
      span_validate(h, s, c);
      TD_CHECK((span_has_free(s) || s->nholes) && !span_is_full(s), "partial span state", (void *)s->start, "heap_validate");
      last = s;
    }
    TD_CHECK(h->partial_tail[c] == last, "partial list tail", last ? (void *)last->start : NULL, "heap_validate");
  }
}

/* ---- fork ------------------------------------------------------------------- */

/* Two steps of the fork order (lock ranks): the global heap's lock
 * (RANK_HEAP_GLOBAL), then the registry and orphan counters (RANK_HEAP_REGISTRY,
 * RANK_HEAP_ORPHANS). */
void heap_prefork_global(void) { mutex_lock(&global_lock); }
void heap_postfork_parent_global(void) { mutex_unlock(&global_lock); }
void heap_postfork_child_global(void) { mutex_postfork_child(&global_lock); }

void heap_prefork(void) {
  mutex_lock(&registry_lock);
  mutex_lock(&orphan_lock);
}

void heap_postfork_parent(void) {
  mutex_unlock(&orphan_lock);
  mutex_unlock(&registry_lock);
}

void heap_postfork_child(void) {
  mutex_postfork_child(&registry_lock);
  mutex_postfork_child(&orphan_lock);
  /* Other threads' heaps may have been mid-update when their threads vanished:
   * never reuse them. Their memory stays (the child usually execs or exits). */
  for (heap_t *h = all_heaps; h; h = h->all_next)
    if (h->state == HEAP_ACTIVE && h != tls_heap) h->state = HEAP_DEAD;
}
