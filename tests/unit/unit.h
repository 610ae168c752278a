/* Minimal harness for the white-box unit tests: they link tidalloc's objects
 * directly (so the test process itself runs on tidalloc) and call internals.
 *
 * A test file is a list of named cases:
 *
 *   TEST(free_caches_mapping) {
 *     ...
 *     CHECK(p != NULL);
 *     CHECK_EQ(st.cached_count, 1);
 *   }
 *
 *   int main(int argc, char **argv) {
 *     ... setup (options, hooks) ...
 *     return UNIT_RUN(argc, argv);     (or UNIT_MAIN() when there is no setup)
 *   }
 *
 * - Cases run in the order they are written, one after the other, in one
 *   process: a case may build on what an earlier one left behind, and says so
 *   where it does. `unit_x a b` runs only the cases named a and b.
 * - A failing CHECK prints "case <name>: file:line: ..." and exits 1. A crash
 *   or abort inside a case (a validator, a tidalloc misuse report) prints
 *   "case <name>: killed by signal N" first, then takes its course.
 * - A case that makes no check fails: every case must be able to fail.
 *   VALIDATE(stmt) counts a call to a validator that aborts on its own
 *   (page_validate, heap_validate) as a check.
 * - Each case prints one line with its check count and time.
 */
#ifndef TIDAL_UNIT_H
#define TIDAL_UNIT_H
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct unit_case_s {
  const char *name;
  void (*fn)(void);
  int line;
  struct unit_case_s *next;
} unit_case_t;

static unit_case_t *unit_cases __attribute__((unused));          /* sorted by line */
static const char *volatile unit_case_name __attribute__((unused)); /* the running case */
static int unit_checks __attribute__((unused));

/* Constructors run in no guaranteed order: keep the list in source order. */
static inline void unit_register(unit_case_t *c) {
  unit_case_t **pp = &unit_cases;
  while (*pp && (*pp)->line < c->line) pp = &(*pp)->next;
  c->next = *pp;
  *pp = c;
}

#define TEST(name)                                                                    \
  static void unit_test_##name(void);                                                 \
  static unit_case_t unit_case_##name = { #name, unit_test_##name, __LINE__, NULL };  \
  __attribute__((constructor)) static void unit_register_##name(void) {               \
    unit_register(&unit_case_##name);                                                 \
  }                                                                                   \
  static void unit_test_##name(void)

#define UNIT_COUNT() __atomic_fetch_add(&unit_checks, 1, __ATOMIC_RELAXED)
#define UNIT_WHERE() (unit_case_name ? "case " : ""), (unit_case_name ? unit_case_name : "setup")

/* Fail the running case with a printf-style message. */
#define FAIL(...) do {                                                                \
  char _m[512];                                                                       \
  snprintf(_m, sizeof _m, __VA_ARGS__);                                               \
  fprintf(stderr, "%s%s: %s:%d: %s\n", UNIT_WHERE(), __FILE__, __LINE__, _m);         \
  exit(1); } while (0)
#define CHECK(cond) do { UNIT_COUNT(); if (!(cond)) FAIL("check failed: %s", #cond); } while (0)
#define CHECK_EQ(a, b) do { UNIT_COUNT(); long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) \
  FAIL("%s == %lld, expected %s == %lld", #a, _a, #b, _b); } while (0)
/* Unsigned/hex variant for addresses and 64-bit values. */
#define CHECK_EQX(a, b) do { UNIT_COUNT(); unsigned long long _a = (unsigned long long)(a), _b = (unsigned long long)(b); \
  if (_a != _b) FAIL("%s == %#llx, expected %s == %#llx", #a, _a, #b, _b); } while (0)
#define VALIDATE(stmt) do { UNIT_COUNT(); stmt; } while (0)

/* Old style (one main, no cases): still accepted. */
#define UNIT_DONE() do { printf("%s: %d checks passed\n", __FILE__, unit_checks); return 0; } while (0)

/* Fatal signals inside a case name it first, then take their course: the
 * handler that was installed before (tidalloc's fault reporter in the
 * hardened mode), or the default action. */
static struct sigaction unit_old_action[32];

static inline void unit_signal(int sig, siginfo_t *info, void *ctx) {
  char buf[160] = "case ";
  size_t n = 5;
  const char *name = unit_case_name ? unit_case_name : "(setup)";
  for (size_t i = 0; name[i] && n < sizeof buf - 40; i++) buf[n++] = name[i];
  memcpy(buf + n, ": killed by signal ", 19); n += 19;
  if (sig >= 10) buf[n++] = (char)('0' + sig / 10);
  buf[n++] = (char)('0' + sig % 10);
  buf[n++] = '\n';
  ssize_t w = write(2, buf, n);
  (void)w;
  struct sigaction *old = &unit_old_action[sig];
  sigaction(sig, old, NULL);
  if (old->sa_flags & SA_SIGINFO) {
    old->sa_sigaction(sig, info, ctx);      /* a fault then happens again */
  } else if (old->sa_handler != SIG_IGN && old->sa_handler != SIG_DFL) {
    old->sa_handler(sig);
  } else {
    signal(sig, SIG_DFL);
    raise(sig);
  }
}

static inline double unit_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline int unit_run(const char *file, int argc, char **argv) {
  static const int sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL };
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = unit_signal;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(sigs[i], &sa, &unit_old_action[sigs[i]]);
  }
  int ran = 0;
  for (unit_case_t *c = unit_cases; c; c = c->next) {
    if (argc > 1) {
      int want = 0;
      for (int i = 1; i < argc; i++) want |= strcmp(argv[i], c->name) == 0;
      if (!want) continue;
    }
    int before = __atomic_load_n(&unit_checks, __ATOMIC_RELAXED);
    double t0 = unit_ms();
    unit_case_name = c->name;
    c->fn();
    unit_case_name = NULL;
    int made = __atomic_load_n(&unit_checks, __ATOMIC_RELAXED) - before;
    if (made == 0) {
      fprintf(stderr, "case %s: %s: made no checks\n", c->name, file);
      exit(1);
    }
    printf("case %s: %d checks, %.0f ms\n", c->name, made, unit_ms() - t0);
    fflush(stdout);
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "%s: no case ran\n", file);
    return 1;
  }
  printf("%s: %d cases, %d checks passed\n", file, ran, unit_checks);
  return 0;
}

#define UNIT_RUN(argc, argv) unit_run(__FILE__, (argc), (argv))
#define UNIT_MAIN() int main(int argc, char **argv) { return UNIT_RUN(argc, argv); }

static inline unsigned long long unit_rand(unsigned long long *s) {
  *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s;
}
#endif
