#include "large.h"
#include "heap.h"
#include "huge.h"
#include "page.h"
#include "pagemap.h"

#include <string.h>

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
  page_free(s);
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
