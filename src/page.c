#include "page.h"
#include "conf.h"
#include "decay.h"
#include "lock.h"
#include "meta.h"
#include "os.h"
#include "pagemap.h"
#include "safety.h"

#include <string.h>

#define REGION_MAX         ((size_t)1 << 30)   /* reserve address space 1 GiB at a time */
#define NBINS              (TD_UNIT_PAGES + 1) /* bins by longest free range 0..512 */
#define BITS_PER_WORD      64
#define NBIN_WORDS         ((NBINS + BITS_PER_WORD - 1) / BITS_PER_WORD)
#define DIRTY_FLOOR_PAGES  ((size_t)(32 << 20) >> TD_PAGE_SHIFT)   /* ceiling never below 32 MiB */
#define COLLAPSE_PER_PASS  8
#define PURGE_RETRY_NS     (100ull * 1000000ull)   /* units busy or the kernel refused: retry after */
/* guard_unused: units open from their start in steps of this many pages
 * (256 KiB: a multiple of every OS page size, and few mprotect calls). */
#define OPEN_STEP_PAGES    ((size_t)64)
/* Runs this long (large blocks) open exactly to their end: while nothing
 * is carved after a fresh large block, an overflow of it faults. */
#define OPEN_EXACT_PAGES   ((size_t)16)
#define GUARD_UNITS        1                   /* inaccessible units at a region's start */
/* The arena: one reservation, aligned to its size, that the default pager
 * carves its regions from before asking the OS for more; its pages resolve
 * through the pagemap's flat window (pagemap.h), the free fast path's
 * lookup. Halved while the OS refuses, down to ARENA_MIN; none at all when
 * an address-space limit (ulimit -v) is below ARENA_LIMIT_RATIO times it.
 *
 *   arena:  | region 0 (1 GiB) | region 1 | ... carved in order ... | not yet carved |
 *           ^ arena_base, aligned to ARENA size     ^ arena_next              arena_end ^ */
#define ARENA_MAX          ((size_t)1 << 36)   /* 64 GiB: a 128 MiB table, touched 4 KiB per 2 MiB used */
#define ARENA_MIN          ((size_t)1 << 32)   /* 4 GiB */
#define ARENA_LIMIT_RATIO  8

struct pager_s {
  td_mutex_t lock;
  unit_t *bins[NBINS];             /* pairing heaps by age, indexed by longest free range */
  uint64_t nonempty[NBIN_WORDS];   /* bit b: bins[b] is not empty */
  unit_t *region_units;            /* the region units are carved from */
  uintptr_t region_base;
  size_t region_nunits, region_next;
  unit_t *all_units, *purge_list, *dense_list;
  meta_pool_t span_pool, unit_pool;
  decay_t decay_dirty, decay_muzzy;
  uint64_t serial;
  uint64_t next_due;               /* when deferred work is next due: written under page_lock with
                                    * set_next_due, read without it by work_maybe_due (__atomic_*) */
  uint64_t told_due;               /* what the work hook was last told */
  bool hugify_enabled, born_huge;
  size_t dense_pages;              /* nactive at which a unit counts as dense */
  /* counters (pages unless noted) */
  size_t mapped_bytes, nunits, nactive, ndirty, nmuzzy, nhugified, nheld;
  uint64_t holes_given, holes_taken;
  uint64_t purged_lazy, purged_now, purge_passes, hugifies, dehugifies, collapses, collapse_failures, decommits;
  uint64_t opens;
  /* a heap's page source (tidal_heap_create); the default pager has none */
  bool sourced;
  tidal_page_source_t src;
  uint64_t src_maps, src_unmaps, src_purges, src_map_failures;
  pager_t *list_next, *list_prev;  /* the pager list (pager_list_lock) */
  uint32_t users;                  /* passes over it in progress (pager_list_lock) */
};

/* The default pager: the OS's memory, every thread heap's slabs and large runs. */
static pager_t page_default = { .lock = TD_MUTEX_INIT("page", RANK_PAGE) };
/* Pagers of heaps with page sources, for deferred work, purges and fork. */
static td_mutex_t pager_list_lock = TD_MUTEX_INIT("page_list", RANK_PAGE_LIST);
static pager_t *pager_list;
static void stats_fill(const pager_t *P, page_stats_t *out);

/* The background thread's hook, for every pager. */
static void (*work_hook)(uint64_t);

static void set_next_due(pager_t *P, uint64_t t) { __atomic_store_n(&P->next_due, t, __ATOMIC_RELAXED); }

/* Policies and clocks of a pager; the default one's from the options. */
static void pager_setup(pager_t *P) {
  P->span_pool.size = sizeof(span_t);
  uint64_t now = os_now_ns();
  decay_init(&P->decay_dirty, opt.dirty_decay_ms, now);
  decay_init(&P->decay_muzzy, opt.muzzy_decay_ms, now);
  P->next_due = P->told_due = TD_NEVER;
  P->hugify_enabled = opt.thp == THP_DEFAULT && os_system.thp == OS_THP_MADVISE;
  P->born_huge = os_system.thp != OS_THP_NEVER &&
                (opt.thp == THP_ALWAYS || (opt.thp == THP_DEFAULT && os_system.thp == OS_THP_ALWAYS));
  size_t dense = (size_t)((opt.hugify_threshold_milli * (int64_t)TD_UNIT_PAGES + 999) / 1000);
  /* Without MADV_COLLAPSE from the background thread, khugepaged does the
   * collapsing, and it skips units with more than max_ptes_none empty P-> */
  if (!opt.background_thread && os_system.max_ptes_none >= 0 && os_system.max_ptes_none < (int)TD_UNIT_PAGES)
    dense = TD_MAX(dense, TD_UNIT_PAGES - (size_t)os_system.max_ptes_none);
  P->dense_pages = TD_MAX(dense, 1);
}

void page_init(void) {
  pager_setup(&page_default);
  mutex_register(&page_default.lock);
  mutex_register(&pager_list_lock);
}

void page_set_work_hook(void (*hook)(uint64_t)) {
  pager_t *P = &page_default;
  mutex_lock(&P->lock);
  __atomic_store_n(&work_hook, hook, __ATOMIC_RELEASE);   /* work_maybe_due reads it without the lock */
  P->told_due = TD_NEVER;
  uint64_t due = P->next_due;
  mutex_unlock(&P->lock);
  mutex_lock(&pager_list_lock);
  for (pager_t *q = pager_list; q; q = q->list_next) {
    due = TD_MIN(due, __atomic_load_n(&q->next_due, __ATOMIC_RELAXED));
    q->told_due = TD_NEVER;
  }
  mutex_unlock(&pager_list_lock);
  if (hook && due != TD_NEVER) hook(due);
}

/* ---- bins: pairing heaps ordered by age ---------------------------------- */

static unit_t *ph_meld(unit_t *a, unit_t *b) {
  if (!a) return b;
  if (!b) return a;
  if (b->serial < a->serial) { unit_t *t = a; a = b; b = t; }
  b->ph_prev = a;
  b->ph_next = a->ph_child;
  if (a->ph_child) a->ph_child->ph_prev = b;
  a->ph_child = b;
  return a;
}

/* Two-pass merge of a sibling list. */
static unit_t *ph_merge_pairs(unit_t *first) {
  unit_t *pairs = NULL;
  while (first) {
    unit_t *a = first, *b = a->ph_next;
    first = b ? b->ph_next : NULL;
    a->ph_next = a->ph_prev = NULL;
    if (b) { b->ph_next = b->ph_prev = NULL; a = ph_meld(a, b); }
    a->ph_next = pairs;
    pairs = a;
  }
  unit_t *root = NULL;
  while (pairs) {
    unit_t *n = pairs;
    pairs = n->ph_next;
    n->ph_next = NULL;
    root = ph_meld(root, n);
  }
  return root;
}

static unit_t *ph_remove(unit_t *root, unit_t *n) {
  unit_t *rest = ph_merge_pairs(n->ph_child);
  if (n == root) {
    root = rest;
  } else {
    if (n->ph_prev->ph_child == n) n->ph_prev->ph_child = n->ph_next;
    else n->ph_prev->ph_next = n->ph_next;
    if (n->ph_next) n->ph_next->ph_prev = n->ph_prev;
    root = ph_meld(root, rest);
  }
  n->ph_child = n->ph_next = n->ph_prev = NULL;
  return root;
}

static void bin_insert(unit_t *u) {
  pager_t *P = u->pager;
  size_t b = u->lfr;
  u->bin = (uint16_t)b;
  u->ph_child = u->ph_next = u->ph_prev = NULL;
  P->bins[b] = ph_meld(P->bins[b], u);
  P->nonempty[b >> 6] |= 1ull << (b & 63);
}

static void bin_remove(unit_t *u) {
  pager_t *P = u->pager;
  size_t b = u->bin;
  if (b == UNIT_UNLISTED) return;
  P->bins[b] = ph_remove(P->bins[b], u);
  if (!P->bins[b]) P->nonempty[b >> 6] &= ~(1ull << (b & 63));
  u->bin = UNIT_UNLISTED;
}

/* First non-empty bin >= b, or NBINS. */
static size_t bin_first_from(const pager_t *P, size_t b) {
  while (b < NBINS) {
    size_t w = b >> 6;
    uint64_t word = P->nonempty[w] & (~0ull << (b & 63));
    if (word) return w * BITS_PER_WORD + (size_t)__builtin_ctzll(word);
    b = (w + 1) * BITS_PER_WORD;
  }
  return NBINS;
}

/* ---- unit bookkeeping ---------------------------------------------------- */

#define DLIST_PUSH(head, u, nx, pv) do { (u)->pv = NULL; (u)->nx = (head); if (head) (head)->pv = (u); (head) = (u); } while (0)
#define DLIST_REMOVE(head, u, nx, pv) do { \
    if ((u)->pv) (u)->pv->nx = (u)->nx; else (head) = (u)->nx; \
    if ((u)->nx) (u)->nx->pv = (u)->pv; \
    (u)->nx = (u)->pv = NULL; } while (0)

/* The hugify candidate test. A unit becomes a candidate when dense_pages of
 * its pages are active, and stays one through small dips, down to
 * (1 - 1/HUGIFY_HYSTERESIS_DIV) of that, so churn does not keep restarting
 * its delay. */
#define HUGIFY_HYSTERESIS_DIV 8
static bool unit_hugify_candidate(const unit_t *u) {
  const pager_t *P = u->pager;
  size_t need = u->on_dense_list ? P->dense_pages - P->dense_pages / HUGIFY_HYSTERESIS_DIV : P->dense_pages;
  return !u->hugified && u->nactive >= need;
}

/* The pages no new run may take: active ones and holes. */
static const bm512_t *unit_taken(const unit_t *u, bm512_t *tmp) {
  if (!u->nheld) return &u->active;
  for (size_t w = 0; w < BM_WORDS; w++) tmp->w[w] = u->active.w[w] | u->held.w[w];
  return tmp;
}

/* Invariant of a unit (page.h), O(words): the counters match the maps, the
 * maps are disjoint, the longest free range is current. */
static const char *unit_check(const unit_t *u) {
  if (bm_count(&u->active) != u->nactive || bm_count(&u->dirty) != u->ndirty || bm_count(&u->muzzy) != u->nmuzzy)
    return "unit: counters == popcount(maps)";
  for (size_t w = 0; w < BM_WORDS; w++)
    if ((u->active.w[w] & u->dirty.w[w]) | (u->active.w[w] & u->muzzy.w[w]) | (u->dirty.w[w] & u->muzzy.w[w]))
      return "unit: active, dirty and muzzy are disjoint";
  if ((size_t)u->nactive + u->ndirty + u->nmuzzy > TD_UNIT_PAGES) return "unit: active + dirty + muzzy <= pages";
  if (bm_count(&u->held) != u->nheld) return "unit: nheld == popcount(held)";
  for (size_t w = 0; w < BM_WORDS; w++)
    if (u->active.w[w] & u->held.w[w]) return "unit: held and active are disjoint";
  if (u->nheld && u->open_pages < TD_UNIT_PAGES && bm_next(&u->held, u->open_pages, true) < TD_UNIT_PAGES)
    return "unit: every held page < open_pages";
  bm512_t tmp;
  if (bm_longest_clear_run(unit_taken(u, &tmp)) != u->lfr) return "unit: lfr == longest free range";
  if (u->open_pages < TD_UNIT_PAGES && bm_next(&u->active, u->open_pages, true) < TD_UNIT_PAGES)
    return "unit: every active page < open_pages";
  return NULL;
}
#ifdef TIDAL_DEBUG
#define UNIT_DASSERT_CONSISTENT(u) do { \
    const char *why_ = unit_check(u); \
    if (why_) safety_assert_fail(__FILE__, __LINE__, why_); } while (0)
#else
#define UNIT_DASSERT_CONSISTENT(u) do { (void)(u); } while (0)
#endif

/* A unit's place in the bins: by longest free range, unless it is busy. */
static void unit_rebin(unit_t *u, uint16_t lfr) {
  if (!u->busy && (u->bin == UNIT_UNLISTED || lfr != u->lfr)) {
    bin_remove(u);
    u->lfr = lfr;
    bin_insert(u);
  }
  u->lfr = lfr;
}

static void unit_track_purgeable(unit_t *u) {
  pager_t *P = u->pager;
  bool purgeable = u->ndirty || u->nmuzzy;
  if (purgeable && !u->on_purge_list) { DLIST_PUSH(P->purge_list, u, purge_next, purge_prev); u->on_purge_list = 1; }
  if (!purgeable && u->on_purge_list) { DLIST_REMOVE(P->purge_list, u, purge_next, purge_prev); u->on_purge_list = 0; }
}

static void unit_track_dense(unit_t *u) {
  pager_t *P = u->pager;
  bool dense = unit_hugify_candidate(u);
  if (dense && !u->on_dense_list) {
    DLIST_PUSH(P->dense_list, u, dense_next, dense_prev);
    u->on_dense_list = 1;
    u->dense_since_ns = os_now_ns();
    uint64_t due = u->dense_since_ns + (uint64_t)opt.hugify_delay_ms * 1000000u;
    if (due < P->next_due) set_next_due(P, due);
  } else if (!dense && u->on_dense_list) {
    DLIST_REMOVE(P->dense_list, u, dense_next, dense_prev);
    u->on_dense_list = 0;
    u->dense_since_ns = 0;
  }
}

/* After u's page states changed: bins, purge list, density. */
static void unit_update(unit_t *u) {
  pager_t *P = u->pager;
  mutex_assert_held(&P->lock);
  bm512_t tmp;
  unit_rebin(u, (uint16_t)bm_longest_clear_run(unit_taken(u, &tmp)));
  unit_track_purgeable(u);
  if (P->hugify_enabled) unit_track_dense(u);
  UNIT_DASSERT_CONSISTENT(u);
}

/* A fresh unit of a sourced pager: its own 2 MiB from the source's map,
 * called without the pager's lock (held on entry and exit). */
static unit_t *unit_fresh_sourced(pager_t *P) {
  unit_t *u = meta_pool_get(&P->unit_pool);
  if (!u) return NULL;
  mutex_unlock(&P->lock);
  void *base = P->src.map(P->src.ctx, TD_UNIT, TD_UNIT);
  bool ok = base && ((uintptr_t)base & (TD_UNIT - 1)) == 0 && pagemap_reserve((uintptr_t)base, TD_UNIT);
  if (base && !ok && P->src.unmap) P->src.unmap(P->src.ctx, base, TD_UNIT);   /* misaligned, or no pagemap leaf */
  mutex_lock(&P->lock);
  P->src_maps++;
  if (!ok) {
    P->src_map_failures++;
    meta_pool_put(&P->unit_pool, u);
    return NULL;
  }
  u->base = (uintptr_t)base;
  u->open_pages = (uint16_t)TD_UNIT_PAGES;
  P->mapped_bytes += TD_UNIT;
  return u;
}

/* The default pager's arena (under its lock). */
static uintptr_t arena_base, arena_next, arena_end;
static bool arena_tried;

static void arena_open(void) {
  arena_tried = true;
  size_t limit = os_address_limit();
  for (size_t size = ARENA_MAX; size >= ARENA_MIN; size >>= 1) {
    if (limit / ARENA_LIMIT_RATIO < size) continue;
    void *base = os_reserve_aligned(size, size, opt.guard_unused);
    if (!base) continue;
    if (!pagemap_window_open((uintptr_t)base, size)) {
      os_unmap(base, size);
      return;
    }
    arena_base = arena_next = (uintptr_t)base;
    arena_end = arena_base + size;
    return;
  }
}

/* Address space for a region of the default pager: REGION_MAX from the
 * arena while it lasts, then from the OS (halved while it refuses, down to
 * one unit more than the guards). NULL when nothing is left. */
static void *region_reserve(size_t *size, size_t guards) {
  if (!arena_tried) arena_open();
  if (arena_end - arena_next >= REGION_MAX) {
    *size = REGION_MAX;
    arena_next += REGION_MAX;
    return (void *)(arena_next - REGION_MAX);
  }
  for (*size = REGION_MAX; *size >= TD_UNIT * (guards + 1); *size >>= 1) {
    void *base = os_reserve_aligned(*size, TD_UNIT, opt.guard_unused);
    if (base) return base;
  }
  return NULL;
}

/* A region region_reserve gave that could not be used: back where it came from. */
static void region_unreserve(void *base, size_t size) {
  if ((uintptr_t)base >= arena_base && (uintptr_t)base < arena_end) {
    TD_DASSERT((uintptr_t)base + size == arena_next);
    arena_next -= size;
  } else {
    os_unmap(base, size);
  }
}

static unit_t *unit_fresh(pager_t *P) {
  if (P->sourced) {
    unit_t *u = unit_fresh_sourced(P);
    if (!u) return NULL;
    u->pager = P;
    P->nunits++;
    u->serial = ++P->serial;
    u->bin = UNIT_UNLISTED;
    u->all_next = P->all_units;
    P->all_units = u;
    return u;
  }
  if (P->region_next == P->region_nunits) {
    size_t size, guards = opt.guard_unused ? GUARD_UNITS : 0;
    void *base = region_reserve(&size, guards);
    if (!base) return NULL;
    size_t n = size / TD_UNIT;
    unit_t *units = meta_alloc(n * sizeof(unit_t), TD_CACHELINE);
    if (!units || !pagemap_reserve((uintptr_t)base, size)) {
      region_unreserve(base, size);
      return NULL;
    }
    os_name(base, size, "tidalloc");
    if (os_system.thp != OS_THP_NEVER) {
      if (opt.thp == THP_ALWAYS) os_hugify(base, size, OS_HUGE_ON);
      else if (opt.thp == THP_NEVER) os_hugify(base, size, OS_HUGE_OFF);
    }
    P->region_units = units;
    P->region_base = (uintptr_t)base;
    P->region_nunits = n;
    P->region_next = guards;   /* the guard units stay reserved, never carved */
    P->mapped_bytes += size;
  }
  unit_t *u = &P->region_units[P->region_next];
  u->pager = P;
  u->base = P->region_base + P->region_next * TD_UNIT;
  u->open_pages = opt.guard_unused || os_system.overcommit_strict ? 0 : (uint16_t)TD_UNIT_PAGES;
  P->region_next++;
  P->nunits++;
  u->serial = ++P->serial;
  u->bin = UNIT_UNLISTED;
  u->hugified = P->born_huge;
  P->nhugified += u->hugified;
  u->all_next = P->all_units;
  P->all_units = u;
  return u;
}

/* ---- runs ---------------------------------------------------------------- */

static void work_maybe_due(pager_t *P);

/* Pages [idx, idx+n) of u become active. Returns how many were dirty or
 * muzzy (0: they read as zero). */
static size_t pages_activate(unit_t *u, size_t idx, size_t n) {
  pager_t *P = u->pager;
  mutex_assert_held(&P->lock);
  size_t was_dirty = bm_count_range(&u->dirty, idx, n);
  size_t was_muzzy = bm_count_range(&u->muzzy, idx, n);
  TD_DASSERT(bm_count_range(&u->active, idx, n) == 0);
  bm_set_range(&u->active, idx, n);
  bm_clear_range(&u->dirty, idx, n);
  bm_clear_range(&u->muzzy, idx, n);
  u->nactive = (uint16_t)(u->nactive + n);
  u->ndirty = (uint16_t)(u->ndirty - was_dirty);
  u->nmuzzy = (uint16_t)(u->nmuzzy - was_muzzy);
  P->nactive += n;
  P->ndirty -= was_dirty;
  P->nmuzzy -= was_muzzy;
  unit_update(u);
  return was_dirty + was_muzzy;
}

/* Make pages [0, end) of u accessible, for a run of npages ending there: in
 * OPEN_STEP_PAGES steps (exactly to the end for a run of OPEN_EXACT_PAGES or
 * more), or the whole unit when it is committed per unit (strict
 * overcommit) or is, or is born, backed by a huge page (a huge page needs
 * the whole 2 MiB open). */
static bool unit_open(unit_t *u, size_t end, size_t npages) {
  pager_t *P = u->pager;
  mutex_assert_held(&P->lock);
  if (TD_LIKELY(end <= u->open_pages)) return true;
  size_t to = npages >= OPEN_EXACT_PAGES ? end : (size_t)td_align_up(end, OPEN_STEP_PAGES);
  to = td_align_up(to, os_page() >> TD_PAGE_SHIFT);   /* mprotect works on whole OS pages */
  if (os_system.overcommit_strict || u->hugified || to > TD_UNIT_PAGES) to = TD_UNIT_PAGES;
  size_t from = u->open_pages;
  if (!os_commit((void *)(u->base + from * TD_PAGE), (to - from) * TD_PAGE, true)) return false;
  u->open_pages = (uint16_t)to;
  P->opens++;
  return true;
}

static span_t *run_take(unit_t *u, size_t idx, size_t npages) {
  pager_t *P = u->pager;
  span_t *s = meta_pool_get(&P->span_pool);
  if (!s) return NULL;
  if (!unit_open(u, idx + npages, npages)) { meta_pool_put(&P->span_pool, s); return NULL; }
  size_t was_used = pages_activate(u, idx, npages);
  s->base = u->base + idx * TD_PAGE;
  s->bytes = npages * TD_PAGE;
  s->unit = u;
  s->page_index = (uint32_t)idx;
  s->zeroed = was_used == 0 && os_system.purge_zeroes && !P->sourced;   /* a source promises no zeroes */
  return s;
}

span_t *page_alloc(size_t npages, size_t align_pages) { return page_alloc_in(&page_default, npages, align_pages); }

span_t *page_alloc_in(pager_t *P, size_t npages, size_t align_pages) {
  if (!P) P = &page_default;
  TD_DASSERT(npages >= 1 && npages <= TD_UNIT_PAGES && td_is_pow2(align_pages));
  mutex_lock(&P->lock);
  span_t *s = NULL;
  for (size_t b = bin_first_from(P, npages); b < NBINS; b = bin_first_from(P, b + 1)) {
    unit_t *u = P->bins[b];   /* the oldest unit of the tightest bin that fits */
    bm512_t tmp;
    size_t idx = bm_find_clear_run(unit_taken(u, &tmp), npages, align_pages);
    if (idx < TD_UNIT_PAGES) { s = run_take(u, idx, npages); goto done; }
    /* only an aligned request can miss; try a looser bin */
  }
  unit_t *u = unit_fresh(P);
  if (u && !(s = run_take(u, 0, npages))) unit_update(u);   /* refused (opening it, a descriptor): binned, empty, for later */
done:;
  /* A unit that just became dense brings hugify work forward. */
  bool due = P->next_due < P->told_due;
  mutex_unlock(&P->lock);
  if (TD_UNLIKELY(due)) work_maybe_due(P);
  return s;
}

/* The dirty ceiling: dirty_mult x active, never below DIRTY_FLOOR_PAGES.
 * The run cache's pages count as dirty, not active: what is left of the
 * ceiling for the free pages is the ceiling less them. */
static size_t (*cached_pages)(void);   /* the run cache's count (default pager) */

static size_t dirty_ceiling(const pager_t *P) {
  size_t (*fn)(void) = __atomic_load_n(&cached_pages, __ATOMIC_ACQUIRE);
  size_t cached = P == &page_default && fn ? TD_MIN(fn(), P->nactive) : 0;
  size_t active = P->nactive > cached ? P->nactive - cached : 0;
  size_t c = TD_MAX(DIRTY_FLOOR_PAGES, (size_t)((uint64_t)active * (uint64_t)opt.dirty_mult_milli / 1000u));
  return c > cached ? c - cached : 0;
}

bool page_of_default(const span_t *s) { return s->unit->pager == &page_default; }

size_t page_dirty_ceiling(void) {
  mutex_lock(&page_default.lock);
  size_t c = dirty_ceiling(&page_default);
  mutex_unlock(&page_default.lock);
  return c;
}

void page_set_cached_source(size_t (*pages)(void)) { __atomic_store_n(&cached_pages, pages, __ATOMIC_RELEASE); }

/* After pages became dirty: decay has something to look at, and the
 * ceiling may be crossed. Returns true when deferred work may be due. */
static bool dirty_grew(pager_t *P) {
  if (P->next_due == TD_NEVER) set_next_due(P, 0);
  if (P->ndirty > dirty_ceiling(P)) set_next_due(P, 0);
  return P->next_due < P->told_due;
}

/* Pages [idx, idx+n) of u, a run, become free: its active pages dirty, its
 * holes (already free for purging) simply free. Returns true when deferred
 * work may have become due. */
static bool run_release(unit_t *u, size_t idx, size_t n) {
  pager_t *P = u->pager;
  mutex_assert_held(&P->lock);
  size_t held = u->nheld ? bm_count_range(&u->held, idx, n) : 0;
  TD_DASSERT(bm_count_range(&u->active, idx, n) == n - held);
  if (held) {
    for (size_t w = idx >> 6; w < BM_WORDS && w * 64 < idx + n; w++) {
      uint64_t m = u->active.w[w] & bm_word_mask(w, idx, idx + n);
      u->dirty.w[w] |= m;
      u->active.w[w] &= ~m;
      u->held.w[w] &= ~bm_word_mask(w, idx, idx + n);
    }
    u->nheld = (uint16_t)(u->nheld - held);
    P->nheld -= held;
  } else {
    bm_clear_range(&u->active, idx, n);
    bm_set_range(&u->dirty, idx, n);
  }
  u->nactive = (uint16_t)(u->nactive - (n - held));
  u->ndirty = (uint16_t)(u->ndirty + (n - held));
  P->nactive -= n - held;
  P->ndirty += n - held;
  unit_update(u);
  return dirty_grew(P);
}

/* Without locks: tell the background thread, or do the work inline. */
static void work_maybe_due(pager_t *P) {
  void (*hook)(uint64_t) = __atomic_load_n(&work_hook, __ATOMIC_ACQUIRE);
  if (hook) {
    mutex_lock(&P->lock);
    uint64_t due = P->next_due;
    bool tell = due < P->told_due;
    if (tell) P->told_due = due;
    mutex_unlock(&P->lock);
    if (tell) hook(due);
    return;
  }
  uint64_t now = os_now_ns();
  if (now >= __atomic_load_n(&P->next_due, __ATOMIC_RELAXED)) page_deferred_work(now, false);
}

void page_free(span_t *s) {
  pager_t *P = s->unit->pager;
  mutex_lock(&P->lock);
  bool due = run_release(s->unit, s->page_index, s->bytes >> TD_PAGE_SHIFT);
  meta_pool_put(&P->span_pool, s);
  if (!work_hook) due = true;   /* inline mode: compare with the clock */
  mutex_unlock(&P->lock);
  if (due) work_maybe_due(P);
}

bool page_grow(span_t *s, size_t new_npages) {
  unit_t *u = s->unit;
  pager_t *P = u->pager;
  size_t old = s->bytes >> TD_PAGE_SHIFT, end = s->page_index + new_npages;
  if (end > TD_UNIT_PAGES) return false;
  bool ok = false;
  mutex_lock(&P->lock);
  size_t from = s->page_index + old, add = new_npages - old;
  /* A busy unit's free pages are being purged right now: never take them. */
  if (!u->busy && bm_count_range(&u->active, from, add) == 0 && bm_count_range(&u->held, from, add) == 0 &&
      unit_open(u, end, new_npages)) {
    pages_activate(u, from, add);
    s->bytes = new_npages * TD_PAGE;
    ok = true;
  }
  mutex_unlock(&P->lock);
  return ok;
}

void page_shrink(span_t *s, size_t new_npages) {
  size_t old = s->bytes >> TD_PAGE_SHIFT;
  if (new_npages >= old) return;
  pager_t *P = s->unit->pager;
  mutex_lock(&P->lock);
  bool due = run_release(s->unit, s->page_index + new_npages, old - new_npages);
  s->bytes = new_npages * TD_PAGE;
  if (!work_hook) due = true;
  mutex_unlock(&P->lock);
  if (due) work_maybe_due(P);
}

span_t *page_span_get(void) { return page_span_get_in(&page_default); }
void page_span_put(span_t *s) { page_span_put_in(&page_default, s); }

span_t *page_span_get_in(pager_t *P) {
  mutex_lock(&P->lock);
  span_t *s = meta_pool_get(&P->span_pool);
  mutex_unlock(&P->lock);
  return s;
}

void page_span_put_in(pager_t *P, span_t *s) {
  mutex_lock(&P->lock);
  meta_pool_put(&P->span_pool, s);
  mutex_unlock(&P->lock);
}

/* ---- holes ------------------------------------------------------------------ */

bool page_hole_allowed(const span_t *s, bool force) {
  pager_t *P = s->unit->pager;
  mutex_lock(&P->lock);
  bool ok = force || !s->unit->hugified;
  mutex_unlock(&P->lock);
  return ok;
}

/* Whether page i of a slab is in a hole map. */
static bool hole_page(const uint64_t *map, size_t i) { return (map[i >> 6] >> (i & 63)) & 1; }

bool page_hole_give(span_t *s, const uint64_t pages_[SPAN_HOLE_WORDS]) {
  unit_t *u = s->unit;
  pager_t *P = u->pager;
  size_t n = 0;
  mutex_lock(&P->lock);
  for (size_t i = 0, idx = s->page_index; i < SPAN_HOLE_MAX_PAGES; i++, idx++) {
    if (!hole_page(pages_, i)) continue;
    TD_DASSERT(bm_get(&u->active, idx) && !bm_get(&u->held, idx));
    bm_clear_range(&u->active, idx, 1);
    bm_set_range(&u->held, idx, 1);
    bm_set_range(&u->dirty, idx, 1);
    n++;
  }
  u->nactive = (uint16_t)(u->nactive - n);
  u->ndirty = (uint16_t)(u->ndirty + n);
  u->nheld = (uint16_t)(u->nheld + n);
  P->nactive -= n;
  P->ndirty += n;
  P->nheld += n;
  P->holes_given += n;
  unit_update(u);
  bool due = dirty_grew(P) || !work_hook;   /* inline mode: compare with the clock */
  mutex_unlock(&P->lock);
  return due;
}

void page_work_kick(pager_t *P) { work_maybe_due(P ? P : &page_default); }

bool page_hole_take(span_t *s, const uint64_t pages_[SPAN_HOLE_WORDS]) {
  unit_t *u = s->unit;
  pager_t *P = u->pager;
  size_t n = 0, dirty = 0, muzzy = 0;
  mutex_lock(&P->lock);
  /* A busy unit's free pages are being purged right now: never take them. */
  bool ok = !u->busy;
  for (size_t i = 0, idx = s->page_index; ok && i < SPAN_HOLE_MAX_PAGES; i++, idx++) {
    if (!hole_page(pages_, i)) continue;
    TD_DASSERT(bm_get(&u->held, idx) && !bm_get(&u->active, idx));
    dirty += bm_get(&u->dirty, idx);
    muzzy += bm_get(&u->muzzy, idx);
    bm_clear_range(&u->held, idx, 1);
    bm_clear_range(&u->dirty, idx, 1);
    bm_clear_range(&u->muzzy, idx, 1);
    bm_set_range(&u->active, idx, 1);
    n++;
  }
  u->nactive = (uint16_t)(u->nactive + n);
  u->ndirty = (uint16_t)(u->ndirty - dirty);
  u->nmuzzy = (uint16_t)(u->nmuzzy - muzzy);
  u->nheld = (uint16_t)(u->nheld - n);
  P->nactive += n;
  P->ndirty -= dirty;
  P->nmuzzy -= muzzy;
  P->nheld -= n;
  P->holes_taken += n;
  if (ok) unit_update(u);
  mutex_unlock(&P->lock);
  return ok;
}

/* ---- purging -------------------------------------------------------------- */

enum stage { STAGE_DIRTY, STAGE_MUZZY };

static size_t stage_pages(const unit_t *u, enum stage st) { return st == STAGE_DIRTY ? u->ndirty : u->nmuzzy; }

/* The purge order: non-hugified units before hugified ones (a hugified unit
 * loses its huge page), then the emptiest (it may empty out whole), then
 * the one with most to purge. */
static bool purge_before(const unit_t *a, const unit_t *b, enum stage st) {
  if (a->hugified != b->hugified) return !a->hugified;
  if (a->nactive != b->nactive) return a->nactive < b->nactive;
  return stage_pages(a, st) > stage_pages(b, st);
}

/* What a purge of u's stage st may take: the free pages of every OS page
 * (os_page() / TD_PAGE pages here) that holds a page of the stage and no
 * active page. The kernel purges whole OS pages, so
 *   a page is muzzy or purged  =>  its whole OS page was free when purged
 * and purged pages read as zero (page_alloc's `zeroed`, calloc) whatever the
 * OS page size. Free pages sharing an OS page with an active one wait. */
static size_t purge_select(const unit_t *u, enum stage st, bm512_t *sel) {
  const bm512_t *from = st == STAGE_DIRTY ? &u->dirty : &u->muzzy;
  size_t g = os_page() >> TD_PAGE_SHIFT;
  if (g == 1) *sel = *from;
  else bm_select_groups(sel, &u->active, from, g);
  size_t n = 0;
  for (size_t w = 0; w < BM_WORDS; w++) n += (size_t)__builtin_popcountll(sel->w[w] & from->w[w]);
  return n;
}

/* How a purge pass ended. */
enum purge_end {
  PURGE_DONE,     /* down to what was asked */
  PURGE_PINNED,   /* what is left shares OS pages with active pages: nothing to do until a run is freed */
  PURGE_AGAIN,    /* units were busy, or the kernel refused: try again later */
};

/* The unit to purge next for a stage; when there is none, *why says
 * whether that may change by itself (busy units) or only when runs are freed. */
static unit_t *purge_pick(pager_t *P, enum stage st, enum purge_end *why) {
  mutex_assert_held(&P->lock);
  unit_t *best = NULL;
  bool whole = os_page() == TD_PAGE;
  bm512_t sel;
  *why = PURGE_PINNED;
  for (unit_t *u = P->purge_list; u; u = u->purge_next) {
    if (!stage_pages(u, st)) continue;
    if (u->busy || u->collapsing) { *why = PURGE_AGAIN; continue; }
    if (!whole && purge_select(u, st, &sel) == 0) continue;   /* every OS page has an active page */
    if (!best || purge_before(u, best, st)) best = u;
  }
  return best;
}

/* One madvise per free range of sel (whole OS pages); a range the kernel
 * refuses leaves sel, so its pages keep their state. */
static void purge_ranges(const unit_t *u, bm512_t *sel, os_purge_t how) {
  pager_t *P = u->pager;
  for (size_t i = 0; i < TD_UNIT_PAGES;) {
    size_t f = bm_next(sel, i, true);
    if (f >= TD_UNIT_PAGES) break;
    size_t e = bm_next(sel, f, false);
    void *a = (void *)(u->base + f * TD_PAGE);
    size_t len = (e - f) * TD_PAGE;
    bool ok;
    if (P->sourced) {
      ok = P->src.purge(P->src.ctx, a, len, how == OS_PURGE_LAZY) == 0;
      __atomic_fetch_add(&P->src_purges, 1, __ATOMIC_RELAXED);
    } else {
      ok = os_purge(a, len, how);
    }
    if (!ok) bm_clear_range(sel, f, e - f);
    i = e;
  }
}

/* The free pages of sel were purged: dirty ones become muzzy (lazy purge),
 * or all become purged. Returns how many left stage st. */
static size_t pages_purged(unit_t *u, const bm512_t *sel, enum stage st, os_purge_t how) {
  pager_t *P = u->pager;
  size_t nd = 0, nm = 0;
  for (size_t w = 0; w < BM_WORDS; w++) {
    uint64_t d = u->dirty.w[w] & sel->w[w], m = u->muzzy.w[w] & sel->w[w];
    nd += (size_t)__builtin_popcountll(d);
    nm += (size_t)__builtin_popcountll(m);
    u->dirty.w[w] &= ~d;
    if (how == OS_PURGE_LAZY) u->muzzy.w[w] |= d;
    else u->muzzy.w[w] &= ~m;
  }
  u->ndirty = (uint16_t)(u->ndirty - nd);
  P->ndirty -= nd;
  if (how == OS_PURGE_LAZY) {
    u->nmuzzy = (uint16_t)(u->nmuzzy + nd);
    P->nmuzzy += nd;
    P->purged_lazy += nd;
    return st == STAGE_DIRTY ? nd : 0;
  }
  u->nmuzzy = (uint16_t)(u->nmuzzy - nm);
  P->nmuzzy -= nm;
  P->purged_now += nd + nm;
  return st == STAGE_DIRTY ? nd : nm;
}

/* Purge one unit's pages of a stage, outside the lock (held on entry and
 * exit). Returns how many pages left the stage (0: the kernel refused). */
static size_t purge_unit(unit_t *u, enum stage st, os_purge_t how) {
  pager_t *P = u->pager;
  mutex_assert_held(&P->lock);
  bm512_t sel;
  purge_select(u, st, &sel);
  bool was_huge = u->hugified;
  bin_remove(u);
  u->busy = 1;
  if (was_huge) { u->hugified = 0; P->nhugified--; P->dehugifies++; }
  mutex_unlock(&P->lock);
  if (was_huge) os_hugify((void *)u->base, TD_UNIT, OS_HUGE_OFF);
  purge_ranges(u, &sel, how);
  mutex_lock(&P->lock);
  /* No run can have taken these pages: the unit was out of the bins and
   * page_grow refuses busy units. Pages freed meanwhile are not in sel: they
   * were active when it was taken. */
  size_t n = pages_purged(u, &sel, st, how);
  u->busy = 0;
  if (!P->sourced && os_system.overcommit_strict && u->nactive == 0 && u->ndirty == 0 && u->nmuzzy == 0 && u->nheld == 0 && u->open_pages) {
    if (os_commit((void *)u->base, TD_UNIT, false)) { u->open_pages = 0; P->decommits++; }
  }
  unit_update(u);
  return n;
}

/* Purge until at most `keep` pages of the stage remain. */
static enum purge_end purge_down_to(pager_t *P, enum stage st, size_t keep, os_purge_t how) {
  mutex_assert_held(&P->lock);
  for (;;) {
    size_t have = st == STAGE_DIRTY ? P->ndirty : P->nmuzzy;
    if (have <= keep) return PURGE_DONE;
    enum purge_end why;
    unit_t *u = purge_pick(P, st, &why);
    if (!u) return why;
    P->purge_passes++;
    if (purge_unit(u, st, how) == 0) return PURGE_AGAIN;   /* the kernel refused */
  }
}

static os_purge_t dirty_purge_kind(void) {
  return opt.muzzy_decay_ms != 0 && os_system.lazy_free ? OS_PURGE_LAZY : OS_PURGE_NOW;
}

/* Purge what decay (and, for dirty pages, the ceiling) says is due; returns
 * when decay wants to look again (a decay deadline, or never while only
 * pinned pages are left, or a retry after PURGE_RETRY_NS). */
static uint64_t purge_due(pager_t *P, uint64_t now) {
  if (P->sourced && !P->src.purge) return TD_NEVER;   /* a source that never purges: pages stay */
  enum purge_end dirty = PURGE_DONE, muzzy = PURGE_DONE;
  size_t limit = TD_MIN(decay_limit(&P->decay_dirty, now, P->ndirty), dirty_ceiling(P));
  if (P->ndirty > limit) {
    dirty = purge_down_to(P, STAGE_DIRTY, limit, dirty_purge_kind());
    decay_purged(&P->decay_dirty, P->ndirty);
  }
  size_t mlimit = decay_limit(&P->decay_muzzy, now, P->nmuzzy);
  if (P->nmuzzy > mlimit) {
    muzzy = purge_down_to(P, STAGE_MUZZY, mlimit, OS_PURGE_NOW);
    decay_purged(&P->decay_muzzy, P->nmuzzy);
  }
  /* Pinned pages wait for a run to be freed (run_release brings the work
   * forward); refused or busy ones are retried, never in a loop. */
  uint64_t next = TD_MIN(dirty == PURGE_PINNED ? TD_NEVER : decay_deadline(&P->decay_dirty, P->ndirty),
                         muzzy == PURGE_PINNED ? TD_NEVER : decay_deadline(&P->decay_muzzy, P->nmuzzy));
  if ((dirty == PURGE_AGAIN || muzzy == PURGE_AGAIN) && next <= now) next = now + PURGE_RETRY_NS;
  return next;
}

/* False when the unit could not be opened whole (it is then listed again
 * as a candidate at its next change). */
static bool unit_hugify(unit_t *u) {
  pager_t *P = u->pager;
  DLIST_REMOVE(P->dense_list, u, dense_next, dense_prev);
  u->on_dense_list = 0;
  if (!unit_open(u, TD_UNIT_PAGES, TD_UNIT_PAGES)) return false;
  os_hugify((void *)u->base, TD_UNIT, OS_HUGE_ON);
  u->hugified = 1;
  P->nhugified++;
  P->hugifies++;
  return true;
}

/* Hugify the candidates that stayed dense for hugify_delay_ms; with
 * may_collapse, up to COLLAPSE_PER_PASS of them go to *collapse (marked
 * collapsing) for MADV_COLLAPSE outside the lock. Returns when the next
 * candidate is due. */
static uint64_t hugify_due(pager_t *P, uint64_t now, bool may_collapse, unit_t **collapse, size_t *ncollapse) {
  uint64_t delay = (uint64_t)opt.hugify_delay_ms * 1000000u, next = TD_NEVER;
  for (unit_t *u = P->dense_list, *nx; u; u = nx) {
    nx = u->dense_next;
    if (u->busy) continue;
    uint64_t due = u->dense_since_ns + delay;
    if (now < due) { next = TD_MIN(next, due); continue; }
    if (may_collapse && *ncollapse == COLLAPSE_PER_PASS) return now;   /* more: the next pass comes at once */
    if (unit_hugify(u) && may_collapse) { collapse[(*ncollapse)++] = u; u->collapsing = 1; }
  }
  return next;
}

/* MADV_COLLAPSE of the units hugify_due picked, without the lock. */
static void collapse_pending(pager_t *P, unit_t **collapse, size_t n) {
  for (size_t i = 0; i < n; i++) {
    bool ok = os_hugify((void *)collapse[i]->base, TD_UNIT, OS_HUGE_COLLAPSE);
    mutex_lock(&P->lock);
    if (ok) P->collapses++; else P->collapse_failures++;
    collapse[i]->collapsing = 0;
    mutex_unlock(&P->lock);
  }
}

/* One pass of a pager's deferred work. */
static uint64_t pager_work(pager_t *P, uint64_t now, bool may_collapse) {
  unit_t *collapse[COLLAPSE_PER_PASS];
  size_t ncollapse = 0;
  mutex_lock(&P->lock);
  uint64_t decay_next = purge_due(P, now);
  uint64_t next = TD_MIN(hugify_due(P, now, may_collapse, collapse, &ncollapse), decay_next);
  set_next_due(P, next);
  P->told_due = next;
  mutex_unlock(&P->lock);
  collapse_pending(P, collapse, ncollapse);
  return next;
}

/* Every sourced pager in turn, without the list lock while fn runs (a
 * source's hooks may allocate): each is pinned (users) so that
 * pager_destroy waits for the pass to leave it. */
static void pagers_each(void (*fn)(pager_t *P, void *arg), void *arg) {
  mutex_lock(&pager_list_lock);
  for (pager_t *P = pager_list; P;) {
    P->users++;
    mutex_unlock(&pager_list_lock);
    fn(P, arg);
    mutex_lock(&pager_list_lock);
    pager_t *next = P->list_next;
    P->users--;
    P = next;
  }
  mutex_unlock(&pager_list_lock);
}

typedef struct { uint64_t now, next; size_t purged; } pass_t;

static void pass_work(pager_t *P, void *arg) {
  pass_t *w = arg;
  w->next = TD_MIN(w->next, pager_work(P, w->now, false));
}

uint64_t page_deferred_work(uint64_t now, bool may_collapse) {
  pass_t w = { .now = now, .next = pager_work(&page_default, now, may_collapse) };
  if (__atomic_load_n(&pager_list, __ATOMIC_RELAXED)) pagers_each(pass_work, &w);
  return w.next;
}

static size_t pager_purge_all(pager_t *P) {
  if (P->sourced && !P->src.purge) return 0;
  mutex_lock(&P->lock);
  uint64_t before = P->purged_now;
  purge_down_to(P, STAGE_DIRTY, 0, OS_PURGE_NOW);
  purge_down_to(P, STAGE_MUZZY, 0, OS_PURGE_NOW);
  decay_purged(&P->decay_dirty, P->ndirty);
  decay_purged(&P->decay_muzzy, P->nmuzzy);
  size_t total = (size_t)(P->purged_now - before) * TD_PAGE;
  mutex_unlock(&P->lock);
  return total;
}

static void pass_purge(pager_t *P, void *arg) { ((pass_t *)arg)->purged += pager_purge_all(P); }

size_t page_purge_all(void) {
  pass_t w = { .purged = pager_purge_all(&page_default) };
  if (__atomic_load_n(&pager_list, __ATOMIC_RELAXED)) pagers_each(pass_purge, &w);
  return w.purged;
}

/* ---- pagers of heaps with page sources --------------------------------------- */

static void *spare_refill(void *arg, size_t size) { (void)arg; return meta_spare_get(size); }

pager_t *pager_create(const tidal_page_source_t *src, void *(*meta)(void *arg, size_t size), void *meta_arg) {
  pager_t *P = meta ? meta(meta_arg, sizeof(pager_t)) : meta_spare_get(sizeof(pager_t));
  if (!P) return NULL;
  P->lock = (td_mutex_t)TD_MUTEX_INIT("page_source", RANK_PAGE);
  pager_setup(P);
  P->sourced = true;
  P->src = *src;
  P->hugify_enabled = P->born_huge = false;   /* the source's memory: no THP advice of ours */
  P->unit_pool.size = sizeof(unit_t);
  P->span_pool.refill = P->unit_pool.refill = meta ? meta : spare_refill;
  P->span_pool.arg = P->unit_pool.arg = meta_arg;
  mutex_lock(&pager_list_lock);
  DLIST_PUSH(pager_list, P, list_next, list_prev);
  mutex_unlock(&pager_list_lock);
  return P;
}

/* Every run of P is free (the heap freed them): the units go back to the
 * source, their descriptors and P's spans to the spares (or with the
 * source's metadata, nowhere: the caller unmaps it). */
void pager_destroy(pager_t *P) {
  mutex_lock(&pager_list_lock);
  DLIST_REMOVE(pager_list, P, list_next, list_prev);
  while (P->users) {   /* a pass over the list is working on it */
    mutex_unlock(&pager_list_lock);
    uint32_t never = 0;
    os_futex_wait_timeout(&never, 0, 100000);   /* 0.1 ms, not a cancellation point */
    mutex_lock(&pager_list_lock);
  }
  mutex_unlock(&pager_list_lock);
  bool own_meta = P->span_pool.refill != spare_refill;
  for (unit_t *u = P->all_units, *nx; u; u = nx) {
    nx = u->all_next;
    TD_CHECK(u->nactive == 0 && u->nheld == 0 && !u->busy, "pager_destroy: a run is live", (void *)u->base, "tidal_heap_destroy");
    pagemap_set(u->base, TD_UNIT_PAGES, NULL);
    if (P->src.unmap) {
      P->src.unmap(P->src.ctx, (void *)u->base, TD_UNIT);
      P->src_unmaps++;
    }
    if (!own_meta) meta_spare_put(u, sizeof(unit_t));
  }
  if (own_meta) return;
  meta_pool_spill(&P->span_pool);
  meta_pool_spill(&P->unit_pool);
  meta_spare_put(P, sizeof(pager_t));
}

/* The runs of P (slabs, large blocks) by their descriptors: fn(span, arg)
 * for each, found through the pagemap at the active and held pages of each
 * unit. The caller keeps runs from being carved or freed meanwhile (the
 * heap's lock); fn may free the run. */
void pager_each_run(pager_t *P, void (*fn)(span_t *s, void *arg), void *arg) {
  mutex_lock(&P->lock);
  unit_t *units = P->all_units;
  mutex_unlock(&P->lock);
  for (unit_t *u = units; u; u = u->all_next) {   /* new units go to the front: this list is stable */
    bm512_t taken;
    mutex_lock(&P->lock);
    for (size_t w = 0; w < BM_WORDS; w++) taken.w[w] = u->active.w[w] | u->held.w[w];
    mutex_unlock(&P->lock);
    for (size_t i = bm_next(&taken, 0, true); i < TD_UNIT_PAGES; i = bm_next(&taken, i, true)) {
      uintptr_t a = u->base + i * TD_PAGE;
      span_t *s = pagemap_lookup((void *)a);
      size_t n = 1;
      if (s && s->base == a && (s->kind == SPAN_SLAB || s->kind == SPAN_LARGE)) {
        n = s->bytes >> TD_PAGE_SHIFT;
        fn(s, arg);
      }
      if (i + n >= TD_UNIT_PAGES) break;
      i += n;
    }
  }
}

void pager_stats(pager_t *P, pager_stats_t *out) {
  mutex_lock(&P->lock);
  stats_fill(P, &out->pages);
  out->maps = P->src_maps;
  out->map_failures = P->src_map_failures;
  out->unmaps = P->src_unmaps;
  out->purges = __atomic_load_n(&P->src_purges, __ATOMIC_RELAXED);
  mutex_unlock(&P->lock);
}

/* ---- statistics and validation ---------------------------------------------- */


void page_stats_get(page_stats_t *out) {
  pager_t *P = &page_default;
  mutex_lock(&P->lock);
  stats_fill(P, out);
  mutex_unlock(&P->lock);
}

void page_stats_locked(page_stats_t *out, void (*fn)(void *), void *arg) {
  pager_t *P = &page_default;
  mutex_lock(&P->lock);
  stats_fill(P, out);
  fn(arg);
  mutex_unlock(&P->lock);
}

static void stats_fill(const pager_t *P, page_stats_t *out) {
  out->mapped = P->mapped_bytes;
  out->arena_reserved = P == &page_default ? arena_end - arena_next : 0;
  out->units = P->nunits;
  out->active = P->nactive * TD_PAGE;
  out->dirty = P->ndirty * TD_PAGE;
  out->muzzy = P->nmuzzy * TD_PAGE;
  out->holes = P->nheld * TD_PAGE;
  size_t held_dirty = 0;
  for (unit_t *u = P->nheld ? P->all_units : NULL; u; u = u->all_next)
    for (size_t w = 0; u->nheld && w < BM_WORDS; w++) held_dirty += (size_t)__builtin_popcountll(u->held.w[w] & u->dirty.w[w]);
  out->holes_resident = held_dirty * TD_PAGE;
  out->holes_given = P->holes_given;
  out->holes_taken = P->holes_taken;
  out->hugified_units = P->nhugified;
  out->purged_lazy_bytes = P->purged_lazy * TD_PAGE;
  out->purged_now_bytes = P->purged_now * TD_PAGE;
  out->purge_passes = P->purge_passes;
  out->hugifies = P->hugifies;
  out->dehugifies = P->dehugifies;
  out->collapses = P->collapses;
  out->collapse_failures = P->collapse_failures;
  out->decommits = P->decommits;
  out->opens = P->opens;
}

static size_t ph_count_check(unit_t *n, unit_t *parent_or_prev, uint64_t min_serial, size_t b) {
  size_t c = 0;
  for (; n; parent_or_prev = n, n = n->ph_next) {
    TD_CHECK(n->ph_prev == parent_or_prev, "pairing heap links", (void *)n->base, "page_validate");
    TD_CHECK(n->serial >= min_serial, "pairing heap order", (void *)n->base, "page_validate");
    TD_CHECK(n->bin == b && n->lfr == b && !n->busy, "unit in wrong bin", (void *)n->base, "page_validate");
    c += 1 + ph_count_check(n->ph_child, n, n->serial, b);
  }
  return c;
}

static void pager_validate(pager_t *P) {
  mutex_lock(&P->lock);
  size_t active = 0, dirty = 0, muzzy = 0, held = 0, listed = 0, in_bins = 0, huge = 0;
  for (size_t b = 0; b < NBINS; b++) {
    TD_CHECK(!P->bins[b] == !(P->nonempty[b >> 6] & (1ull << (b & 63))), "bin bitmap", P->bins[b], "page_validate");
    if (P->bins[b]) TD_CHECK(P->bins[b]->ph_prev == NULL, "pairing heap root", P->bins[b], "page_validate");
    in_bins += ph_count_check(P->bins[b], NULL, 0, b);
  }
  for (unit_t *u = P->all_units; u; u = u->all_next) {
    const char *why = unit_check(u);
    TD_CHECK(why == NULL, why, (void *)u->base, "page_validate");
    TD_CHECK(u->on_purge_list == (u->ndirty || u->nmuzzy), "purge list membership", (void *)u->base, "page_validate");
    TD_CHECK(u->busy || u->bin != UNIT_UNLISTED, "unit missing from bins", (void *)u->base, "page_validate");
    active += u->nactive; dirty += u->ndirty; muzzy += u->nmuzzy; held += u->nheld; listed++; huge += u->hugified;
  }
  TD_CHECK(active == P->nactive && dirty == P->ndirty && muzzy == P->nmuzzy && huge == P->nhugified && held == P->nheld,
           "page totals", NULL, "page_validate");
  TD_CHECK(listed == P->nunits && in_bins <= listed, "unit count", NULL, "page_validate");
  mutex_unlock(&P->lock);
}

static void pass_validate(pager_t *P, void *arg) { (void)arg; pager_validate(P); }

void page_validate(void) {
  pager_validate(&page_default);
  pagers_each(pass_validate, NULL);
}

/* Fork: the list lock, then every pager's lock (RANK_PAGE is a multi rank). */
void page_prefork(void) {
  mutex_lock(&pager_list_lock);
  mutex_lock(&page_default.lock);
  for (pager_t *P = pager_list; P; P = P->list_next) mutex_lock(&P->lock);
}

void page_postfork_parent(void) {
  for (pager_t *P = pager_list; P; P = P->list_next) mutex_unlock(&P->lock);
  mutex_unlock(&page_default.lock);
  mutex_unlock(&pager_list_lock);
}

static void pager_postfork_child(pager_t *P) {
  /* The background thread did not survive the fork; the hook stays, so the
   * next work that comes due starts a new one. Units another thread was
   * purging or collapsing stay usable: their bitmaps are still right. This
   * runs while the forking thread still holds the lock (from page_prefork),
   * as unit_update requires; only then is the lock made free. */
  P->told_due = TD_NEVER;
  for (unit_t *u = P->all_units; u; u = u->all_next) {
    if (!u->busy && !u->collapsing) continue;
    u->busy = 0;
    u->collapsing = 0;
    unit_update(u);
  }
  mutex_postfork_child(&P->lock);
}

void page_postfork_child(void) {
  /* A pass over the list that was pinning a pager is gone with its thread. */
  for (pager_t *P = pager_list; P; P = P->list_next) { P->users = 0; pager_postfork_child(P); }
  pager_postfork_child(&page_default);
  mutex_postfork_child(&pager_list_lock);
}
