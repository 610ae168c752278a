#include "meta.h"
#include "conf.h"
#include "lock.h"
#include "os.h"

#include <string.h>

#define META_CHUNK ((size_t)256 << 10)

/* Metadata memory; in the hardened mode with an inaccessible page on each
 * side, so that a stray write from user memory cannot reach it. */
static void *meta_map(size_t size) {
  if (!opt.secure) return os_map_aligned(size, TD_PAGE);
  size_t guard = os_page();   /* the kernel protects whole OS pages */
  size = td_align_up(size, guard);
  uint8_t *m = os_map_aligned(size + 2 * guard, guard);
  if (!m) return NULL;
  os_protect(m, guard, false);
  os_protect(m + guard + size, guard, false);
  return m + guard;
}

static td_mutex_t meta_lock = TD_MUTEX_INIT("meta", RANK_META);
static uintptr_t bump, bump_end;
static size_t bytes_mapped, bytes_allocated, bytes_leaves;

void *meta_alloc_mapping(size_t size) {
  size = td_align_up(size, os_page());
  void *p = meta_map(size);
  if (!p) return NULL;
  os_name(p, size, "tidalloc-meta");
  __atomic_fetch_add(&bytes_leaves, size, __ATOMIC_RELAXED);
  return p;
}

void *meta_alloc(size_t size, size_t align) {
  if (align < TD_QUANTUM) align = TD_QUANTUM;
  size = td_align_up(size, TD_QUANTUM);
  mutex_lock(&meta_lock);
  uintptr_t p = td_align_up(bump, align);
  if (p + size > bump_end || bump == 0) {
    size_t chunk = TD_MAX(META_CHUNK, td_align_up(size + align, os_page()));
    void *m = meta_map(chunk);
    if (!m) { mutex_unlock(&meta_lock); return NULL; }
    os_name(m, chunk, "tidalloc-meta");
    __atomic_fetch_add(&bytes_mapped, chunk, __ATOMIC_RELAXED);
    bump = (uintptr_t)m;
    bump_end = bump + chunk;
    p = td_align_up(bump, align);
  }
  bump = p + size;
  __atomic_fetch_add(&bytes_allocated, size, __ATOMIC_RELAXED);
  mutex_unlock(&meta_lock);
  return (void *)p;   /* fresh mappings are zero */
}

/* Spare lists by size (meta.h); under meta_lock. Invariant: every object
 * on spares[i].free is spares[i].size bytes, cache-line aligned. */
static struct { size_t size; void *free; } spares[META_SPARE_SIZES];

void *meta_spare_get(size_t size) {
  mutex_lock(&meta_lock);
  void *obj = NULL;
  for (size_t i = 0; i < META_SPARE_SIZES && !obj; i++)
    if (spares[i].size == size && spares[i].free) {
      obj = spares[i].free;
      spares[i].free = *(void **)obj;
    }
  mutex_unlock(&meta_lock);
  if (!obj) return meta_alloc(size, TD_CACHELINE);
  memset(obj, 0, size);
  return obj;
}

void meta_spare_put(void *obj, size_t size) {
  mutex_lock(&meta_lock);
  size_t i = 0;
  while (i < META_SPARE_SIZES && spares[i].size != size && spares[i].size != 0) i++;
  if (i < META_SPARE_SIZES) {   /* else (a ninth size) it stays unused: never the case in practice */
    spares[i].size = size;
    *(void **)obj = spares[i].free;
    spares[i].free = obj;
  }
  mutex_unlock(&meta_lock);
}

void meta_pool_spill(meta_pool_t *pool) {
  while (pool->free) {
    void *obj = pool->free;
    pool->free = *(void **)obj;
    meta_spare_put(obj, pool->size);
  }
}

void *meta_pool_get(meta_pool_t *pool) {
  void *obj = pool->free;
  if (obj) {
    pool->free = *(void **)obj;
    memset(obj, 0, pool->size);
    return obj;
  }
  if (pool->refill) return pool->refill(pool->arg, pool->size);
  return meta_alloc(pool->size, TD_CACHELINE);
}

void meta_pool_put(meta_pool_t *pool, void *obj) {
  *(void **)obj = pool->free;
  pool->free = obj;
}

void meta_stats(size_t *mapped, size_t *allocated, size_t *separate) {
  *mapped = __atomic_load_n(&bytes_mapped, __ATOMIC_RELAXED);
  *allocated = __atomic_load_n(&bytes_allocated, __ATOMIC_RELAXED);
  *separate = __atomic_load_n(&bytes_leaves, __ATOMIC_RELAXED);
}

void meta_init(void) { mutex_register(&meta_lock); }
void meta_prefork(void) { mutex_lock(&meta_lock); }
void meta_postfork_parent(void) { mutex_unlock(&meta_lock); }
void meta_postfork_child(void) { mutex_postfork_child(&meta_lock); }
