/* The per-CPU lists of the TIDAL_PERCPU experiment (percpu.h), built only
 * with -DTIDAL_PERCPU=ON (scripts/test.sh builds and runs it in a tree of
 * its own). On the real kernel's rseq: the lists are on, each holds at most
 * PCPU_SLOTS blocks in LIFO order with its count in the head, malloc and
 * free go through them, a thread moved between CPUs while it pushes and
 * pops neither loses nor duplicates a block (each section restarts or
 * commits whole), and the checks still catch a double free of a cached
 * block and a cached block's link overwritten after free.
 * Skips (77) where glibc registered no rseq area. */
#include "heap.h"
#include "pagemap.h"
#include "percpu.h"
#include "unit.h"
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>

#define CLS 3   /* 48-byte blocks */

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) FAIL("cannot pin to CPU %d", cpu);
}

static cpu_set_t allowed;   /* the CPUs the process may run on, read before any pin */

static int first_cpu(void) {
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed)) return c;
  return -1;
}

static int second_cpu(int first) {
  for (int c = first + 1; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed)) return c;
  return -1;
}

static uintptr_t head_here(unsigned cls) {
  unsigned cpu = percpu_rseq()->cpu_id;
  return pcpu_heads[(((size_t)cpu << PCPU_CPU_SHIFT) / sizeof(uintptr_t)) + cls];
}

/* Empty the calling CPU's list of cls into the shared heap. */
static void drain_here(unsigned cls) {
  void *b;
  while ((b = percpu_pop_raw(cls)) != NULL) heap_shared_give(&b, 1);
}

TEST(lists_are_on) {
  free(malloc(48));   /* initialises */
  CHECK_EQ(pcpu.limit, PCPU_MAX_CPUS);
  CHECK(pcpu.shared == heap_shared());
  void *p = malloc(48);
  span_t *s = pagemap_lookup(p);
  CHECK(s != NULL && s->owner == heap_shared());   /* no thread owns the slab */
  free(p);
}

TEST(lifo_bounded_counted) {
  pin(first_cpu());
  drain_here(CLS);
  CHECK_EQX(head_here(CLS), 0);
  void *b[PCPU_SLOTS + 1];
  CHECK_EQ(heap_shared_take(CLS, b, PCPU_SLOTS + 1), PCPU_SLOTS + 1);
  for (int i = 0; i < PCPU_SLOTS; i++) {
    ((block_t *)b[i])->key = span_marker(b[i]);
    CHECK(percpu_push(CLS, b[i]));
    CHECK_EQ(head_here(CLS) >> PCPU_COUNT_SHIFT, i + 1);
    CHECK_EQX(head_here(CLS) & PCPU_ADDR_MASK, (uintptr_t)b[i]);
  }
  CHECK(!percpu_push(CLS, b[PCPU_SLOTS]));   /* full */
  for (int i = PCPU_SLOTS - 1; i >= 0; i--) CHECK(percpu_pop_raw(CLS) == b[i]);
  CHECK(percpu_pop_raw(CLS) == NULL);
  CHECK_EQX(head_here(CLS), 0);
  heap_shared_give(b, PCPU_SLOTS + 1);
}

TEST(malloc_and_free_use_the_list) {
  pin(first_cpu());
  void *p = malloc(40);   /* class 3 too */
  uintptr_t n = head_here(CLS) >> PCPU_COUNT_SHIFT;
  free(p);
  CHECK_EQ(head_here(CLS) >> PCPU_COUNT_SHIFT, n + 1);
  CHECK_EQX(head_here(CLS) & PCPU_ADDR_MASK, (uintptr_t)p);
  CHECK(malloc(48) == p);   /* the same CPU's last free */
  CHECK_EQX(((block_t *)p)->key, 0);   /* handed out: unmarked */
  /* A full list gives a batch back and keeps room. */
  void *many[4 * PCPU_SLOTS];
  for (int i = 0; i < 4 * PCPU_SLOTS; i++) CHECK((many[i] = malloc(48)) != NULL);
  for (int i = 0; i < 4 * PCPU_SLOTS; i++) {
    free(many[i]);
    CHECK((head_here(CLS) >> PCPU_COUNT_SHIFT) <= PCPU_SLOTS);
  }
  free(p);
}

/* Threads push and pop blocks while the main thread moves them between two
 * CPUs. A thread holds blocks, pushes some onto the list of the CPU it runs
 * on and pops as many back from the list of the CPU it runs on then (maybe
 * another, maybe other threads' blocks). Every block must end up exactly
 * once, in a thread's hands or in a list. */
#define MIG_CLS     20         /* a class nothing else in this process uses now */
#define MIG_THREADS 2
#define MIG_BLOCKS  12         /* per thread: all of them fit one list */
#define MIG_TOTAL   (MIG_THREADS * MIG_BLOCKS)
#define MIG_ROUNDS  300000
typedef struct { void *held[MIG_TOTAL]; int n; long refused; } mig_t;

static void *migrating(void *arg) {
  mig_t *m = arg;
  unsigned x = (unsigned)(uintptr_t)m;
  for (int r = 0; r < MIG_ROUNDS; r++) {
    x = x * 1103515245u + 12345u;
    int k = 1 + (int)((x >> 16) % MIG_BLOCKS);
    int pushed = 0;
    while (pushed < k && m->n > 0) {
      if (!percpu_push(MIG_CLS, m->held[m->n - 1])) { m->refused++; break; }
      m->n--, pushed++;
    }
    for (int i = 0; i < pushed; i++) {
      void *b = percpu_pop_raw(MIG_CLS);
      if (!b) break;
      m->held[m->n++] = b;
    }
  }
  return NULL;
}

TEST(migration_loses_and_duplicates_nothing) {
  int c0 = first_cpu(), c1 = second_cpu(c0);
  if (c1 < 0) {
    printf("  one CPU: nothing to migrate between\n");
    CHECK(c0 >= 0);
    return;
  }
  pin(c1); drain_here(MIG_CLS);
  pin(c0); drain_here(MIG_CLS);
  static mig_t m[MIG_THREADS];
  void *all[MIG_TOTAL];
  CHECK_EQ(heap_shared_take(MIG_CLS, all, MIG_TOTAL), MIG_TOTAL);
  for (int i = 0; i < MIG_TOTAL; i++) {
    ((block_t *)all[i])->key = span_marker(all[i]);
    m[i / MIG_BLOCKS].held[m[i / MIG_BLOCKS].n++] = all[i];
  }
  pthread_t th[MIG_THREADS];
  for (int t = 0; t < MIG_THREADS; t++) pthread_create(&th[t], NULL, migrating, &m[t]);
  for (int k = 0; k < 1000; k++) {   /* move them back and forth while they run */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET((k & 1) ? c1 : c0, &one);
    for (int t = 0; t < MIG_THREADS; t++) pthread_setaffinity_np(th[t], sizeof one, &one);
    usleep(100);
  }
  for (int t = 0; t < MIG_THREADS; t++) pthread_join(th[t], NULL);
  void *seen[2 * MIG_TOTAL];
  int n = 0;
  for (int t = 0; t < MIG_THREADS; t++) {
    CHECK_EQ(m[t].refused, 0);   /* no list was ever full */
    for (int i = 0; i < m[t].n; i++) seen[n++] = m[t].held[i];
  }
  for (int c = 0; c < 2; c++) {
    pin(c ? c1 : c0);
    void *b;
    while ((b = percpu_pop_raw(MIG_CLS)) != NULL) {
      CHECK(n < 2 * MIG_TOTAL);
      seen[n++] = b;
    }
  }
  CHECK_EQ(n, MIG_TOTAL);
  for (int i = 0; i < MIG_TOTAL; i++) {
    int found = 0;
    for (int j = 0; j < n; j++) found += seen[j] == all[i];
    CHECK_EQ(found, 1);
  }
  heap_shared_give(all, MIG_TOTAL);
}

/* A child that misuses a cached block must die with tidalloc's report:
 * what it wrote to stderr, which names words. */
static const char *dies_reporting(void (*misuse)(void), const char *words) {
  static char out[4096];
  int fd[2];
  CHECK(pipe(fd) == 0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    misuse();
    _exit(0);
  }
  close(fd[1]);
  size_t n = 0;
  ssize_t r;
  while (n < sizeof out - 1 && (r = read(fd[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
  out[n] = 0;
  close(fd[0]);
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
  if (!strstr(out, words)) FAIL("no \"%s\" in: %s", words, out);
  return out;
}

static void double_free(void) {
  void *p = malloc(48);
  free(p);               /* into the list */
  free(p);
}

static void write_after_free(void) {
  void *p = malloc(48);
  fprintf(stderr, "block %p\n", p);
  free(p);
  memset(p, 0, 8);       /* its link: zeros decode to the odd link key, always caught */
  (void)malloc(48);      /* pops it */
}

TEST(checks_still_hold) {
  pin(first_cpu());
  dies_reporting(double_free, "double free");
  const char *out = dies_reporting(write_after_free, "in malloc");
  /* The report names the block whose link was overwritten. */
  void *p;
  char want[64];
  CHECK(sscanf(out, "block %p", &p) == 1);
  snprintf(want, sizeof want, "write after free of %p", p);
  if (!strstr(out, want)) FAIL("no \"%s\" in: %s", want, out);
}

int main(int argc, char **argv) {
  if (__rseq_size == 0) {
    printf("glibc registered no rseq area: the lists stay off\n");
    return 77;
  }
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return 1;
  return UNIT_RUN(argc, argv);
}
