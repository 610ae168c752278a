/*
 * api.h — internal entry points shared by the C API (api.c) and the C++
 * operator new/delete family (cxx_new.cc).
 *
 * What it is: the top layer, a router. It initialises the layers below on
 * first use, runs the fork handlers (in lock-rank order) and keeps errno,
 * and implements every exported symbol with glibc's semantics by routing
 * each request to its owner: small blocks to heap, larger ones to large,
 * hardened-mode ones to secure, object caches, cleaners, statistics and
 * control to their modules. It knows no span or heap internals.
 * What it is not: an allocator of its own.
 * It may call: every module below it.
 */
#ifndef TIDAL_API_H
#define TIDAL_API_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

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
