/* The pagemap (address -> span radix tree) on addresses nobody else uses: a
 * range the test reserves PROT_NONE, 1 GiB aligned, so its leaves are the
 * test's alone. Entries point at fake descriptors. The cases run in order:
 * leaves 0-3 of the range are reserved by reserve_creates_leaves and used by
 * the cases after it; leaf 4 stays unreserved until concurrent_readers. */
#include "meta.h"
#include "pagemap.h"
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

int main(int argc, char **argv) {
  free(malloc(1));
  /* 6 GiB of address space; the 5 GiB from the first 1 GiB boundary are ours. */
  uint8_t *raw = mmap(NULL, 6 * GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(raw != MAP_FAILED);
  B = td_align_up((uintptr_t)raw, GiB);
  return UNIT_RUN(argc, argv);
}
