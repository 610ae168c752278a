#include "page.h"
#include "lock.h"
#include "meta.h"
#include "os.h"
#include "pagemap.h"
#include "safety.h"

#include <string.h>

#define REGION_MAX        ((size_t)1 << 30)   /* reserve address space 1 GiB at a time */
#define EMPTY_UNITS_KEEP  2                   /* wholly empty dirty units kept unpurged */
#define NBINS             (TD_UNIT_PAGES + 1) /* bins by longest free range 0..512 */
#define NBIN_WORDS        ((NBINS + 63) / 64)

static td_mutex_t page_lock = TD_MUTEX_INIT("page");

static struct {
  unit_t *bins[NBINS];             /* units by longest free range */
  uint64_t nonempty[NBIN_WORDS];   /* bit b: bins[b] is not empty */
  /* the region units are carved from */
  unit_t *region_units;
  uintptr_t region_base;
  size_t region_nunits, region_next;
  meta_pool_t span_pool;
  /* counters (pages unless noted) */
  size_t mapped_bytes, nunits, nactive, ndirty, nempty_dirty_units;
  uint64_t purged_bytes;
} P;

void page_init(void) {
  P.span_pool.size = sizeof(span_t);
}

/* ---- psset bins ---------------------------------------------------------- */

static void bin_insert(unit_t *u) {
  size_t b = u->lfr;
  u->bin = (uint16_t)b;
  u->prev = NULL;
  u->next = P.bins[b];
  if (u->next) u->next->prev = u;
  P.bins[b] = u;
  P.nonempty[b >> 6] |= 1ull << (b & 63);
}

static void bin_remove(unit_t *u) {
  size_t b = u->bin;
  if (b == UNIT_UNLISTED) return;
  if (u->prev) u->prev->next = u->next; else P.bins[b] = u->next;
  if (u->next) u->next->prev = u->prev;
  if (!P.bins[b]) P.nonempty[b >> 6] &= ~(1ull << (b & 63));
  u->bin = UNIT_UNLISTED;
  u->next = u->prev = NULL;
}

/* First non-empty bin >= b, or NBINS. */
static size_t bin_first_from(size_t b) {
  while (b < NBINS) {
    size_t w = b >> 6;
    uint64_t word = P.nonempty[w] & (~0ull << (b & 63));
    if (word) return w * 64 + (size_t)__builtin_ctzll(word);
    b = (w + 1) * 64;
  }
  return NBINS;
}

static void unit_rebin(unit_t *u) {
  bin_remove(u);
  u->lfr = (uint16_t)bm_longest_clear_run(&u->active);
  bin_insert(u);
}

/* ---- regions and fresh units ------------------------------------------- */

static unit_t *unit_fresh(void) {
  if (P.region_next == P.region_nunits) {
    size_t size = REGION_MAX;
    void *base = NULL;
    for (; size >= TD_UNIT; size >>= 1)
      if ((base = os_map_aligned(size, TD_UNIT)) != NULL) break;
    if (!base) return NULL;
    size_t n = size / TD_UNIT;
    unit_t *units = meta_alloc(n * sizeof(unit_t), TD_CACHELINE);
    if (!units || !pagemap_reserve((uintptr_t)base, size)) {
      os_unmap(base, size);
      return NULL;
    }
    os_name(base, size, "tidalloc");
    P.region_units = units;
    P.region_base = (uintptr_t)base;
    P.region_nunits = n;
    P.region_next = 0;
    P.mapped_bytes += size;
  }
  unit_t *u = &P.region_units[P.region_next];
  u->base = P.region_base + P.region_next * TD_UNIT;
  P.region_next++;
  P.nunits++;
  u->lfr = TD_UNIT_PAGES;
  u->bin = UNIT_UNLISTED;
  return u;
}

/* ---- purging ------------------------------------------------------------ */

/* Purge every dirty range of u. Caller holds the lock. */
static size_t unit_purge(unit_t *u) {
  size_t purged = 0, i = 0;
  while (i < TD_UNIT_PAGES) {
    size_t f = bm_next(&u->dirty, i, true);
    if (f >= TD_UNIT_PAGES) break;
    size_t e = bm_next(&u->dirty, f, false);
    os_purge((void *)(u->base + f * TD_PAGE), (e - f) * TD_PAGE, OS_PURGE_NOW);
    purged += e - f;
    i = e;
  }
  memset(&u->dirty, 0, sizeof u->dirty);
  if (u->nactive == 0 && u->ndirty) P.nempty_dirty_units--;
  P.ndirty -= u->ndirty;
  u->ndirty = 0;
  P.purged_bytes += purged * TD_PAGE;
  return purged * TD_PAGE;
}

/* ---- runs ---------------------------------------------------------------- */

static span_t *run_take(unit_t *u, size_t idx, size_t npages) {
  span_t *s = meta_pool_get(&P.span_pool);
  if (!s) return NULL;
  size_t was_dirty = bm_count_range(&u->dirty, idx, npages);
  if (u->nactive == 0 && u->ndirty) P.nempty_dirty_units--;
  bm_set_range(&u->active, idx, npages);
  bm_clear_range(&u->dirty, idx, npages);
  u->nactive = (uint16_t)(u->nactive + npages);
  u->ndirty = (uint16_t)(u->ndirty - was_dirty);
  P.nactive += npages;
  P.ndirty -= was_dirty;
  unit_rebin(u);
  s->base = u->base + idx * TD_PAGE;
  s->bytes = npages * TD_PAGE;
  s->unit = u;
  s->page_index = (uint32_t)idx;
  s->zeroed = was_dirty == 0;
  return s;
}

span_t *page_alloc(size_t npages, size_t align_pages) {
  TD_DASSERT(npages >= 1 && npages <= TD_UNIT_PAGES && td_is_pow2(align_pages));
  mutex_lock(&page_lock);
  span_t *s = NULL;
  for (size_t b = bin_first_from(npages); b < NBINS; b = bin_first_from(b + 1)) {
    for (unit_t *u = P.bins[b]; u; u = u->next) {
      size_t idx = bm_find_clear_run(&u->active, npages, align_pages);
      if (idx < TD_UNIT_PAGES) { s = run_take(u, idx, npages); goto done; }
      if (align_pages == 1) break;   /* lfr >= npages guarantees a fit: unreachable */
    }
  }
  unit_t *u = unit_fresh();
  if (u) s = run_take(u, 0, npages);
done:
  mutex_unlock(&page_lock);
  return s;
}

/* Free pages [idx, idx+n) of u. Caller holds the lock. */
static void run_release(unit_t *u, size_t idx, size_t n) {
  TD_DASSERT(bm_count_range(&u->active, idx, n) == n);
  bm_clear_range(&u->active, idx, n);
  bm_set_range(&u->dirty, idx, n);
  u->nactive = (uint16_t)(u->nactive - n);
  u->ndirty = (uint16_t)(u->ndirty + n);
  P.nactive -= n;
  P.ndirty += n;
  unit_rebin(u);
  if (u->nactive == 0) {
    P.nempty_dirty_units++;
    if (P.nempty_dirty_units > EMPTY_UNITS_KEEP) unit_purge(u);
  }
}

void page_free(span_t *s) {
  mutex_lock(&page_lock);
  run_release(s->unit, s->page_index, s->bytes >> TD_PAGE_SHIFT);
  meta_pool_put(&P.span_pool, s);
  mutex_unlock(&page_lock);
}

bool page_grow(span_t *s, size_t new_npages) {
  unit_t *u = s->unit;
  size_t old = s->bytes >> TD_PAGE_SHIFT, end = s->page_index + new_npages;
  if (end > TD_UNIT_PAGES) return false;
  bool ok = false;
  mutex_lock(&page_lock);
  size_t from = s->page_index + old, add = new_npages - old;
  if (bm_count_range(&u->active, from, add) == 0) {
    size_t was_dirty = bm_count_range(&u->dirty, from, add);
    bm_set_range(&u->active, from, add);
    bm_clear_range(&u->dirty, from, add);
    u->nactive = (uint16_t)(u->nactive + add);
    u->ndirty = (uint16_t)(u->ndirty - was_dirty);
    P.nactive += add;
    P.ndirty -= was_dirty;
    unit_rebin(u);
    s->bytes = new_npages * TD_PAGE;
    ok = true;
  }
  mutex_unlock(&page_lock);
  return ok;
}

void page_shrink(span_t *s, size_t new_npages) {
  size_t old = s->bytes >> TD_PAGE_SHIFT;
  if (new_npages >= old) return;
  mutex_lock(&page_lock);
  run_release(s->unit, s->page_index + new_npages, old - new_npages);
  s->bytes = new_npages * TD_PAGE;
  mutex_unlock(&page_lock);
}

span_t *page_span_get(void) {
  mutex_lock(&page_lock);
  span_t *s = meta_pool_get(&P.span_pool);
  mutex_unlock(&page_lock);
  return s;
}

void page_span_put(span_t *s) {
  mutex_lock(&page_lock);
  meta_pool_put(&P.span_pool, s);
  mutex_unlock(&page_lock);
}

size_t page_purge_all(void) {
  size_t total = 0;
  mutex_lock(&page_lock);
  for (size_t b = bin_first_from(0); b < NBINS; b = bin_first_from(b + 1))
    for (unit_t *u = P.bins[b]; u; u = u->next)
      if (u->ndirty) total += unit_purge(u);
  mutex_unlock(&page_lock);
  return total;
}

void page_stats_get(page_stats_t *out) {
  mutex_lock(&page_lock);
  out->mapped = P.mapped_bytes;
  out->units = P.nunits;
  out->active = P.nactive * TD_PAGE;
  out->dirty = P.ndirty * TD_PAGE;
  out->purged_bytes = P.purged_bytes;
  mutex_unlock(&page_lock);
}

void page_validate(void) {
  mutex_lock(&page_lock);
  size_t active = 0, dirty = 0, empty_dirty = 0;
  for (size_t b = 0; b < NBINS; b++) {
    TD_CHECK(!P.bins[b] == !(P.nonempty[b >> 6] & (1ull << (b & 63))), "page bitmap mismatch", P.bins[b], "page_validate");
    for (unit_t *u = P.bins[b]; u; u = u->next) {
      TD_CHECK(u->bin == b && u->lfr == b, "unit in wrong bin", (void *)u->base, "page_validate");
      TD_CHECK(bm_longest_clear_run(&u->active) == u->lfr, "stale longest free range", (void *)u->base, "page_validate");
      TD_CHECK(bm_count(&u->active) == u->nactive, "active count", (void *)u->base, "page_validate");
      TD_CHECK(bm_count(&u->dirty) == u->ndirty, "dirty count", (void *)u->base, "page_validate");
      for (size_t w = 0; w < BM_WORDS; w++)
        TD_CHECK((u->active.w[w] & u->dirty.w[w]) == 0, "page both active and dirty", (void *)u->base, "page_validate");
      active += u->nactive;
      dirty += u->ndirty;
      if (u->nactive == 0 && u->ndirty) empty_dirty++;
    }
  }
  TD_CHECK(active == P.nactive && dirty == P.ndirty && empty_dirty == P.nempty_dirty_units,
           "page totals", NULL, "page_validate");
  mutex_unlock(&page_lock);
}

void page_prefork(void) { mutex_lock(&page_lock); }
void page_postfork_parent(void) { mutex_unlock(&page_lock); }
void page_postfork_child(void) { mutex_postfork_child(&page_lock); }
