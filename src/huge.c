#include "huge.h"
#include "conf.h"
#include "lock.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"

#include <string.h>


static td_mutex_t huge_lock = TD_MUTEX_INIT("huge", RANK_HUGE);
static struct {
  span_t *cache;                 /* freed mappings, most recent first */
  size_t cached_bytes, cached_n, live_bytes, live_count;
  size_t peak_bytes;             /* recent peak of live huge bytes */
  uint64_t peak_ns;
  uint64_t hits, misses, remaps;
  uint64_t donated;              /* bytes moved from entry to entry (donors_move) */
  void (*hook)(uint64_t);
} mappings;

static uint64_t decay_ns(void) {
  return opt.dirty_decay_ms < 0 ? TD_NEVER : (uint64_t)opt.dirty_decay_ms * 1000000u;
}

static void cache_unlink(span_t *s) {
  mutex_assert_held(&huge_lock);
  if (s->prev) s->prev->next = s->next; else mappings.cache = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  mappings.cached_bytes -= s->bytes;
  mappings.cached_n--;
}

static void cache_push(span_t *s) {
  mutex_assert_held(&huge_lock);
  s->prev = NULL;
  s->next = mappings.cache;
  if (mappings.cache) mappings.cache->prev = s;
  mappings.cache = s;
  mappings.cached_bytes += s->bytes;
  mappings.cached_n++;
}

/* Remember the recent peak of live huge bytes (forgotten after a decay time). */
static void peak_note(uint64_t now) {
  if (mappings.live_bytes >= mappings.peak_bytes || now - mappings.peak_ns > decay_ns()) {
    mappings.peak_bytes = mappings.live_bytes;
    mappings.peak_ns = now;
  }
}

/* What the cache may hold now: enough to get back to the recent peak. */
static size_t cache_budget(uint64_t now) {
  peak_note(now);
  return TD_MAX(HUGE_CACHE_MIN_BYTES, mappings.peak_bytes - mappings.live_bytes);
}

/* Take out entries that are too old, over budget or too many (oldest first);
 * returns them as a list for unmapping outside the lock. */
static span_t *cache_evict(uint64_t now, size_t budget) {
  span_t *out = NULL, *s = mappings.cache;
  while (s && s->next) s = s->next;
  uint64_t age = decay_ns();
  while (s) {
    span_t *prev = s->prev;
    if ((age != TD_NEVER && now - s->stamp_ns >= age) || mappings.cached_bytes > budget || mappings.cached_n > HUGE_CACHE_ENTRIES) {
      cache_unlink(s);
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

/* Best fit for map_size at align; splits off a tail worth keeping. When none
 * fits and grow_largest is set, the largest (to be grown by the caller).
 * The returned descriptor is out of the cache. */
static span_t *cache_take(size_t map_size, size_t align, span_t **spare, bool grow_largest) {
  mutex_assert_held(&huge_lock);
  span_t *best = NULL, *largest = NULL;
  for (span_t *s = mappings.cache; s; s = s->next) {
    if ((s->base & (align - 1)) != 0) continue;
    if (s->bytes >= map_size && (!best || s->bytes < best->bytes)) best = s;
    if (!largest || s->bytes > largest->bytes) largest = s;
  }
  if (!best) {
    /* None is big enough: the largest grows (by mremap, outside the lock), so
     * only the difference is faulted in. Only where alignment is not asked. */
    if (grow_largest && largest && align <= TD_PAGE) cache_unlink(largest);
    else largest = NULL;
    return largest;
  }
  cache_unlink(best);
  size_t cut = td_align_up(map_size, TD_UNIT);
  if (best->bytes > cut && best->bytes - cut >= TD_UNIT && *spare) {
    span_t *rest = *spare;
    *spare = NULL;
    rest->base = best->base + cut;
    rest->bytes = best->bytes - cut;
    rest->stamp_ns = best->stamp_ns;
    rest->kind = SPAN_RELEASED;
    cache_push(rest);
    best->bytes = cut;
  }
  return best;
}

/* When the largest cached mapping grows for a request no entry fits, the
 * others give it their pages: out of the cache, largest first, until they
 * cover `need` bytes (or the cache is empty). Their resident pages are moved
 * into the grown mapping's new range (mremap, no copy, no fault), where a
 * fresh page would otherwise be faulted in and zeroed, and the cache would
 * keep its pieces until they aged out or the budget unmapped them. Chained
 * through next; the caller puts back what it does not use. */
static span_t *cache_take_donors(size_t need) {
  mutex_assert_held(&huge_lock);
  span_t *out = NULL, **tail = &out;
  size_t got = 0;
  while (got < need && mappings.cache) {
    span_t *largest = mappings.cache;
    for (span_t *c = largest->next; c; c = c->next)
      if (c->bytes > largest->bytes) largest = c;
    cache_unlink(largest);
    got += largest->bytes;
    *tail = largest;
    tail = &largest->next;
  }
  return out;
}

/* Move the donors' pages over s's range [off, s->bytes), front first; a
 * donor's unused rest (or the whole of one the kernel would not move) goes
 * back to the cache. */
static void donors_move(span_t *s, size_t off, span_t *d) {
  size_t moved = 0;
  span_t *back = NULL;
  while (d) {
    span_t *next = d->next;
    size_t n = TD_MIN(d->bytes, s->bytes - off);
    if (n && os_move((void *)d->base, n, (void *)(s->base + off))) {
      off += n;
      moved += n;
      d->base += n;
      d->bytes -= n;
    }
    if (d->bytes) { d->next = back; back = d; }
    else page_span_put(d);
    d = next;
  }
  mutex_lock(&huge_lock);
  while (back) {
    span_t *next = back->next;
    cache_push(back);
    back = next;
  }
  mappings.donated += moved;
  mutex_unlock(&huge_lock);
}

size_t huge_remap_min = HUGE_REMAP_MIN;

/* Transparent huge pages for a fresh mapping, or a cached one mremap grew
 * for a new block (the request covers its whole 2 MiB extents; pages
 * already faulted in stay small). With thp:default on a system in madvise
 * mode: asked for, except for zeroed (sparse) requests (calloc), the usual
 * way to get a big, sparsely used table, where a huge page would make one
 * touched byte cost 2 MiB. A block this big that malloc hands out is
 * otherwise written in full (buffers, images, arrays): one fault per 2 MiB
 * instead of 512, and fewer TLB misses. thp:always asks for it always,
 * thp:never refuses it. */
bool huge_thp_wanted(bool zero) {
  if (os_system.thp == OS_THP_NEVER || opt.thp == THP_NEVER) return false;
  return opt.thp == THP_ALWAYS || (!zero && os_system.thp == OS_THP_MADVISE);
}

static void mapping_thp(void *p, size_t map_size, bool zero) {
  if (map_size < TD_UNIT || os_system.thp == OS_THP_NEVER) return;
  if (opt.thp == THP_NEVER) os_hugify(p, map_size, OS_HUGE_OFF);
  else if (huge_thp_wanted(zero)) os_hugify(p, td_align_down(map_size, TD_UNIT), OS_HUGE_ON);
}

/* Resize s's mapping to map_size: in place when the kernel can; otherwise
 * move it to an address reserved first, 2 MiB-aligned when it is that long,
 * with its pagemap leaf ready, so nothing can fail after the move.
 * registered: s's first page is in the pagemap. Its entry is withdrawn
 * before the move, because once mremap has released the old range another
 * thread may map something there and register it, and restored if the move
 * fails. Returns false, with s unchanged, when the OS refuses. A cached
 * mapping grown for a new block asks for huge pages as a fresh one would
 * (zero: for calloc); a live block keeps its setting, for the reason
 * grow_by_move gives. A live block's mapping over several VMAs (its front
 * advised for huge pages) cannot move: the caller copies it instead. */
static bool mapping_resize(span_t *s, size_t map_size, bool registered, bool zero) {
  size_t old = s->bytes;
  if (os_remap((void *)s->base, s->bytes, map_size, NULL)) {
    s->bytes = map_size;
    if (map_size > old && !registered) mapping_thp((void *)s->base, map_size, zero);
    return true;
  }
  void *dest = os_map_aligned(map_size, map_size >= TD_UNIT ? TD_UNIT : TD_PAGE);
  if (!dest) return false;
  if (!pagemap_reserve((uintptr_t)dest, TD_PAGE)) {
    os_unmap(dest, map_size);
    return false;
  }
  if (registered) pagemap_set(s->base, 1, &span_released);
  /* A cached mapping's pages move even where mremap would not take the
   * range whole (several VMAs): their contents do not matter. */
  if (!os_remap((void *)s->base, s->bytes, map_size, dest) &&
      (registered || !os_move((void *)s->base, s->bytes, dest))) {
    if (registered) pagemap_set(s->base, 1, s);
    os_unmap(dest, map_size);
    return false;
  }
  os_name(dest, map_size, "tidalloc-huge");
  s->base = (uintptr_t)dest;
  s->bytes = map_size;
  if (registered) {
    s->start = s->base;
    pagemap_set(s->base, 1, s);
  }
  if (map_size > old && !registered) mapping_thp(dest, map_size, zero);
  return true;
}

static void live_add(span_t *s) {
  mutex_lock(&huge_lock);
  mappings.live_bytes += s->bytes;
  mappings.live_count++;
  mutex_unlock(&huge_lock);
}

/* huge_alloc, with the huge-page decision apart: sparse as for calloc
 * (mapping_thp) whatever zero says. */
static void *alloc_mapping(size_t size, size_t align, bool zero, bool sparse) {
  if (align < TD_PAGE) align = TD_PAGE;
  size_t map_size = td_align_up(size, os_page());   /* whole OS pages: the cache splits and merges them */
  if (map_size < size) return NULL;
  span_t *spare = page_span_get();   /* for a split; returned if unused */
  mutex_lock(&huge_lock);
  span_t *s = mappings.cache ? cache_take(map_size, align, &spare, true) : NULL;
  span_t *donors = s && s->bytes < map_size ? cache_take_donors(map_size - s->bytes) : NULL;
  if (s) mappings.hits++; else mappings.misses++;
  mutex_unlock(&huge_lock);
  if (spare) page_span_put(spare);
  bool fresh = false;
  if (s && s->bytes < map_size) {
    size_t old = s->bytes;
    if (mapping_resize(s, map_size, false, sparse)) {
      donors_move(s, old, donors);
    } else {
      donors_move(s, s->bytes, donors);   /* nothing to fill: all go back */
      os_unmap((void *)s->base, s->bytes);
      page_span_put(s);
      s = NULL;
    }
  }
  if (!s) {
    size_t map_align = TD_MAX(align, map_size >= TD_UNIT ? TD_UNIT : TD_PAGE);
    void *p = os_map_aligned(map_size, map_align);
    if (!p) return NULL;
    if (!(s = page_span_get())) { os_unmap(p, map_size); return NULL; }
    os_name(p, map_size, "tidalloc-huge");
    mapping_thp(p, map_size, sparse);
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
  live_add(s);
  return (void *)s->base;
}

void *huge_alloc(size_t size, size_t align, bool zero) { return alloc_mapping(size, align, zero, zero); }

/* Merge s with cached neighbours in the address space; descriptors merged
 * away are chained on *dead for recycling outside the lock. */
static span_t *cache_coalesce(span_t *s, span_t **dead) {
  mutex_assert_held(&huge_lock);
  for (bool merged = true; merged;) {
    merged = false;
    for (span_t *c = mappings.cache; c; c = c->next) {
      if (c->base + c->bytes != s->base && s->base + s->bytes != c->base) continue;
      cache_unlink(c);
      if (c->base < s->base) s->base = c->base;
      s->bytes += c->bytes;
      c->next = *dead;
      *dead = c;
      merged = true;
      break;
    }
  }
  return s;
}

static void recycle_list(span_t *s) {
  while (s) {
    span_t *next = s->next;
    page_span_put(s);
    s = next;
  }
}

/* Cache c (released, stamped `now`, out of the live count), evict what the
 * budget and the age say, and tell the background thread when the cache's
 * next expiry is due. */
static void cache_release(span_t *c, uint64_t now) {
  span_t *dead = NULL, *evicted;
  void (*hook)(uint64_t) = NULL;
  uint64_t due = TD_NEVER;
  mutex_lock(&huge_lock);
  cache_push(cache_coalesce(c, &dead));
  evicted = cache_evict(now, cache_budget(now));
  if (mappings.cache && decay_ns() != TD_NEVER) {
    hook = mappings.hook;
    due = now + decay_ns();
  }
  mutex_unlock(&huge_lock);
  recycle_list(dead);
  unmap_list(evicted);
  if (hook) hook(due);
}

void huge_free(span_t *s) {
  pagemap_set(s->base, 1, &span_released);
  s->kind = SPAN_RELEASED;
  uint64_t now = os_now_ns();
  s->stamp_ns = now;
  mutex_lock(&huge_lock);
  peak_note(now);                      /* the peak includes this block */
  mappings.live_bytes -= s->bytes;
  mappings.live_count--;
  mutex_unlock(&huge_lock);
  cache_release(s, now);
}

/* Grow s to map_size by copying it into a cached mapping at least that
 * long, which is resident already, and caching s's old mapping in its place:
 * copying a page costs a fraction of faulting one in, which is what growing
 * in place or into a fresh mapping does for every new page (and moving the
 * pages over a cached mapping would drop as many resident pages as it saves
 * faults). False (s unchanged) when no cached mapping fits. */
static bool grow_into_cache(span_t *s, size_t map_size) {
  span_t *spare = page_span_get();
  mutex_lock(&huge_lock);
  span_t *c = mappings.cache ? cache_take(map_size, TD_PAGE, &spare, false) : NULL;
  mutex_unlock(&huge_lock);
  if (spare) page_span_put(spare);
  if (!c) return false;
  if (!pagemap_reserve(c->base, TD_PAGE)) {
    mutex_lock(&huge_lock);
    cache_push(c);
    mutex_unlock(&huge_lock);
    return false;
  }
  memcpy((void *)c->base, (const void *)s->base, s->bytes);
  uintptr_t old_base = s->base;
  size_t old_bytes = s->bytes;
  s->base = s->start = c->base;
  s->bytes = c->bytes;
  s->zeroed = false;
  pagemap_set(s->base, 1, s);
  pagemap_set(old_base, 1, &span_released);
  c->base = old_base;   /* c now describes the old mapping, cached */
  c->bytes = old_bytes;
  c->kind = SPAN_RELEASED;
  c->stamp_ns = os_now_ns();
  span_t *dead = NULL;
  mutex_lock(&huge_lock);
  cache_push(cache_coalesce(c, &dead));
  mutex_unlock(&huge_lock);
  recycle_list(dead);
  return true;
}

/* Grow s to map_size by moving it: a mapping from huge_alloc (the cache's
 * largest grown, or a fresh one), the block copied over,
 * and s's old mapping cached. The old block leaves the live count before
 * the new one enters, so the moment of holding both raises neither the
 * recent peak nor, through it, what the cache may keep: a buffer that keeps
 * growing leaves no trail of resident mappings behind it. False, s
 * unchanged, when no mapping can be had. */
static bool grow_by_move(span_t *s, size_t map_size) {
  mutex_lock(&huge_lock);
  mappings.live_bytes -= s->bytes;
  mappings.live_count--;
  mutex_unlock(&huge_lock);
  void *q = alloc_mapping(map_size, TD_PAGE, false, true);   /* no huge pages asked for the whole */
  if (!q) {
    live_add(s);
    return false;
  }
  span_t *t = pagemap_lookup(q);
  /* Huge pages: for the whole new mapping while it is below
   * HUGE_REMAP_MIN (what a sparsely used tail can cost is bounded by it,
   * and such a block moves on when it grows), and from there for the 2 MiB
   * extents the copy fills only: a tail is often filled bit by bit (a
   * vector that doubles), and a huge page makes its first byte cost 2 MiB
   * (sqlite's in-memory database held 33 MB more at its peak when its
   * 64 MiB buffer's tail had them). Growth by mremap inherits the setting:
   * a mapping asked whole passes it to its tail. */
  size_t thp_bytes = map_size < huge_remap_min ? map_size : td_align_down(s->bytes, TD_UNIT);
  if (huge_thp_wanted(false) && thp_bytes >= TD_UNIT) os_hugify(q, thp_bytes, OS_HUGE_ON);
  memcpy(q, (const void *)s->base, s->bytes);
  uintptr_t old_base = s->base;
  size_t old_bytes = s->bytes;
  s->base = s->start = t->base;       /* s takes the new mapping, t the old one */
  s->bytes = t->bytes;
  s->zeroed = false;
  pagemap_set(s->base, 1, s);
  pagemap_set(old_base, 1, &span_released);
  t->base = t->start = old_base;
  t->bytes = old_bytes;
  t->kind = SPAN_RELEASED;
  uint64_t now = os_now_ns();
  t->stamp_ns = now;
  cache_release(t, now);
  return true;
}

/* Shrink s to map_size by caching the pages cut off, resident, as a mapping
 * of their own (the address range is simply split; no system call), where
 * mremap would drop them and a later allocation or growth fault them in
 * again. The cache's budget and decay bound what this keeps. */
static bool shrink_into_cache(span_t *s, size_t map_size) {
  span_t *tail = page_span_get();
  if (!tail) return false;
  size_t cut = s->bytes - map_size;
  tail->base = s->base + map_size;
  tail->bytes = cut;
  tail->kind = SPAN_RELEASED;
  uint64_t now = os_now_ns();
  tail->stamp_ns = now;
  s->bytes = map_size;
  span_t *dead = NULL, *evicted;
  mutex_lock(&huge_lock);
  cache_push(cache_coalesce(tail, &dead));
  mappings.live_bytes -= cut;   /* the budget sees s shrunk; the caller accounts for it */
  evicted = cache_evict(now, cache_budget(now));
  mappings.live_bytes += cut;
  mutex_unlock(&huge_lock);
  recycle_list(dead);
  unmap_list(evicted);
  return true;
}

void *huge_realloc(span_t *s, size_t new_size) {
  size_t map_size = td_align_up(new_size, os_page());
  if (map_size < new_size) return NULL;
  size_t old = s->bytes;
  if (map_size == old) return (void *)s->base;
  /* Growth that no cached mapping fits: a block below HUGE_REMAP_MIN
   * moves (grow_by_move); mremap would fault the new pages in one by one
   * and, when the mapping has to move, remap every old one, which here cost
   * more than the copy. A bigger block grows by mremap, and moves when the
   * kernel refuses (e.g. its mapping is more than one VMA). */
  bool ok, moved = false;
  if (map_size < old) ok = shrink_into_cache(s, map_size) || mapping_resize(s, map_size, true, false);
  else if (grow_into_cache(s, map_size)) ok = true;
  else if (old >= huge_remap_min && mapping_resize(s, map_size, true, false)) ok = true;
  else ok = moved = grow_by_move(s, map_size);
  if (!ok) return NULL;
  mutex_lock(&huge_lock);
  if (!moved) mappings.live_bytes = mappings.live_bytes - old + s->bytes;
  mappings.remaps++;
  mutex_unlock(&huge_lock);
  return (void *)s->base;
}

size_t huge_purge_all(void) {
  mutex_lock(&huge_lock);
  span_t *evicted = cache_evict(os_now_ns(), 0);
  mutex_unlock(&huge_lock);
  return unmap_list(evicted);
}

uint64_t huge_deferred_work(uint64_t now) {
  mutex_lock(&huge_lock);
  span_t *evicted = cache_evict(now, cache_budget(now));
  uint64_t next = TD_NEVER, age = decay_ns();
  if (age != TD_NEVER)
    for (span_t *s = mappings.cache; s; s = s->next)
      if (s->stamp_ns + age < next) next = s->stamp_ns + age;
  mutex_unlock(&huge_lock);
  unmap_list(evicted);
  return next;
}

void huge_set_work_hook(void (*hook)(uint64_t)) {
  mutex_lock(&huge_lock);
  mappings.hook = hook;
  mutex_unlock(&huge_lock);
}

void huge_stats_get(huge_stats_t *out) {
  mutex_lock(&huge_lock);
  out->live_bytes = mappings.live_bytes;
  out->live_count = mappings.live_count;
  out->cached_bytes = mappings.cached_bytes;
  out->cached_count = mappings.cached_n;
  out->cache_hits = mappings.hits;
  out->cache_misses = mappings.misses;
  out->remaps = mappings.remaps;
  out->donated_bytes = mappings.donated;
  mutex_unlock(&huge_lock);
}

void huge_init(void) { mutex_register(&huge_lock); }
void huge_prefork(void) { mutex_lock(&huge_lock); }
void huge_postfork_parent(void) { mutex_unlock(&huge_lock); }
void huge_postfork_child(void) { mutex_postfork_child(&huge_lock); }
