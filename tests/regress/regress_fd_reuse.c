/* Defect: the background thread kept using descriptors by number (its
 * eventfd, PSI and cgroup event files) after the program closed them and
 * opened its own files under the same numbers: it wrote 8 binary bytes into
 * the program's files and read its input; after fork, parent and child shared
 * them, so one process's work woke the other's thread.
 * Here a program closes every descriptor above stderr (closefrom, daemons),
 * opens its own files on those numbers, and works so that the background
 * thread runs; its files must stay untouched (offsets and contents), in the
 * process and in a forked daemon-style child. Then a parent idles while a
 * forked child churns: the parent's thread must not wake for it. */
#include "regress.h"

#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum { NFILES = 40, DATA = 4096 };

static void churn(int rounds) {
  for (int r = 0; r < rounds; r++) {
    void *p[48];
    for (int i = 0; i < 48; i++) { p[i] = malloc(1 << 20); memset(p[i], 1, 1 << 20); }
    for (int i = 0; i < 48; i++) free(p[i]);
    tidal_release(1 << 20);   /* a drain too */
    usleep(50000);
  }
}

/* Returns the number of descriptors whose file was touched. */
static int own_files_touched(const char *path) {
  char data[DATA];
  for (int i = 0; i < DATA; i++) data[i] = (char)('A' + i % 26);
  int w = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(w >= 0 && write(w, data, DATA) == DATA);
  close(w);
  for (int fd = 3; fd < 1024; fd++) close(fd);       /* what a daemon does */
  int fds[NFILES];
  for (int k = 0; k < NFILES; k++) fds[k] = open(path, O_RDWR);
  churn(8);
  int bad = 0;
  for (int k = 0; k < NFILES; k++) {
    if (lseek(fds[k], 0, SEEK_CUR) != 0) { fprintf(stderr, "fd %d: offset moved\n", fds[k]); bad++; }
    close(fds[k]);
  }
  struct stat st;
  stat(path, &st);
  char back[2 * DATA];
  int r = open(path, O_RDONLY);
  ssize_t n = read(r, back, sizeof back);
  close(r);
  if (st.st_size != DATA || n != DATA || memcmp(back, data, DATA)) { fprintf(stderr, "file content changed\n"); bad++; }
  return bad;
}

int main(void) {
  tt_expect_tidalloc();
  char path[64];
  snprintf(path, sizeof path, "/tmp/tidal_regress_fd.%d", (int)getpid());
  churn(2);
  for (int i = 0; i < 100 && !rg_background_running(); i++) usleep(10000);
  CHECK(rg_background_running(), "the background thread is not running: the test would test nothing");
  CHECK(own_files_touched(path) == 0, "tidalloc read or wrote descriptors the program owns");

  /* The same in a daemon-style child (fork, then close and reopen). */
  pid_t pid = fork();
  if (pid == 0) _exit(own_files_touched(path) ? 1 : 0);
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forked child: its files were touched (status %#x)", st);

  /* A child's work does not wake the parent's thread (the parent first gives
   * everything back, so that it has no decay work of its own). */
  tidal_purge();
  sleep(1);
  uint64_t before = rg_stat("stats.background_wakeups");
  pid = fork();
  if (pid == 0) { churn(15); _exit(0); }
  waitpid(pid, &st, 0);
  uint64_t after = rg_stat("stats.background_wakeups");
  CHECK(after - before <= 2, "the idle parent's background thread woke %llu times while a child worked",
        (unsigned long long)(after - before));
  unlink(path);
  printf("regress_fd_reuse: OK\n");
  return 0;
}
