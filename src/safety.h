/*
 * safety.h — reporting heap misuse and internal failures, and the assertion
 * tiers.
 *
 * Tier 1, TD_CHECK: cheap checks that are always on; on failure they print one
 *   line naming the misuse and the pointer, then abort.
 * Tier 2, TD_DASSERT: internal invariants, compiled only with TIDAL_DEBUG.
 * Tier 3: whole-structure validators (page_validate, heap_validate, …) that
 *   tests call explicitly; they live with the structures they check.
 * The error path never allocates: messages are formatted on the stack.
 * It may call: os (stderr) and abort().
 */
#ifndef TIDAL_SAFETY_H
#define TIDAL_SAFETY_H

#include "util.h"

/* "tidalloc: <what> of <ptr> (<detail>) in <func>()" then abort(). detail may
 * be NULL; a non-negative `num` is appended to detail (e.g. the size class). */
TD_COLD TD_NORETURN void safety_report(const char *what, const void *ptr, const char *detail,
                                       long num, const char *func);
TD_COLD TD_NORETURN void safety_assert_fail(const char *file, int line, const char *expr);
/* How a misused pointer is named for the function fn: free and its kin say
 * "invalid free" / "double free"; realloc, malloc_usable_size and the like
 * "invalid pointer" / "use of a freed block". */
void safety_misuse_words(const char *fn, const char **invalid, const char **twice);
/* Print a warning line (no abort). */
TD_COLD void safety_warn(const char *msg1, const char *msg2);

/* Small stack formatters used by the error path and stats. Return chars written. */
size_t fmt_u64(char *buf, uint64_t v);
size_t fmt_hex(char *buf, uint64_t v);

/* TIDAL_CHECKS=0 (cmake -DTIDAL_CHECKS=OFF) compiles the default misuse
 * checks of the allocation fast paths out: only to measure what they cost. */
#ifndef TIDAL_CHECKS
#define TIDAL_CHECKS 1
#endif

#define TD_CHECK(cond, what, ptr, func) \
  do { if (TD_UNLIKELY(!(cond))) safety_report((what), (ptr), NULL, -1, (func)); } while (0)

#ifdef TIDAL_DEBUG
#define TD_DASSERT(cond) \
  do { if (TD_UNLIKELY(!(cond))) safety_assert_fail(__FILE__, __LINE__, #cond); } while (0)
#else
#define TD_DASSERT(cond) do { (void)sizeof(cond); } while (0)
#endif

#endif
