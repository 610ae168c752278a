/* libFuzzer target: random sequences of allocation calls against tidalloc
 * (linked in, so the fuzzer's own allocations go through it too). Every live
 * block is filled with a pattern derived from its slot and checked before it
 * is freed or resized; alignment and usable size are checked on every call;
 * the structure validators run now and then. Any mismatch aborts. */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "page.h"

#define SLOTS 64

static struct { unsigned char *p; size_t n; uint8_t tag; } slot[SLOTS];

static void fill(int i) {
  if (slot[i].n) memset(slot[i].p, slot[i].tag, slot[i].n);
}

static void check(int i) {
  for (size_t k = 0; k < slot[i].n; k++)
    if (slot[i].p[k] != slot[i].tag) abort();
  if (slot[i].p && malloc_usable_size(slot[i].p) < slot[i].n) abort();
}

static void release(int i) {
  check(i);
  free(slot[i].p);
  slot[i].p = NULL;
  slot[i].n = 0;
}

static size_t pick_size(const uint8_t *d) {
  unsigned kind = d[0] % 8;
  size_t v = (size_t)d[1] | (size_t)d[2] << 8;
  switch (kind) {
    case 0: return v % 64;
    case 1: case 2: case 3: return v % 1100;
    case 4: case 5: return v % 40000;
    case 6: return (v * 37) % (1u << 20);
    default: return (v * 131) % (5u << 20);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (size_t off = 0; off + 5 <= size; off += 5) {
    const uint8_t *d = data + off;
    int i = d[3] % SLOTS;
    size_t n = pick_size(d + 1);
    uint8_t tag = (uint8_t)(d[4] | 1);
    switch (d[0] % 6) {
      case 0:   /* malloc */
        if (slot[i].p) release(i);
        slot[i].p = malloc(n);
        if (!slot[i].p) abort();
        slot[i].n = n; slot[i].tag = tag; fill(i);
        break;
      case 1: { /* calloc */
        if (slot[i].p) release(i);
        slot[i].p = calloc(1, n);
        if (!slot[i].p) abort();
        for (size_t k = 0; k < n; k++) if (slot[i].p[k]) abort();
        slot[i].n = n; slot[i].tag = tag; fill(i);
        break;
      }
      case 2: { /* realloc keeps the prefix */
        check(i);
        unsigned char *q = realloc(slot[i].p, n);
        if (!q && n) abort();
        size_t keep = slot[i].n < n ? slot[i].n : n;
        for (size_t k = 0; k < keep; k++) if (q[k] != slot[i].tag) abort();
        slot[i].p = n ? q : NULL;
        slot[i].n = n;
        if (!n && q) free(q);
        fill(i);
        break;
      }
      case 3: { /* aligned */
        if (slot[i].p) release(i);
        size_t align = (size_t)1 << (d[4] % 16);
        if (align < sizeof(void *)) align = sizeof(void *);
        void *p = NULL;
        if (posix_memalign(&p, align, n) != 0) abort();
        if ((uintptr_t)p % align) abort();   /* alignment */
        slot[i].p = p; slot[i].n = n; slot[i].tag = tag; fill(i);
        break;
      }
      case 4:   /* free */
        if (slot[i].p) release(i);
        break;
      default:  /* validators */
        if (tls_heap != &heap_empty) heap_validate(tls_heap);
        if ((d[4] & 7) == 0) page_validate();
        break;
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (slot[i].p) release(i);
  return 0;
}
