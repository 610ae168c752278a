/* tidalloc stats PID: the statistics of a live process, through its stats
 * signal (option stats_signal): the library's background thread answers by
 * writing /tmp/tidalloc-stats.PID.VALUE (mode 0600), VALUE being what we
 * attach to the signal (sigqueue): bit 0 asks for JSON, the rest is a random
 * number, so the file we wait for is our own answer. */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATS_FILE_FMT "/tmp/tidalloc-stats.%d.%u"   /* as the library's ctl.c writes it */
#define POLL_MS 20

static void stats_help(void) {
  printf("Usage: tidalloc stats PID [--json] [--timeout SECONDS]\n"
         "Print the allocator statistics of running process PID, which must use tidalloc with\n"
         "its stats signal on: started with 'tidalloc run', or with TIDALLOC_CONF=stats_signal:N.\n"
         "The process's background thread writes them to a file in /tmp that only its user can\n"
         "read; this command reads and removes it. Run it as the process's user (or root).\n\n"
         "  --json            a JSON document (schema: docs/stats.md) instead of text\n"
         "  --timeout S       wait at most S seconds for the answer (default 5)\n"
         "  -h, --help        this help\n"
         "Exit status: 0 printed, 1 failure (no such process, not using tidalloc, stats signal\n"
         "off, no answer), 2 usage.\n");
}

/* Read a whole /proc file (NUL bytes kept) into a malloc'd buffer; NULL on error. */
static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "re");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += got;
    if (n == cap) {
      char *bigger = realloc(buf, 2 * cap + 1);
      if (!bigger) { free(buf); buf = NULL; break; }
      buf = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf) buf[n] = 0;
  *len = n;
  return buf;
}

/* The stats signal TIDALLOC_CONF sets in the process's environment, 0 if
 * none, -1 if its environment cannot be read. */
static int stats_signal_of(int pid) {
  char path[64];
  size_t len;
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  char *env = read_all(path, &len);
  if (!env) return -1;
  int sig = 0;
  for (size_t i = 0; i < len; i += strlen(env + i) + 1) {
    if (strncmp(env + i, "TIDALLOC_CONF=", 14)) continue;
    for (const char *p = env + i + 14; (p = strstr(p, "stats_signal:")); p++)   /* the last one wins */
      if (p == env + i + 14 || p[-1] == ',' || p[-1] == ' ') sig = atoi(p + 13);
  }
  free(env);
  return sig;
}

/* Whether the process catches signal sig (SigCgt in /proc/PID/status): the
 * library has installed its handler. Before that (the process is starting)
 * or without it, a real-time signal would end the process. */
static bool catches(int pid, int sig) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "re");
  unsigned long long mask = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "SigCgt:", 7)) mask = strtoull(line + 7, NULL, 16);
  if (f) fclose(f);
  return sig >= 1 && sig <= 64 && (mask >> (sig - 1) & 1);
}

/* 1 the process maps libtidalloc, 0 it does not, -1 cannot tell (errno). */
static int uses_tidalloc(int pid) {
  char path[64];
  size_t len;
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  char *maps = read_all(path, &len);
  if (!maps) return -1;
  int found = strstr(maps, "/libtidalloc") != NULL;
  free(maps);
  if (!found && len == 0) { errno = EACCES; return -1; }   /* another user's process reads as empty */
  return found;
}

/* Print and remove the answer file once it is there, owned by `uid`. */
static int print_answer(const char *path, uid_t uid) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != uid || (st.st_mode & 077)) {
    if (fd >= 0) close(fd);
    return cmd_error(EXIT_FAIL, "%s is not the process's private statistics file; not reading it", path);
  }
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  close(fd);
  unlink(path);
  return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

static int stats_parse(int argc, char **argv, int *pid, bool *json, double *timeout) {
  *pid = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    char *end;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { stats_help(); exit(EXIT_OK); }
    else if (!strcmp(a, "--json")) *json = true;
    else if (!strcmp(a, "--timeout") && i + 1 < argc) {
      *timeout = strtod(argv[++i], &end);
      if (*end || *timeout <= 0) return cmd_usage("stats", "bad --timeout '%s'", argv[i]);
    } else if (a[0] != '-' && !*pid) {
      long v = strtol(a, &end, 10);
      if (*end || v <= 0 || v > 0x7fffffff) return cmd_usage("stats", "bad PID '%s'", a);
      *pid = (int)v;
    } else return cmd_usage("stats", "unknown argument '%s'", a);
  }
  return *pid ? EXIT_OK : cmd_usage("stats", "no PID given");
}

/* The process must exist, map the library and have its stats signal on. */
static int stats_check(int pid, int *sig, uid_t *uid) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d", pid);
  if (stat(path, &st) != 0) return cmd_error(EXIT_FAIL, "no process %d", pid);
  *uid = st.st_uid;
  int uses = uses_tidalloc(pid);
  if (uses < 0)
    return cmd_error(EXIT_FAIL, "cannot read /proc/%d/maps (%s): run as the process's user or root", pid,
                     strerror(errno));
  if (!uses) return cmd_error(EXIT_FAIL, "process %d does not use tidalloc (no libtidalloc in /proc/%d/maps)", pid, pid);
  *sig = stats_signal_of(pid);
  if (*sig < 0) return cmd_error(EXIT_FAIL, "cannot read /proc/%d/environ (%s)", pid, strerror(errno));
  if (*sig == 0)
    return cmd_error(EXIT_FAIL, "process %d uses tidalloc but its stats signal is not enabled (start it with "
                     "'tidalloc run', or with TIDALLOC_CONF=stats_signal:N)", pid);
  if (!((*sig >= SIGRTMIN && *sig <= SIGRTMAX) || *sig == SIGUSR1 || *sig == SIGUSR2))
    return cmd_error(EXIT_FAIL, "process %d has stats_signal:%d, neither a real-time signal nor SIGUSR1/2; "
                     "refusing to send it", pid, *sig);
  if (catches(pid, *sig)) return EXIT_OK;
  return cmd_error(EXIT_FAIL, "process %d does not catch signal %d (yet): tidalloc has not installed its stats "
                   "handler, and the signal would end it; not sending it",
                   pid, *sig);
}

int cmd_stats(int argc, char **argv) {
  int pid = 0, sig = 0;
  bool json = false;
  double timeout = 5;
  uid_t uid = 0;
  int rc = stats_parse(argc, argv, &pid, &json, &timeout);
  if (rc == EXIT_OK) rc = stats_check(pid, &sig, &uid);
  if (rc != EXIT_OK) return rc;
  uint32_t nonce = 0;
  if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce) nonce = (uint32_t)getpid() ^ (uint32_t)time(NULL);
  unsigned value = ((nonce & 0x3fffffffu) << 1) | (json ? 1u : 0u);
  char path[96];
  snprintf(path, sizeof path, STATS_FILE_FMT, pid, value);
  union sigval sv = { .sival_int = (int)value };
  if (sigqueue(pid, sig, sv) != 0) return cmd_error(EXIT_FAIL, "cannot signal process %d: %s", pid, strerror(errno));
  struct timespec pause = { 0, POLL_MS * 1000000L };
  for (long waited = 0; waited < (long)(timeout * 1000); waited += POLL_MS) {
    if (access(path, F_OK) == 0) return print_answer(path, uid);
    if (kill(pid, 0) != 0 && errno == ESRCH) return cmd_error(EXIT_FAIL, "process %d ended before answering", pid);
    if (waited == 1000 && isatty(2)) fprintf(stderr, "tidalloc: waiting for process %d (at most %g s)...\n", pid, timeout);
    nanosleep(&pause, NULL);
  }
  return cmd_error(EXIT_FAIL, "no answer from process %d within %g s (signal %d): has it a handler of its own "
                   "for that signal, or background_thread:false?", pid, timeout, sig);
}
