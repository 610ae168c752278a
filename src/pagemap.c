#include "pagemap.h"
#include "lock.h"
#include "meta.h"

span_t **pagemap_root[PAGEMAP_ROOT_LEN];
static td_mutex_t pagemap_lock = TD_MUTEX_INIT("pagemap", RANK_PAGEMAP);

bool pagemap_reserve(uintptr_t addr, size_t size) {
  uintptr_t first = addr >> PAGEMAP_LEAF_SHIFT, last = (addr + size - 1) >> PAGEMAP_LEAF_SHIFT;
  if (last >= PAGEMAP_ROOT_LEN) return false;
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
  for (size_t i = 0; i < npages; i++, addr += TD_PAGE) {
    span_t **leaf = pagemap_root[addr >> PAGEMAP_LEAF_SHIFT];
    __atomic_store_n(&leaf[(addr >> TD_PAGE_SHIFT) & (PAGEMAP_LEAF_LEN - 1)], s, __ATOMIC_RELEASE);
  }
}

void pagemap_init(void) { mutex_register(&pagemap_lock); }
void pagemap_prefork(void) { mutex_lock(&pagemap_lock); }
void pagemap_postfork_parent(void) { mutex_unlock(&pagemap_lock); }
void pagemap_postfork_child(void) { mutex_postfork_child(&pagemap_lock); }
