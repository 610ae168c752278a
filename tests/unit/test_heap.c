/* Heaps: random same-thread traffic keeps every list and count consistent,
 * cross-thread frees come back through the inbox, and exited threads' heaps
 * are reused whole. The cases run in order on the main thread's heap; the
 * last frees what the first left allocated. */
#include "heap.h"
#include "page.h"
#include "pagemap.h"
#include "tidalloc.h"
#include "unit.h"
#include <malloc.h>
#include <pthread.h>
#include <string.h>

#define N 20000
static void *slots[N];
static size_t sizes[N];
static heap_t *h;

static void *remote_free(void *arg) {
  void **ptrs = arg;
  for (int i = 0; i < 1000; i++) free(ptrs[i]);
  return NULL;
}

static void *short_lived(void *arg) {
  (void)arg;
  void *p[100];
  for (int i = 0; i < 100; i++) p[i] = malloc(40 + i);
  for (int i = 0; i < 100; i++) free(p[i]);
  return tls_heap;
}

TEST(random_traffic) {
  unsigned long long seed = 7;
  for (int round = 0; round < 400000; round++) {
    int i = (int)(unit_rand(&seed) % N);
    if (slots[i]) {
      unsigned char *p = slots[i];
      CHECK(p[0] == (unsigned char)i);
      if (sizes[i] > 1) CHECK(p[sizes[i] - 1] == (unsigned char)(i >> 3));
      free(slots[i]);
      slots[i] = NULL;
    } else {
      size_t r = unit_rand(&seed);
      sizes[i] = (r & 7) ? 1 + r % 512 : 1 + r % 40000;
      unsigned char *p = malloc(sizes[i]);
      CHECK(p);
      CHECK(malloc_usable_size(p) >= sizes[i]);
      p[sizes[i] - 1] = (unsigned char)(i >> 3);
      p[0] = (unsigned char)i;
      slots[i] = p;
    }
    if (round % 50000 == 0) { VALIDATE(heap_validate(h)); VALIDATE(page_validate()); }
  }
  VALIDATE(heap_validate(h));
}

/* Cross-thread frees land in our inbox and are collected on the next refill. */
TEST(remote_frees_via_inbox) {
  void *batch[1000];
  for (int i = 0; i < 1000; i++) batch[i] = malloc(48);
  span_t *s = pagemap_lookup(batch[0]);
  CHECK(s && s->owner == h);
  pthread_t t;
  pthread_create(&t, NULL, remote_free, batch);
  pthread_join(t, NULL);
  CHECK(__atomic_load_n(&h->inbox, __ATOMIC_RELAXED) != NULL);
  heap_collect(h);
  CHECK(__atomic_load_n(&h->inbox, __ATOMIC_RELAXED) == NULL);
  VALIDATE(heap_validate(h));
}

/* Thread churn reuses pooled heaps instead of creating new ones. */
TEST(pooled_heaps_reused) {
  void *first = NULL;
  pthread_t t;
  pthread_create(&t, NULL, short_lived, NULL);
  pthread_join(t, &first);
  for (int k = 0; k < 50; k++) {
    void *hp = NULL;
    pthread_create(&t, NULL, short_lived, NULL);
    pthread_join(t, &hp);
    CHECK(hp == first);
  }
}

/* Everything random_traffic left allocated goes back, and the structures
 * stay consistent after a purge. */
TEST(free_all_and_purge) {
  for (int i = 0; i < N; i++) free(slots[i]);
  tidal_purge();
  VALIDATE(heap_validate(h));
  VALIDATE(page_validate());
}

/* A slab free list ends at SPAN_FREE_END: a pop of an empty list returns
 * NULL and changes nothing; the last block's link decodes to the end, which
 * (checks on) is a block whose link fails the corrupt-link test. */
TEST(free_list_end) {
  static block_t blocks[4] TD_ALIGNED(16);
  span_t s;
  memset(&s, 0, sizeof s);
  span_free_clear(&s);
  CHECK(!span_has_free(&s) && span_pop(&s) == NULL && s.used == 0 && !span_has_free(&s));
  span_push(&s, &blocks[2]);
  span_push(&s, &blocks[0]);
  CHECK(span_has_free(&s) && span_block_marked(&blocks[0]) && span_block_marked(&blocks[2]));
  CHECK(span_link_decode(blocks[2].next) == SPAN_FREE_END);
  CHECK(span_pop(&s) == &blocks[0] && span_pop(&s) == &blocks[2]);
  CHECK(s.used == 2 && blocks[0].key == 0 && blocks[2].key == 0);
  CHECK(span_pop(&s) == NULL && s.free == SPAN_FREE_END && s.used == 2);
#if TIDAL_CHECKS
  CHECK(span_link_bad(span_link_decode(((const block_t *)SPAN_FREE_END)->next)));
#endif
  CHECK(span_empty.free == SPAN_FREE_END && heap_empty.cur[1] == &span_empty);
}

int main(int argc, char **argv) {
  free(malloc(1));
  h = tls_heap;
  CHECK(h != &heap_empty);
  return UNIT_RUN(argc, argv);
}
