/* Instruction count of a malloc(SIZE)+free pair in a steady loop, for
 * valgrind --tool=callgrind. Run twice with different iteration counts; the
 * difference divided by the difference in iterations is the per-pair cost,
 * free of start-up and initialisation. Usage: pair ITERS [SIZE] */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  long iters = argc > 1 ? atol(argv[1]) : 1000000;
  size_t size = argc > 2 ? (size_t)atol(argv[2]) : 32;
  void *volatile sink;
  for (long i = 0; i < iters; i++) {
    void *p = malloc(size);
    sink = p;
    free(sink);
  }
  return 0;
}
