/* The stats signal (option stats_signal, set by CTest through
 * TIDALLOC_CONF=stats_signal:40, a real-time signal with glibc): each
 * request the signal carries is answered by the background thread with a private file, /tmp/tidalloc-stats.PID.VALUE
 * (bit 0 of VALUE: JSON), complete when it appears (renamed into place),
 * mode 0600 and ours; the program's blocked read() is restarted, not failed
 * with EINTR; no descriptor is left in the program's table; a plain kill()
 * is answered as value 0 (text). */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tidalloc.h"

#define TIMEOUT_MS 20000

static int pipefd[2];
static ssize_t read_result;
static int read_errno;

static void *reader(void *arg) {
  (void)arg;
  char c;
  read_result = read(pipefd[0], &c, 1);
  read_errno = errno;
  return NULL;
}

static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  CHECK(d != NULL);
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

/* Wait for the answer to `value`; return its contents (malloc'd). */
static char *answer(unsigned value) {
  char path[96];
  snprintf(path, sizeof path, "/tmp/tidalloc-stats.%d.%u", (int)getpid(), value);
  struct stat st;
  for (int ms = 0; stat(path, &st) != 0; ms += 10) {
    CHECK(ms < TIMEOUT_MS, "no answer %s", path);
    usleep(10000);
  }
  CHECK(S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600 && st.st_uid == getuid(), "mode %o", st.st_mode);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  char *buf = calloc(1, (size_t)st.st_size + 1);
  CHECK(fread(buf, 1, (size_t)st.st_size, f) == (size_t)st.st_size);
  fclose(f);
  unlink(path);
  return buf;
}

int main(void) {
  tt_expect_tidalloc();
  int sig = 40;
  CHECK(sig >= SIGRTMIN && sig <= SIGRTMAX);
  void *keep = malloc(3 << 20);   /* something to count */
  CHECK(keep != NULL);
  memset(keep, 1, 3 << 20);
  CHECK(pipe(pipefd) == 0);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
  sigset_t only;   /* from now on only the reader, blocked in read(), can take the signal */
  sigemptyset(&only);
  sigaddset(&only, sig);
  CHECK(pthread_sigmask(SIG_BLOCK, &only, NULL) == 0);
  int fds = open_fds();

  union sigval v = { .sival_int = 2 };   /* text, number 1 */
  CHECK(sigqueue(getpid(), sig, v) == 0);
  char *text = answer(2);
  CHECK(!strncmp(text, "___ tidalloc statistics ___\n", 28), "text: %.60s", text);
  CHECK(strstr(text, "\nallocated:") != NULL);
  free(text);

  v.sival_int = 7;   /* JSON, number 3 */
  CHECK(sigqueue(getpid(), sig, v) == 0);
  char *json = answer(7);
  CHECK(!strncmp(json, "{\"version\":\"", 12) && strstr(json, "\"allocated\":") && json[strlen(json) - 2] == '}',
        "json: %.60s", json);
  free(json);

  CHECK(kill(getpid(), sig) == 0);   /* no value: 0, text */
  text = answer(0);
  CHECK(!strncmp(text, "___ tidalloc statistics ___\n", 28));
  free(text);

  CHECK(open_fds() == fds, "descriptors before %d, after %d", fds, open_fds());
  CHECK(write(pipefd[1], "x", 1) == 1);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(read_result == 1, "the blocked read returned %zd (errno %d)", read_result, read_errno);
  free(keep);
  printf("stats signal: OK\n");
  return 0;
}
