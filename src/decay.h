/*
 * decay.h — time-based decay of unused pages: how many of the pages that were
 * freed recently may still stay unpurged now.
 *
 * What it is: pure arithmetic over a clock value the caller passes in (so
 * tests drive it with fake time). Time is cut into DECAY_NEPOCHS epochs of
 * decay_ms / DECAY_NEPOCHS; each epoch remembers how many pages became unused
 * in it. A page freed `age` ago may stay with weight 1 - smoothstep(age /
 * decay_ms), so a burst of freed memory is purged gradually and completely
 * within decay_ms, and memory that is reused quickly is never purged.
 * What it is not: the purging itself, or the choice of which pages to purge.
 * It may call: nothing.
 */
#ifndef TIDAL_DECAY_H
#define TIDAL_DECAY_H

#include "util.h"

#define DECAY_NEPOCHS 200
#define DECAY_NEVER   TD_NEVER

typedef struct decay_s {
  int64_t decay_ms;              /* < 0 never, 0 immediately */
  uint64_t epoch_ns;
  uint64_t epoch_start_ns;       /* start of the current epoch */
  size_t npages_at_epoch;        /* unpurged pages when the current epoch began (or after a purge) */
  size_t backlog[DECAY_NEPOCHS]; /* [DECAY_NEPOCHS-1] is the newest finished epoch */
} decay_t;

void decay_init(decay_t *d, int64_t decay_ms, uint64_t now);
/* Advance to `now` given the current number of unpurged pages; returns how
 * many may remain. */
size_t decay_limit(decay_t *d, uint64_t now, size_t npages);
/* After purging down to npages. */
void decay_purged(decay_t *d, size_t npages);
/* The earliest time at which decay_limit(…, npages) falls below npages, if no
 * more pages are freed: when the next purge is due. DECAY_NEVER if none. */
uint64_t decay_deadline(const decay_t *d, size_t npages);

#endif
