/* Issue 13: memory freed inside slabs that keep a live block goes back to
 * the system. 64 MiB of 2 KiB blocks, a random 90 % freed, then tidal_purge:
 * the resident memory of the mappings that hold those slabs (Rss - LazyFree
 * in /proc/self/smaps) falls by at least 75 %. Before holes, the slabs that
 * kept a live block (nearly all of them) stayed resident whole. */
#include "regress.h"
#include "smaps_range.h"

#define N ((64u << 20) / 2048)

static void *blocks[N];
static unsigned order[N];

int main(void) {
  tt_expect_tidalloc();
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (unsigned i = 0; i < N; i++) {
    blocks[i] = malloc(2048);
    CHECK(blocks[i] != NULL, "malloc");
    memset(blocks[i], (int)(i | 1), 2048);
    uintptr_t a = (uintptr_t)blocks[i];
    if (a < lo) lo = a;
    if (a + 2048 > hi) hi = a + 2048;
  }
  long long before = smaps_resident("/proc/self/smaps", lo, hi);
  tt_rng rng = { 13 };
  for (unsigned i = 0; i < N; i++) order[i] = i;
  for (unsigned i = N - 1; i > 0; i--) {
    unsigned j = (unsigned)(tt_below(&rng, i + 1)), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (unsigned k = 0; k < N - N / 10; k++) {
    free(blocks[order[k]]);
    blocks[order[k]] = NULL;
  }
  tidal_purge();
  long long after = smaps_resident("/proc/self/smaps", lo, hi);
  uint64_t holes = rg_stat("stats.pages.holes");
  printf("resident of the slabs' mappings: %lld KiB before, %lld KiB after (%.1f %%); holes %" PRIu64 " KiB\n",
         before >> 10, after >> 10, 100.0 * (double)after / (double)before, holes >> 10);
  CHECK(before >= (long long)(60u << 20), "the blocks were resident (%lld)", before);
  CHECK(holes > 0, "pages went back as holes");
  CHECK(after * 4 <= before, "resident fell by at least 75 %%: %lld -> %lld", before, after);
  /* The live blocks are intact. */
  for (unsigned i = 0; i < N; i++)
    if (blocks[i]) CHECK(((unsigned char *)blocks[i])[2047] == (unsigned char)(i | 1), "block %u intact", i);
  /* And the holes are reused: allocating the freed count again stays within
   * the slabs' pages. */
  for (unsigned k = 0; k < N - N / 10; k++) blocks[order[k]] = malloc(2048);
  CHECK(rg_stat("stats.pages.holes") < holes / 2, "holes taken back before fresh space");
  for (unsigned i = 0; i < N; i++) free(blocks[i]);
  printf("ok\n");
  return 0;
}
