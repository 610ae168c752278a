#include "api.h"
#include "objcache.h"
#include "pressure.h"
#include "prof.h"
#include "secure.h"
#include "ctl.h"
#include "stats.h"
#include "background.h"
#include "conf.h"
#include "heap.h"
#include "large.h"
#include "lock.h"
#include "meta.h"
#include "os.h"
#include "pagemap.h"
#include "percpu.h"
#include "runcache.h"
#include "safety.h"
#include "sizeclass.h"
#include "tidalloc.h"
#include "uheap.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- initialisation ------------------------------------------------------- */

enum { INIT_NONE, INIT_RUNNING, INIT_DONE };
static int init_state = INIT_NONE;
static td_mutex_t init_lock = TD_MUTEX_INIT("init", RANK_INIT);

static void td_prefork(void);
static void maybe_start_background(void);
static void td_postfork_parent(void);
static void td_postfork_child(void);

static void init_layers(void) {
  os_init();
  conf_init();
  span_init();
  meta_init();
  pagemap_init();
  sizeclass_init();
  page_init();
  huge_init();
  large_init();
  runcache_init();
  secure_init();
  heap_init();
  uheap_init();
#if TIDAL_PERCPU
  percpu_init();
#endif
  background_init();
}

/* What may allocate runs once the allocator works. */
static void init_after(void) {
  pthread_atfork(td_prefork, td_postfork_parent, td_postfork_child);
  ctl_init();
  ctl_print_at_exit();
  prof_init();
  /* The main thread's heap has a destructor that tells the background
   * worker if main leaves with pthread_exit (background.h). */
  if (os_gettid() == getpid()) heap_thread_bind();
}

static TD_COLD void td_init(void) {
  mutex_lock(&init_lock);
  if (init_state != INIT_NONE) {
    mutex_unlock(&init_lock);
    return;
  }
  init_state = INIT_RUNNING;
  init_layers();
  __atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
  mutex_unlock(&init_lock);
  init_after();
}

TD_INLINE void td_ensure_init(void) {
  if (TD_UNLIKELY(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE)) td_init();
}

/* Run the initialisation early when the library is loaded, so that the first
 * allocation of a process does not pay for it (it would still work lazily). */
__attribute__((constructor)) static void td_constructor(void) {
  td_ensure_init();
  /* Outside any malloc: the unwinder's first call loads libgcc_s, and a
   * prof_signal dump needs the background thread to exist before the
   * signal comes (the handler can only wake it). */
  prof_warm();
  if (prof_enabled() && opt.prof_signal > 0) {
    background_request_start();
    maybe_start_background();
  }
}

/* ---- fork ----------------------------------------------------------------- */

/* Every lock, in rank order (lock.h): prefork takes them first to last, the
 * parent releases them last to first, the child resets them. The drain lock
 * is not taken (a cleaner may fork); the child resets it (pressure). */
typedef struct fork_step_s {
  enum lock_rank rank;             /* of the first lock the step takes */
  void (*pre)(void), (*parent)(void), (*child)(void);
} fork_step_t;

static void init_prefork(void) { mutex_lock(&init_lock); }
static void init_postfork_parent(void) { mutex_unlock(&init_lock); }
static void init_postfork_child(void) { mutex_postfork_child(&init_lock); }

static const fork_step_t fork_steps[] = {
  { RANK_INIT, init_prefork, init_postfork_parent, init_postfork_child },
  { RANK_CTL, ctl_prefork, ctl_postfork_parent, ctl_postfork_child },
  { RANK_UHEAP_REGISTRY, uheap_prefork, uheap_postfork_parent, uheap_postfork_child },
  { RANK_HEAP_GLOBAL, heap_prefork_global, heap_postfork_parent_global, heap_postfork_child_global },
  { RANK_SECURE_CLASS, secure_prefork, secure_postfork_parent, secure_postfork_child },
  { RANK_LARGE_QUARANTINE, large_prefork, large_postfork_parent, large_postfork_child },
  { RANK_RUNCACHE, runcache_prefork, runcache_postfork_parent, runcache_postfork_child },
  { RANK_HUGE, huge_prefork, huge_postfork_parent, huge_postfork_child },
  { RANK_OBJCACHE_REGISTRY, objcache_prefork, objcache_postfork_parent, objcache_postfork_child },
  { RANK_PAGE_LIST, page_prefork, page_postfork_parent, page_postfork_child },
  { RANK_HEAP_REGISTRY, heap_prefork, heap_postfork_parent, heap_postfork_child },
  { RANK_PROF, prof_prefork, prof_postfork_parent, prof_postfork_child },
  { RANK_PAGEMAP, pagemap_prefork, pagemap_postfork_parent, pagemap_postfork_child },
  { RANK_META, meta_prefork, meta_postfork_parent, meta_postfork_child },
  { RANK_PRESSURE, pressure_prefork, pressure_postfork_parent, pressure_postfork_child },
  { RANK_BACKGROUND, background_prefork, background_postfork_parent, background_postfork_child },
};
#define NFORK_STEPS TD_ARRAY_LEN(fork_steps)

static void td_prefork(void) {
  for (size_t i = 0; i < NFORK_STEPS; i++) {
    TD_DASSERT(i == 0 || fork_steps[i - 1].rank < fork_steps[i].rank);
    fork_steps[i].pre();
  }
}

static void td_postfork_parent(void) {
  for (size_t i = NFORK_STEPS; i-- > 0;) fork_steps[i].parent();
}

static void td_postfork_child(void) {
  for (size_t i = 0; i < NFORK_STEPS; i++) fork_steps[i].child();
  lock_witness_reset();   /* the locks the forking thread held are free in the child */
}

/* The background thread is started here, at the API layer's slow paths, where
 * no allocator lock is held (creating a thread allocates). Without it, a
 * profile dump that was asked for (signal, gdump) is written here too. */
static inline __attribute__((always_inline)) void maybe_start_background(void) {
  if (TD_UNLIKELY(background_start_pending())) background_start();
  if (TD_UNLIKELY(!opt.background_thread) && TD_UNLIKELY(prof_work_pending())) prof_deferred_work();
}

/* ---- routing by size --------------------------------------------------------- */

/* cls is 0 when the class table was read before initialisation (a static
 * binary's first malloc runs before constructors): recompute it from size. */
static TD_NOINLINE void *small_slow(size_t size, unsigned cls) {
  td_ensure_init();
  if (TD_UNLIKELY(opt.secure)) {
    void *s = secure_alloc(size, 0, false);
    if (!s) errno = ENOMEM;
    return s;
  }
  if (TD_UNLIKELY(cls == 0)) cls = sizeclass_of(size);
  void *p = heap_alloc_slow(tls_heap, cls);
  heap_t *h = tls_heap;   /* bound by now, unless the thread is past its destructor */
  if (TD_LIKELY(p != NULL) && h != &heap_empty && TD_UNLIKELY((h->prof_left -= (int64_t)size) < 0)) {
    void *q = prof_sample(h, size, 0, false, cls, __builtin_return_address(0));
    if (q) {
      free(p);
      p = q;
    }
  }
  maybe_start_background();
  if (TD_UNLIKELY(!p)) errno = ENOMEM;
  return p;
}

/* The heap profiler's countdown crossed zero on a block just popped: if the
 * profiler samples this allocation, the block goes back and the caller gets
 * a sampled one (prof.h). */
static TD_NOINLINE void *small_sampled(heap_t *h, void *p, size_t size, unsigned cls) {
  void *q = prof_sample(h, size, 0, false, cls, __builtin_return_address(0));
  if (!q) return p;
  free(p);
  return q;
}

/* The malloc fast path: a pop, then (heap profiling) the byte countdown,
 * which never crosses zero while profiling is off (prof_left = INT64_MAX). */
TD_INLINE void *small_alloc_heap(size_t size, unsigned cls) {
  heap_t *h = tls_heap;
  void *p = heap_pop(h, h->cur[cls], cls);
  if (TD_UNLIKELY(p == NULL)) return small_slow(size, cls);
  if (TD_LIKELY((h->prof_left -= (int64_t)size) >= 0)) return p;
  return small_sampled(h, p, size, cls);
}

#if TIDAL_PERCPU
/* The TIDAL_PERCPU experiment (percpu.h): an empty list is refilled from
 * the shared heap; with the lists off, the thread heaps serve. */
static TD_NOINLINE void *small_percpu_slow(size_t size, unsigned cls) {
  void *p = percpu_alloc_slow(cls);
  return p ? p : small_alloc_heap(size, cls);
}
#endif

/* A class that malloc's table resolves (1..PCPU_MAX_CLASS): the per-CPU
 * lists first in the TIDAL_PERCPU experiment. */
TD_INLINE void *small_alloc_lookup(size_t size, unsigned cls) {
#if TIDAL_PERCPU
  void *p = percpu_alloc(cls);
  return TD_LIKELY(p != NULL) ? p : small_percpu_slow(size, cls);
#else
  return small_alloc_heap(size, cls);
#endif
}

/* Any small class. */
TD_INLINE void *small_alloc(size_t size, unsigned cls) {
#if TIDAL_PERCPU
  if (cls <= PCPU_MAX_CLASS) return small_alloc_lookup(size, cls);
#endif
  return small_alloc_heap(size, cls);
}

/* Large requests count down too (their path is slow anyway); a thread that
 * has no heap yet gets one, so that its large requests are sampled. */
static void *large_sampled(size_t size, size_t align, bool zero) {
  heap_t *h = tls_heap;
  if (h == &heap_empty) {
    heap_thread_bind();
    h = tls_heap;
    if (h == &heap_empty) return NULL;
  }
  if ((h->prof_left -= (int64_t)size) >= 0) return NULL;
  return prof_sample(h, size, align, zero, 0, __builtin_return_address(0));
}

/* A small class for size at align (0: none): the plain class, or the
 * smallest whose blocks are aligned. */
static unsigned small_class(size_t size, size_t align) {
  if (size > SC_SMALL_MAX) return 0;
  if (align <= TD_QUANTUM) return sizeclass_of(size);
  return align <= TD_PAGE ? sizeclass_of_aligned(size, align) : 0;
}

static void *secure_generic(size_t size, size_t align, bool zero) {
  void *p = NULL;
  if (size <= PTRDIFF_MAX && align <= PTRDIFF_MAX / 2) p = secure_alloc(size, align, zero);
  if (!p) errno = ENOMEM;
  return p;
}

/* Anything that is not a small request with a table-resolved class. */
static TD_NOINLINE void *alloc_generic(size_t size, size_t align, bool zero) {
  td_ensure_init();
  if (TD_UNLIKELY(opt.secure)) return secure_generic(size, align, zero);
  if (size == 0) size = 1;   /* malloc(0) and friends: a unique, freeable block */
  unsigned cls = small_class(size, align);
  if (cls) {
    void *p = small_alloc(size, cls);
    if (p && zero) memset(p, 0, size);
    return p;
  }
  if (size > PTRDIFF_MAX || align > PTRDIFF_MAX / 2) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = TD_UNLIKELY(opt.prof) ? large_sampled(size, align, zero) : NULL;
  if (!p) p = large_alloc(size, align, zero);
  maybe_start_background();
  if (TD_UNLIKELY(!p)) errno = ENOMEM;
  return p;
}

/* ---- malloc / free ------------------------------------------------------------ */

TD_EXPORT void *malloc(size_t size) {
  if (TD_LIKELY(size <= SC_LOOKUP_MAX)) return small_alloc_lookup(size, sc_lookup[size]);
  return alloc_generic(size, 0, false);
}

/* The usable size of a block, by its owner. */
static size_t usable_of(const void *p, span_t *s) {
  switch (s->kind) {
    case SPAN_SLAB: return heap_block_size(s);
    case SPAN_LARGE:
    case SPAN_HUGE: return large_usable(s);
    case SPAN_SECURE:
    case SPAN_GUARDED:
    case SPAN_ZERO: return secure_usable(p, s);
    case SPAN_SAMPLED: return prof_usable(s);
    default: return 0;
  }
}

/* How free was called: plain, or sized (free_sized, C++ sized delete), or
 * sized and aligned (free_aligned_sized, aligned sized delete). */
enum free_mode { FREE_PLAIN, FREE_SIZED, FREE_ALIGNED_SIZED };

/* A size that cannot be the one the block was allocated with: larger than
 * the block, or (unaligned small blocks above HEAP_TIGHT_CLASS_MAX) at most
 * half of it, which no request that lands in this class, nor a realloc that
 * stayed in place, can be. */
TD_INLINE bool sized_bad(size_t usable, size_t size, bool slab, enum free_mode mode) {
  return size > usable || (mode == FREE_SIZED && slab && usable > HEAP_TIGHT_CLASS_MAX && size <= usable / 2);
}

static TD_COLD TD_NORETURN void sized_report(const void *p, size_t size, size_t usable, const char *fn) {
  char detail[96];
  size_t n = 0;
  static const char a[] = "size ", b[] = " passed, the block holds";
  memcpy(detail, a, sizeof a - 1); n += sizeof a - 1;
  n += fmt_u64(detail + n, size);
  memcpy(detail + n, b, sizeof b); n += sizeof b - 1;
  detail[n] = 0;
  safety_report("mismatched sized free", p, detail, (long)usable, fn);
}

/* The checks of a pointer handed to free, realloc or malloc_usable_size
 * (fn): a live block's start, of a matching size for sized frees. */
static void check_block(void *p, span_t *s, size_t size, enum free_mode mode, const char *fn) {
  if (TD_UNLIKELY(!s)) span_misuse(p, s, fn);
  switch (s->kind) {
    case SPAN_SLAB:
      if (TD_UNLIKELY(span_block_bad(s, p))) span_misuse(p, s, fn);
      break;
    case SPAN_SECURE:
    case SPAN_GUARDED:
    case SPAN_ZERO:
      secure_check(p, s, fn);
      break;
    case SPAN_LARGE:
    case SPAN_HUGE:
    case SPAN_SAMPLED:
      if (TD_UNLIKELY(p != (void *)s->start)) span_misuse(p, s, fn);
      break;
    default:
      span_misuse(p, s, fn);
  }
  if (mode == FREE_PLAIN) return;
  size_t usable = usable_of(p, s);
  if (TD_UNLIKELY(sized_bad(usable, size, s->kind == SPAN_SLAB, mode))) sized_report(p, size, usable, fn);
}

/* Every free the fast path did not take: NULL, remote, large, huge, sampled,
 * hardened, a heap's with a page source, an address outside the pagemap's
 * window (whatever its masked lookup found), and misuse. */
static TD_NOINLINE void free_generic(void *p, heap_t *h, size_t size, enum free_mode mode, const char *fn) {
  if (!p) return;
  int saved = errno;
  span_t *s = pagemap_lookup(p);
  check_block(p, s, size, mode, fn);
  switch (s->kind) {
    case SPAN_SLAB:
      if (heap_owns(h, s)) heap_free_local(h, s, p);   /* a slab outside the window */
      else if (uheap_owns(s)) uheap_free(s, p, fn);    /* a heap with a page source: under its lock */
      else heap_free_remote(h, s, p);
      break;
    case SPAN_LARGE:
    case SPAN_HUGE:
      if (uheap_owns(s)) uheap_free(s, p, fn);
      else large_free(s);
      break;
    case SPAN_SAMPLED:
      prof_free(s);   /* leaves the profile; s is a large or huge span again */
      large_free(s);
      break;
    default: secure_free(p, s, fn); break;
  }
  maybe_start_background();
  errno = saved;
}

/* Every free goes through here; mode is a constant at each call site. With
 * the checks on, the span comes from the masked lookup (pagemap.h): for an
 * address outside the window it is an alias's, which span_block_bad rejects,
 * and the generic path looks again, exactly, before it reports anything. */
TD_INLINE void free_inline(void *p, size_t size, enum free_mode mode, const char *fn) {
#if TIDAL_CHECKS
  span_t *s = pagemap_lookup_fast(p);
#else
  span_t *s = pagemap_lookup(p);
#endif
#if TIDAL_PERCPU
  if (s->owner == pcpu.shared && TD_LIKELY(!span_block_bad(s, p))) {   /* a block of the per-CPU lists' classes */
    if (mode != FREE_PLAIN && TD_UNLIKELY(sized_bad(heap_block_size(s), size, true, mode)))
      sized_report(p, size, heap_block_size(s), fn);
    percpu_free(s->cls, p);
    return;
  }
#endif
  heap_t *h = tls_heap;
#if TIDAL_CHECKS
  if (s->owner == h && TD_LIKELY(!span_block_bad_local(s, p))) {   /* s is never NULL here */
#else
  if (heap_owns(h, s) && TD_LIKELY(!span_block_bad_local(s, p))) {
#endif
#if TIDAL_CHECKS
    if (mode != FREE_PLAIN && TD_UNLIKELY(sized_bad(heap_block_size(s), size, true, mode)))
      sized_report(p, size, heap_block_size(s), fn);
#endif
    heap_free_local(h, s, p);
    return;
  }
  free_generic(p, h, size, mode, fn);
}

TD_EXPORT void free(void *p) { free_inline(p, 0, FREE_PLAIN, "free"); }

/* ---- the rest of the family --------------------------------------------------- */

TD_EXPORT void *calloc(size_t n, size_t size) {
  size_t total;
  if (TD_UNLIKELY(__builtin_mul_overflow(n, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  if (TD_LIKELY(total <= SC_LOOKUP_MAX)) {
    void *p = small_alloc_lookup(total, sc_lookup[total]);
    if (TD_LIKELY(p)) memset(p, 0, total);
    return p;
  }
  return alloc_generic(total, 0, true);
}

static void *realloc_move(void *p, size_t old_usable, size_t size) {
  void *q = alloc_generic(size, 0, false);
  if (!q) return NULL;
  memcpy(q, p, TD_MIN(old_usable, size));
  free(p);
  return q;
}

TD_EXPORT void *realloc(void *p, size_t size) {
  if (!p) return malloc(size);
  if (size == 0) {
    free(p);
    return NULL;
  }
  span_t *s = pagemap_lookup(p);
  check_block(p, s, 0, FREE_PLAIN, "realloc");
  if (TD_UNLIKELY(size > PTRDIFF_MAX)) {
    errno = ENOMEM;
    return NULL;
  }
  if (TD_UNLIKELY(uheap_owns(s))) {   /* stays in its heap */
    void *r = uheap_realloc(NULL, s, p, size);
    if (!r) errno = ENOMEM;
    return r;
  }
  void *q = NULL;
  switch (s->kind) {
    case SPAN_SLAB: q = heap_resize_in_place(s, size) ? p : NULL; break;
    case SPAN_LARGE:
    case SPAN_HUGE: q = large_resize(s, size); break;
    case SPAN_SAMPLED:   /* stays when it still fits well, like its class would */
      q = size <= prof_usable(s) && (size > prof_usable(s) / 2 || size <= HEAP_TIGHT_CLASS_MAX) ? p : NULL;
      break;
    default: break;   /* hardened blocks always move */
  }
  return q ? q : realloc_move(p, usable_of(p, s), size);
}

TD_EXPORT void *reallocarray(void *p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, total);
}

void *td_aligned(size_t align, size_t size) {
  if (align <= TD_QUANTUM) return malloc(size);
  return alloc_generic(size, align, false);
}

TD_EXPORT void *aligned_alloc(size_t align, size_t size) {
  if (TD_UNLIKELY(!td_is_pow2(align))) {
    errno = EINVAL;
    return NULL;
  }
  return td_aligned(align, size);
}

TD_EXPORT void *memalign(size_t align, size_t size) {
  /* glibc: small alignments mean malloc; others round up to a power of two. */
  if (align <= TD_QUANTUM) return malloc(size);
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!td_is_pow2(align)) align = (size_t)1 << (td_log2_floor(align) + 1);
  return td_aligned(align, size);
}

TD_EXPORT int posix_memalign(void **out, size_t align, size_t size) {
  if (!td_is_pow2(align) || align < sizeof(void *)) return EINVAL;
  int saved = errno;
  void *p = td_aligned(align, size);
  if (!p) {
    errno = saved;
    return ENOMEM;
  }
  *out = p;
  return 0;
}

/* valloc and pvalloc: the OS page (sysconf(_SC_PAGESIZE)), not TD_PAGE. */
TD_EXPORT void *valloc(size_t size) { return td_aligned(os_page(), size); }

TD_EXPORT void *pvalloc(size_t size) {
  size_t rounded = td_align_up(size ? size : 1, os_page());
  if (rounded < size) {
    errno = ENOMEM;
    return NULL;
  }
  return td_aligned(os_page(), rounded);
}

TD_EXPORT size_t malloc_usable_size(void *p) {
  if (!p) return 0;
  span_t *s = pagemap_lookup(p);
  check_block(p, s, 0, FREE_PLAIN, "malloc_usable_size");
  return usable_of(p, s);
}

/* Not declared by glibc 2.36's headers. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);
void cfree(void *p);

void td_free_sized(void *p, size_t size) { free_inline(p, size, FREE_SIZED, "operator delete"); }
void td_free_aligned_sized(void *p, size_t size) { free_inline(p, size, FREE_ALIGNED_SIZED, "operator delete"); }

TD_EXPORT void free_sized(void *p, size_t size) { free_inline(p, size, FREE_SIZED, "free_sized"); }
TD_EXPORT void free_aligned_sized(void *p, size_t align, size_t size) {
  (void)align;
  free_inline(p, size, FREE_ALIGNED_SIZED, "free_aligned_sized");
}
TD_EXPORT void cfree(void *p) { free(p); }

/* ---- releasing memory and glibc's introspection ------------------------------- */

TD_EXPORT size_t tidal_purge(void) {
  td_ensure_init();
  large_quarantine_flush();   /* its runs become free pages, purged with the rest */
  return pressure_purge_all();
}

TD_EXPORT void tidal_thread_flush(void) { heap_thread_flush(); }

/* ---- heaps with page sources (uheap.h) ------------------------------------------ */

TD_EXPORT const tidal_page_source_t *tidal_page_source_default(void) { return uheap_source_default(); }

TD_EXPORT tidal_heap_t *tidal_heap_create(const tidal_heap_config_t *config) {
  td_ensure_init();
  if (config && config->source && !config->source->map) {
    errno = EINVAL;
    return NULL;
  }
  tidal_heap_t *h = uheap_create(config);
  if (!h) errno = ENOMEM;
  return h;
}

static void *heap_generic(tidal_heap_t *h, size_t size, size_t align, bool zero) {
  void *p = uheap_alloc(h, size ? size : 1, align, zero);
  if (!p) errno = ENOMEM;
  return p;
}

TD_EXPORT void *tidal_heap_malloc(tidal_heap_t *h, size_t size) { return heap_generic(h, size, 0, false); }

TD_EXPORT void *tidal_heap_calloc(tidal_heap_t *h, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return heap_generic(h, total, 0, true);
}

TD_EXPORT void *tidal_heap_aligned_alloc(tidal_heap_t *h, size_t align, size_t size) {
  if (!td_is_pow2(align)) {
    errno = EINVAL;
    return NULL;
  }
  return heap_generic(h, size, align, false);
}

TD_EXPORT void *tidal_heap_realloc(tidal_heap_t *h, void *p, size_t size) {
  if (!p) return tidal_heap_malloc(h, size);
  if (size == 0) {
    free(p);
    return NULL;
  }
  span_t *s = pagemap_lookup(p);
  check_block(p, s, 0, FREE_PLAIN, "tidal_heap_realloc");
  void *q;
  if (uheap_owns(s)) {
    q = uheap_realloc(h, s, p, size);
  } else {   /* a block of another kind moves into h */
    q = uheap_alloc(h, size, 0, false);
    if (q) {
      memcpy(q, p, TD_MIN(usable_of(p, s), size));
      free(p);
    }
  }
  if (!q) errno = ENOMEM;
  return q;
}

TD_EXPORT void tidal_heap_reset(tidal_heap_t *h) { if (h) uheap_reset(h); }
TD_EXPORT void tidal_heap_destroy(tidal_heap_t *h) { if (h) uheap_destroy(h); }

TD_EXPORT int tidal_heap_visit(tidal_heap_t *h, int (*fn)(void *block, size_t usable, void *arg), void *arg) {
  return h && fn ? uheap_visit(h, fn, arg) : -1;
}

TD_EXPORT int tidal_heap_stats(tidal_heap_t *h, tidal_heap_stats_t *out) { return uheap_stats(h, out); }

TD_EXPORT int tidal_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
  td_ensure_init();
  return ctl_call(name, oldp, oldlenp, newp, newlen);
}

TD_EXPORT tidal_objcache_t *tidal_objcache_create(const char *name, size_t size, size_t align, size_t retain) {
  td_ensure_init();
  return objcache_create(name, size, align, retain);
}

TD_EXPORT void *tidal_objcache_alloc(tidal_objcache_t *c) { return objcache_alloc(c); }
TD_EXPORT void tidal_objcache_free(tidal_objcache_t *c, void *obj) { objcache_free(c, obj); }
TD_EXPORT size_t tidal_objcache_drain(tidal_objcache_t *c, size_t want) { return objcache_drain(c, want); }
TD_EXPORT void tidal_objcache_destroy(tidal_objcache_t *c) { objcache_destroy(c); }

TD_EXPORT int tidal_cleaner_register(const char *name, tidal_cleaner_fn fn, void *arg) {
  td_ensure_init();
  return pressure_cleaner_register(name, fn, arg);
}

TD_EXPORT int tidal_cleaner_unregister(int id) {
  td_ensure_init();
  return pressure_cleaner_unregister(id);
}

TD_EXPORT size_t tidal_release(size_t bytes) {
  td_ensure_init();
  return pressure_release(bytes);
}

TD_EXPORT void tidal_stats_print(tidal_write_cb write, void *arg, const char *opts) {
  td_ensure_init();
  ctl_stats_print(write, arg, opts);
}

TD_EXPORT long tidal_prof_visit(tidal_prof_visit_fn fn, void *arg) {
  td_ensure_init();
  return fn ? prof_visit((prof_visit_fn)fn, arg) : -1;
}

TD_EXPORT int malloc_trim(size_t pad) {
  (void)pad;
  return tidal_purge() > 0;
}

/* glibc's mallinfo fields, mapped onto tidalloc's statistics. */
TD_EXPORT struct mallinfo2 mallinfo2(void) {
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof mi);
  td_ensure_init();
  stats_t st;
  stats_collect(&st);
  mi.arena = st.mapped;                          /* address space in use by tidalloc */
  mi.ordblks = st.pages.units;
  mi.hblks = st.huge.live_count;
  mi.hblkhd = st.huge.live_bytes;
  mi.uordblks = st.allocated;                    /* bytes in live blocks */
  mi.fordblks = st.resident > st.allocated ? st.resident - st.allocated : 0;   /* resident but not allocated */
  mi.keepcost = st.pages.dirty + st.pages.muzzy; /* what malloc_trim could release */
  return mi;
}

TD_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = (int)m2.arena;
  mi.ordblks = (int)m2.ordblks;
  mi.hblks = (int)m2.hblks;
  mi.hblkhd = (int)m2.hblkhd;
  mi.uordblks = (int)m2.uordblks;
  mi.fordblks = (int)m2.fordblks;
  mi.keepcost = (int)m2.keepcost;
  return mi;
}

TD_EXPORT int mallopt(int param, int value) {
  (void)param; (void)value;
  return 1;   /* accepted; glibc's tunables do not apply (use TIDALLOC_CONF) */
}

TD_EXPORT void malloc_stats(void) { tidal_stats_print(NULL, NULL, NULL); }

/* glibc's XML shape, with tidalloc's numbers; options must be 0. */
TD_EXPORT int malloc_info(int options, FILE *fp) {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  td_ensure_init();
  stats_t st;
  stats_collect(&st);
  fprintf(fp, "<malloc version=\"tidalloc-%s\">\n", TIDAL_VERSION_STRING);
  fprintf(fp, "<heap nr=\"0\">\n<sizes>\n");
  for (unsigned c = 1; c < SC_NCLASSES; c++)
    if (st.classes[c].requests)
      fprintf(fp, "  <size from=\"%llu\" to=\"%llu\" total=\"%llu\" count=\"%llu\"/>\n",
              (unsigned long long)(c > 1 ? st.classes[c - 1].size + 1 : 1), (unsigned long long)st.classes[c].size,
              (unsigned long long)(st.classes[c].live * st.classes[c].size), (unsigned long long)st.classes[c].live);
  fprintf(fp, "</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(fp, "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n", st.pages.units, st.pages.dirty + st.pages.muzzy);
  fprintf(fp, "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n", st.mapped, st.mapped);
  fprintf(fp, "<aspace type=\"total\" size=\"%zu\"/>\n<aspace type=\"mprotect\" size=\"%zu\"/>\n</heap>\n",
          st.mapped, st.mapped);
  fprintf(fp, "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n", st.huge.live_count, st.huge.live_bytes);
  fprintf(fp, "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n", st.mapped, st.mapped);
  fprintf(fp, "<aspace type=\"total\" size=\"%zu\"/>\n<aspace type=\"mprotect\" size=\"%zu\"/>\n</malloc>\n",
          st.mapped, st.mapped);
  return 0;
}

TD_EXPORT const char *tidal_version(void) { return TIDAL_VERSION_STRING; }

TD_EXPORT size_t tidal_usable_size(const void *p) { return malloc_usable_size((void *)p); }

/* ---- aliases ---------------------------------------------------------------------- */

#if defined(__clang__)
#define TD_COPY_ATTRS(target)
#else
#define TD_COPY_ATTRS(target) copy(target)
#endif
/* The target's name is macro-expanded before it is quoted, so a build that
 * renames the entry points (-Dmalloc=…, the ThreadSanitizer build) still
 * aliases the right symbols. */
#define TD_STR_(x) #x
#define TD_STR(x) TD_STR_(x)
#define TD_ALIAS(name, target) \
  __typeof__(target) name __attribute__((alias(TD_STR(target)), TD_COPY_ATTRS(target)))
#define TD_ALIAS_EXPORT(name, target) \
  __typeof__(target) name __attribute__((alias(TD_STR(target)), TD_COPY_ATTRS(target), visibility("default")))

TD_ALIAS(td_malloc, malloc);
TD_ALIAS(td_free, free);
#ifndef TIDAL_NO_GLIBC_ALIASES
TD_ALIAS_EXPORT(__libc_malloc, malloc);
TD_ALIAS_EXPORT(__libc_free, free);
TD_ALIAS_EXPORT(__libc_calloc, calloc);
TD_ALIAS_EXPORT(__libc_realloc, realloc);
TD_ALIAS_EXPORT(__libc_memalign, memalign);
TD_ALIAS_EXPORT(__libc_valloc, valloc);
TD_ALIAS_EXPORT(__libc_pvalloc, pvalloc);
TD_ALIAS_EXPORT(__posix_memalign, posix_memalign);
#endif
