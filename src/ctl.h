/*
 * ctl.h — the control namespace behind tidal_ctl(), in the spirit of mallctl:
 * dotted names to read statistics and options, and to act (purge, flush,
 * background thread).
 *
 * What it is: one table of names (or name prefixes) and their handlers,
 * length checks, and the epoch-refreshed statistics snapshot behind
 * "stats.*". Printing copies the snapshot and runs the caller's callback with
 * no lock held.
 * What it is not: a list of statistics. Every "stats.*" name, its type and
 * its value come from the statistics schema (stats_find in stats.h); every
 * "opt.*" from the options table (conf.h).
 * Errors: ENOENT unknown name, EINVAL bad length or value, EPERM writing a
 * read-only name.
 * With stats_signal set it registers the background worker's statistics
 * writer: one snapshot rendered (text or JSON) into a scratch mapping, then
 * published as /tmp/tidalloc-stats.PID.VALUE, mode 0600, in one os call.
 * It may call: stats, conf, background, heap, pressure (purge), prof, lock, os,
 * safety (number formatting).
 */
#ifndef TIDAL_CTL_H
#define TIDAL_CTL_H

#include "util.h"

void ctl_init(void);
void ctl_prefork(void);
void ctl_postfork_parent(void);
void ctl_postfork_child(void);
/* tidal_ctl and tidal_stats_print (api.c exports them after initialising). */
int ctl_call(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen);
void ctl_stats_print(void (*write)(void *, const char *), void *arg, const char *opts);
/* Print statistics to stderr at exit when opt.stats_print asks for it. */
void ctl_print_at_exit(void);

#endif
