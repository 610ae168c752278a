/*
 * api.h — internal entry points shared by the C API (api.c) and the C++
 * operator new/delete family (cxx_new.cc).
 *
 * What it is: the top layer. It initialises the layers below on first use,
 * routes each request to the small (heap), large (page) or huge path, and
 * implements every exported allocation symbol with glibc's semantics.
 * It may call: every module below it.
 */
#ifndef TIDAL_API_H
#define TIDAL_API_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Requests above this are served by a mapping of their own (huge.h). */
#define TD_LARGE_MAX ((size_t)1 << 20)

void *td_malloc(size_t size);
void td_free(void *p);
void td_free_sized(void *p, size_t size);
void td_free_aligned_sized(void *p, size_t size);
/* align: any power of two. Sets errno to ENOMEM on failure. */
void *td_aligned(size_t align, size_t size);

#ifdef __cplusplus
}
#endif

#endif
