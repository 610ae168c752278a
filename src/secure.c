#include "secure.h"
#include "conf.h"
#include "huge.h"
#include "lock.h"
#include "meta.h"
#include "os.h"
#include "page.h"
#include "pagemap.h"
#include "safety.h"
#include "sizeclass.h"

#include <signal.h>
#include <string.h>

#define CANARY_BYTES      8                   /* the canary after a small block */
#define HEADER_BYTES      16                  /* before it: its size word and the front canary */
#define SIZE_BITS         48                  /* size word: offset of the block (high) | size (low) */
#define SWEEP_PER_FREE    1                   /* quarantined blocks checked still zero per free */
#define SWEEP_BYTES       64                  /* ... over the first bytes of the block */
#define NEIGHBOUR_CHECK   32                  /* bytes of a free neighbour checked still zero */
#define QUARANTINE_SLOTS  1024
#define QUARANTINE_BYTES  ((size_t)1 << 20)   /* per shard */
#define GUARDED_SLOTS     64                  /* freed guarded mappings kept inaccessible */
#define REUSE_SLOTS       256                 /* ... and then kept for a later block that fits */
#define REUSE_SLACK       2                   /* a kept mapping serves blocks whose mapping is at least 1/2 of it */
#define GUARDED_RESIDENT_MIN ((size_t)16 << 20) /* freed guarded pages kept resident (zeroed on reuse): */
                                                /* this much, or dirty_mult x the guarded bytes live */
#define GUARD_WIDE        ((size_t)1 << 20)   /* guards of hardened-mode guarded blocks */
#define RANDOM_WALK       8                   /* pick among the first free slots */
#define ZERO_REGION       ((size_t)16 << 20)  /* zero-size block addresses per region */
#define SECURE_SHARDS     8                   /* independent sets of slabs and quarantines (at most; one per processor) */

/* ---- per-class secure slabs --------------------------------------------- */

typedef struct sclass_s {
  td_mutex_t lock;
  span_t *cur;          /* slab to allocate from */
  span_t *partial;      /* slabs with free blocks (linked by next/prev) */
} sclass_t;

/* The small-block quarantine of a shard: a FIFO of freed slots (zeroed,
 * marked free), at most QUARANTINE_SLOTS - 1 of them and QUARANTINE_BYTES. */
typedef struct quarantine_s {
  td_mutex_t lock;
  void *ring[QUARANTINE_SLOTS];
  unsigned head, count, sweep;
  size_t bytes;
} quarantine_t;

/* Shards: a thread allocates from the shard it was given at its first
 * secure allocation (round robin), so threads do not share class locks,
 * slab lists or the quarantine on every operation. A slab belongs to one
 * shard for its life (span.secure_shard): a free of one of its blocks, from
 * any thread, takes that shard's class lock, and the block waits in that
 * shard's quarantine, so a slab changes only under its own shard's locks. */
typedef struct shard_s {
  sclass_t cls[SC_NCLASSES];
  quarantine_t q;
  size_t live TD_ALIGNED(TD_CACHELINE);   /* bytes of its live small blocks (atomic) */
} TD_ALIGNED(TD_CACHELINE) shard_t;

static shard_t shards[SECURE_SHARDS];
static unsigned shard_next, shard_count = 1;   /* shards in use: the processors, at most SECURE_SHARDS */
static __thread uint8_t tls_shard __attribute__((tls_model("initial-exec")));   /* index + 1; 0: none yet */
static uint64_t canary_key;
static __thread uint64_t tls_rand __attribute__((tls_model("initial-exec")));

static unsigned my_shard(void) {
  if (TD_UNLIKELY(!tls_shard)) tls_shard = (uint8_t)(1 + __atomic_fetch_add(&shard_next, 1, __ATOMIC_RELAXED) % shard_count);
  return tls_shard - 1u;
}

static sclass_t *class_of(const span_t *s) { return &shards[s->secure_shard].cls[s->cls]; }

static td_mutex_t g_lock = TD_MUTEX_INIT("secure_guarded", RANK_SECURE_GUARDED);
static span_t *g_ring[GUARDED_SLOTS];
static unsigned g_head, g_count;
/* Mappings that left the ring, still wholly inaccessible, their pagemap
 * entries released: the next guarded block whose mapping size is between
 * half of one and all of it opens the smallest such (one mprotect of the
 * pages at its end that the block needs) instead of mapping, guarding and
 * naming a new one. Under g_lock; r_count <= REUSE_SLOTS. */
static span_t *r_list[REUSE_SLOTS];
static unsigned r_count;
/* Freed guarded mappings keep their pages (inaccessible) while the bytes
 * they touched total at most guarded_resident_max() (g_resident, under
 * g_lock); such a mapping has zeroed = 0 and is zeroed when reused. Above
 * that, the pages are purged at free (zeroed = 1). A program that replaces
 * big blocks at a high rate would otherwise fault every page of each one in
 * anew. */
static size_t g_resident;

/* The bytes a freed guarded mapping keeps resident: its block's pages. */
static size_t guarded_dirty(const span_t *s, size_t g) {
  return s->zeroed ? 0 : s->base + s->bytes - g - td_align_down(s->start, os_page());
}

/* ---- zero-size blocks --------------------------------------------------- */

static td_mutex_t z_lock = TD_MUTEX_INIT("secure_zero", RANK_SECURE_ZERO);
static span_t *z_span;          /* the current region */
static uint64_t *z_freed;       /* one bit per 16-byte slot: freed */

static size_t live_bytes, guarded_bytes;   /* atomics: guarded blocks (small ones count per shard) */

void secure_stats(size_t *live, size_t *guarded_mapped) {
  size_t sum = __atomic_load_n(&live_bytes, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < SECURE_SHARDS; i++) sum += __atomic_load_n(&shards[i].live, __ATOMIC_RELAXED);
  *live = sum;
  *guarded_mapped = __atomic_load_n(&guarded_bytes, __ATOMIC_RELAXED);
}

static uint64_t rand64(void) {
  if (!tls_rand) tls_rand = os_random64() | 1;
  tls_rand ^= tls_rand << 13; tls_rand ^= tls_rand >> 7; tls_rand ^= tls_rand << 17;
  return tls_rand;
}

static uint64_t canary_of(const void *slot) { return canary_key ^ (uint64_t)(uintptr_t)slot; }

/* ---- the fault reporter ------------------------------------------------- */

static struct sigaction old_segv;

static void segv_handler(int sig, void *info, void *ctx) {
  (void)ctx;
  uintptr_t a = (uintptr_t)((siginfo_t *)info)->si_addr;
  span_t *s = pagemap_lookup((void *)a);
  if (s && s->kind == SPAN_GUARDED) {
    char detail[160];
    size_t n = 0;
    uintptr_t start = s->start, end = s->start + s->req_size;
    const char *what;
    if (!s->used) {
      what = "use after free";
      memcpy(detail, "inside a freed block of ", 24); n = 24;
    } else if (a >= end) {
      what = "heap buffer overflow";
      n += fmt_u64(detail + n, a - end);
      memcpy(detail + n, " bytes past a block of ", 23); n += 23;
    } else {
      what = "heap buffer underflow";
      n += fmt_u64(detail + n, start - a);
      memcpy(detail + n, " bytes before a block of ", 24); n += 24;
    }
    n += fmt_u64(detail + n, s->req_size);
    memcpy(detail + n, " bytes at ", 10); n += 10;
    n += fmt_hex(detail + n, start);
    detail[n] = 0;
    char line[256];
    size_t m = 0;
    static const char pre[] = "tidalloc: ";
    memcpy(line, pre, sizeof pre - 1); m += sizeof pre - 1;
    memcpy(line + m, what, strlen(what)); m += strlen(what);
    memcpy(line + m, " at ", 4); m += 4;
    m += fmt_hex(line + m, a);
    line[m++] = ' '; line[m++] = '(';
    memcpy(line + m, detail, n); m += n;
    line[m++] = ')'; line[m++] = '\n';
    os_write_stderr(line, m);
  }
  /* Let the fault take its course: the previous (usually default) action. */
  os_restore_segv(&old_segv);
  (void)sig;
}

void secure_init(void) {
  canary_key = os_random64();
  /* Two shards per processor: more buy little parallelism and cost slabs
   * (each shard has its own per class); fewer let a preempted lock holder
   * stall the threads of its shard (measured: threads_local 2.9 s with 8
   * shards, 6.0 s with 2, on 2 processors). */
  shard_count = TD_MIN(2 * os_ncpus(), (unsigned)SECURE_SHARDS);
  for (unsigned i = 0; i < SECURE_SHARDS; i++) {
    for (unsigned c = 0; c < SC_NCLASSES; c++)
      shards[i].cls[c].lock = (td_mutex_t)TD_MUTEX_INIT("secure_class", RANK_SECURE_CLASS);
    shards[i].q.lock = (td_mutex_t)TD_MUTEX_INIT("secure_quarantine", RANK_SECURE_QUARANTINE);
  }
  if (opt.secure || opt.guard_sample > 0) {
    os_catch_segv(segv_handler, &old_segv);
    mutex_register(&shards[0].q.lock);
    mutex_register(&g_lock);
  }
}

/* Guard pages of secure slabs are whole OS pages: the kernel protects
 * nothing smaller. */
static size_t slab_guard_bytes(void) { return os_page(); }

/* ---- guarded blocks -------------------------------------------------------- */
/*
 *   base                                                         base+bytes
 *   |   guard    | ...... data pages ...... [block right-aligned] |   guard    |
 *                                           ^start      start+req_size ^
 * The guards are one page for sampled blocks (guard_sample) and GUARD_WIDE
 * in the hardened mode, so that wild accesses up to 1 MiB past either end
 * fault (address space only: they are never accessible).
 */
static size_t guard_bytes(void) { return opt.secure ? GUARD_WIDE : os_page(); }

/* The data pages of a guarded mapping: whole OS pages, rounded up to one of
 * four steps per power of two above 64 KiB, so that freed mappings fit
 * later blocks of similar sizes (the block sits at the end: the pages before
 * it are never touched, so the rounding costs address space, not memory). */
static size_t guarded_data_bytes(size_t data) {
  if (data <= ((size_t)64 << 10)) return data;
  size_t step = ((size_t)1 << (63 - __builtin_clzll(data))) / 4;
  return td_align_up(data, TD_MAX(step, os_page()));
}

/* A fresh guarded mapping of `bytes`, guards of g on both sides, its base
 * aligned to align. */
static span_t *guarded_map(size_t bytes, size_t g, size_t align) {
  void *m = os_map_aligned(bytes, align);
  if (!m) return NULL;
  span_t *s = page_span_get();
  if (!s || !pagemap_reserve((uintptr_t)m, bytes)) {
    if (s) page_span_put(s);
    os_unmap(m, bytes);
    return NULL;
  }
  os_protect(m, g, false);
  os_protect((void *)((uintptr_t)m + bytes - g), g, false);
  os_name(m, bytes, "tidalloc-guarded");
  s->base = (uintptr_t)m;
  s->bytes = bytes;
  __atomic_fetch_add(&guarded_bytes, bytes, __ATOMIC_RELAXED);
  return s;
}

/* The smallest kept mapping of at least `bytes` and at most REUSE_SLACK
 * times that; *dirty: how many bytes before its data end kept their pages. */
static span_t *reuse_take(size_t bytes, size_t g, size_t *dirty) {
  span_t *s = NULL;
  unsigned at = 0;
  *dirty = 0;
  mutex_lock(&g_lock);
  for (unsigned i = 0; i < r_count; i++) {
    size_t b = r_list[i]->bytes;
    if (b >= bytes && b / REUSE_SLACK <= bytes && (!s || b < s->bytes)) { s = r_list[i]; at = i; }
    if (s && s->bytes == bytes) break;
  }
  if (s) {
    r_list[at] = r_list[--r_count];
    *dirty = guarded_dirty(s, g);
    g_resident -= *dirty;
  }
  mutex_unlock(&g_lock);
  return s;
}

/* How many bytes of freed guarded blocks may keep their pages. */
static size_t guarded_resident_max(void) {
  size_t live = __atomic_load_n(&live_bytes, __ATOMIC_RELAXED);
  return TD_MAX(GUARDED_RESIDENT_MIN, (size_t)((uint64_t)live / 1000u * (uint64_t)opt.dirty_mult_milli));
}

/* A mapping leaves for good. */
static void reuse_drop(span_t *s) {
  __atomic_fetch_sub(&guarded_bytes, s->bytes, __ATOMIC_RELAXED);
  os_unmap((void *)s->base, s->bytes);
  page_span_put(s);
}

void *secure_guarded_alloc(size_t size, size_t align, bool zero) {
  /* fresh mappings are zero, kept ones are zeroed: `zero` only says whether
   * huge pages suit the block */
  if (align < TD_QUANTUM) align = TD_QUANTUM;
  size_t need = size ? size : 1;
  size_t g = guard_bytes(), pg = os_page();
  if (need > PTRDIFF_MAX - 4 * g - align) return NULL;
  size_t data = guarded_data_bytes(td_align_up(need + (align > pg ? align : 0), pg));
  /* A big block gets huge pages: the mapping starts on a 2 MiB boundary and
   * its data ends on one, so every 2 MiB of the block but its first is a
   * whole huge page (one fault instead of 512), at the cost of address space
   * before the block, which is never touched.
   *
   *   base (2 MiB-aligned)                                  data end (2 MiB-aligned)
   *   | guard g | untouched ... | block, right-aligned ........ | guard g |
   */
  bool thp = data >= TD_UNIT && huge_thp_wanted(zero);   /* as for huge blocks in the default mode */
  if (thp) data = td_align_up(data + g, TD_UNIT) - g;
  size_t bytes = data + 2 * g;
  size_t dirty;
  span_t *s = reuse_take(bytes, g, &dirty);
  /* A kept mapping opens the pages at its end the block needs; the rest
   * stays inaccessible. Pages the last block left beyond those are dropped,
   * the others zeroed (on free for all sizes, as far as the next user sees). */
  if (s && !os_protect((void *)(s->base + s->bytes - g - data), data, true)) {
    reuse_drop(s);
    s = NULL;
  }
  if (s && dirty > data) {
    os_purge((void *)(s->base + s->bytes - g - dirty), dirty - data, OS_PURGE_NOW);
    dirty = data;
  }
  if (s && dirty) memset((void *)(s->base + s->bytes - g - dirty), 0, dirty);   /* the last block's pages */
  if (!s) {
    if (!(s = guarded_map(bytes, g, thp ? TD_UNIT : pg))) return NULL;
    if (thp) os_hugify((void *)(s->base + g), data, OS_HUGE_ON);
  }
  uintptr_t base = s->base, data_end = base + s->bytes - g;
  s->kind = SPAN_GUARDED;
  s->owner = NULL;
  s->req_size = size;
  s->start = td_align_down(data_end - td_align_up(need, TD_QUANTUM), align);
  s->used = 1;
  pagemap_set(base, s->bytes >> TD_PAGE_SHIFT, s);
  __atomic_fetch_add(&live_bytes, secure_usable((void *)s->start, s), __ATOMIC_RELAXED);
  return (void *)s->start;
}

static void guarded_free(void *p, span_t *s, const char *fn) {
  if ((uintptr_t)p != s->start) safety_report("invalid free", p, "inside a guarded block of bytes", (long)s->req_size, fn);
  if (!s->used) safety_report("double free", p, "guarded block of bytes", (long)s->req_size, fn);
  s->used = 0;
  __atomic_fetch_sub(&live_bytes, secure_usable(p, s), __ATOMIC_RELAXED);
  /* Keep it inaccessible for a while (a use after free faults); its pages
   * stay while few enough do (zeroed when the mapping is reused), else they
   * are dropped now. */
  size_t g = guard_bytes();
  s->zeroed = 0;
  size_t dirty = guarded_dirty(s, g);
  mutex_lock(&g_lock);
  bool keep = g_resident + dirty <= guarded_resident_max();
  if (keep) g_resident += dirty;
  mutex_unlock(&g_lock);
  if (!keep) {
    os_purge((void *)(s->base + g), s->bytes - 2 * g, OS_PURGE_NOW);
    s->zeroed = 1;
  }
  os_protect((void *)(s->base + g), s->bytes - 2 * g, false);
  span_t *evict = NULL;
  mutex_lock(&g_lock);
  if (g_count == GUARDED_SLOTS) {
    evict = g_ring[g_head];
    g_head = (g_head + 1) % GUARDED_SLOTS;
    g_count--;
  }
  g_ring[(g_head + g_count) % GUARDED_SLOTS] = s;
  g_count++;
  span_t *drop = NULL;
  if (evict) {
    pagemap_set(evict->base, evict->bytes >> TD_PAGE_SHIFT, &span_released);
    evict->kind = SPAN_RELEASED;
    if (r_count == REUSE_SLOTS) {   /* the list is full: the entry in its first slot goes (an early one; takes reorder it) */
      drop = r_list[0];
      r_list[0] = r_list[--r_count];
      g_resident -= guarded_dirty(drop, g);
    }
    r_list[r_count++] = evict;
  }
  mutex_unlock(&g_lock);
  if (drop) reuse_drop(drop);
}

/* Freed guarded mappings, in the quarantine ring and kept for reuse, give
 * their pages back (memory pressure, tidal_purge): they stay where they are,
 * inaccessible, and read as zero when reused. Under g_lock, so no block is
 * handed out of one while it is purged. Returns bytes released. */
size_t secure_purge_kept(void) {
  size_t g = guard_bytes(), n = 0;
  mutex_lock(&g_lock);
  for (unsigned k = 0; k < g_count + r_count; k++) {
    span_t *s = k < g_count ? g_ring[(g_head + k) % GUARDED_SLOTS] : r_list[k - g_count];
    size_t d = guarded_dirty(s, g);
    if (!d || !os_purge((void *)(s->base + s->bytes - g - d), d, OS_PURGE_NOW)) continue;
    s->zeroed = 1;
    g_resident -= d;
    n += d;
  }
  mutex_unlock(&g_lock);
  return n;
}

/* ---- zero-size blocks ------------------------------------------------------ */

static void *zero_alloc(void) {
  mutex_lock(&z_lock);
  if (!z_span || z_span->bump >= z_span->base + z_span->bytes) {
    void *m = os_reserve_none(ZERO_REGION);
    span_t *s = m ? page_span_get() : NULL;
    uint64_t *bits = s ? meta_alloc(ZERO_REGION / TD_QUANTUM / 8, 64) : NULL;
    if (!bits || !pagemap_reserve((uintptr_t)m, ZERO_REGION)) {
      mutex_unlock(&z_lock);
      return NULL;
    }
    s->kind = SPAN_ZERO;
    s->base = s->start = s->bump = (uintptr_t)m;
    s->bytes = ZERO_REGION;
    s->free = (uintptr_t)bits;      /* the freed-slot bitmap */
    pagemap_set(s->base, ZERO_REGION >> TD_PAGE_SHIFT, s);
    z_span = s;
    z_freed = bits;
  }
  void *p = (void *)z_span->bump;
  z_span->bump += TD_QUANTUM;
  mutex_unlock(&z_lock);
  return p;
}

static void zero_free(void *p, span_t *s, const char *fn) {
  uintptr_t off = (uintptr_t)p - s->start;
  if (off % TD_QUANTUM || (uintptr_t)p >= s->bump)
    safety_report("invalid free", p, "inside the zero-size region", -1, fn);
  uint64_t *bits = (uint64_t *)s->free;
  size_t slot = off / TD_QUANTUM;
  mutex_lock(&z_lock);
  bool was = (bits[slot / 64] >> (slot % 64)) & 1;
  bits[slot / 64] |= 1ull << (slot % 64);
  mutex_unlock(&z_lock);
  if (was) safety_report("double free", p, "zero-size block", -1, fn);
}

/* ---- secure slabs ---------------------------------------------------------- */

/* A new secure slab: zeroed blocks between two guards of one OS page each;
 * the blocks' pages are rounded up to whole OS pages (the tail).
 *
 *   base                                                            base+bytes
 *   | guard: OS page | slot 0 | slot 1 | ... | slot n-1 | tail | guard: OS page |
 *                    ^start                                    ^sslab_data_end
 */
static uintptr_t sslab_data_end(const span_t *s) { return s->base + s->bytes - slab_guard_bytes(); }

static span_t *sslab_new(unsigned shard, unsigned cls) {
  const sc_info_t *ci = &sc_info[cls];
  size_t gb = slab_guard_bytes(), g = gb >> TD_PAGE_SHIFT;   /* g: 1 with 4 KiB OS pages */
  span_t *s = page_alloc(td_align_up(ci->pages, g) + 2 * g, g);
  if (!s) return NULL;
  uintptr_t start = s->base + gb, data_end = sslab_data_end(s);
  if (!s->zeroed) memset((void *)start, 0, data_end - start);
  os_protect((void *)s->base, gb, false);
  os_protect((void *)data_end, gb, false);
  s->kind = SPAN_SECURE;
  s->owner = NULL;
  s->secure_shard = (uint8_t)shard;
  s->cls = (uint16_t)cls;
  span_set_size(s, ci->size);
  s->capacity = ci->capacity;
  s->carved = ci->capacity;
  s->start = start;
  s->used = 0;
  span_free_clear(s);
  s->bump = s->bump_end = s->start + span_limit(s);   /* every block carved at once */
  for (size_t i = ci->capacity; i-- > 0;) span_push(s, (block_t *)(s->start + i * ci->size));
  pagemap_set(s->base, s->bytes >> TD_PAGE_SHIFT, s);
  return s;
}

static void sslab_release(span_t *s) {
  os_protect((void *)s->base, slab_guard_bytes(), true);
  os_protect((void *)sslab_data_end(s), slab_guard_bytes(), true);
  pagemap_set(s->base, s->bytes >> TD_PAGE_SHIFT, &span_released);
  s->kind = SPAN_RELEASED;
  page_free(s);
}

/* A small block in its slot (slot size = class size, a multiple of 16; h =
 * 16, or the alignment asked for when larger; n = the size asked for):
 *
 *   slot        slot+16          slot+h                slot+h+n      slot+size
 *   | size word | front canary | (zero pad) | block: n bytes | canary | zero |
 *
 * size word = h << SIZE_BITS | n; front canary = canary_of(slot) ^ size word;
 * the canary after the block = canary_of(its own address), unaligned. An
 * underflow breaks the front canary (or the size word, and with it the
 * canary), an overflow the canary after or the zero slack. While free the
 * slot is zero but for its free-list link and marker (block_t at slot). */

/* Whether [p+from, p+to) is zero; from and to multiples of 8. One branch
 * per 64 bytes (the compiler may vectorise the OR). */
static bool block_is_zero(const uint8_t *p, size_t from, size_t to) {
  size_t i = from;
  for (; i + 64 <= to; i += 64) {
    uint64_t w[8], acc = 0;
    memcpy(w, p + i, 64);
    for (int j = 0; j < 8; j++) acc |= w[j];
    if (acc) return false;
  }
  uint64_t acc = 0;
  for (; i < to; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  return acc == 0;
}

/* Whether the n bytes at p are zero (p and n arbitrary). */
static bool bytes_are_zero(const uint8_t *p, size_t n) {
  size_t head = TD_MIN(n, (size_t)(-(uintptr_t)p & 7));
  for (size_t i = 0; i < head; i++)
    if (p[i]) return false;
  size_t words = (n - head) & ~(size_t)7;
  if (!block_is_zero(p + head, 0, words)) return false;
  for (size_t i = head + words; i < n; i++)
    if (p[i]) return false;
  return true;
}

static uint64_t load64(uintptr_t a) { uint64_t w; memcpy(&w, (const void *)a, 8); return w; }
static void store64(uintptr_t a, uint64_t w) { memcpy((void *)a, &w, 8); }

/* The block in a live slot: its start (0 when the header is broken) and size. */
static uintptr_t slot_block(uintptr_t slot, size_t size, size_t *n) {
  uint64_t word = load64(slot);
  size_t h = (size_t)(word >> SIZE_BITS);
  *n = (size_t)(word & (((uint64_t)1 << SIZE_BITS) - 1));
  if (load64(slot + 8) != (canary_of((void *)slot) ^ word)) return 0;
  if (h < HEADER_BYTES || h + *n + CANARY_BYTES > size) return 0;
  return slot + h;
}

/* What is wrong with live slot `slot`'s canaries, and with its slack when
 * asked (NULL: nothing). */
static const char *slot_live_damage(uintptr_t slot, size_t size, bool slack) {
  size_t n;
  uintptr_t b = slot_block(slot, size, &n);
  if (!b) return "heap buffer underflow";
  if (load64(b + n) != canary_of((void *)(b + n))) return "heap buffer overflow";
  uintptr_t tail = b + n + CANARY_BYTES;
  if (slack && !bytes_are_zero((const uint8_t *)tail, slot + size - tail)) return "heap buffer overflow";
  return NULL;
}

/* A free slot (zero but for link and marker) checked over [from, to). */
static bool slot_free_intact(uintptr_t slot, size_t from, size_t to) {
  return block_is_zero((const uint8_t *)slot, from < sizeof(block_t) ? sizeof(block_t) : from, to);
}

static void *sslab_alloc(unsigned cls, size_t n, size_t h) {
  unsigned shard = my_shard();
  sclass_t *k = &shards[shard].cls[cls];
  mutex_lock(&k->lock);
  span_t *s = k->cur;
  if (!s) {
    s = k->partial;
    if (s) span_list_remove(&k->partial, s);
    else if (!(s = sslab_new(shard, cls))) { mutex_unlock(&k->lock); return NULL; }
    k->cur = s;
  }
  /* Randomized slot: unlink one of the first few free blocks. */
  unsigned walk = (unsigned)(rand64() % RANDOM_WALK);
  block_t *prev = NULL, *b = (block_t *)s->free;
  for (unsigned i = 0; i < walk; i++) {
    uintptr_t nx = span_link_decode(b->next);
    if (nx == SPAN_FREE_END) break;
    prev = b;
    b = (block_t *)nx;
  }
  if (!span_block_marked(b)) span_corrupt(b, s, "malloc");
  span_take(s, prev, b);
  /* Everything past the link and marker was zeroed on free. */
  if (!block_is_zero((const uint8_t *)b, sizeof(block_t), s->size))
    safety_report("write after free", b, "a freed block was written to, size class", (long)s->size, "malloc");
  if (s->used == s->capacity) k->cur = NULL;   /* full: on no list */
  /* The header and canary are written under the lock: neighbours' frees read them. */
  uintptr_t slot = (uintptr_t)b, word = (uint64_t)h << SIZE_BITS | n;
  store64(slot, word);
  store64(slot + 8, canary_of(b) ^ word);
  store64(slot + h + n, canary_of((void *)(slot + h + n)));
  mutex_unlock(&k->lock);
  __atomic_fetch_add(&shards[shard].live, n, __ATOMIC_RELAXED);
  return (void *)(slot + h);
}

/* A block leaves quarantine: back on its slab's free list. */
static void sslab_release_block(block_t *b) {
  span_t *s = pagemap_lookup(b);
  sclass_t *k = class_of(s);
  mutex_lock(&k->lock);
  bool was_full = !span_has_free(s) && s != k->cur;
  span_push(s, b);
  s->used--;
  if (s->used == 0 && s != k->cur) {
    if (!was_full) span_list_remove(&k->partial, s);
    mutex_unlock(&k->lock);
    sslab_release(s);
    return;
  }
  if (was_full) span_list_push(&k->partial, s);
  mutex_unlock(&k->lock);
}

/* The slots on either side of a block being freed: a live one must have its
 * canaries, a free one its zeros (near the freed block), so that a stray
 * write past or before this block is caught now rather than never. Then the
 * slot is zeroed and marked free. All under the class lock: neighbours are
 * handed out, zeroed and marked under it, so none is seen half-way. */
static void sslab_retire(span_t *s, uintptr_t slot, void *p, const char *fn) {
  size_t size = s->size, near = TD_MIN((size_t)NEIGHBOUR_CHECK, size);
  sclass_t *k = class_of(s);
  const char *bad = NULL;
  mutex_lock(&k->lock);
  uintptr_t next = slot + size, prev = slot - size;
  if (next < s->start + span_limit(s)) {
    if (span_block_marked((void *)next)) bad = slot_free_intact(next, 0, near) ? NULL : "heap buffer overflow";
    else if (slot_live_damage(next, size, false)) bad = "heap buffer overflow";
  }
  if (!bad && slot > s->start) {
    if (span_block_marked((void *)prev)) bad = slot_free_intact(prev, size - near, size) ? NULL : "heap buffer underflow";
    else if (slot_live_damage(prev, size, false)) bad = "heap buffer underflow";
  }
  if (!bad) {
    memset((void *)slot, 0, size);                        /* zero on free */
    ((block_t *)slot)->key = span_marker((void *)slot);   /* a second free while quarantined is caught */
  }
  mutex_unlock(&k->lock);
  if (bad) safety_report(bad, p, "a neighbouring slot was written to, size class", (long)size, fn);
}

/* Under q->lock: the next SWEEP_PER_FREE quarantined blocks must still be
 * zero over their first SWEEP_BYTES (a write after free found while the
 * block waits, without reuse; the whole block is checked when it is handed
 * out again). */
static void quarantine_sweep(quarantine_t *q) {
  for (unsigned i = 0; i < SWEEP_PER_FREE && q->count; i++) {
    if (q->sweep >= q->count) q->sweep = 0;
    uintptr_t slot = (uintptr_t)q->ring[(q->head + q->sweep++) % QUARANTINE_SLOTS];
    size_t size = pagemap_lookup((void *)slot)->size;
    if (!span_block_marked((void *)slot) || !slot_free_intact(slot, 0, TD_MIN(size, (size_t)HEADER_BYTES + SWEEP_BYTES)))
      safety_report("write after free", (void *)slot, "a quarantined block was written to, size class", (long)size, "free");
  }
}

static void sslab_free(void *p, span_t *s, const char *fn) {
  uintptr_t off = (uintptr_t)p - s->start;
  if (off >= span_limit(s)) safety_report("invalid free", p, "not the start of a block, size class", (long)s->size, fn);
  uintptr_t slot = s->start + off / s->size * s->size;
  if (span_block_marked((void *)slot))
    safety_report(off % s->size == HEADER_BYTES ? "double free" : "invalid free", p, "size class", (long)s->size, fn);
  size_t n;
  uintptr_t b = slot_block(slot, s->size, &n);
  if (b && b != (uintptr_t)p) safety_report("invalid free", p, "not the start of a block, size class", (long)s->size, fn);
  const char *damage = slot_live_damage(slot, s->size, true);
  if (damage) safety_report(damage, p, damage[12] == 'o' ? "canary after the block overwritten, size class"
                                                         : "canary before the block overwritten, size class", (long)s->size, fn);
  sslab_retire(s, slot, p, fn);
  __atomic_fetch_sub(&shards[s->secure_shard].live, n, __ATOMIC_RELAXED);
  void *evict[8];
  unsigned nevict = 0;
  quarantine_t *q = &shards[s->secure_shard].q;
  mutex_lock(&q->lock);
  quarantine_sweep(q);
  q->ring[(q->head + q->count) % QUARANTINE_SLOTS] = (void *)slot;
  q->count++;
  q->bytes += s->size;
  while ((q->count > QUARANTINE_SLOTS - 1 || q->bytes > QUARANTINE_BYTES) && nevict < 8) {
    void *old = q->ring[q->head];
    q->head = (q->head + 1) % QUARANTINE_SLOTS;
    q->count--;
    if (q->sweep) q->sweep--;
    q->bytes -= pagemap_lookup(old)->size;
    evict[nevict++] = old;   /* checked still zero when handed out again */
  }
  mutex_unlock(&q->lock);
  for (unsigned i = 0; i < nevict; i++) sslab_release_block(evict[i]);
}

/* ---- entry points --------------------------------------------------------- */

void *secure_alloc(size_t size, size_t align, bool zero) {
  if (size == 0 && align <= TD_QUANTUM) return zero_alloc();
  if (size == 0) size = 1;   /* an aligned zero-size request: a real, aligned block */
  if (align < TD_QUANTUM) align = TD_QUANTUM;
  size_t h = align > HEADER_BYTES ? align : HEADER_BYTES;
  if (size <= SC_SMALL_MAX - h - CANARY_BYTES && align <= TD_PAGE) {
    unsigned cls = align <= TD_QUANTUM ? sizeclass_of(size + h + CANARY_BYTES)
                                       : sizeclass_of_aligned(size + h + CANARY_BYTES, align);
    if (cls) {
      void *p = sslab_alloc(cls, size, h);
      (void)zero;   /* secure blocks are handed out zeroed */
      return p;
    }
  }
  return secure_guarded_alloc(size, align, zero);
}

/* The words of a report in the name of fn (looked up only when reporting). */
static TD_COLD TD_NORETURN void check_report(bool twice, const void *p, const char *detail, long n, const char *fn) {
  const char *invalid, *twice_word;
  safety_misuse_words(fn, &invalid, &twice_word);
  safety_report(twice ? twice_word : invalid, p, detail, n, fn);
}

void secure_check(const void *p, span_t *s, const char *fn) {
  if (s->kind == SPAN_SECURE) {
    uintptr_t off = (uintptr_t)p - s->start;
    if (off >= span_limit(s)) check_report(false, p, "not the start of a block, size class", (long)s->size, fn);
    uintptr_t slot = s->start + off / s->size * s->size;
    if (span_block_marked((void *)slot)) check_report(true, p, "size class", (long)s->size, fn);
    size_t n;
    if (slot_block(slot, s->size, &n) != (uintptr_t)p)
      check_report(false, p, "not the start of a block, size class", (long)s->size, fn);
  } else if (s->kind == SPAN_GUARDED) {
    if ((uintptr_t)p != s->start) check_report(false, p, "inside a guarded block of bytes", (long)s->req_size, fn);
    if (!s->used) check_report(true, p, "guarded block of bytes", (long)s->req_size, fn);
  }
}

void secure_free(void *p, span_t *s, const char *fn) {
  switch (s->kind) {
    case SPAN_SECURE: sslab_free(p, s, fn); break;
    case SPAN_GUARDED: guarded_free(p, s, fn); break;
    default: zero_free(p, s, fn); break;
  }
}

size_t secure_usable(const void *p, const span_t *s) {
  switch (s->kind) {
    case SPAN_SECURE: {
      uintptr_t slot = s->start + ((uintptr_t)p - s->start) / s->size * s->size;
      size_t n;
      return slot_block(slot, s->size, &n) ? n : 0;   /* exactly what was asked for */
    }
    case SPAN_GUARDED: return s->base + s->bytes - guard_bytes() - s->start;   /* up to the guard */
    default: return 0;
  }
}

/* ---- fork ---------------------------------------------------------------- */

void secure_prefork(void) {
  for (unsigned i = 0; i < SECURE_SHARDS; i++)
    for (unsigned c = 0; c < SC_NCLASSES; c++) mutex_lock(&shards[i].cls[c].lock);
  for (unsigned i = 0; i < SECURE_SHARDS; i++) mutex_lock(&shards[i].q.lock);
  mutex_lock(&g_lock);
  mutex_lock(&z_lock);
}

void secure_postfork_parent(void) {
  mutex_unlock(&z_lock);
  mutex_unlock(&g_lock);
  for (unsigned i = SECURE_SHARDS; i-- > 0;) mutex_unlock(&shards[i].q.lock);
  for (unsigned i = SECURE_SHARDS; i-- > 0;)
    for (unsigned c = SC_NCLASSES; c-- > 0;) mutex_unlock(&shards[i].cls[c].lock);
}

void secure_postfork_child(void) {
  mutex_postfork_child(&z_lock);
  mutex_postfork_child(&g_lock);
  for (unsigned i = 0; i < SECURE_SHARDS; i++) {
    mutex_postfork_child(&shards[i].q.lock);
    for (unsigned c = 0; c < SC_NCLASSES; c++) mutex_postfork_child(&shards[i].cls[c].lock);
  }
}
