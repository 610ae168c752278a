/*
 * tidalloc — a hugepage-aware general-purpose memory allocator for Linux.
 *
 * Linking with -ltidalloc (or LD_PRELOAD=libtidalloc.so) replaces the
 * standard allocation functions: malloc, free, calloc, realloc,
 * reallocarray, aligned_alloc, posix_memalign, memalign, valloc, pvalloc,
 * malloc_usable_size, free_sized, free_aligned_sized, cfree, malloc_trim,
 * mallinfo2, the glibc-internal __libc_* names, and C++ operator new/delete.
 * Those keep their standard declarations (<stdlib.h>, <malloc.h>); this
 * header declares only what tidalloc adds.
 */
#ifndef TIDALLOC_H
#define TIDALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TIDAL_VERSION_MAJOR 0
#define TIDAL_VERSION_MINOR 1
#define TIDAL_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH". */
const char *tidal_version(void);

/* Usable size of a block returned by this allocator (same as
 * malloc_usable_size). 0 for NULL. */
size_t tidal_usable_size(const void *ptr);

/* Give every free page that tidalloc holds back to the operating system now,
 * after flushing the calling thread's cache. Returns the number of bytes
 * released. malloc_trim(0) does the same. */
size_t tidal_purge(void);

/* Return the calling thread's cached free memory and pending cross-thread
 * frees to their owners. Safe to call at any time. */
void tidal_thread_flush(void);

/* The control namespace (in the spirit of jemalloc's mallctl). Reads the
 * value of `name` into *oldp when oldp/oldlenp are given (*oldlenp must equal
 * the value's size), and writes newp/newlen when given.
 * Returns 0, ENOENT (unknown name), EINVAL (bad length or value) or EPERM
 * (writing a read-only name). Names (see docs/ctl.md):
 *   version (const char *), epoch (uint64_t; write to refresh stats.*),
 *   opt.<option> (bool, int64_t, double, const char *; read-only),
 *   stats.{allocated,active,resident,mapped,retained,metadata,...} (size_t),
 *   stats.pages.*, stats.huge.*, stats.syscalls.* (uint64_t),
 *   stats.classes.count, stats.classes.<i>.{size,requests,frees,live,slabs,capacity,utilization},
 *   stats.mutexes.count, stats.mutexes.<i>.{name,acquisitions,contended,wait_ns},
 *   thread.allocated, thread.freed (uint64_t), thread.flush (action),
 *   purge (action; optional uint64_t: bytes released), background_thread (bool, read/write). */
int tidal_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen);

/* Print statistics through write(arg, text) (NULL: stderr). opts NULL or ""
 * for text, "json" for a JSON document (schema: docs/stats.md). */
typedef void (*tidal_write_cb)(void *arg, const char *text);
void tidal_stats_print(tidal_write_cb write, void *arg, const char *opts);

#ifdef __cplusplus
}
#endif

#endif /* TIDALLOC_H */
