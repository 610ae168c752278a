/* Defect: when the program's last thread leaves with pthread_exit (a main()
 * that ends with pthread_exit so its workers can finish; a child forked from
 * a worker thread whose only thread then leaves), the background thread kept
 * the process alive forever, deaf to SIGTERM. The process must end by itself
 * with status 0, run its exit handlers (stdout flushed), and a SIGTERM sent
 * while a worker still runs must end it. Each scenario runs in a child the
 * test waits for with a deadline. */
#include "regress.h"

#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static int pipefd[2];

/* Enough freed memory that the background thread has work, then wait for it. */
static void start_background(void) {
  void *p[32];
  for (int i = 0; i < 32; i++) { p[i] = malloc(1 << 20); memset(p[i], 1, 1 << 20); }
  for (int i = 0; i < 32; i++) free(p[i]);
  for (int i = 0; i < 200 && !rg_background_running(); i++) { free(malloc(100000)); usleep(5000); }
  CHECK(rg_background_running(), "the background thread never started: the test would test nothing");
}

static void *worker(void *arg) {
  usleep((useconds_t)(uintptr_t)arg);
  for (int i = 0; i < 1000; i++) free(malloc(64 + i));
  return NULL;
}

/* Scenario 1: main leaves with pthread_exit, a worker finishes later. The
 * buffered line must reach the pipe through the exit handlers. */
static void main_exits_first(void) {
  dup2(pipefd[1], 1);
  start_background();
  printf("exit handlers ran\n");   /* stdout is a pipe: buffered until exit */
  pthread_t t;
  pthread_create(&t, NULL, worker, (void *)(uintptr_t)300000);
  pthread_exit(NULL);
}

/* Scenario 2: the last thread never allocates (so no heap of its own tells
 * tidalloc when it leaves). */
static void *quiet_worker(void *arg) { (void)arg; usleep(300000); return NULL; }
static void last_thread_never_allocates(void) {
  start_background();
  pthread_t t;
  pthread_create(&t, NULL, quiet_worker, NULL);
  pthread_exit(NULL);
}

/* Scenario 3: fork from a worker thread (Python's os.fork() in a thread); the
 * child's only thread leaves with pthread_exit after its own work. Main
 * leaves once the fork is done: main's pthread_exit loads libgcc_s (dlopen)
 * to unwind, and a fork in the middle of that dlopen gives the child a
 * half-updated loader whose unwinder then aborts the child's pthread_exit
 * in libgcc (seen in 1 run of 4 at 6ca9e14 and after; with main waiting
 * for the fork, 0 of 60). */
static int forked;   /* __atomic_*: the fork has returned in the parent */
static void *forker(void *arg) {
  (void)arg;
  pid_t pid = fork();
  if (pid == 0) {
    start_background();
    pthread_exit(NULL);
  }
  __atomic_store_n(&forked, 1, __ATOMIC_RELEASE);
  int st;
  waitpid(pid, &st, 0);
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
}
static void fork_from_worker(void) {
  start_background();
  pthread_t t;
  pthread_create(&t, NULL, forker, NULL);
  while (!__atomic_load_n(&forked, __ATOMIC_ACQUIRE)) usleep(1000);
  pthread_exit(NULL);
}

/* Scenario 4: SIGTERM while main has left and a worker sleeps: default action. */
static void *sleeper(void *arg) { (void)arg; sleep(30); return NULL; }
static void sigterm_after_main_left(void) {
  start_background();
  pthread_t t;
  pthread_create(&t, NULL, sleeper, NULL);
  pthread_exit(NULL);
}

/* Run fn in a child; returns its wait status, or -1 when it is still alive
 * after `deadline_ms` (it is then killed). term_after_ms >= 0: send SIGTERM then. */
static int run(void (*fn)(void), int deadline_ms, int term_after_ms) {
  pid_t pid = fork();
  if (pid == 0) { fn(); _exit(99); }
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) return st;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    if (term_after_ms >= 0 && ms >= term_after_ms) { kill(pid, SIGTERM); term_after_ms = -1; }
    if (ms > deadline_ms) { kill(pid, SIGKILL); waitpid(pid, &st, 0); return -1; }
    usleep(10000);
  }
}

int main(void) {
  tt_expect_tidalloc();
  CHECK(pipe(pipefd) == 0);
  int st = run(main_exits_first, 10000, -1);
  CHECK(st != -1, "main left with pthread_exit: the process did not end by itself");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, expected exit 0", st);
  close(pipefd[1]);
  char buf[64] = "";
  ssize_t n = read(pipefd[0], buf, sizeof buf - 1);
  CHECK(n > 0 && strstr(buf, "exit handlers ran"), "the exit handlers did not flush stdout (got '%s')", n > 0 ? buf : "");

  st = run(last_thread_never_allocates, 10000, -1);
  CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "last thread without a heap: status %#x", st);

  st = run(fork_from_worker, 10000, -1);
  CHECK(st != -1, "fork from a worker thread: the child or parent never ended");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork from a worker: status %#x (child's status in the exit code)", st);

  st = run(sigterm_after_main_left, 10000, 1000);
  CHECK(st != -1, "SIGTERM was not delivered: the process outlived it");
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %#x, expected death by SIGTERM", st);
  printf("regress_last_thread: OK\n");
  return 0;
}
