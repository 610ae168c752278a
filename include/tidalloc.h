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

#ifdef __cplusplus
}
#endif

#endif /* TIDALLOC_H */
