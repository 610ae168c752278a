/* Defect: malloc, free and malloc_trim acted on a pending thread
 * cancellation (a wake-up write() is a cancellation point), and a thread
 * cancelled inside malloc_trim left the global heap's lock held, so the next
 * fork hung. POSIX does not make them cancellation points; glibc's never act
 * on a pending cancel.
 * A thread with a cancel pending (deferred mode) runs every path that can
 * reach a system call: small, large and huge allocations and frees (which
 * wake the background thread), realloc by mremap, calloc, aligned
 * allocation, remote frees, purges, drains and statistics. It must reach its
 * end; the test then forks (every allocator lock must be free). */
#include "testutil.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/wait.h>

static volatile int armed, finished;
static void *shared_blocks[256];

static void every_path(void) {
  void *big = malloc(8 << 20);
  memset(big, 1, 8 << 20);
  free(big);                                  /* huge free: wakes the background thread */
  for (int round = 0; round < 20; round++) {
    void *p[64];
    for (int i = 0; i < 64; i++) p[i] = malloc(1 << 20);   /* large runs */
    for (int i = 0; i < 64; i++) free(p[i]);               /* dirty pages: decay work */
    char *r = malloc(2 << 20);
    r = realloc(r, 24 << 20);                 /* mremap */
    free(r);
    free(calloc(1000, 1000));
    void *a = NULL;
    CHECK(posix_memalign(&a, 1 << 16, 100000) == 0);
    free(a);
  }
  for (int i = 0; i < 256; i++) free(shared_blocks[i]);   /* remote frees */
  malloc_trim(0);
  tidal_purge();
  tidal_release(1 << 20);
  tidal_thread_flush();
  uint64_t e = 1;
  tidal_ctl("epoch", NULL, NULL, &e, sizeof e);
  tidal_ctl("purge", NULL, NULL, NULL, 0);
}

static void *victim(void *arg) {
  (void)arg;
  while (!armed) {}                           /* no cancellation point here */
  every_path();
  finished = 1;
  pthread_testcancel();                        /* the cancel is acted on here, not before */
  return NULL;
}

int main(void) {
  tt_expect_tidalloc();
  tt_watchdog(60, "cancellation inside the allocator");
  for (int i = 0; i < 256; i++) shared_blocks[i] = malloc(48);
  for (int rep = 0; rep < 3; rep++) {
    finished = armed = 0;
    if (rep) for (int i = 0; i < 256; i++) shared_blocks[i] = malloc(48);
    sleep(1);                                  /* background thread idle, sleeping long */
    pthread_t t;
    pthread_create(&t, NULL, victim, NULL);
    pthread_cancel(t);
    armed = 1;
    void *ret;
    pthread_join(t, &ret);
    CHECK(ret == PTHREAD_CANCELED, "the cancel was never acted on (the test would test nothing)");
    CHECK(finished, "round %d: the thread was cancelled inside the allocator", rep);
  }
  pid_t pid = fork();                          /* hung when a cancel left a lock held */
  if (pid == 0) { free(malloc(100)); _exit(0); }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  printf("regress_cancel: OK\n");
  return 0;
}
