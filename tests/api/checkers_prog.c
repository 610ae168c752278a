/* The program tests/api/under_checkers.sh runs under memcheck and ASan:
 * threads, cross-size blocks, calloc, a huge block grown by realloc. It
 * must not itself have errors (the checkers are to find none). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *work(void *arg) {
  void *p[100];
  for (int r = 0; r < 50; r++) {
    for (int i = 0; i < 100; i++) { p[i] = malloc(16 + (size_t)i * 40); memset(p[i], i, 16); }
    for (int i = 0; i < 100; i++) free(p[i]);
  }
  return arg;
}

int main(void) {
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, work, NULL);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  char *s = calloc(1, 100);
  strcpy(s, "checkers_prog: ok");
  char *b = malloc((size_t)5 << 20);
  memset(b, 1, (size_t)5 << 20);
  b = realloc(b, (size_t)9 << 20);
  if (!b || b[100] != 1) return 1;
  puts(s);
  free(s);
  free(b);
  return 0;
}
