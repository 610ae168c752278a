/* Minimal harness for the white-box unit tests: they link tidalloc's objects
 * directly (so the test process itself runs on tidalloc) and call internals. */
#ifndef TIDAL_UNIT_H
#define TIDAL_UNIT_H
#include <stdio.h>
#include <stdlib.h>

static int unit_checks;
#define CHECK(cond) do { unit_checks++; if (!(cond)) { \
  fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define CHECK_EQ(a, b) do { unit_checks++; long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { \
  fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, _a, #b, _b); exit(1); } } while (0)
#define UNIT_DONE() do { printf("%s: %d checks passed\n", __FILE__, unit_checks); return 0; } while (0)

static inline unsigned long long unit_rand(unsigned long long *s) {
  *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s;
}
#endif
