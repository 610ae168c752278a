#include "objcache.h"
#include "conf.h"
#include "lock.h"
#include "meta.h"
#include "os.h"
#include "page.h"
#include "pressure.h"
#include "pagemap.h"
#include "safety.h"
#include "span.h"

#include <stdlib.h>
#include <string.h>

/* The slab of an object cache: its descriptor (a span_t, in metadata) holds
 * the free list; the 2 MiB mapping holds only objects.
 *
 *   base (2 MiB aligned)                                        base + 2 MiB
 *   | obj 0 | obj 1 | ... | obj capacity-1 | tail (< one object) |
 */
struct tidal_objcache {
  td_mutex_t lock;
  char name[32];
  size_t size;             /* object size (rounded to the alignment) */
  size_t per_slab;         /* objects per slab */
  size_t retain;           /* free objects a drain leaves */
  span_t *partial, *full, *empty;
  size_t nslabs, nempty, nfree;
  tidal_objcache_t *next;  /* on the live list, or the spare list */
};

/* Every live cache, on one list (no limit), for fork and for the one cleaner
 * that drains them all. Destroyed caches' descriptors wait on a free list
 * for reuse (metadata is never unmapped). Lock order: all_lock, then a
 * cache's lock. */
static td_mutex_t all_lock = TD_MUTEX_INIT("objcache_registry", RANK_OBJCACHE_REGISTRY);
static tidal_objcache_t *live, *spare;
static bool cleaner_registered;


/* The application-level cleaner of all object caches: under critical
 * pressure or tidal_release, each gives back empty slabs down to its retain. */
static size_t drain_all(void *arg, size_t want) {
  (void)arg;
  size_t got = 0;
  mutex_lock(&all_lock);   /* a cache cannot be destroyed while it drains */
  for (tidal_objcache_t *c = live; c && got < want; c = c->next)
    got += objcache_drain(c, want - got);
  mutex_unlock(&all_lock);
  return got;
}

tidal_objcache_t *objcache_create(const char *name, size_t size, size_t align, size_t retain) {
  if (align == 0) align = TD_QUANTUM;
  if (!td_is_pow2(align) || align > TD_PAGE || size == 0 || size > TD_UNIT / 2) return NULL;
  if (align < sizeof(block_t)) align = sizeof(block_t);   /* room for the link and the free marker */
  mutex_lock(&all_lock);
  if (!cleaner_registered)
    cleaner_registered = pressure_cleaner_register("tidalloc:object_caches", drain_all, NULL) >= 0;
  tidal_objcache_t *c = spare;
  if (c) spare = c->next;
  else c = meta_alloc(sizeof *c, TD_CACHELINE);
  if (c) {
    memset(c, 0, sizeof *c);
    c->lock = (td_mutex_t)TD_MUTEX_INIT("objcache", RANK_OBJCACHE);
    strncpy(c->name, name ? name : "objcache", sizeof c->name - 1);
    c->size = td_align_up(size, align);
    c->per_slab = TD_UNIT / c->size;
    c->retain = retain;
    c->next = live;
    live = c;
  }
  mutex_unlock(&all_lock);
  return c;
}

void objcache_prefork(void) {
  mutex_lock(&all_lock);
  for (tidal_objcache_t *c = live; c; c = c->next) mutex_lock(&c->lock);
}

void objcache_postfork_parent(void) {
  for (tidal_objcache_t *c = live; c; c = c->next) mutex_unlock(&c->lock);
  mutex_unlock(&all_lock);
}

void objcache_postfork_child(void) {
  for (tidal_objcache_t *c = live; c; c = c->next) mutex_postfork_child(&c->lock);
  mutex_postfork_child(&all_lock);
}

static void slab_unmap(span_t *s) {
  pagemap_set(s->base, 1, &span_released);
  os_unmap((void *)s->base, TD_UNIT);
  page_span_put(s);
}

static span_t *slab_new(tidal_objcache_t *c) {
  void *m = os_map_aligned(TD_UNIT, TD_UNIT);
  if (!m) return NULL;
  span_t *s = page_span_get();
  if (!s || !pagemap_reserve((uintptr_t)m, TD_PAGE)) {
    if (s) page_span_put(s);
    os_unmap(m, TD_UNIT);
    return NULL;
  }
  os_name(m, TD_UNIT, "tidalloc-objcache");
  if (os_system.thp != OS_THP_NEVER && opt.thp != THP_NEVER) os_hugify(m, TD_UNIT, OS_HUGE_ON);   /* dense by design */
  s->kind = SPAN_OBJCACHE;
  s->cache = c;
  s->base = s->start = s->bump = (uintptr_t)m;
  s->bump_end = s->base + c->per_slab * c->size;
  span_set_size(s, (uint32_t)c->size);
  s->capacity = (uint32_t)c->per_slab;
  s->carved = 0;
  s->bytes = TD_UNIT;
  span_free_clear(s);
  s->used = 0;
  pagemap_set(s->base, 1, s);
  c->nslabs++;
  c->nfree += c->per_slab;
  return s;
}

void *objcache_alloc(tidal_objcache_t *c) {
  mutex_lock(&c->lock);
  span_t *s = c->partial;
  if (!s && (s = c->empty)) {
    span_list_remove(&c->empty, s);
    c->nempty--;
    span_list_push(&c->partial, s);
  }
  if (!s) {
    if (!(s = slab_new(c))) { mutex_unlock(&c->lock); return NULL; }
    span_list_push(&c->partial, s);
  }
  void *p = span_pop(s);   /* a freed object (the span protocol), else a fresh one */
  if (!p) {
    p = (void *)s->bump;
    s->bump += c->size;
    s->carved++;
    s->used++;
  }
  c->nfree--;
  if (s->used == c->per_slab) {
    span_list_remove(&c->partial, s);
    span_list_push(&c->full, s);
  }
  mutex_unlock(&c->lock);
  return p;
}

void objcache_free(tidal_objcache_t *c, void *p) {
  if (!p) return;
  span_t *s = pagemap_lookup((void *)td_align_down((uintptr_t)p, TD_UNIT));
  if (!s || s->kind != SPAN_OBJCACHE || s->cache != c || ((uintptr_t)p - s->start) % c->size ||
      (uintptr_t)p >= s->bump)
    safety_report("invalid free", p, "not an object of this cache", -1, "tidal_objcache_free");
  mutex_lock(&c->lock);
  if (span_block_marked(p) || s->used == 0) {
    mutex_unlock(&c->lock);
    safety_report("double free", p, "object of cache, bytes", (long)c->size, "tidal_objcache_free");
  }
  span_push(s, p);
  c->nfree++;
  if (s->used-- == c->per_slab) {
    span_list_remove(&c->full, s);
    span_list_push(&c->partial, s);
  }
  if (s->used == 0) {
    span_list_remove(&c->partial, s);
    span_list_push(&c->empty, s);
    c->nempty++;
  }
  mutex_unlock(&c->lock);
}

size_t objcache_drain(tidal_objcache_t *c, size_t want) {
  size_t got = 0;
  span_t *dead = NULL;
  mutex_lock(&c->lock);
  /* nfree - per_slab >= retain, written so that a retain near SIZE_MAX
   * cannot wrap. */
  while (c->empty && got < want && c->nfree >= c->per_slab && c->nfree - c->per_slab >= c->retain) {
    span_t *s = c->empty;
    span_list_remove(&c->empty, s);
    c->nempty--;
    c->nslabs--;
    c->nfree -= c->per_slab;
    s->next = dead;
    dead = s;
    got += TD_UNIT;
  }
  mutex_unlock(&c->lock);
  while (dead) {
    span_t *s = dead;
    dead = s->next;
    slab_unmap(s);
  }
  return got;
}


void objcache_destroy(tidal_objcache_t *c) {
  if (!c) return;
  mutex_lock(&all_lock);
  tidal_objcache_t **pp = &live;
  while (*pp && *pp != c) pp = &(*pp)->next;
  if (!*pp) {
    mutex_unlock(&all_lock);
    safety_report("invalid object cache", c, "not a live cache", -1, "tidal_objcache_destroy");
  }
  *pp = c->next;
  mutex_lock(&c->lock);
  span_t *lists[3] = { c->partial, c->full, c->empty };
  for (int k = 0; k < 3; k++) {
    for (span_t *s = lists[k], *nx; s; s = nx) {
      nx = s->next;
      slab_unmap(s);
    }
  }
  c->partial = c->full = c->empty = NULL;
  c->nslabs = c->nempty = c->nfree = 0;
  mutex_unlock(&c->lock);
  c->next = spare;   /* the descriptor is reused by a later create */
  spare = c;
  mutex_unlock(&all_lock);
}
