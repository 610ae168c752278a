/*
 * conf.h — the options table: one row per option (name, type, default,
 * range, doc) drives TIDALLOC_CONF, the built-in defaults string a program can
 * provide, the control namespace, and docs/options.md.
 *
 * What it is: parsing and storage of options, read once at initialisation.
 * Bad input never crashes a program: an unknown option or bad value prints one
 * warning line naming the option and what it accepts, and the default stays.
 * What it is not: a runtime policy; the layers read `opt` directly.
 * It may call: os (environment, stderr), safety (formatting).
 */
#ifndef TIDAL_CONF_H
#define TIDAL_CONF_H

#include "util.h"

enum opt_thp { THP_DEFAULT, THP_ALWAYS, THP_NEVER };
enum opt_stats_print { STATS_PRINT_OFF, STATS_PRINT_TEXT, STATS_PRINT_JSON };

/* Longest string option value, with its NUL. */
#define CONF_STR_MAX 200

typedef struct conf_s {
  int64_t dirty_decay_ms;
  int64_t muzzy_decay_ms;
  int64_t dirty_mult_milli;        /* dirty ceiling = active * this / 1000 */
  int64_t hugify_threshold_milli;  /* unit density (per mille) that makes it a hugify candidate */
  int64_t hugify_delay_ms;
  int64_t thp;                     /* enum opt_thp */
  bool background_thread;
  int64_t stats_print;             /* enum opt_stats_print */
  bool secure;                     /* hardened mode */
  bool pressure;                   /* watch memory pressure in the background thread */
  int64_t pressure_delay_ms;       /* process age before the pressure watcher starts (unless big) */
  int64_t memory_limit;            /* soft limit on resident bytes (0: none) */
  int64_t guard_sample;            /* 1 in N allocations against a guard page (0: off) */
  int64_t stats_signal;            /* signal that asks for a statistics file (0: off) */
  /* heap profiling (prof.h) */
  bool prof;
  int64_t prof_sample;             /* mean bytes between samples */
  char prof_prefix[CONF_STR_MAX];  /* dump files: <prefix>.<pid>.<seq>.heap */
  bool prof_final, prof_leak, prof_leak_error, prof_gdump;
  int64_t prof_signal;             /* signal number that asks for a dump (0: none) */
  int64_t prof_seed;               /* seed of the sampling generators (0: random) */
  bool guard_unused;               /* reserved but uncarved heap address space is PROT_NONE */
  int64_t large_quarantine;        /* freed page runs held before reuse (0: off) */
  bool large_quarantine_protect;   /* ... and inaccessible meanwhile */
  int64_t run_cache;               /* bytes of freed page runs each CPU's shard keeps (0: off) */
} conf_t;

extern conf_t opt;

/* OPT_STR: text stored in a char[CONF_STR_MAX] of conf_t (conf_get gives 0;
 * read it with conf_str). */
typedef enum { OPT_BOOL, OPT_INT, OPT_MILLI, OPT_ENUM, OPT_STR } opt_type_t;

typedef struct opt_desc_s {
  const char *name;
  opt_type_t type;
  const char *def;                 /* default, as it would be written in TIDALLOC_CONF */
  int64_t min, max;                /* OPT_INT / OPT_MILLI (milli-units) */
  const char *const *choices;      /* OPT_ENUM, NULL-terminated */
  const char *doc;
  size_t offset;                   /* into conf_t */
} opt_desc_t;

extern const opt_desc_t conf_table[];
extern const size_t conf_table_len;

/* Apply defaults, then the program's `tidalloc_conf` string, then
 * TIDALLOC_CONF. Warns on bad input. */
void conf_init(void);
/* Parse one "name:value,name:value" string; `source` names it in warnings.
 * Returns the number of options it rejected. */
int conf_parse(const char *s, const char *source);
/* Set one option from text. Returns true when accepted. */
bool conf_set(const opt_desc_t *d, const char *value, size_t len);
const opt_desc_t *conf_find(const char *name, size_t len);
/* Current value as an integer (bools 0/1, enums their index, milli as milli). */
int64_t conf_get(const opt_desc_t *d);
/* The value of an OPT_STR option. */
const char *conf_str(const opt_desc_t *d);
/* Write the value as TIDALLOC_CONF text into buf (>= 32 bytes); returns length. */
size_t conf_format(const opt_desc_t *d, int64_t v, char *buf);

#endif
