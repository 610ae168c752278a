/*
 * Force-included (-include) into the stress tests of the TIDAL_TSAN_LIB
 * build, which run on libtidalloc_tsan.so: tidalloc itself built with
 * ThreadSanitizer, its entry points renamed tdt_malloc, tdt_free, ... (see
 * cmake/tsan_lib.cmake). The TSan runtime owns the plain names (malloc, free,
 * ...) in every TSan program, so the tests call tidalloc through the tdt_
 * names: this header maps the names in the test sources to them.
 *
 * The system headers that declare these functions are included first, so the
 * macros below never reach into them (their include guards make the tests'
 * own #includes no-ops). libc keeps using TSan's malloc for its own buffers
 * (stdio, pthread_create, dlerror...), which is fine as long as no block
 * crosses between the two allocators: strdup/strndup, whose result the tests
 * free, are redirected too.
 */
#ifndef TIDAL_TSAN_RENAME_H
#define TIDAL_TSAN_RENAME_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* testutil.h: the allocator is tidalloc (identity checked on the tdt_ names,
 * glibc semantics expected) although the program is built with TSan. */
#define TIDAL_TEST_TSAN_LIB 1

#ifdef __cplusplus
extern "C" {
#endif
void *tdt_malloc(size_t);
void tdt_free(void *);
void *tdt_calloc(size_t, size_t);
void *tdt_realloc(void *, size_t);
void *tdt_reallocarray(void *, size_t, size_t);
void *tdt_aligned_alloc(size_t, size_t);
int tdt_posix_memalign(void **, size_t, size_t);
void *tdt_memalign(size_t, size_t);
void *tdt_valloc(size_t);
void *tdt_pvalloc(size_t);
size_t tdt_malloc_usable_size(void *);
void tdt_free_sized(void *, size_t);
void tdt_free_aligned_sized(void *, size_t, size_t);
void tdt_cfree(void *);
int tdt_malloc_trim(size_t);
struct mallinfo tdt_mallinfo(void);
struct mallinfo2 tdt_mallinfo2(void);
void tdt_malloc_stats(void);
int tdt_malloc_info(int, FILE *);
int tdt_mallopt(int, int);
#ifdef __cplusplus
}
#endif

/* Object-like, so that &malloc (testutil.h's identity check) is tidalloc's
 * too. */
#define malloc tdt_malloc
#define free tdt_free
#define calloc tdt_calloc
#define realloc tdt_realloc
#define reallocarray tdt_reallocarray
#define aligned_alloc tdt_aligned_alloc
#define posix_memalign tdt_posix_memalign
#define memalign tdt_memalign
#define valloc tdt_valloc
#define pvalloc tdt_pvalloc
#define malloc_usable_size tdt_malloc_usable_size
#define free_sized tdt_free_sized
#define free_aligned_sized tdt_free_aligned_sized
#define cfree tdt_cfree
#define malloc_trim tdt_malloc_trim
#define malloc_stats tdt_malloc_stats
#define malloc_info tdt_malloc_info
#define mallopt tdt_mallopt
/* Function-like: `struct mallinfo` and `struct mallinfo2` keep their tags. */
#define mallinfo() tdt_mallinfo()
#define mallinfo2() tdt_mallinfo2()

/* libc's strdup would return a block of TSan's allocator. */
static inline __attribute__((unused)) char *tt_tsan_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = (char *)tdt_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = 0;
    }
    return d;
}
static inline __attribute__((unused)) char *tt_tsan_strdup(const char *s)
{
    return tt_tsan_strndup(s, (size_t)-1);
}
#undef strdup
#undef strndup
#define strdup tt_tsan_strdup
#define strndup tt_tsan_strndup

#endif /* TIDAL_TSAN_RENAME_H */
