#include "pagemap.h"
#include "lock.h"
#include "meta.h"

span_t **pagemap_root[PAGEMAP_ROOT_LEN];
static td_mutex_t pagemap_lock = TD_MUTEX_INIT("pagemap", RANK_PAGEMAP);
/* The table before the window: its none, then one empty entry. */
static struct { span_t none; uintptr_t entry[1]; } flat_before;
_Static_assert(offsetof(__typeof__(flat_before), entry) == sizeof(span_t), "the none sits just before the table");
uintptr_t *pagemap_flat = flat_before.entry;
uintptr_t pagemap_flat_mask;
uintptr_t pagemap_window_base;
size_t pagemap_window_size;

TD_INLINE bool in_window(uintptr_t a) {
  size_t window = __atomic_load_n(&pagemap_window_size, __ATOMIC_ACQUIRE);   /* first: then the base is set */
  return a - __atomic_load_n(&pagemap_window_base, __ATOMIC_RELAXED) < window;
}

bool pagemap_window_open(uintptr_t base, size_t size) {
  if (size < TD_PAGE || !td_is_pow2(size) || (base & (size - 1)) || (base >> 48) || ((base + size - 1) >> 48))
    return false;
  mutex_lock(&pagemap_lock);
  bool ok = false;
  if (!pagemap_window_size) {
    /* The mapping is zero: its first span_t is the table's none. */
    span_t *none = meta_alloc_mapping(sizeof(span_t) + (size >> TD_PAGE_SHIFT) * sizeof(uintptr_t));
    if (none) {
      __atomic_store_n(&pagemap_flat, (uintptr_t *)(none + 1), __ATOMIC_RELEASE);
      __atomic_store_n(&pagemap_window_base, base, __ATOMIC_RELEASE);
      __atomic_store_n(&pagemap_window_size, size, __ATOMIC_RELEASE);
      __atomic_store_n(&pagemap_flat_mask, size - TD_PAGE, __ATOMIC_RELEASE);
      ok = true;
    }
  }
  mutex_unlock(&pagemap_lock);
  return ok;
}

bool pagemap_reserve(uintptr_t addr, size_t size) {
  uintptr_t first = addr >> PAGEMAP_LEAF_SHIFT, last = (addr + size - 1) >> PAGEMAP_LEAF_SHIFT;
  if (last >= PAGEMAP_ROOT_LEN) return false;
  if (in_window(addr) && in_window(addr + size - 1)) return true;
  for (uintptr_t r = first; r <= last; r++) {
    if (__atomic_load_n(&pagemap_root[r], __ATOMIC_ACQUIRE)) continue;
    mutex_lock(&pagemap_lock);
    if (!pagemap_root[r]) {
      span_t **leaf = meta_alloc_mapping(PAGEMAP_LEAF_LEN * sizeof(span_t *));
      if (!leaf) { mutex_unlock(&pagemap_lock); return false; }
      __atomic_store_n(&pagemap_root[r], leaf, __ATOMIC_RELEASE);
    }
    mutex_unlock(&pagemap_lock);
  }
  return true;
}

void pagemap_set(uintptr_t addr, size_t npages, span_t *s) {
  if (npages && in_window(addr)) {
    TD_DASSERT(in_window(addr + npages * TD_PAGE - 1));
    uintptr_t *e = &pagemap_flat[(addr - pagemap_window_base) >> TD_PAGE_SHIFT];
    uintptr_t v = s ? (uintptr_t)s - ((uintptr_t)pagemap_flat - sizeof(span_t)) : 0;
    TD_DASSERT(!s || pagemap_flat_decode(pagemap_flat, v) == s);
    for (size_t i = 0; i < npages; i++) __atomic_store_n(&e[i], v, __ATOMIC_RELEASE);
    return;
  }
  for (size_t i = 0; i < npages; i++, addr += TD_PAGE) {
    span_t **leaf = pagemap_root[addr >> PAGEMAP_LEAF_SHIFT];
    __atomic_store_n(&leaf[(addr >> TD_PAGE_SHIFT) & (PAGEMAP_LEAF_LEN - 1)], s, __ATOMIC_RELEASE);
  }
}

void pagemap_init(void) { mutex_register(&pagemap_lock); }
void pagemap_prefork(void) { mutex_lock(&pagemap_lock); }
void pagemap_postfork_parent(void) { mutex_unlock(&pagemap_lock); }
void pagemap_postfork_child(void) { mutex_postfork_child(&pagemap_lock); }
