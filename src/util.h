/*
 * util.h — compiler helpers, constants and bit tricks shared by every module.
 *
 * Contract: header-only, no state, no calls into other modules or the OS.
 * Every layer may include it.
 * It may call: nothing.
 */
#ifndef TIDAL_UTIL_H
#define TIDAL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_LIKELY(x)   __builtin_expect(!!(x), 1)
#define TD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TD_INLINE      static inline __attribute__((always_inline))
#define TD_NOINLINE    __attribute__((noinline))
#define TD_COLD        __attribute__((cold, noinline))
#define TD_NORETURN    __attribute__((noreturn))
#define TD_EXPORT      __attribute__((visibility("default")))
#define TD_HIDDEN      __attribute__((visibility("hidden")))
#define TD_CACHELINE   64
#define TD_ALIGNED(n)  __attribute__((aligned(n)))

/* Memory geometry. A "page" is the base page; a "unit" is one 2 MiB
 * hugepage-sized, hugepage-aligned range: the page layer's building block. */
#define TD_PAGE_SHIFT  12
#define TD_PAGE        ((size_t)1 << TD_PAGE_SHIFT)
#define TD_UNIT_SHIFT  21
#define TD_UNIT        ((size_t)1 << TD_UNIT_SHIFT)
#define TD_UNIT_PAGES  (TD_UNIT / TD_PAGE)          /* 512 */

/* A time that never comes: "no work due", "never expires". */
#define TD_NEVER       UINT64_MAX

/* The malloc alignment guarantee (max_align_t on x86-64 and aarch64). */
#define TD_QUANTUM     16

TD_INLINE uintptr_t td_align_up(uintptr_t x, uintptr_t a)   { return (x + a - 1) & ~(a - 1); }
TD_INLINE uintptr_t td_align_down(uintptr_t x, uintptr_t a) { return x & ~(a - 1); }
TD_INLINE bool td_is_pow2(size_t x)                          { return x != 0 && (x & (x - 1)) == 0; }
TD_INLINE unsigned td_log2_floor(size_t x)                   { return 63u - (unsigned)__builtin_clzl(x); }
TD_INLINE size_t td_pages_of(size_t bytes) { return (bytes + TD_PAGE - 1) >> TD_PAGE_SHIFT; }

#define TD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
