/* percpu.c — per-CPU lists on rseq: the experiment's switch and slow paths
 * (percpu.h). Compiled empty unless -DTIDAL_PERCPU=ON. */
#include "percpu.h"

#if TIDAL_PERCPU
#include "conf.h"
#include "heap.h"
#include "pagemap.h"

/* Off until percpu_init: no span's owner is the address of this table, and
 * nothing is refilled while limit is 0. */
uintptr_t pcpu_heads[((size_t)PCPU_MAX_CPUS << PCPU_CPU_SHIFT) / sizeof(uintptr_t)] TD_ALIGNED(4096);
pcpu_state_t pcpu = { .limit = 0, .shared = (const struct heap_s *)&pcpu };

void percpu_init(void) {
  if (__rseq_size == 0 || (int32_t)percpu_rseq()->cpu_id < 0) return;   /* glibc registered no area */
  if (opt.secure || opt.prof || opt.guard_sample > 0) return;
  pcpu.shared = heap_shared();
  __atomic_store_n(&pcpu.limit, PCPU_MAX_CPUS, __ATOMIC_RELEASE);
}

void percpu_corrupt(unsigned cls) {
  size_t cpu = percpu_rseq()->cpu_id;
  void *b = (void *)(pcpu_heads[(cpu << PCPU_CPU_SHIFT) / sizeof(uintptr_t) + cls] & PCPU_ADDR_MASK);
  span_corrupt(b, pagemap_lookup(b), "malloc");
}

void *percpu_alloc_slow(unsigned cls) {
  if (__atomic_load_n(&pcpu.limit, __ATOMIC_ACQUIRE) == 0) return NULL;
  void *blocks[PCPU_BATCH];
  size_t n = heap_shared_take(cls, blocks, PCPU_BATCH);
  if (n == 0) return NULL;
  for (size_t i = 1; i < n; i++) {
    ((block_t *)blocks[i])->key = span_marker(blocks[i]);
    /* Full only if the thread moved to a CPU whose list is: give the rest back. */
    if (!percpu_push(cls, blocks[i])) {
      heap_shared_give(blocks + i, n - i);
      break;
    }
  }
  return blocks[0];
}

void percpu_free_slow(unsigned cls, void *p) {
  void *blocks[PCPU_BATCH + 1];
  size_t n = 0;
  while (n < PCPU_BATCH) {
    void *b = percpu_pop_raw(cls);
    if (!b) break;
    blocks[n++] = b;
  }
  blocks[n++] = p;
  heap_shared_give(blocks, n);
}
#endif
