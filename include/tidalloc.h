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
#include <stdint.h>

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
 *   stats.mutexes.count, stats.mutexes.<i>.{name,acquisitions,contended,wait_ns,hold_ns,hold_max_ns},
 *   thread.allocated, thread.freed (uint64_t), thread.flush (action),
 *   purge (action; optional uint64_t: bytes released), background_thread (bool, read/write). */
int tidal_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen);

/* Print statistics through write(arg, text) (NULL: stderr). opts NULL or ""
 * for text, "json" for a JSON document (schema: docs/stats.md). */
typedef void (*tidal_write_cb)(void *arg, const char *text);
void tidal_stats_print(tidal_write_cb write, void *arg, const char *opts);

/* ---- Memory pressure: cleaners and object caches ------------------------
 * When memory runs short (PSI, the cgroup's limit or pressure events, the
 * memory_limit option, or tidal_release), tidalloc drains caches, cheapest
 * first: its own (thread caches, cached mappings, dirty and lazily freed
 * pages), then, at critical pressure or when asked for more, the
 * application's registered cleaners. */

/* A cleaner releases cached memory: asked for bytes_wanted, it returns the
 * bytes it released (0 if it keeps everything, e.g. at its retain floor).
 * It runs with no allocator lock held, on tidalloc's background thread or on
 * the thread that called tidal_release. It may allocate and free, unregister
 * itself or other cleaners, and create or destroy object caches;
 * tidal_release called from a cleaner returns 0. */
typedef size_t (*tidal_cleaner_fn)(void *arg, size_t bytes_wanted);

/* Returns an id (>= 0) for tidal_cleaner_unregister, or -1 when full. */
int tidal_cleaner_register(const char *name, tidal_cleaner_fn fn, void *arg);
/* Returns 0, or -1 for an unknown id. Once it returns the cleaner is not
 * running (unless the caller is that cleaner) and is never called again. */
int tidal_cleaner_unregister(int id);

/* Release about `bytes` now (SIZE_MAX: everything that can go): tidalloc's
 * caches first, then the application's cleaners. Returns bytes released. */
size_t tidal_release(size_t bytes);

/* Fixed-size objects carved from 2 MiB, hugepage-aligned slabs, so that a
 * drain gives whole hugepages back. Thread-safe. `retain` objects stay
 * available through every drain. align: 0 (16) or a power of two up to the
 * page size. There is no limit on the number of caches; under critical
 * pressure or tidal_release every cache is drained (one cleaner,
 * "tidalloc:object_caches"). */
typedef struct tidal_objcache tidal_objcache_t;
tidal_objcache_t *tidal_objcache_create(const char *name, size_t size, size_t align, size_t retain);
void *tidal_objcache_alloc(tidal_objcache_t *cache);
void tidal_objcache_free(tidal_objcache_t *cache, void *obj);
/* Give back whole empty slabs while keeping `retain` free objects; returns bytes. */
size_t tidal_objcache_drain(tidal_objcache_t *cache, size_t bytes_wanted);
/* Every object must have been freed. Destroying a cache twice is reported
 * as misuse. */
void tidal_objcache_destroy(tidal_objcache_t *cache);

/* ---- heap profiling (TIDALLOC_CONF=prof:true; docs/profiling.md) ----
 * Hooks are set with tidal_ctl("prof.hooks.<name>", NULL, NULL, &fn,
 * sizeof fn) and read back the same way; NULL removes one. A hook runs on
 * the allocating (or freeing, or dumping) thread with no allocator lock
 * held; what it allocates is served but never sampled. It must not
 * longjmp or throw out of the allocator, and should be quick: it runs
 * inside the sampled malloc or free.
 * backtrace: fill pcs with at most max return addresses (innermost first)
 * and return how many; it replaces tidalloc's unwinder (call backtrace(3)
 * from it to augment). */
typedef unsigned (*tidal_prof_backtrace_hook)(void **pcs, unsigned max);
/* sample / sample_free: a sampled block of `size` requested bytes, standing
 * for `weight` blocks, allocated at the stack pcs[0..depth). */
typedef void (*tidal_prof_sample_hook)(const void *ptr, size_t size, double weight, void *const *pcs,
                                       unsigned depth);
/* dump: called with the file's path after each dump is written. */
typedef void (*tidal_prof_dump_hook)(const char *path);
/* One live allocation site: its stack, its unbiased live bytes and blocks. */
typedef void (*tidal_prof_visit_fn)(void *arg, void *const *pcs, unsigned depth, size_t bytes, size_t count);
/* Call fn once per live allocation site (from a copy: fn may allocate and
 * call tidal_ctl). Returns the number of sites, or -1 when profiling is off. */
long tidal_prof_visit(tidal_prof_visit_fn fn, void *arg);

/* ---- heaps with page sources (docs/heaps.md) ----
 * A heap allocates from memory its page source supplies, in 2 MiB-aligned
 * pieces. Any thread may allocate from it; plain free, realloc and
 * malloc_usable_size work on its blocks from any thread. Zeroed members
 * mean the default behaviour. */
typedef struct tidal_page_source {
  /* size and align: multiples of 2 MiB; returns readable, writable memory
   * aligned to align, or NULL on failure. Required. */
  void *(*map)(void *ctx, size_t size, size_t align);
  /* NULL: memory is kept, never given back. */
  void (*unmap)(void *ctx, void *addr, size_t size);
  /* Free pages the heap no longer needs; lazy: may be taken later (MADV_FREE),
   * else now. NULL: never purged. 0 on success. */
  int (*purge)(void *ctx, void *addr, size_t size, int lazy);
  void *ctx;
} tidal_page_source_t;

typedef struct tidal_heap_config {
  const tidal_page_source_t *source;   /* NULL: the default source (the OS) */
  int metadata_use_source;             /* nonzero: this heap's metadata comes from source too */
  const char *name;                    /* shown in statistics (copied, up to 31 bytes) */
} tidal_heap_config_t;

typedef struct tidal_heap tidal_heap_t;

/* The default source (anonymous mappings), to wrap. */
const tidal_page_source_t *tidal_page_source_default(void);
/* NULL with errno ENOMEM (the source or metadata failed) or EINVAL (no map). */
tidal_heap_t *tidal_heap_create(const tidal_heap_config_t *config);
void *tidal_heap_malloc(tidal_heap_t *h, size_t size);
void *tidal_heap_calloc(tidal_heap_t *h, size_t n, size_t size);
/* p from any heap (or NULL); the result is h's. */
void *tidal_heap_realloc(tidal_heap_t *h, void *p, size_t size);
void *tidal_heap_aligned_alloc(tidal_heap_t *h, size_t align, size_t size);
/* Frees every block of h, keeps its memory (huge blocks' go back to the source). */
void tidal_heap_reset(tidal_heap_t *h);
/* Frees every block of h and gives all its memory back to the source. */
void tidal_heap_destroy(tidal_heap_t *h);
/* fn(block, usable, arg) for every live block of h, with h's lock held: fn
 * must not allocate from or free to h (reported and aborted). A nonzero
 * return from fn stops the walk and is returned. */
int tidal_heap_visit(tidal_heap_t *h, int (*fn)(void *block, size_t usable, void *arg), void *arg);

typedef struct tidal_heap_stats {
  char name[32];
  size_t allocated;        /* bytes of live blocks (their usable sizes) */
  size_t active;           /* bytes of pages in use for blocks */
  size_t mapped;           /* bytes the source gave and the heap holds */
  size_t dirty, muzzy;     /* free pages not yet purged / lazily purged */
  size_t metadata;         /* bytes of metadata from the source (metadata_use_source) */
  uint64_t maps, map_failures, unmaps, purges;   /* calls of the source's hooks */
} tidal_heap_stats_t;
/* 0, or -1 when h is NULL. */
int tidal_heap_stats(tidal_heap_t *h, tidal_heap_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TIDALLOC_H */
