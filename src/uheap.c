#include "uheap.h"
#include "large.h"
#include "lock.h"
#include "meta.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"
#include "safety.h"
#include "sizeclass.h"

#include <stddef.h>
#include <string.h>

/* A metadata chunk (metadata_use_source), 2 MiB from the source:
 *
 *   +--------------+------------------------------------------------+
 *   | chunk_t (64) | descriptors, bump-allocated, cache-line aligned |
 *   +--------------+------------------------------------------------+
 *   ^ 2 MiB aligned; the first chunk holds the heap itself right after
 *     its header, then its pager, then units and spans as needed. */
#define CHUNK_HEADER TD_CACHELINE
typedef struct chunk_s { struct chunk_s *next; } chunk_t;

struct tidal_heap {
  heap_t heap;                     /* first: its slabs' owner (HEAP_USER) */
  td_mutex_t lock;                 /* RANK_UHEAP */
  pager_t *pager;
  tidal_page_source_t src;
  bool own_meta;                   /* metadata_use_source */
  char name[32];
  span_t *huge;                    /* live huge blocks (next/prev) */
  span_t *kept;                    /* freed huge mappings kept for reuse (a source without unmap) */
  size_t huge_live, huge_kept;     /* bytes of those */
  uint64_t huge_maps, huge_map_failures, huge_unmaps;
  chunk_t *chunks;                 /* metadata chunks (own_meta), newest first */
  uintptr_t meta_bump, meta_end;
  size_t meta_mapped;
  tidal_heap_t *next, *prev;       /* the registry */
};

static td_mutex_t registry_lock = TD_MUTEX_INIT("uheap_registry", RANK_UHEAP_REGISTRY);
static tidal_heap_t *heaps;
/* The heap whose visitor the thread is running: its callback must not use it. */
static __thread tidal_heap_t *tls_visiting __attribute__((tls_model("initial-exec")));

static tidal_heap_t *heap_of(const span_t *s) { return (tidal_heap_t *)(void *)s->owner; }

/* ---- the default source --------------------------------------------------- */

static void *default_map(void *ctx, size_t size, size_t align) { (void)ctx; return os_map_aligned(size, align); }
static void default_unmap(void *ctx, void *addr, size_t size) { (void)ctx; os_unmap(addr, size); }
static int default_purge(void *ctx, void *addr, size_t size, int lazy) {
  (void)ctx;
  return os_purge(addr, size, lazy && os_system.lazy_free ? OS_PURGE_LAZY : OS_PURGE_NOW) ? 0 : -1;
}
static const tidal_page_source_t source_default = { default_map, default_unmap, default_purge, NULL };

const tidal_page_source_t *uheap_source_default(void) { return &source_default; }

/* ---- metadata from the source ------------------------------------------------ */

/* A descriptor from the current chunk (zeroed: a source's memory need not
 * be); called under the pager's lock, so it never maps. */
static void *meta_from_source(void *arg, size_t size) {
  tidal_heap_t *H = arg;
  uintptr_t p = td_align_up(H->meta_bump, TD_CACHELINE);
  size = td_align_up(size, TD_CACHELINE);
  if (p + size > H->meta_end) return NULL;
  H->meta_bump = p + size;
  memset((void *)p, 0, size);
  return (void *)p;
}

static chunk_t *chunk_map(const tidal_page_source_t *src) {
  chunk_t *c = src->map(src->ctx, TD_UNIT, TD_UNIT);
  if (c) c->next = NULL;
  return c;
}

/* At least UHEAP_META_RESERVE bytes for descriptors (own metadata), mapping
 * a chunk under the heap's lock only. False when the source refuses. */
static bool meta_reserve(tidal_heap_t *H) {
  if (!H->own_meta || H->meta_end - H->meta_bump >= UHEAP_META_RESERVE) return true;
  chunk_t *c = chunk_map(&H->src);
  H->huge_maps++;
  if (!c) { H->huge_map_failures++; return false; }
  c->next = H->chunks;
  H->chunks = c;
  H->meta_bump = (uintptr_t)c + CHUNK_HEADER;
  H->meta_end = (uintptr_t)c + TD_UNIT;
  H->meta_mapped += TD_UNIT;
  return true;
}

/* ---- create ------------------------------------------------------------------ */

static tidal_heap_t *heap_struct_new(const tidal_page_source_t *src, bool own) {
  if (!own) return meta_spare_get(sizeof(tidal_heap_t));
  chunk_t *c = chunk_map(src);
  if (!c) return NULL;
  tidal_heap_t *H = (tidal_heap_t *)((uintptr_t)c + CHUNK_HEADER);
  memset(H, 0, sizeof *H);
  H->chunks = c;
  H->meta_bump = (uintptr_t)(H + 1);
  H->meta_end = (uintptr_t)c + TD_UNIT;
  H->meta_mapped = TD_UNIT;
  H->huge_maps = 1;
  return H;
}

tidal_heap_t *uheap_create(const tidal_heap_config_t *config) {
  const tidal_page_source_t *src = config && config->source ? config->source : &source_default;
  if (!src->map) return NULL;
  bool own = config && config->metadata_use_source;
  tidal_heap_t *H = heap_struct_new(src, own);
  if (!H) return NULL;
  H->src = *src;
  H->own_meta = own;
  H->lock = (td_mutex_t)TD_MUTEX_INIT("uheap", RANK_UHEAP);
  const char *name = config && config->name ? config->name : "heap";
  size_t n = strnlen(name, sizeof H->name - 1);
  memcpy(H->name, name, n);
  H->name[n] = 0;
  H->pager = pager_create(src, own ? meta_from_source : NULL, H);
  if (!H->pager) {
    if (own) { if (src->unmap) src->unmap(src->ctx, H->chunks, TD_UNIT); }
    else meta_spare_put(H, sizeof *H);
    return NULL;
  }
  heap_user_init(&H->heap, H->pager);
  mutex_lock(&registry_lock);
  H->next = heaps;
  if (heaps) heaps->prev = H;
  heaps = H;
  mutex_unlock(&registry_lock);
  return H;
}

/* ---- allocation ---------------------------------------------------------------- */

static void visiting_report(tidal_heap_t *H, const char *fn) {
  safety_report("a heap used inside its own visitor", H, "tidal_heap_visit's callback must not allocate from or free to the heap it visits", -1, fn);
}

static void *large_run(tidal_heap_t *H, size_t size, size_t align, bool zero) {
  span_t *s = large_run_alloc(H->pager, &H->heap, size, align, zero);   /* a source's runs are never `zeroed` */
  if (!s) return NULL;
  H->heap.cnt.large_nmalloc++;
  H->heap.cnt.large_bytes_alloc += s->bytes;
  return (void *)s->base;
}

/* A kept mapping (source without unmap) that fits, taken off the list. */
static span_t *kept_take(tidal_heap_t *H, size_t bytes, size_t align) {
  for (span_t *s = H->kept; s; s = s->next)
    if (s->bytes >= bytes && (s->base & (align - 1)) == 0) {
      span_list_remove(&H->kept, s);
      H->huge_kept -= s->bytes;
      return s;
    }
  return NULL;
}

static void *huge_block(tidal_heap_t *H, size_t size, size_t align, bool zero) {
  size_t bytes = td_align_up(size, TD_UNIT);
  align = TD_MAX(align, TD_UNIT);
  if (bytes < size) return NULL;
  span_t *s = kept_take(H, bytes, align);
  if (!s) {
    if (!(s = page_span_get_in(H->pager))) return NULL;
    void *m = H->src.map(H->src.ctx, bytes, align);
    H->huge_maps++;
    if (!m || ((uintptr_t)m & (align - 1)) || !pagemap_reserve((uintptr_t)m, bytes)) {
      if (m && H->src.unmap) { H->src.unmap(H->src.ctx, m, bytes); H->huge_unmaps++; }
      H->huge_map_failures++;
      page_span_put_in(H->pager, s);
      return NULL;
    }
    s->base = (uintptr_t)m;
    s->bytes = bytes;
  }
  s->kind = SPAN_HUGE;
  s->owner = &H->heap;
  s->start = s->base;
  if (zero) memset((void *)s->base, 0, size);
  span_list_push(&H->huge, s);
  H->huge_live += s->bytes;
  pagemap_set(s->base, 1, s);
  H->heap.cnt.large_nmalloc++;
  H->heap.cnt.huge_bytes_alloc += s->bytes;
  return (void *)s->base;
}

void *uheap_alloc(tidal_heap_t *H, size_t size, size_t align, bool zero) {
  if (TD_UNLIKELY(tls_visiting == H)) visiting_report(H, "tidal_heap_malloc");
  if (size > PTRDIFF_MAX || align > PTRDIFF_MAX / 2) return NULL;
  unsigned cls = 0;
  if (size <= SC_SMALL_MAX) cls = align <= TD_QUANTUM ? sizeclass_of(size) : align <= TD_PAGE ? sizeclass_of_aligned(size, align) : 0;
  mutex_lock(&H->lock);
  void *p = NULL;
  if (meta_reserve(H)) {
    if (cls) {
      p = heap_alloc_small(&H->heap, cls);
      if (p && zero) memset(p, 0, size);
    } else if (size <= LARGE_RUN_MAX && align <= TD_UNIT) {
      p = large_run(H, size, align, zero);
    } else {
      p = huge_block(H, size, align, zero);
    }
  }
  mutex_unlock(&H->lock);
  return p;
}

/* ---- free ---------------------------------------------------------------------- */

/* A huge mapping goes back to the source, or to the kept list without unmap. */
static void huge_drop(tidal_heap_t *H, span_t *s) {
  span_list_remove(&H->huge, s);
  H->huge_live -= s->bytes;
  pagemap_set(s->base, 1, &span_released);
  s->owner = NULL;
  s->kind = SPAN_RELEASED;
  if (!H->src.unmap) {
    span_list_push(&H->kept, s);
    H->huge_kept += s->bytes;
    return;
  }
  H->src.unmap(H->src.ctx, (void *)s->base, s->bytes);
  H->huge_unmaps++;
  page_span_put_in(H->pager, s);
}

/* A slab or large run of H's pager goes back to it, every block with it. */
static void run_drop(span_t *s, void *arg) {
  (void)arg;
  size_t n = s->kind == SPAN_SLAB ? s->bytes >> TD_PAGE_SHIFT : 1;
  pagemap_set(s->base, n, &span_released);
  s->owner = NULL;
  s->kind = SPAN_RELEASED;
  s->holes[0] = s->holes[1] = 0;   /* the page layer frees the holes with the run */
  s->nholes = 0;
  page_free(s);
}

void uheap_free(span_t *s, void *p, const char *fn) {
  tidal_heap_t *H = heap_of(s);
  if (TD_UNLIKELY(tls_visiting == H)) visiting_report(H, fn);
  mutex_lock(&H->lock);
  /* Checked again under the lock: two threads may race to free one block. */
  if (TD_UNLIKELY(s->owner != &H->heap || pagemap_lookup(p) != s)) span_misuse(p, s, fn);
  switch (s->kind) {
    case SPAN_SLAB:
      if (TD_UNLIKELY(span_block_bad(s, p))) span_misuse(p, s, fn);
      heap_free_local(&H->heap, s, p);
      break;
    case SPAN_LARGE:
      if (TD_UNLIKELY(p != (void *)s->start)) span_misuse(p, s, fn);
      H->heap.cnt.large_nfree++;
      H->heap.cnt.large_bytes_free += s->bytes;
      run_drop(s, NULL);
      break;
    case SPAN_HUGE:
      if (TD_UNLIKELY(p != (void *)s->start)) span_misuse(p, s, fn);
      H->heap.cnt.large_nfree++;
      H->heap.cnt.huge_bytes_free += s->bytes;
      huge_drop(H, s);
      break;
    default:
      span_misuse(p, s, fn);
  }
  mutex_unlock(&H->lock);
}

void *uheap_realloc(tidal_heap_t *h, span_t *s, void *p, size_t size) {
  tidal_heap_t *H = heap_of(s);
  if (!h) h = H;
  size_t usable = s->kind == SPAN_SLAB ? heap_block_size(s) : s->bytes;
  if (h == H && s->kind == SPAN_SLAB && heap_resize_in_place(s, size)) return p;
  if (h == H && s->kind != SPAN_SLAB && size > SC_SMALL_MAX && size <= usable && size > usable / 2) return p;
  void *q = uheap_alloc(h, size, 0, false);
  if (!q) return NULL;
  memcpy(q, p, TD_MIN(usable, size));
  uheap_free(s, p, "realloc");
  return q;
}

/* ---- reset, destroy ---------------------------------------------------------- */

/* Every block of H is freed: runs to the pager, huge mappings to the source. */
static void heap_clear(tidal_heap_t *H) {
  pager_each_run(H->pager, run_drop, NULL);
  while (H->huge) huge_drop(H, H->huge);
  heap_user_forget(&H->heap);
}

void uheap_reset(tidal_heap_t *H) {
  if (TD_UNLIKELY(tls_visiting == H)) visiting_report(H, "tidal_heap_reset");
#ifdef TIDAL_DEBUG
  uheap_validate(H);   /* tier 3, before every block goes: the api tests reset and destroy after churn */
#endif
  mutex_lock(&H->lock);
  heap_clear(H);
  mutex_unlock(&H->lock);
}

void uheap_destroy(tidal_heap_t *H) {
  if (TD_UNLIKELY(tls_visiting == H)) visiting_report(H, "tidal_heap_destroy");
  mutex_lock(&registry_lock);
  if (H->prev) H->prev->next = H->next; else heaps = H->next;
  if (H->next) H->next->prev = H->prev;
  mutex_unlock(&registry_lock);
#ifdef TIDAL_DEBUG
  uheap_validate(H);
#endif
  mutex_lock(&H->lock);
  heap_clear(H);
  mutex_unlock(&H->lock);
  pager_destroy(H->pager);   /* units back to the source */
  tidal_page_source_t src = H->src;
  if (!H->own_meta) {
    for (span_t *s = H->kept, *nx; s; s = nx) { nx = s->next; meta_spare_put(s, sizeof *s); }
    meta_spare_put(H, sizeof *H);
    return;
  }
  /* The heap lives in its last chunk: read each link before unmapping. */
  for (chunk_t *c = H->chunks, *nx; c; c = nx) {
    nx = c->next;
    if (src.unmap) src.unmap(src.ctx, c, TD_UNIT);
  }
}

/* ---- visitor --------------------------------------------------------------------- */

typedef struct {
  int (*fn)(void *block, size_t usable, void *arg);
  void *arg;
  int rc;
} visit_t;

/* The live blocks of slab s: carved, not on the free list, not in a hole. */
static int slab_visit(span_t *s, visit_t *v) {
  uint64_t freed[SPAN_HOLE_MAX_BLOCKS / 64] = { 0 };
  size_t carved = (s->bump - s->start) / s->size;
  for (uintptr_t b = s->free; b != SPAN_FREE_END; b = span_link_decode(((block_t *)b)->next)) {
    size_t i = (b - s->start) / s->size;
    TD_CHECK(i < carved && !(freed[i >> 6] >> (i & 63) & 1), "free list corrupt", (void *)b, "tidal_heap_visit");
    freed[i >> 6] |= 1ull << (i & 63);
  }
  for (size_t i = 0; i < carved; i++) {
    if (freed[i >> 6] >> (i & 63) & 1) continue;
    uintptr_t off = s->start - s->base + i * s->size;
    size_t first = off >> SPAN_HOLE_PAGE_SHIFT, last = (off + s->size - 1) >> SPAN_HOLE_PAGE_SHIFT;
    bool hole = false;
    for (size_t pg = first; s->nholes && pg <= last && !hole; pg++) hole = s->holes[pg >> 6] >> (pg & 63) & 1;
    if (hole) continue;
    int rc = v->fn((void *)(s->start + i * s->size), s->size, v->arg);
    if (rc) return rc;
  }
  return 0;
}

static void run_visit(span_t *s, void *arg) {
  visit_t *v = arg;
  if (v->rc) return;
  if (s->kind == SPAN_SLAB) v->rc = slab_visit(s, v);
  else v->rc = v->fn((void *)s->start, s->bytes, v->arg);
}

int uheap_visit(tidal_heap_t *H, int (*fn)(void *block, size_t usable, void *arg), void *arg) {
  if (TD_UNLIKELY(tls_visiting == H)) visiting_report(H, "tidal_heap_visit");
  visit_t v = { fn, arg, 0 };
  mutex_lock(&H->lock);
  tls_visiting = H;
  pager_each_run(H->pager, run_visit, &v);
  for (span_t *s = H->huge; s && !v.rc; s = s->next) v.rc = fn((void *)s->start, s->bytes, arg);
  tls_visiting = NULL;
  mutex_unlock(&H->lock);
  return v.rc;
}

/* ---- statistics, validation, fork ------------------------------------------------ */

static void stats_locked(tidal_heap_t *H, tidal_heap_stats_t *out) {
  memset(out, 0, sizeof *out);
  memcpy(out->name, H->name, sizeof out->name);
  const heap_counters_t *c = &H->heap.cnt;
  size_t small = 0;
  for (unsigned k = 1; k < SC_NCLASSES; k++) small += (size_t)(c->nmalloc[k] - c->nfree[k]) * sc_info[k].size;
  out->allocated = small + (size_t)(c->large_bytes_alloc - c->large_bytes_free) + (size_t)(c->huge_bytes_alloc - c->huge_bytes_free);
  pager_stats_t ps;
  pager_stats(H->pager, &ps);
  out->active = ps.pages.active + H->huge_live;
  out->mapped = ps.pages.mapped + H->huge_live + H->huge_kept + H->meta_mapped;
  out->dirty = ps.pages.dirty;
  out->muzzy = ps.pages.muzzy;
  out->metadata = H->meta_mapped;
  out->maps = ps.maps + H->huge_maps;
  out->map_failures = ps.map_failures + H->huge_map_failures;
  out->unmaps = ps.unmaps + H->huge_unmaps;
  out->purges = ps.purges;
}

int uheap_stats(tidal_heap_t *H, tidal_heap_stats_t *out) {
  if (!H || !out) return -1;
  mutex_lock(&H->lock);
  stats_locked(H, out);
  mutex_unlock(&H->lock);
  return 0;
}

void uheap_each_stats(void (*fn)(const tidal_heap_stats_t *st, void *arg), void *arg) {
  mutex_lock(&registry_lock);
  for (tidal_heap_t *H = heaps; H; H = H->next) {
    tidal_heap_stats_t st;
    uheap_stats(H, &st);
    fn(&st, arg);   /* fn must not create or destroy heaps */
  }
  mutex_unlock(&registry_lock);
}

typedef struct { tidal_heap_t *H; size_t runs; } check_t;

static void run_check(span_t *s, void *arg) {
  check_t *k = arg;
  TD_CHECK(s->owner == &k->H->heap, "uheap: a run of its pager has another owner", (void *)s->base, "uheap_validate");
  k->runs++;
}

void uheap_validate(tidal_heap_t *H) {
  mutex_lock(&H->lock);
  size_t live = 0;
  for (span_t *s = H->huge; s; s = s->next) {
    TD_CHECK(s->kind == SPAN_HUGE && s->owner == &H->heap && pagemap_lookup((void *)s->base) == s,
             "uheap: huge block", (void *)s->base, "uheap_validate");
    live += s->bytes;
  }
  TD_CHECK(live == H->huge_live, "uheap: huge_live == sum of huge blocks", H, "uheap_validate");
  check_t k = { H, 0 };
  pager_each_run(H->pager, run_check, &k);
  TD_CHECK(H->meta_bump <= H->meta_end, "uheap: meta_bump <= meta_end", H, "uheap_validate");
  mutex_unlock(&H->lock);
}

void uheap_init(void) { mutex_register(&registry_lock); }

void uheap_prefork(void) {
  mutex_lock(&registry_lock);
  for (tidal_heap_t *H = heaps; H; H = H->next) mutex_lock(&H->lock);
}

void uheap_postfork_parent(void) {
  for (tidal_heap_t *H = heaps; H; H = H->next) mutex_unlock(&H->lock);
  mutex_unlock(&registry_lock);
}

void uheap_postfork_child(void) {
  for (tidal_heap_t *H = heaps; H; H = H->next) mutex_postfork_child(&H->lock);
  mutex_postfork_child(&registry_lock);
}
