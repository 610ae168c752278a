#include "decay.h"

/* Weight of each epoch in 1/2^24: h[i] for the epoch with index i, where
 * index DECAY_NEPOCHS-1 is the newest (weight near 1) and 0 the oldest. */
#define H_SHIFT 24
static uint32_t h_steps[DECAY_NEPOCHS];

static void init_steps(void) {
  if (h_steps[DECAY_NEPOCHS - 1]) return;
  for (int i = 0; i < DECAY_NEPOCHS; i++) {
    /* age of epoch i, as a fraction of the decay time: the newest (i = N-1)
     * has age 0 and weight exactly 1, so nothing is purged before its time */
    double x = (double)(DECAY_NEPOCHS - 1 - i) / DECAY_NEPOCHS;
    double smooth = x * x * (3.0 - 2.0 * x);
    h_steps[i] = (uint32_t)((1.0 - smooth) * (double)(1u << H_SHIFT));
  }
}

void decay_init(decay_t *d, int64_t decay_ms, uint64_t now) {
  init_steps();
  for (int i = 0; i < DECAY_NEPOCHS; i++) d->backlog[i] = 0;
  d->decay_ms = decay_ms;
  d->epoch_ns = decay_ms > 0 ? (uint64_t)decay_ms * 1000000u / DECAY_NEPOCHS : 0;
  if (decay_ms > 0 && d->epoch_ns == 0) d->epoch_ns = 1;
  d->epoch_start_ns = now;
  d->npages_at_epoch = 0;
}

static size_t backlog_limit(const size_t *backlog) {
  uint64_t sum = 0;
  for (int i = 0; i < DECAY_NEPOCHS; i++) sum += (uint64_t)backlog[i] * h_steps[i];
  return (size_t)(sum >> H_SHIFT);
}

size_t decay_limit(decay_t *d, uint64_t now, size_t npages) {
  if (d->decay_ms == 0) return 0;
  if (d->decay_ms < 0) return SIZE_MAX;
  if (now >= d->epoch_start_ns + d->epoch_ns) {
    uint64_t adv = (now - d->epoch_start_ns) / d->epoch_ns;
    size_t fresh = npages > d->npages_at_epoch ? npages - d->npages_at_epoch : 0;
    if (adv >= DECAY_NEPOCHS) {
      for (int i = 0; i < DECAY_NEPOCHS; i++) d->backlog[i] = 0;
    } else {
      for (int i = 0; i + (int)adv < DECAY_NEPOCHS; i++) d->backlog[i] = d->backlog[i + adv];
      for (int i = DECAY_NEPOCHS - (int)adv; i < DECAY_NEPOCHS; i++) d->backlog[i] = 0;
    }
    /* Pages freed since the last epoch boundary join the newest epoch. */
    d->backlog[DECAY_NEPOCHS - 1] += fresh;
    d->epoch_start_ns += adv * d->epoch_ns;
    d->npages_at_epoch = npages;
  }
  /* Pages freed in the current, unfinished epoch may all stay. */
  size_t current = npages > d->npages_at_epoch ? npages - d->npages_at_epoch : 0;
  return backlog_limit(d->backlog) + current;
}

void decay_purged(decay_t *d, size_t npages) { d->npages_at_epoch = npages; }

uint64_t decay_deadline(const decay_t *d, size_t npages) {
  if (npages == 0 || d->decay_ms < 0) return DECAY_NEVER;
  if (d->decay_ms == 0) return 0;
  /* Pages of the unfinished epoch join the backlog at its end. */
  size_t backlog[DECAY_NEPOCHS];
  for (int i = 0; i < DECAY_NEPOCHS; i++) backlog[i] = d->backlog[i];
  size_t current = npages > d->npages_at_epoch ? npages - d->npages_at_epoch : 0;
  /* Find the fewest epochs k >= 1 after which the limit drops below npages. */
  for (int k = 1; k <= DECAY_NEPOCHS; k++) {
    uint64_t sum = 0;
    for (int i = 0; i + k < DECAY_NEPOCHS; i++) sum += (uint64_t)backlog[i + k] * h_steps[i];
    sum += (uint64_t)current * h_steps[DECAY_NEPOCHS - k];
    if ((size_t)(sum >> H_SHIFT) < npages) return d->epoch_start_ns + (uint64_t)k * d->epoch_ns;
  }
  return d->epoch_start_ns + (uint64_t)(DECAY_NEPOCHS + 1) * d->epoch_ns;
}
