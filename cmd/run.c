/* tidalloc run: run a program with the library preloaded. */
#include "cmd.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The stats signal `run` turns on (see tidalloc(1), stats_signal in
 * tidalloc.conf(5)). */
#define RUN_STATS_SIGNAL_OFFSET 5   /* SIGRTMIN+5 */

static void run_help(void) {
  printf("Usage: tidalloc run [OPTIONS] [--] PROGRAM [ARGS...]\n"
         "Run PROGRAM with the tidalloc library preloaded (LD_PRELOAD), options added to\n"
         "TIDALLOC_CONF. An LD_PRELOAD or TIDALLOC_CONF already set is kept: the library is put\n"
         "first in LD_PRELOAD, and these options after the existing ones (later ones win).\n\n"
         "  -o NAME=VALUE     set an option (repeatable; 'tidalloc options' lists them)\n"
         "  --secure          the hardened mode (secure:true)\n"
         "  --stats[=json]    print statistics to stderr when the program exits (text or JSON)\n"
         "  --prof[=PREFIX]   heap profile at exit (prof:true, prof_final:true, prof_prefix:PREFIX);\n"
         "                    needs a library with the heap profiler\n"
         "  --no-stats-signal do not turn on the stats signal\n"
         "  -h, --help        this help\n\n"
         "The stats signal (stats_signal:SIGRTMIN+%d, signal %d here) is turned on unless an\n"
         "option sets stats_signal, so that 'tidalloc stats PID' can read the process's\n"
         "statistics while it runs.\n"
         "Set-user-ID and set-group-ID programs (which ignore LD_PRELOAD) and statically linked\n"
         "programs (which have no dynamic loader) are refused.\n"
         "Exit status: PROGRAM's; 1 if tidalloc refuses, 2 usage, 126 not executable, 127 not found.\n"
         "TIDALLOC_LIB overrides the library's path.\n",
         RUN_STATS_SIGNAL_OFFSET, SIGRTMIN + RUN_STATS_SIGNAL_OFFSET);
}

/* The options gathered from the command line, as TIDALLOC_CONF text. */
typedef struct conf_text_s {
  char buf[8192];
  size_t len;
  bool overflow;
} conf_text_t;

static void conf_add(conf_text_t *c, const char *name, size_t name_len, const char *value) {
  int n = snprintf(c->buf + c->len, sizeof c->buf - c->len, "%s%.*s:%s", c->len ? "," : "", (int)name_len,
                   name, value);
  if (n < 0 || (size_t)n >= sizeof c->buf - c->len) c->overflow = true;
  else c->len += (size_t)n;
}

/* Whether TIDALLOC_CONF text `s` sets option `name`. */
static bool conf_mentions(const char *s, const char *name) {
  size_t n = strlen(name);
  for (const char *p = s; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
    while (*p == ' ') p++;
    if (!strncmp(p, name, n) && p[n] == ':') return true;
  }
  return false;
}

/* PROGRAM as execvp would find it, into path. 0, or 127 / 126 with a message. */
static int find_program(const char *prog, char *path, size_t cap) {
  if (strchr(prog, '/')) {
    snprintf(path, cap, "%s", prog);
    if (access(path, F_OK) != 0) return cmd_error(127, "%s: %s", prog, strerror(errno));
    if (access(path, X_OK) != 0) return cmd_error(126, "%s: not executable", prog);
    return 0;
  }
  const char *dirs = getenv("PATH");
  if (!dirs || !*dirs) dirs = "/usr/local/bin:/usr/bin:/bin";
  for (const char *d = dirs; d; d = strchr(d, ':') ? strchr(d, ':') + 1 : NULL) {
    size_t len = strcspn(d, ":");
    snprintf(path, cap, "%.*s%s%s", (int)len, len ? d : ".", "/", prog);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0) return 0;
  }
  return cmd_error(127, "%s: command not found", prog);
}

/* Refuse what preloading cannot work for. 0, or 1 with a message. `depth`
 * follows one level of #! interpreter. */
static int check_program(const char *path, const char *shown, int depth) {
  struct stat st;
  if (stat(path, &st) != 0) return cmd_error(127, "%s: %s", shown, strerror(errno));
  if (st.st_mode & (S_ISUID | S_ISGID))
    return cmd_error(EXIT_FAIL, "%s is set-%s-ID: the dynamic loader ignores LD_PRELOAD for it, so it "
                     "cannot run on tidalloc", shown, st.st_mode & S_ISUID ? "user" : "group");
  switch (elf_kind(path)) {
    case ELF_DYNAMIC: return 0;
    case ELF_STATIC:
      return cmd_error(EXIT_FAIL, "%s is statically linked (no dynamic loader, no PT_INTERP): LD_PRELOAD "
                       "cannot work; link it with libtidalloc.a instead", shown);
    case ELF_UNREADABLE: return 0;   /* execute-only: let exec decide */
    case ELF_NOT_ELF: break;
  }
  FILE *f = fopen(path, "r");
  char line[PATH_MAX + 8] = "";
  if (f) {
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
  }
  if (depth == 0 && !strncmp(line, "#!", 2)) {   /* a script: check its interpreter */
    char *interp = line + 2 + strspn(line + 2, " \t");
    interp[strcspn(interp, " \t\n")] = 0;
    if (*interp) return check_program(interp, interp, 1);
  }
  return 0;
}

/* Parse run's options into conf; *first is the index of PROGRAM. */
static int run_parse(int argc, char **argv, conf_text_t *conf, bool *prof, bool *no_signal, int *first) {
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) { i++; break; }
    if (a[0] != '-') break;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { run_help(); exit(EXIT_OK); }
    if (!strcmp(a, "--secure")) conf_add(conf, "secure", 6, "true");
    else if (!strcmp(a, "--stats") || !strcmp(a, "--stats=text")) conf_add(conf, "stats_print", 11, "true");
    else if (!strcmp(a, "--stats=json")) conf_add(conf, "stats_print", 11, "json");
    else if (!strcmp(a, "--no-stats-signal")) *no_signal = true;
    else if (!strcmp(a, "--prof") || !strncmp(a, "--prof=", 7)) {
      *prof = true;
      conf_add(conf, "prof", 4, "true");
      conf_add(conf, "prof_final", 10, "true");
      if (a[6] == '=') conf_add(conf, "prof_prefix", 11, a + 7);
    } else if (!strcmp(a, "-o") || !strncmp(a, "-o", 2)) {
      const char *o = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      const char *eq = o ? strchr(o, '=') : NULL;
      if (!eq) return cmd_usage("run", "-o needs NAME=VALUE");
      if (!cmd_option_find(o, (size_t)(eq - o)))
        return cmd_usage("run", "unknown option '%.*s' ('tidalloc options' lists them)", (int)(eq - o), o);
      conf_add(conf, o, (size_t)(eq - o), eq + 1);
    } else return cmd_usage("run", "unknown argument '%s'", a);
  }
  if (i >= argc) return cmd_usage("run", "no PROGRAM to run");
  if (conf->overflow) return cmd_usage("run", "too many options");
  *first = i;
  return EXIT_OK;
}

/* The first libtidalloc* entry of LD_PRELOAD (separated by spaces or
 * colons), into buf; false if none. */
static bool preloaded_tidalloc(const char *preload, char *buf, size_t cap) {
  for (const char *p = preload; p && *p;) {
    size_t len = strcspn(p, " :");
    const char *base = memrchr(p, '/', len);
    base = base ? base + 1 : p;
    if (!strncmp(base, "libtidalloc", 11) && (size_t)(base - p) + 11 <= len) {
      snprintf(buf, cap, "%.*s", (int)len, p);
      return true;
    }
    p += len;
    p += strspn(p, " :");
  }
  return false;
}

/* LD_PRELOAD with lib first, keeping what was there. One that already
 * preloads a libtidalloc keeps it: two allocators in one process would each
 * initialise, and only the first would serve. */
static int set_preload(const char *lib) {
  const char *old = getenv("LD_PRELOAD");
  char there[PATH_MAX];
  if (preloaded_tidalloc(old, there, sizeof there)) {
    if (strcmp(there, lib)) fprintf(stderr, "tidalloc: LD_PRELOAD already has %s; using it, not %s\n", there, lib);
    return EXIT_OK;
  }
  size_t n = strlen(lib) + (old ? strlen(old) : 0) + 2;
  char *v = malloc(n);
  if (!v) return cmd_error(EXIT_FAIL, "out of memory");
  snprintf(v, n, "%s%s%s", lib, old && *old ? " " : "", old && *old ? old : "");
  setenv("LD_PRELOAD", v, 1);
  free(v);
  return EXIT_OK;
}

static int set_conf(conf_text_t *conf, bool no_signal) {
  const char *old = getenv("TIDALLOC_CONF");
  if (!no_signal && !conf_mentions(conf->buf, "stats_signal") && !conf_mentions(old, "stats_signal")) {
    char sig[16];
    snprintf(sig, sizeof sig, "%d", SIGRTMIN + RUN_STATS_SIGNAL_OFFSET);
    conf_add(conf, "stats_signal", 12, sig);
  }
  if (conf->overflow) return cmd_usage("run", "too many options");
  size_t n = conf->len + (old ? strlen(old) : 0) + 2;
  char *v = malloc(n);
  if (!v) return cmd_error(EXIT_FAIL, "out of memory");
  snprintf(v, n, "%s%s%s", old && *old ? old : "", old && *old && conf->len ? "," : "", conf->buf);
  setenv("TIDALLOC_CONF", v, 1);
  free(v);
  return EXIT_OK;
}

int cmd_run(int argc, char **argv) {
  conf_text_t conf = { .len = 0 };
  bool prof = false, no_signal = false;
  int first = 0, rc = run_parse(argc, argv, &conf, &prof, &no_signal, &first);
  if (rc != EXIT_OK) return rc;
  char why[512], path[PATH_MAX];
  const char *lib = cmd_library(why, sizeof why);
  if (!lib) return cmd_error(EXIT_FAIL, "%s", why);
  if (prof && cmd_library_probe(lib, "prof", NULL, 0) != 1)
    return cmd_error(EXIT_FAIL, "--prof needs the heap profiler, and %s has no 'prof' option (a build "
                     "without it, or too old); 'tidalloc options' lists what it has", lib);
  if ((rc = find_program(argv[first], path, sizeof path)) != 0) return rc;
  if ((rc = check_program(path, argv[first], 0)) != 0) return rc;
  char abs[PATH_MAX];
  if (lib[0] != '/' && realpath(lib, abs)) lib = abs;   /* the program may change directory */
  if ((rc = set_preload(lib)) != EXIT_OK || (rc = set_conf(&conf, no_signal)) != EXIT_OK) return rc;
  execv(path, argv + first);
  return cmd_error(errno == ENOENT ? 127 : 126, "%s: %s", argv[first], strerror(errno));
}
