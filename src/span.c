#include "span.h"
#include "os.h"
#include "safety.h"

#include <string.h>

span_t span_released = { .kind = SPAN_RELEASED };
uintptr_t span_link_key = 0x9e3779b97f4a7c15ull;   /* replaced at init; always odd */
uint64_t span_free_key = 0x5bd1e9955bd1e995ull;    /* replaced at init; never 0 */
#if TIDAL_CHECKS
const block_t span_free_end TD_ALIGNED(sizeof(block_t));   /* all zero: SPAN_FREE_END */
#endif

void span_init(void) {
  uint64_t k;
  do k = os_random64(); while (k == 0);
  span_free_key = k;
  span_link_key = (uintptr_t)os_random64() | 1;
}

void span_corrupt(const void *block, const span_t *s, const char *fn) {
  bool slab = s && (s->kind == SPAN_SLAB || s->kind == SPAN_SECURE || s->kind == SPAN_OBJCACHE);
  safety_report("write after free", block, "corrupted free-list link, size class", slab ? (long)s->size : -1, fn);
}

/* ---- holes ---------------------------------------------------------------- */

TD_INLINE bool hole_bit(const uint64_t *m, size_t i) { return (m[i >> 6] >> (i & 63)) & 1; }
TD_INLINE void hole_set(uint64_t *m, size_t i) { m[i >> 6] |= 1ull << (i & 63); }

/* Pages of the slab a block (by index) overlaps: [*lo, *hi]. */
static void block_pages(const span_t *s, size_t i, size_t *lo, size_t *hi) {
  size_t off = (s->start - s->base) + i * s->size;
  *lo = off >> SPAN_HOLE_PAGE_SHIFT;
  *hi = (off + s->size - 1) >> SPAN_HOLE_PAGE_SHIFT;
}

/* Blocks (by index) page p overlaps: [*lo, *hi]; false when none. */
static bool page_blocks(const span_t *s, size_t p, size_t *lo, size_t *hi) {
  size_t first = p << SPAN_HOLE_PAGE_SHIFT, last = first + SPAN_HOLE_PAGE - 1, skip = s->start - s->base;
  if (last < skip) return false;
  first = first > skip ? first - skip : 0;
  last -= skip;
  *lo = first / s->size;
  *hi = TD_MIN(last / s->size, (size_t)s->capacity - 1);
  return *lo < s->capacity;
}

static bool block_in_holes(const span_t *s, size_t i, const uint64_t *holes) {
  size_t lo, hi;
  block_pages(s, i, &lo, &hi);
  for (size_t p = lo; p <= hi; p++)
    if (hole_bit(holes, p)) return true;
  return false;
}

static size_t slab_pages(const span_t *s) { return TD_MIN(s->bytes >> SPAN_HOLE_PAGE_SHIFT, (size_t)SPAN_HOLE_MAX_PAGES); }

bool span_in_hole(const span_t *s, const void *p) {
  if (!s->nholes) return false;
  uintptr_t off = (uintptr_t)p - s->start;
  return off < (uintptr_t)s->capacity * s->size && block_in_holes(s, off / s->size, s->holes);
}

size_t span_hole_scan(const span_t *s, uint64_t out[SPAN_HOLE_WORDS]) {
  uint64_t freeb[SPAN_HOLE_MAX_BLOCKS / 64];
  size_t carved = (s->bump - s->start) / s->size, npages = slab_pages(s), n = 0;
  for (size_t w = 0; w < SPAN_HOLE_WORDS; w++) out[w] = 0;
  if (carved == 0 || s->capacity > SPAN_HOLE_MAX_BLOCKS) return 0;
  memset(freeb, 0, ((carved + 63) / 64) * sizeof(uint64_t));
  for (uintptr_t p = s->free; p != SPAN_FREE_END; p = span_link_decode(((const block_t *)p)->next)) {
    if (TD_UNLIKELY(span_link_bad(p) || p < s->start || p >= s->bump)) span_corrupt((const void *)p, s, "malloc");
    hole_set(freeb, (p - s->start) / s->size);
  }
  for (size_t p = 0; s->nholes && p < npages; p++) {   /* blocks in holes are free too */
    size_t lo, hi;
    if (!hole_bit(s->holes, p) || !page_blocks(s, p, &lo, &hi)) continue;
    for (size_t i = lo; i <= hi && i < carved; i++) hole_set(freeb, i);
  }
  for (size_t p = 0; p < npages; p++) {
    size_t lo, hi, i;
    if (hole_bit(s->holes, p) || !page_blocks(s, p, &lo, &hi) || hi >= carved) continue;
    for (i = lo; i <= hi && hole_bit(freeb, i); i++) {}
    if (i > hi) { hole_set(out, p); n++; }
  }
  return n;
}

void span_hole_cut(span_t *s, const uint64_t pages[SPAN_HOLE_WORDS]) {
  uintptr_t head = SPAN_FREE_END;
  block_t *prev = NULL;
  for (uintptr_t p = s->free, nx; p != SPAN_FREE_END; p = nx) {
    nx = span_link_decode(((const block_t *)p)->next);
    size_t first = (p - s->base) >> SPAN_HOLE_PAGE_SHIFT, last = (p - s->base + s->size - 1) >> SPAN_HOLE_PAGE_SHIFT;
    bool cut = false;
    for (size_t q = first; q <= last && !cut; q++) cut = hole_bit(pages, q);
    if (cut) continue;
    if (prev) prev->next = span_link_encode(p);   /* kept: relinked in order */
    else head = p;
    prev = (block_t *)p;
  }
  if (prev) prev->next = span_link_encode(SPAN_FREE_END);
  s->free = head;
  for (size_t w = 0; w < SPAN_HOLE_WORDS; w++) s->holes[w] |= pages[w];
  s->nholes = 0;
  for (size_t w = 0; w < SPAN_HOLE_WORDS; w++) s->nholes += (uint32_t)__builtin_popcountll(s->holes[w]);
  if (s->nholes) s->used |= SPAN_SLOW_FLAG;
}

void span_hole_fill(span_t *s, const uint64_t pages[SPAN_HOLE_WORDS]) {
  uint64_t rest[SPAN_HOLE_WORDS];
  size_t carved = (s->bump - s->start) / s->size, lo = SIZE_MAX, hi = 0;
  for (size_t w = 0; w < SPAN_HOLE_WORDS; w++) {
    TD_DASSERT((s->holes[w] & pages[w]) == pages[w]);
    rest[w] = s->holes[w] & ~pages[w];
  }
  for (size_t p = 0; p < SPAN_HOLE_MAX_PAGES; p++) {
    size_t a, b;
    if (!hole_bit(pages, p) || !page_blocks(s, p, &a, &b)) continue;
    lo = TD_MIN(lo, a);
    hi = TD_MAX(hi, TD_MIN(b, carved - 1));
  }
  /* Pushed last to first, so the list hands them out in address order. */
  for (size_t i = hi + 1; lo != SIZE_MAX && i-- > lo;) {
    if (!block_in_holes(s, i, pages) || block_in_holes(s, i, rest)) continue;
    span_push(s, (block_t *)(s->start + i * s->size));
  }
  for (size_t w = 0; w < SPAN_HOLE_WORDS; w++) s->holes[w] = rest[w];
  s->nholes = 0;
  for (size_t w = 0; w < SPAN_HOLE_WORDS; w++) s->nholes += (uint32_t)__builtin_popcountll(s->holes[w]);
  if (!s->nholes && !span_is_full(s)) s->used &= ~SPAN_SLOW_FLAG;
}

size_t span_hole_blocks(const span_t *s) {
  size_t carved = (s->bump - s->start) / s->size, n = 0;
  for (size_t i = 0; s->nholes && i < carved; i++) n += block_in_holes(s, i, s->holes);
  return n;
}

const char *span_check(const span_t *s, bool current) {
  if (s->start > s->bump || s->bump > s->bump_end) return "span: start <= bump <= bump_end";
  if (s->carved != (s->bump - s->start) / s->size) return "span: carved == (bump - start) / size";
  if ((uint64_t)(s->size >> s->shift) * s->inv != 1 || !((s->size >> s->shift) & 1)) return "span: size = d << shift, d * inv = 1";
  uint32_t nholes = (uint32_t)(__builtin_popcountll(s->holes[0]) + __builtin_popcountll(s->holes[1]));
  if (nholes != s->nholes) return "span: nholes == popcount(holes)";
  if (!(s->used & SPAN_SLOW_FLAG) != !((s->used & SPAN_FULL_FLAG) || s->nholes)) return "span: slow flag == full || holes";
  size_t carved = (s->bump - s->start) / s->size, listed = 0;
  for (uintptr_t p = s->free; p != SPAN_FREE_END; p = span_link_decode(((const block_t *)p)->next)) {
    if (p < s->start || p >= s->bump || (p - s->start) % s->size) return "span: free block outside the carved blocks";
    if (!span_block_marked((const void *)p)) return "span: free block without its marker";
    if (s->nholes && block_in_holes(s, (p - s->start) / s->size, s->holes)) return "span: free-list block in a hole";
    if (++listed > carved) return "span: free list longer than the carved blocks (a cycle)";
  }
  for (size_t p = 0; s->nholes && p < SPAN_HOLE_MAX_PAGES; p++) {
    size_t lo, hi;
    if (hole_bit(s->holes, p) && (!page_blocks(s, p, &lo, &hi) || hi >= carved)) return "span: hole outside the carved blocks";
  }
  if (listed + span_live(s, current) + span_hole_blocks(s) != carved) return "span: free + live + in holes == carved";
  return NULL;
}

void span_misuse(const void *p, const span_t *s, const char *fn) {
  const char *invalid, *twice;
  safety_misuse_words(fn, &invalid, &twice);
  if (!s) safety_report(invalid, p, "not allocated by tidalloc", -1, fn);
  switch (s->kind) {
    case SPAN_SLAB: {
      uintptr_t off = (uintptr_t)p - s->start;
      if (off < (uintptr_t)s->capacity * s->size && off >= span_limit(s) && off % s->size == 0)
        safety_report(invalid, p, "never handed out, size class", (long)s->size, fn);
      if (off >= span_limit(s) || off % s->size)
        safety_report(invalid, p, "not the start of a block, size class", (long)s->size, fn);
      safety_report(twice, p, "size class", (long)s->size, fn);
    }
    case SPAN_LARGE:
    case SPAN_HUGE:
    case SPAN_SAMPLED:
      safety_report(invalid, p, "inside a block of bytes", (long)s->bytes, fn);
    case SPAN_RELEASED:
      safety_report(twice, p, "block already given back", -1, fn);
    default:
      safety_report(invalid, p, "unknown block", -1, fn);
  }
}
