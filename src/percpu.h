/*
 * percpu.h — per-CPU lists of free blocks on rseq in front of a shared heap:
 * an experiment (issue 14, item 5), compiled in only with cmake
 * -DTIDAL_PERCPU=ON (x86-64, glibc 2.35 or later), never by default
 * (bench/micro/percpu_whole.sh measures it; bench/results/percpu.md).
 *
 * What it is: for each CPU and each class of blocks up to SC_LOOKUP_MAX
 * bytes, a list of at most PCPU_SLOTS free blocks. malloc pops from the list
 * of the CPU it runs on and free pushes onto it, each one restartable
 * sequence on glibc's own rseq registration whose commit is the store of the
 * list's head: a preemption, migration or signal inside one restarts it, so
 * neither path takes a lock or an atomic instruction. An empty list takes
 * PCPU_BATCH blocks from the shared heap (heap.h, heap_shared_take: the
 * global heap, under its lock); a full one gives PCPU_BATCH back
 * (heap_shared_give). The slabs of these classes belong to that heap, not
 * to a thread, so no thread's current slab or partial slabs strand memory
 * of them: that is what the experiment weighs against its cost.
 * A block on a list is free as on a slab's list (span.h): it carries its
 * marker, so a second free of it is a double free, and its link is encoded
 * with the link key and checked when it is popped.
 *
 * Layout: pcpu_heads, PCPU_MAX_CPUS << PCPU_CPU_SHIFT bytes of zeros in
 * .bss (the pages of CPUs that never run are never touched):
 *
 *   pcpu_heads + (cpu << PCPU_CPU_SHIFT) bytes:
 *   | head class 0 (unused) | head class 1 | ... | head class 32 | (to 512 bytes)
 *   head:   bits 63..48 count | bits 47..0 address of the first block (0: none)
 *   block:  +0 link = (the head it was pushed onto) ^ span_link_key | +8 marker
 *
 * Invariant of each list: count = the number of blocks on it <= PCPU_SLOTS;
 * each is a free, marked block of the class, of a slab of the shared heap,
 * and on no other list.
 *
 * What it is not: the default design (thread heaps, heap.h). In this
 * experimental build the lists are never emptied by drains, purges or
 * tidal_thread_flush, statistics count their blocks as allocated, and heap
 * profiling, the hardened mode and guard_sample turn the lists off (as does
 * a process where glibc registered no rseq area): every request then takes
 * the thread heaps' path.
 * It may call: heap, pagemap, span, sizeclass, conf.
 */
#ifndef TIDAL_PERCPU_H
#define TIDAL_PERCPU_H

#ifndef TIDAL_PERCPU
#define TIDAL_PERCPU 0
#endif

#if TIDAL_PERCPU
#if !defined(__x86_64__)
#error "TIDAL_PERCPU: the restartable sequences are written for x86-64 only"
#endif

#include "sizeclass.h"
#include "span.h"

#include <sys/rseq.h>

#define PCPU_MAX_CLASS   32        /* the class of SC_LOOKUP_MAX bytes: every class malloc's table resolves */
#define PCPU_SLOTS       31        /* blocks a list holds at most */
#define PCPU_SLOTS_S     "31"
#define PCPU_BATCH       16        /* blocks taken from or given to the shared heap at a time */
#define PCPU_CPU_SHIFT   9         /* bytes per CPU: (PCPU_MAX_CLASS + 1) heads of 8 bytes <= 1 << 9 */
#define PCPU_CPU_SHIFT_S "9"
#define PCPU_MAX_CPUS    1024u     /* CPU numbers at or above it take the thread heaps' path */
#define PCPU_MAX_CPUS_S  "1024"
#define PCPU_COUNT_SHIFT 48        /* a head: count << PCPU_COUNT_SHIFT | address of the first block */
#define PCPU_ADDR_MASK   ((UINT64_C(1) << PCPU_COUNT_SHIFT) - 1)

_Static_assert((PCPU_MAX_CLASS + 1) * sizeof(uintptr_t) <= (1u << PCPU_CPU_SHIFT), "a CPU's heads fit its stride");
_Static_assert(PCPU_BATCH < PCPU_SLOTS, "a refill fits an empty list");

typedef struct pcpu_state_s {
  uint32_t limit;                  /* PCPU_MAX_CPUS while on, 0 while off */
  uint32_t pad;
  const struct heap_s *shared;     /* the heap whose slabs the lists hold (while off: no span's owner) */
} pcpu_state_t;
extern pcpu_state_t pcpu TD_HIDDEN;
/* The heads: PCPU_MAX_CPUS << PCPU_CPU_SHIFT bytes of zeros (.bss: only the
 * pages of CPUs that run are touched). While the lists are off no block is
 * pushed (no span's owner is pcpu.shared) nor refilled, so every pop finds
 * its list empty. */
extern uintptr_t pcpu_heads[] TD_HIDDEN;

/* Turn the lists on if this process can have them (after conf and heap). */
void percpu_init(void);

TD_INLINE struct rseq *percpu_rseq(void) {
  return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* The section's descriptor (struct rseq_cs: version 0, flags 0, start_ip,
 * post_commit_offset, abort_ip) and its abort handler, which the kernel
 * enters only after the 4-byte signature glibc registered (RSEQ_SIG, x86-64:
 * 0x53053053, here inside a ud1 so a stray jump there traps). Labels: 1 the
 * start, 2 the end of the commit, 3 the descriptor, 4 the abort handler.
 * The section begins by finding this CPU's head of the class: rax. */
#define PCPU_CS_BEGIN                                                    \
  ".pushsection __rseq_cs, \"aw\"\n\t"                                   \
  ".balign 32\n\t"                                                       \
  "3:\n\t"                                                               \
  ".long 0x0, 0x0\n\t"                                                   \
  ".quad 1f, (2f - 1f), 4f\n\t"                                          \
  ".popsection\n\t"                                                      \
  "leaq 3b(%%rip), %%rax\n\t"                                            \
  "movq %%rax, %[rseq_cs]\n\t"                                           \
  "1:\n\t"                                                               \
  "movl %[cpu_id], %%eax\n\t"                                            \
  "cmpl $" PCPU_MAX_CPUS_S ", %%eax\n\t"                                 \
  "jae %l[miss]\n\t"                                                     \
  "shlq $" PCPU_CPU_SHIFT_S ", %%rax\n\t"                                \
  "addq %[off], %%rax\n\t"
#define PCPU_CS_END                                                      \
  "2:\n\t"                                                               \
  ".pushsection __rseq_failure, \"ax\"\n\t"                              \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                                           \
  ".long 0x53053053\n\t"                                                 \
  "4:\n\t"                                                               \
  "jmp %l[restart]\n\t"                                                  \
  ".popsection\n\t"

/* The first block of this CPU's list of cls has a link that does not
 * decode to an aligned address: reported (as a write after free). */
TD_COLD TD_NORETURN void percpu_corrupt(unsigned cls);

/* Pop a block of class cls (1..PCPU_MAX_CLASS) from this CPU's list; NULL
 * when it is empty or the lists are off. The block keeps its marker. */
TD_INLINE void *percpu_pop_raw(unsigned cls) {
  struct rseq *rs = percpu_rseq();
  uintptr_t off = (uintptr_t)pcpu_heads + (uintptr_t)cls * sizeof(uintptr_t);
  void *p;
restart:
  __asm__ goto(
      PCPU_CS_BEGIN
      "movq (%%rax), %%rcx\n\t"          /* the head */
      "movq %%rcx, %[p]\n\t"
      "shlq $16, %[p]\n\t"
      "shrq $16, %[p]\n\t"               /* its address (ZF: none) */
      "jz %l[miss]\n\t"
      "movq (%[p]), %%rcx\n\t"           /* the block's link: the head it was pushed onto */
      "xorq %[key], %%rcx\n\t"
      "testb $15, %%cl\n\t"
      "jnz %l[corrupt]\n\t"
      "movq %%rcx, (%%rax)\n\t"          /* the commit */
      PCPU_CS_END
      : [p] "=&r"(p)
      : [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id), [off] "r"(off), [key] "m"(span_link_key)
      : "memory", "cc", "rax", "rcx"
      : restart, miss, corrupt);
  return p;
miss:
  return NULL;
corrupt:
  percpu_corrupt(cls);   /* the head is not committed: it still names the block */
}

/* Push block p of class cls onto this CPU's list: false when it is full (or
 * the lists are off). */
TD_INLINE bool percpu_push(unsigned cls, void *p) {
  struct rseq *rs = percpu_rseq();
  uintptr_t off = (uintptr_t)pcpu_heads + (uintptr_t)cls * sizeof(uintptr_t);
restart:
  __asm__ goto(
      PCPU_CS_BEGIN
      "movq (%%rax), %%rcx\n\t"          /* the head */
      "movq %%rcx, %%rdx\n\t"
      "shrq $48, %%rdx\n\t"              /* its count */
      "cmpl $" PCPU_SLOTS_S ", %%edx\n\t"
      "jae %l[miss]\n\t"
      "addq $1, %%rdx\n\t"
      "shlq $48, %%rdx\n\t"
      "addq %[p], %%rdx\n\t"             /* the new head */
      "xorq %[key], %%rcx\n\t"
      "movq %%rcx, (%[p])\n\t"           /* p's link: the old head, encoded */
      "movq %%rdx, (%%rax)\n\t"          /* the commit */
      PCPU_CS_END
      :
      : [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id), [off] "r"(off), [p] "r"(p),
        [key] "m"(span_link_key)
      : "memory", "cc", "rax", "rcx", "rdx"
      : restart, miss);
  return true;
miss:
  return false;
}

/* An empty list (or lists off): a block from the shared heap, the list
 * refilled; NULL when the lists are off or memory is short (the caller then
 * takes the thread heaps' path, which reports ENOMEM). */
void *percpu_alloc_slow(unsigned cls);
/* A full list: PCPU_BATCH of its blocks and p go back to the shared heap. */
void percpu_free_slow(unsigned cls, void *p);

/* The malloc fast path of classes 1..PCPU_MAX_CLASS: NULL when the list
 * is empty (the caller then calls percpu_alloc_slow, out of line). */
TD_INLINE void *percpu_alloc(unsigned cls) {
  block_t *b = percpu_pop_raw(cls);
  if (TD_LIKELY(b != NULL)) b->key = 0;   /* handed out: no longer marked */
  return b;
}

/* The free fast path of a checked block p of class cls of the shared heap. */
TD_INLINE void percpu_free(unsigned cls, void *p) {
  ((block_t *)p)->key = span_marker(p);
  if (TD_UNLIKELY(!percpu_push(cls, p))) percpu_free_slow(cls, p);
}

#endif /* TIDAL_PERCPU */
#endif
