/* Per-CPU caches on rseq, decided by experiment (issue 14, item 5): the cost
 * of the primitive a per-CPU cache's fast path is made of — a pop and a push
 * on a CPU's free list inside restartable sequences, on glibc's own rseq
 * registration — against the thread-local free list a thread cache pops and
 * pushes. The rule: adopt per-CPU caches only if they cost at most 1 ns more
 * per operation.
 *
 *   tls     each thread pops a node off its own list and pushes it back
 *   percpu  each thread pops a node off its CPU's list and pushes it back,
 *           each step one rseq critical section whose commit is the store
 *           of the list head; a preemption, migration or signal inside one
 *           restarts it (the aborts are counted)
 *
 * Each thread runs ITERS pop+push pairs; the figure is the median over REPS
 * rounds of the slowest thread's ns per operation (a pop or a push), tls and
 * percpu interleaved. Both loops keep their list heads in memory (compiler
 * barriers), as an allocator's do.
 *
 * Usage: percpu [THREADS [ITERS [REPS]]]   (default 1, 20000000, 5)
 * x86-64 only (the critical sections are assembly); elsewhere it says so. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GLIBC__) && __has_include(<sys/rseq.h>)
#include <sys/rseq.h>

typedef struct node_s { struct node_s *next; } node_t;

/* One CPU's list, alone in its cache line. */
typedef struct { node_t *head; char pad[56]; } __attribute__((aligned(64))) cpu_list_t;

static cpu_list_t *lists;
static int ncpu_lists;
static __thread node_t *tls_head;
static long iters;
static _Atomic unsigned long aborts_total;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static struct rseq *rseq_area(void) {
  return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* The critical-section descriptor (struct rseq_cs: version, flags,
 * start_ip, post_commit_offset, abort_ip) in __rseq_cs, and the abort
 * handler, preceded by the signature glibc registered, in __rseq_failure. */
#define CS_DESCRIPTOR                                                   \
  ".pushsection __rseq_cs, \"aw\"\n\t"                                  \
  ".balign 32\n\t"                                                      \
  "3:\n\t"                                                              \
  ".long 0x0, 0x0\n\t"                                                  \
  ".quad 1f, (2f - 1f), 4f\n\t"                                         \
  ".popsection\n\t"
#define CS_ABORT(label)                                                 \
  ".pushsection __rseq_failure, \"ax\"\n\t"                             \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                                          \
  ".long 0x53053053\n\t"                                                \
  "4:\n\t"                                                              \
  "jmp %l[" label "]\n\t"                                               \
  ".popsection\n\t"

/* Enter the section: point rseq_cs at its descriptor, then (its first
 * instruction) check that the thread is still on CPU cpu. */
#define CS_ENTER                                                        \
  CS_DESCRIPTOR                                                         \
  "leaq 3b(%%rip), %%rax\n\t"                                           \
  "movq %%rax, %[rseq_cs]\n\t"                                          \
  "1:\n\t"                                                              \
  "cmpl %[cpu], %[cpu_id]\n\t"                                          \
  "jnz %l[abort]\n\t"

/* Pop from CPU cpu's list: 0 and *out, 1 when empty, -1 when the section was
 * aborted (or the thread is on another CPU now): the caller retries. */
static inline int percpu_pop(struct rseq *rs, unsigned cpu, node_t **out) {
  __asm__ goto(
      CS_ENTER
      "movq %[head], %%rax\n\t"
      "testq %%rax, %%rax\n\t"
      "jz %l[empty]\n\t"
      "movq %%rax, %[out]\n\t"
      "movq (%%rax), %%rcx\n\t"
      "movq %%rcx, %[head]\n\t"      /* the commit */
      "2:\n\t"
      CS_ABORT("abort")
      :
      : [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id), [cpu] "r"(cpu),
        [head] "m"(lists[cpu].head), [out] "m"(*out)
      : "memory", "cc", "rax", "rcx"
      : abort, empty);
  return 0;
abort:
  return -1;
empty:
  return 1;
}

/* Push n on CPU cpu's list: 0, or -1 when aborted. */
static inline int percpu_push(struct rseq *rs, unsigned cpu, node_t *n) {
  __asm__ goto(
      CS_ENTER
      "movq %[head], %%rax\n\t"
      "movq %%rax, (%[n])\n\t"
      "movq %[n], %[head]\n\t"       /* the commit */
      "2:\n\t"
      CS_ABORT("abort")
      :
      : [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id), [cpu] "r"(cpu),
        [head] "m"(lists[cpu].head), [n] "r"(n)
      : "memory", "cc", "rax"
      : abort);
  return 0;
abort:
  return -1;
}

static inline unsigned cpu_now(struct rseq *rs) { return __atomic_load_n(&rs->cpu_id_start, __ATOMIC_RELAXED); }

static void *run_percpu(void *arg) {
  double *ns = arg;
  struct rseq *rs = rseq_area();
  unsigned long ab = 0;
  double t0 = now_s();
  for (long i = 0; i < iters; i++) {
    node_t *n;
    int r;
    while ((r = percpu_pop(rs, cpu_now(rs), &n)) < 0) ab++;
    if (r == 1) { fprintf(stderr, "percpu: a CPU's list ran dry\n"); exit(2); }
    while (percpu_push(rs, cpu_now(rs), n) < 0) ab++;
  }
  *ns = (now_s() - t0) * 1e9 / (double)(2 * iters);
  aborts_total += ab;
  return NULL;
}

static void *run_tls(void *arg) {
  double *ns = arg;
  static __thread node_t pool[64];
  for (int i = 0; i < 64; i++) { pool[i].next = tls_head; tls_head = &pool[i]; }
  double t0 = now_s();
  for (long i = 0; i < iters; i++) {
    node_t *n = tls_head;            /* pop */
    __asm__ volatile("" ::: "memory");
    tls_head = n->next;
    __asm__ volatile("" ::: "memory");
    n->next = tls_head;              /* push */
    tls_head = n;
    __asm__ volatile("" ::: "memory");
  }
  *ns = (now_s() - t0) * 1e9 / (double)(2 * iters);
  tls_head = NULL;
  return NULL;
}

static double round_of(void *(*fn)(void *), int threads) {
  pthread_t t[256];
  double ns[256], worst = 0;
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, fn, &ns[i]);
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    if (ns[i] > worst) worst = ns[i];
  }
  return worst;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  iters = argc > 2 ? atol(argv[2]) : 20000000;
  int reps = argc > 3 ? atoi(argv[3]) : 5;
  if (threads < 1 || threads > 256 || iters < 1 || reps < 1 || reps > 99) {
    fprintf(stderr, "usage: percpu [THREADS<=256 [ITERS [REPS<=99]]]\n");
    return 2;
  }
  if (__rseq_size == 0) {
    printf("percpu: glibc did not register rseq (glibc.pthread.rseq=0, or an old kernel)\n");
    return 0;
  }
  ncpu_lists = (int)sysconf(_SC_NPROCESSORS_CONF);
  lists = aligned_alloc(64, sizeof(cpu_list_t) * (size_t)ncpu_lists);
  memset(lists, 0, sizeof(cpu_list_t) * (size_t)ncpu_lists);
  node_t *nodes = calloc((size_t)ncpu_lists * 64, sizeof *nodes);
  for (int c = 0; c < ncpu_lists; c++)
    for (int i = 0; i < 64; i++) { nodes[c * 64 + i].next = lists[c].head; lists[c].head = &nodes[c * 64 + i]; }
  double tls[99], pc[99];
  for (int r = 0; r < reps; r++) {
    tls[r] = round_of(run_tls, threads);
    pc[r] = round_of(run_percpu, threads);
  }
  qsort(tls, (size_t)reps, sizeof tls[0], cmp);
  qsort(pc, (size_t)reps, sizeof pc[0], cmp);
  double a = tls[reps / 2], b = pc[reps / 2];
  printf("threads %d  tls %.2f ns/op  percpu %.2f ns/op  difference %+.2f ns/op  aborts %lu (%.4f %% of sections)\n",
         threads, a, b, b - a, (unsigned long)aborts_total,
         100.0 * (double)aborts_total / (2.0 * (double)iters * threads * reps));
  return 0;
}

#else
int main(void) {
  printf("percpu: x86-64 with glibc's rseq only\n");
  return 0;
}
#endif
