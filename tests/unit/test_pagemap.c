/* The pagemap (address -> span radix tree) on addresses nobody else uses: a
 * range the test reserves PROT_NONE, 1 GiB aligned, so its leaves are the
 * test's alone. Entries point at fake descriptors. The cases run in order:
 * leaves 0-3 of the range are reserved by reserve_creates_leaves and used by
 * the cases after it; leaf 4 stays unreserved until concurrent_readers. */
#include "meta.h"
#include "heap.h"
#include "pagemap.h"
#include "tidalloc.h"
#include "unit.h"
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#define GiB    ((uintptr_t)1 << 30)
#define LEAF   ((uintptr_t)1 << PAGEMAP_LEAF_SHIFT)
#define P      ((uintptr_t)TD_PAGE)
#define LEAF_BYTES (PAGEMAP_LEAF_LEN * sizeof(span_t *))

static uintptr_t B;                  /* 1 GiB aligned; [B, B + 5 GiB) is ours */
static span_t sp[16];

static size_t separate_bytes(void) {
  size_t mapped, allocated, separate;
  meta_stats(&mapped, &allocated, &separate);
  return separate;
}
static span_t **root_of(uintptr_t a) { return __atomic_load_n(&pagemap_root[(a >> PAGEMAP_LEAF_SHIFT) & (PAGEMAP_ROOT_LEN - 1)], __ATOMIC_ACQUIRE); }
static span_t *at(uintptr_t a) { return pagemap_lookup((const void *)a); }

/* Before any leaf exists, every lookup is NULL (no fault, no garbage). */
TEST(unreserved_is_null) {
  for (int l = 0; l < 5; l++) {
    CHECK(root_of(B + l * LEAF) == NULL);
    CHECK(at(B + l * LEAF) == NULL);
    CHECK(at(B + l * LEAF + LEAF / 2 + 123) == NULL);
    CHECK(at(B + l * LEAF + LEAF - 1) == NULL);
  }
}

/* A reservation across leaves makes each leaf it touches, once, from
 * metadata memory (one 2 MiB mapping per leaf); its entries start empty. */
TEST(reserve_creates_leaves) {
  size_t sep0 = separate_bytes();
  CHECK(pagemap_reserve(B + LEAF - 8 * P, 2 * LEAF + 16 * P));   /* leaves 0..3 */
  CHECK_EQ(separate_bytes() - sep0, 4 * LEAF_BYTES);
  span_t **leaves[4];
  for (int l = 0; l < 4; l++) {
    leaves[l] = root_of(B + l * LEAF);
    CHECK(leaves[l] != NULL);
    CHECK(leaves[l][0] == NULL && leaves[l][PAGEMAP_LEAF_LEN - 1] == NULL);
  }
  CHECK(leaves[0] != leaves[1] && leaves[1] != leaves[2] && leaves[2] != leaves[3]);
  CHECK(root_of(B + 4 * LEAF) == NULL);          /* not touched */
  CHECK(at(B + LEAF) == NULL && at(B + 3 * LEAF + 4 * P) == NULL);
  /* Again: nothing new, the same leaves. */
  CHECK(pagemap_reserve(B, 4 * LEAF));
  CHECK(pagemap_reserve(B + 2 * LEAF - P, 2 * P));
  CHECK_EQ(separate_bytes() - sep0, 4 * LEAF_BYTES);
  for (int l = 0; l < 4; l++) CHECK(root_of(B + l * LEAF) == leaves[l]);
}

/* Addresses past the 48-bit user space cannot be reserved. */
TEST(reserve_rejects_beyond_48_bits) {
  size_t sep0 = separate_bytes();
  CHECK(!pagemap_reserve((uintptr_t)1 << 48, P));
  CHECK(!pagemap_reserve(((uintptr_t)1 << 48) - P, 2 * P));
  CHECK(!pagemap_reserve((uintptr_t)0xffff800000000000ull, P));
  CHECK_EQ(separate_bytes(), sep0);
}

/* A run across the boundary between two leaves: every page of it, and every
 * byte of those pages, resolves to its span; the pages around it do not. */
TEST(set_across_leaf_boundary) {
  uintptr_t L = B + LEAF;
  pagemap_set(L - 3 * P, 6, &sp[0]);
  CHECK(at(L - 4 * P) == NULL);
  CHECK(at(L - 3 * P - 1) == NULL);
  for (uintptr_t a = L - 3 * P; a < L + 3 * P; a += P) {
    CHECK(at(a) == &sp[0]);
    CHECK(at(a + 1) == &sp[0]);
    CHECK(at(a + P / 2) == &sp[0]);
    CHECK(at(a + P - 1) == &sp[0]);
  }
  CHECK(at(L + 3 * P) == NULL);
  /* The last page of a leaf and the first of the next, apart. */
  uintptr_t L2 = B + 2 * LEAF;
  pagemap_set(L2 - P, 1, &sp[1]);
  pagemap_set(L2, 1, &sp[2]);
  CHECK(at(L2 - P) == &sp[1]);
  CHECK(at(L2 - 1) == &sp[1]);
  CHECK(at(L2) == &sp[2]);
  CHECK(at(L2 + P - 1) == &sp[2]);
  CHECK(at(L2 + P) == NULL);
  CHECK(at(L2 - 2 * P) == NULL);
  CHECK(root_of(L2 - P)[PAGEMAP_LEAF_LEN - 1] == &sp[1]);   /* in the leaves where they belong */
  CHECK(root_of(L2)[0] == &sp[2]);
  /* Overwritten and withdrawn. */
  pagemap_set(L - 3 * P, 6, &sp[3]);
  CHECK(at(L - 1) == &sp[3] && at(L) == &sp[3]);
  pagemap_set(L - 3 * P, 6, NULL);
  pagemap_set(L2 - P, 2, NULL);
  for (uintptr_t a = L - 3 * P; a < L + 3 * P; a += P) CHECK(at(a) == NULL);
  CHECK(at(L2 - P) == NULL && at(L2) == NULL);
}

/* Many entries spread over several leaves keep to their own pages. */
TEST(scattered_entries) {
  enum { N = 700 };
  uintptr_t from = B + LEAF - 8 * P, stride = 1024 * P + P;   /* 4 MiB + 4 KiB: every page offset mod leaf differs */
  for (int i = 0; i < N; i++) pagemap_set(from + i * stride, 1, &sp[i % 16]);
  CHECK(from + (N - 1) * stride < B + 4 * LEAF);
  int leaves_hit[4] = { 0 };
  for (int i = 0; i < N; i++) {
    uintptr_t a = from + i * stride;
    CHECK(at(a) == &sp[i % 16]);
    CHECK(at(a + P - 1) == &sp[i % 16]);
    CHECK(at(a - 1) == NULL);
    CHECK(at(a + P) == NULL);
    leaves_hit[(a - B) / LEAF]++;
  }
  CHECK(leaves_hit[0] > 0 && leaves_hit[1] > 0 && leaves_hit[2] > 0 && leaves_hit[3] > 0);
  for (int i = 0; i < N; i++) pagemap_set(from + i * stride, 1, NULL);
  for (int i = 0; i < N; i++) CHECK(at(from + i * stride) == NULL);
}

/* Addresses at or above 2^48 alias (the root index is masked, not checked):
 * they resolve to the entry of the address with the high bits cleared, and
 * the span's own bounds are what reject them. */
TEST(high_addresses_alias) {
  uintptr_t a = B + 2 * LEAF + 77 * P;
  sp[4].base = sp[4].start = a;
  sp[4].bytes = P;
  pagemap_set(a, 1, &sp[4]);
  uintptr_t aliases[] = { a | ((uintptr_t)1 << 48), a | ((uintptr_t)1 << 63), a | 0xffff000000000000ull };
  for (unsigned i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
    span_t *s = at(aliases[i]);
    CHECK(s == &sp[4]);
    CHECK(!(aliases[i] >= s->base && aliases[i] < s->base + s->bytes));
    CHECK(at(aliases[i] + P) == at(a + P));
  }
  /* An alias of an address whose leaf does not exist is NULL. */
  CHECK(at((B + 4 * LEAF + 5 * P) | ((uintptr_t)1 << 48)) == NULL);
  pagemap_set(a, 1, NULL);
  CHECK(at(a | ((uintptr_t)1 << 48)) == NULL);
}

/* Readers take no lock: while a writer creates a leaf and fills it (and
 * flips other entries between two spans), a reader sees, for every page,
 * either nothing yet or exactly what was set, and everything the writer has
 * published (release/acquire) is there. */
enum { NW = 60000, NFLIP = 64 };
static uintptr_t cbase;                /* leaf 4 */
static unsigned published;             /* entries 0..published-1 are set */
static int writer_done;
static long reads_ok, reads_early;

static uintptr_t centry(unsigned i) { return cbase + (uintptr_t)i * 3 * P; }
static uintptr_t cflip(unsigned i) { return cbase + LEAF - (uintptr_t)(i + 1) * 2 * P; }

static void *writer(void *arg) {
  (void)arg;
  for (unsigned i = 0; i < NW; i++) {
    if (!pagemap_reserve(centry(i), P)) FAIL("pagemap_reserve failed");
    pagemap_set(centry(i), 1, &sp[i % 8]);
    if (i == 0) for (unsigned k = 0; k < NFLIP; k++) pagemap_set(cflip(k), 1, &sp[8]);
    __atomic_store_n(&published, i + 1, __ATOMIC_RELEASE);
    if (i % 4 == 0) {
      for (unsigned k = 0; k < NFLIP; k++) pagemap_set(cflip(k), 1, &sp[8 + (i / 4 + k) % 2]);
    }
    if (i % 1024 == 0) sched_yield();
  }
  __atomic_store_n(&writer_done, 1, __ATOMIC_RELEASE);
  return NULL;
}

static void *reader(void *arg) {
  unsigned long long seed = (uintptr_t)arg;
  long ok = 0, early = 0;
  while (!__atomic_load_n(&writer_done, __ATOMIC_ACQUIRE)) {
    unsigned n = __atomic_load_n(&published, __ATOMIC_ACQUIRE);
    for (int k = 0; k < 64; k++) {
      unsigned j = (unsigned)(unit_rand(&seed) % NW);
      span_t *s = at(centry(j));
      if (j < n) {
        if (s != &sp[j % 8]) FAIL("entry %u published but reads %p", j, (void *)s);
        ok++;
      } else {
        if (s != NULL && s != &sp[j % 8]) FAIL("entry %u not yet published reads %p", j, (void *)s);
        early++;
      }
      if (at(centry(j) + P) != NULL) FAIL("the page after entry %u is set", j);
      if (n > 0) {
        span_t *f = at(cflip(j % NFLIP));
        if (f != &sp[8] && f != &sp[9]) FAIL("a flipping entry reads %p", (void *)f);
      }
    }
  }
  __atomic_fetch_add(&reads_ok, ok, __ATOMIC_RELAXED);
  __atomic_fetch_add(&reads_early, early, __ATOMIC_RELAXED);
  return NULL;
}

TEST(concurrent_readers) {
  cbase = B + 4 * LEAF;
  CHECK(root_of(cbase) == NULL);                 /* the writer creates this leaf */
  pthread_t r[3], w;
  for (int i = 0; i < 3; i++) CHECK(pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)(i * 7919 + 1)) == 0);
  CHECK(pthread_create(&w, NULL, writer, NULL) == 0);
  pthread_join(w, NULL);
  for (int i = 0; i < 3; i++) pthread_join(r[i], NULL);
  CHECK(root_of(cbase) != NULL);
  CHECK(reads_ok > 0);
  for (unsigned i = 0; i < NW; i++) CHECK(at(centry(i)) == &sp[i % 8]);
  for (unsigned i = 0; i < NW; i++) pagemap_set(centry(i), 1, NULL);
  pagemap_set(cflip(NFLIP - 1), NFLIP * 2, NULL);
  for (unsigned i = 0; i < NW; i++) CHECK(at(centry(i)) == NULL);
  printf("  concurrent_readers: %ld reads of published entries, %ld of unpublished\n", reads_ok, reads_early);
}

/* ---- the window (the page layer's arena) ---- */

static uintptr_t W, WS;   /* the window's base and size */

/* The window the page layer opened for its arena at the first allocation;
 * where the OS refused the arena (an emulator), one the test opens on
 * address space of its own. It opens once: a second window is refused. */
TEST(window_open_once) {
  if (!__atomic_load_n(&pagemap_window_size, __ATOMIC_ACQUIRE)) {
    uint8_t *raw = mmap(NULL, 8 * GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(raw != MAP_FAILED);
    CHECK(!pagemap_window_open(td_align_up((uintptr_t)raw, 4 * GiB) + P, 4 * GiB));   /* not aligned to its size */
    CHECK(!pagemap_window_open(td_align_up((uintptr_t)raw, 4 * GiB), 3 * GiB));       /* not a power of two */
    CHECK(pagemap_window_open(td_align_up((uintptr_t)raw, 4 * GiB), 4 * GiB));
  }
  W = pagemap_window_base;
  WS = pagemap_window_size;
  CHECK(WS >= 4 * GiB && td_is_pow2(WS) && W % WS == 0);
  CHECK_EQ(pagemap_flat_mask, WS - P);
  CHECK(!pagemap_window_open(B, 4 * GiB));
  CHECK(pagemap_window_base == W && pagemap_window_size == WS);
}

/* Inside the window every page resolves through the flat table, exactly
 * and masked alike, and no radix leaf is made for it; an address outside
 * it at a multiple of the window's size away aliases in the masked lookup
 * only, and the exact one reads the radix tree. */
TEST(window_flat_and_alias) {
  uintptr_t w = W + WS - 7 * P;   /* the window's last pages: never carved in a test */
  CHECK(at(w) == NULL);
  CHECK(pagemap_reserve(w, 3 * P));
  pagemap_set(w, 3, &sp[5]);
  for (uintptr_t a = w; a < w + 3 * P; a += P / 2) {
    CHECK(at(a) == &sp[5]);
    CHECK(pagemap_lookup_fast((void *)a) == &sp[5]);
  }
  CHECK(at(w - 1) == NULL && at(w + 3 * P) == NULL);
  CHECK(root_of(w) == NULL);   /* the radix tree was not touched */
  uintptr_t q = W >= WS ? w - WS : w + WS;   /* the same page, a window away */
  CHECK(q < W || q >= W + WS);
  CHECK(pagemap_lookup_fast((void *)q) == &sp[5]);
  CHECK(at(q) == NULL);
  CHECK(pagemap_reserve(q, P));
  pagemap_set(q, 1, &sp[6]);
  CHECK(at(q) == &sp[6] && at(w) == &sp[5]);
  CHECK(pagemap_lookup_fast((void *)q) == &sp[5]);
  pagemap_set(q, 1, NULL);
  pagemap_set(w, 3, NULL);
  CHECK(at(w) == NULL && at(w + 2 * P) == NULL);
  /* An empty entry, masked, is the table's none: owned by no heap, nothing
   * carved, so no free's checks can pass on it. */
  span_t *none = pagemap_lookup_fast((void *)w);
  CHECK(none == (span_t *)pagemap_flat - 1 && pagemap_lookup_fast((void *)(w + 2 * P)) == none);
  CHECK(none->owner == NULL && none->carved == 0 && none->kind == SPAN_NONE);
}

/* A source's memory a window's size away from a slab of this thread: every
 * free of its blocks finds, masked, a span this thread owns, whose bounds
 * reject them; the free looks again, exactly, and the heap with the page
 * source takes its blocks back (no misuse report, nothing lost). */
static uintptr_t alias_at;
static void *alias_map(void *ctx, size_t size, size_t align) {
  (void)ctx; (void)align;
  if (size != TD_UNIT || !alias_at) return NULL;
  void *m = mmap((void *)alias_at, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (m == MAP_FAILED) return NULL;
  if ((uintptr_t)m != alias_at) { munmap(m, size); return NULL; }
  alias_at = 0;   /* one unit */
  return m;
}
static void alias_unmap(void *ctx, void *a, size_t size) { (void)ctx; munmap(a, size); }

TEST(free_of_an_alias) {
  enum { N = 70000 };
  void *p = malloc(32);
  span_t *s = pagemap_lookup(p);
  CHECK(s && s->owner == tls_heap && (uintptr_t)p - W < WS);
  uintptr_t unit = td_align_down((uintptr_t)p, TD_UNIT), page = td_align_down((uintptr_t)p, P);
  tidal_heap_t *h = NULL;
  for (uintptr_t k = 1; k <= 128 && !h; k++) {   /* an address nobody uses, windows up or down */
    alias_at = k % 2 ? unit + (k + 1) / 2 * WS : unit - k / 2 * WS;
    if (alias_at + TD_UNIT > ((uintptr_t)1 << 47) || alias_at > unit + 64 * WS || alias_at < ((uintptr_t)1 << 32)) continue;
    tidal_page_source_t src = { .map = alias_map, .unmap = alias_unmap };
    tidal_heap_config_t cfg = { .source = &src, .name = "alias" };
    h = tidal_heap_create(&cfg);
  }
  CHECK(h != NULL);
  static void *b[N];
  int hit = -1;
  for (int i = 0; i < N && hit < 0; i++) {
    b[i] = tidal_heap_malloc(h, 32);
    CHECK(b[i] != NULL);
    if (td_align_down((uintptr_t)b[i], P) % WS == page % WS) hit = i;
  }
  CHECK(hit >= 0);   /* a block on the page that aliases p's */
  CHECK(pagemap_lookup_fast(b[hit]) == s);
  tidal_heap_stats_t st;
  CHECK(tidal_heap_stats(h, &st) == 0 && st.allocated == (size_t)(hit + 1) * 32);
  for (int i = hit; i >= 0; i--) free(b[i]);   /* plain free: the fast path's masked lookup first */
  CHECK(tidal_heap_stats(h, &st) == 0 && st.allocated == 0);
  CHECK(pagemap_lookup(p) == s);   /* p's own span is untouched: its block frees locally */
  free(p);
  tidal_heap_destroy(h);
}

int main(int argc, char **argv) {
  free(malloc(1));
  /* 6 GiB of address space; the 5 GiB from the first 1 GiB boundary are ours. */
  uint8_t *raw = mmap(NULL, 6 * GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(raw != MAP_FAILED);
  B = td_align_up((uintptr_t)raw, GiB);
  return UNIT_RUN(argc, argv);
}
