#include "span.h"
#include "os.h"
#include "safety.h"

span_t span_released = { .kind = SPAN_RELEASED };
uintptr_t span_link_key = 0x9e3779b97f4a7c15ull;   /* replaced at init; always odd */
uint64_t span_free_key = 0x5bd1e9955bd1e995ull;    /* replaced at init; never 0 */

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

const char *span_check(const span_t *s, bool current) {
  if (s->start > s->bump || s->bump > s->bump_end) return "span: start <= bump <= bump_end";
  if (s->limit != s->bump - s->start) return "span: limit == bump - start";
  size_t carved = (s->bump - s->start) / s->size, listed = 0;
  for (uintptr_t p = s->free; p; p = span_link_decode(((const block_t *)p)->next)) {
    if (p < s->start || p >= s->bump || (p - s->start) % s->size) return "span: free block outside the carved blocks";
    if (!span_block_marked((const void *)p)) return "span: free block without its marker";
    if (++listed > carved) return "span: free list longer than the carved blocks (a cycle)";
  }
  if (listed + span_live(s, current) != carved) return "span: free + live == carved";
  return NULL;
}

void span_misuse(const void *p, const span_t *s, const char *fn) {
  const char *invalid, *twice;
  safety_misuse_words(fn, &invalid, &twice);
  if (!s) safety_report(invalid, p, "not allocated by tidalloc", -1, fn);
  switch (s->kind) {
    case SPAN_SLAB: {
      uintptr_t off = (uintptr_t)p - s->start;
      if (off < (uintptr_t)s->capacity * s->size && off >= __atomic_load_n(&s->limit, __ATOMIC_RELAXED) && off % s->size == 0)
        safety_report(invalid, p, "never handed out, size class", (long)s->size, fn);
      if (off >= __atomic_load_n(&s->limit, __ATOMIC_RELAXED) || off % s->size)
        safety_report(invalid, p, "not the start of a block, size class", (long)s->size, fn);
      safety_report(twice, p, "size class", (long)s->size, fn);
    }
    case SPAN_LARGE:
    case SPAN_HUGE:
      safety_report(invalid, p, "inside a block of bytes", (long)s->bytes, fn);
    case SPAN_RELEASED:
      safety_report(twice, p, "block already given back", -1, fn);
    default:
      safety_report(invalid, p, "unknown block", -1, fn);
  }
}
