/* tidalloc: the command's entry point, shared helpers, and the small
 * subcommands (options, version, help). */
#include "cmd.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TIDAL_VERSION_STRING
#define TIDAL_VERSION_STRING "0"
#endif
#ifndef TIDAL_CMD_BINDIR
#define TIDAL_CMD_BINDIR "bin"
#endif
#ifndef TIDAL_CMD_LIBDIR
#define TIDAL_CMD_LIBDIR "lib"
#endif
#define LIB_NAME "libtidalloc.so.0"

int cmd_error(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tidalloc: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return code;
}

int cmd_usage(const char *sub, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "tidalloc%s%s: ", sub ? " " : "", sub ? sub : "");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nTry 'tidalloc%s%s --help'.\n", sub ? " " : "", sub ? sub : "");
  va_end(ap);
  return EXIT_USAGE;
}

const cmd_option_t *cmd_option_find(const char *name, size_t len) {
  for (size_t i = 0; i < cmd_options_len; i++)
    if (strlen(cmd_options[i].name) == len && memcmp(cmd_options[i].name, name, len) == 0) return &cmd_options[i];
  return NULL;
}

static bool exists(const char *path) { return access(path, R_OK) == 0; }

const char *cmd_library(char *why, size_t cap) {
  static char path[PATH_MAX + 64];
  const char *env = getenv("TIDALLOC_LIB");
  if (env && *env) {
    if (exists(env)) return env;
    snprintf(why, cap, "TIDALLOC_LIB=%s: no such library", env);
    return NULL;
  }
  char exe[PATH_MAX];
  if (!realpath("/proc/self/exe", exe)) {
    snprintf(why, cap, "cannot find the command's own path: %s", strerror(errno));
    return NULL;
  }
  *strrchr(exe, '/') = 0;                          /* the command's directory */
  size_t n = strlen(exe), b = strlen(TIDAL_CMD_BINDIR);
  if (n > b && exe[n - b - 1] == '/' && strcmp(exe + n - b, TIDAL_CMD_BINDIR) == 0) {
    snprintf(path, sizeof path, "%.*s/%s/%s", (int)(n - b - 1), exe, TIDAL_CMD_LIBDIR, LIB_NAME);
    if (exists(path)) return path;
  }
  snprintf(path, sizeof path, "%s/%s", exe, LIB_NAME);   /* a build tree */
  if (exists(path)) return path;
  snprintf(why, cap, "cannot find %s under the command's prefix (%s/../%s) nor beside it; "
           "set TIDALLOC_LIB to the library's path", LIB_NAME, exe, TIDAL_CMD_LIBDIR);
  return NULL;
}

/* The child: load the library and ask it through tidal_ctl. Its exit status
 * is the answer; the version goes through the pipe. */
static void probe_child(const char *lib, const char *name, int out) {
  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) _exit(3);
  int (*ctl)(const char *, void *, size_t *, const void *, size_t) =
    (int (*)(const char *, void *, size_t *, const void *, size_t))dlsym(h, "tidal_ctl");
  const char *(*version)(void) = (const char *(*)(void))dlsym(h, "tidal_version");
  if (!ctl || !version) _exit(3);
  const char *v = version();
  if (write(out, v, strlen(v)) < 0) _exit(3);
  char key[128];
  snprintf(key, sizeof key, "opt.%s", name ? name : "");
  _exit(name && ctl(key, NULL, NULL, NULL, 0) != 0 ? 1 : 0);
}

int cmd_library_probe(const char *lib, const char *name, char *version, size_t cap) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fds[0]);
    probe_child(lib, name, fds[1]);
  }
  close(fds[1]);
  char buf[64];
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  if (version && cap) snprintf(version, cap, "%.*s", n > 0 ? (int)n : 0, buf);
  if (!WIFEXITED(st) || WEXITSTATUS(st) > 1) return -1;
  return WEXITSTATUS(st) == 0;
}

/* ---- options ------------------------------------------------------------ */

/* Print text wrapped at `width` columns, each line indented by `indent`. */
static void wrap(const char *s, int indent, int width) {
  int col = 0;
  while (*s) {
    while (*s == ' ') s++;
    int len = (int)strcspn(s, " ");
    if (!len) break;
    if (col && col + 1 + len > width) { putchar('\n'); col = 0; }
    if (!col) { printf("%*s", indent, ""); col = indent; }
    else { putchar(' '); col++; }
    printf("%.*s", len, s);
    col += len;
    s += len;
  }
  if (col) putchar('\n');
}

static int cmd_options_list(int argc, char **argv) {
  if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("Usage: tidalloc options [NAME...]\n"
           "List every option of the library (or the NAMEd ones) with its type, default,\n"
           "the values it accepts and its meaning. Set them with TIDALLOC_CONF=name:value,...\n"
           "or 'tidalloc run -o name=value'. See tidalloc.conf(5).\n");
    return EXIT_OK;
  }
  for (int i = 1; i < argc; i++)
    if (!cmd_option_find(argv[i], strlen(argv[i])))
      return cmd_error(EXIT_FAIL, "no option '%s' (tidalloc options lists them all)", argv[i]);
  for (size_t i = 0; i < cmd_options_len; i++) {
    const cmd_option_t *o = &cmd_options[i];
    bool wanted = argc <= 1;
    for (int k = 1; k < argc; k++) wanted |= strcmp(argv[k], o->name) == 0;
    if (!wanted) continue;
    printf("%s%s (%s, default %s; accepts %s)\n", i && argc <= 1 ? "\n" : "", o->name, o->type, o->def, o->accepts);
    wrap(o->doc, 4, 78);
  }
  return EXIT_OK;
}

/* ---- version and help ------------------------------------------------------------ */

static int cmd_version(int argc, char **argv) {
  (void)argc; (void)argv;
  printf("tidalloc %s\n", TIDAL_VERSION_STRING);
  char why[512], libv[64] = "";
  const char *lib = cmd_library(why, sizeof why);
  if (!lib) {
    printf("library: not found (%s)\n", why);
    return EXIT_OK;
  }
  int known = cmd_library_probe(lib, NULL, libv, sizeof libv);
  printf("library: %s (version %s)\n", lib, known < 0 ? "unknown: it does not load" : libv);
  return EXIT_OK;
}

static void usage(FILE *f) {
  fprintf(f,
    "Usage: tidalloc COMMAND [ARGS...]\n"
    "Run programs on the tidalloc memory allocator and look inside them.\n\n"
    "Commands:\n"
    "  run [-o NAME=VALUE]... [--secure] [--stats[=json]] [--prof[=PREFIX]] -- PROGRAM [ARGS...]\n"
    "                 run PROGRAM with tidalloc preloaded\n"
    "  stats PID [--json]\n"
    "                 print the statistics of a running process started with 'tidalloc run'\n"
    "  options [NAME...]\n"
    "                 list the options with their defaults, ranges and meanings\n"
    "  report PROFILE [--top N] [--alloc] [--svg FILE]\n"
    "                 print the top allocation sites of a heap profile; draw a flame graph\n"
    "  version        print the command's and the library's versions\n\n"
    "'tidalloc COMMAND --help' describes each command. Manual: tidalloc(1), tidalloc(3),\n"
    "tidalloc.conf(5).\n"
    "Exit status: 0 success, 1 failure, 2 usage error ('run': the program's status).\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *c = argv[1];
  if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) { usage(stdout); return EXIT_OK; }
  if (!strcmp(c, "--version") || !strcmp(c, "version")) return cmd_version(argc - 1, argv + 1);
  if (!strcmp(c, "run")) return cmd_run(argc - 1, argv + 1);
  if (!strcmp(c, "stats")) return cmd_stats(argc - 1, argv + 1);
  if (!strcmp(c, "options")) return cmd_options_list(argc - 1, argv + 1);
  if (!strcmp(c, "report")) return cmd_report(argc - 1, argv + 1);
  return cmd_usage(NULL, "unknown command '%s'", c);
}
