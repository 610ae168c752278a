/* Time per operation (a malloc or a free) of a malloc(SIZE)+free pair in a
 * steady loop, on THREADS threads at once: the slowest thread's ns/op. For
 * the per-CPU experiment's rule (issue 14, item 5: adopt only at most 1 ns
 * more per operation), run interleaved against two libraries by
 * bench/micro/percpu_whole.sh. Usage: pair_ns [ITERS [SIZE [THREADS]]] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long iters;
static size_t size;

static void *run(void *arg) {
  void *volatile sink;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < iters; i++) {
    void *p = malloc(size);
    sink = p;
    free(sink);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  *(double *)arg = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (2.0 * (double)iters);
  return NULL;
}

int main(int argc, char **argv) {
  iters = argc > 1 ? atol(argv[1]) : 50000000;
  size = argc > 2 ? (size_t)atol(argv[2]) : 32;
  int threads = argc > 3 ? atoi(argv[3]) : 1;
  if (iters < 1 || threads < 1 || threads > 64) {
    fprintf(stderr, "usage: pair_ns [ITERS [SIZE [THREADS<=64]]]\n");
    return 2;
  }
  pthread_t t[64];
  double ns[64], worst = 0;
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, run, &ns[i]);
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    if (ns[i] > worst) worst = ns[i];
  }
  printf("%.3f\n", worst);
  return 0;
}
