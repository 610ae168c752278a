#include "huge.h"
#include "lock.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"

#include <string.h>

static td_mutex_t huge_lock = TD_MUTEX_INIT("huge");
static span_t *cache;            /* most recently freed first */
static size_t cache_bytes, cache_n, live_bytes, live_count;

static void cache_remove(span_t *s) {
  if (s->prev) s->prev->next = s->next; else cache = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  cache_bytes -= s->bytes;
  cache_n--;
}

/* Unmap cached entries that are too old, or beyond the byte/entry budget
 * (oldest first). Caller holds the lock; returns the evicted list. */
static span_t *cache_evict(uint64_t now, size_t budget) {
  span_t *out = NULL, *s = cache;
  while (s && s->next) s = s->next;          /* oldest */
  while (s) {
    span_t *prev = s->prev;
    if (now - s->stamp_ns > HUGE_CACHE_AGE_NS || cache_bytes > budget || cache_n > HUGE_CACHE_ENTRIES) {
      cache_remove(s);
      s->next = out;
      out = s;
    }
    s = prev;
  }
  return out;
}

static size_t unmap_list(span_t *s) {
  size_t n = 0;
  while (s) {
    span_t *next = s->next;
    os_unmap((void *)s->base, s->bytes);
    n += s->bytes;
    page_span_put(s);
    s = next;
  }
  return n;
}

/* Take a cached mapping that can serve map_size bytes at alignment align. */
static span_t *cache_take(size_t map_size, size_t align) {
  span_t *best = NULL, *grow = NULL;
  for (span_t *s = cache; s; s = s->next) {
    if ((s->base & (align - 1)) != 0) continue;
    if (s->bytes >= map_size) {
      if (!best || s->bytes < best->bytes) best = s;
    } else if (align <= TD_PAGE && (!grow || s->bytes > grow->bytes)) {
      grow = s;
    }
  }
  span_t *s = best ? best : grow;
  if (s) cache_remove(s);
  return s;
}

static bool fit_mapping(span_t *s, size_t map_size) {
  if (s->bytes > map_size) {
    /* Keep up to 1/8 slack rather than paying for a syscall. */
    if (s->bytes - map_size > map_size / 8) {
      os_unmap((void *)(s->base + map_size), s->bytes - map_size);
      s->bytes = map_size;
    }
    return true;
  }
  if (s->bytes < map_size) {
    void *p = os_remap((void *)s->base, s->bytes, map_size);
    if (!p) return false;
    s->base = (uintptr_t)p;
    s->bytes = map_size;
  }
  return true;
}

void *huge_alloc(size_t size, size_t align, bool zero) {
  size_t map_size = td_align_up(size, TD_PAGE);
  if (map_size < size) return NULL;
  span_t *s = NULL;
  mutex_lock(&huge_lock);
  if (cache) s = cache_take(map_size, align);
  mutex_unlock(&huge_lock);
  bool fresh = false;
  if (s && !fit_mapping(s, map_size)) {
    os_unmap((void *)s->base, s->bytes);
    page_span_put(s);
    s = NULL;
  }
  if (!s) {
    size_t map_align = TD_MAX(align, map_size >= TD_UNIT ? TD_UNIT : TD_PAGE);
    void *p = os_map_aligned(map_size, map_align);
    if (!p) return NULL;
    if (!(s = page_span_get())) { os_unmap(p, map_size); return NULL; }
    os_name(p, map_size, "tidalloc-huge");
    s->base = (uintptr_t)p;
    s->bytes = map_size;
    fresh = true;
  }
  if (!pagemap_reserve(s->base, TD_PAGE)) {
    os_unmap((void *)s->base, s->bytes);
    page_span_put(s);
    return NULL;
  }
  s->kind = SPAN_HUGE;
  s->owner = NULL;
  s->start = s->base;
  s->zeroed = fresh;
  s->next = s->prev = NULL;
  if (zero && !fresh) memset((void *)s->base, 0, size);
  pagemap_set(s->base, 1, s);
  mutex_lock(&huge_lock);
  live_bytes += s->bytes;
  live_count++;
  mutex_unlock(&huge_lock);
  return (void *)s->base;
}

void huge_free(span_t *s) {
  pagemap_set(s->base, 1, &span_released);
  s->kind = SPAN_RELEASED;
  uint64_t now = os_now_ns();
  s->stamp_ns = now;
  mutex_lock(&huge_lock);
  live_bytes -= s->bytes;
  live_count--;
  span_t *evicted = NULL;
  if (s->bytes <= HUGE_CACHE_BYTES) {
    s->prev = NULL;
    s->next = cache;
    if (cache) cache->prev = s;
    cache = s;
    cache_bytes += s->bytes;
    cache_n++;
    evicted = cache_evict(now, HUGE_CACHE_BYTES);
  } else {
    s->next = NULL;
    evicted = s;
  }
  mutex_unlock(&huge_lock);
  unmap_list(evicted);
}

void *huge_realloc(span_t *s, size_t new_size) {
  size_t map_size = td_align_up(new_size, TD_PAGE);
  if (map_size < new_size) return NULL;
  size_t old = s->bytes;
  if (map_size == old) return (void *)s->base;
  void *p = os_remap((void *)s->base, old, map_size);
  if (!p) return NULL;
  if ((uintptr_t)p != s->base) {
    if (!pagemap_reserve((uintptr_t)p, TD_PAGE)) {
      /* Cannot register the new address: move back (never fails for a shrink
       * to the old size at a fresh address, but be careful anyway). */
      void *back = os_remap(p, map_size, old);
      if (back) { s->base = s->start = (uintptr_t)back; pagemap_set(s->base, 1, s); }
      return NULL;
    }
    pagemap_set(s->base, 1, NULL);
    s->base = s->start = (uintptr_t)p;
    pagemap_set(s->base, 1, s);
  }
  s->bytes = map_size;
  mutex_lock(&huge_lock);
  live_bytes = live_bytes - old + map_size;
  mutex_unlock(&huge_lock);
  return p;
}

size_t huge_purge_all(void) {
  mutex_lock(&huge_lock);
  span_t *evicted = cache_evict(os_now_ns(), 0);
  mutex_unlock(&huge_lock);
  return unmap_list(evicted);
}

void huge_stats_get(huge_stats_t *out) {
  mutex_lock(&huge_lock);
  out->live_bytes = live_bytes;
  out->live_count = live_count;
  out->cached_bytes = cache_bytes;
  mutex_unlock(&huge_lock);
}

void huge_prefork(void) { mutex_lock(&huge_lock); }
void huge_postfork_parent(void) { mutex_unlock(&huge_lock); }
void huge_postfork_child(void) { mutex_postfork_child(&huge_lock); }
