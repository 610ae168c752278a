// The heap profiler under a 4 KiB sample rate with everything that makes
// unwinding inside malloc hard: threads created and exiting, dlopen/dlclose,
// fork from a threaded process, C++ exceptions in flight, signals arriving
// (some of them prof_signal, so dumps run concurrently). It must finish: a
// watchdog alarm turns a deadlock into a failure.
// Usage: prof_stress MODULE.so   (TIDALLOC_CONF=prof:true,prof_sample:4096,...)
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tidalloc.h"

static const char *module;
static std::atomic<int> failures{0}, caught{0}, signals_seen{0};
static std::atomic<bool> stop{false};

static void on_usr1(int) { signals_seen.fetch_add(1, std::memory_order_relaxed); }

__attribute__((noinline)) static void thrower(int depth) {
  std::vector<char> v(100 + depth * 50);
  if (depth == 0) throw std::runtime_error(std::string(200, 'x'));
  thrower(depth - 1);
}

static void *worker(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  std::vector<void *> held;
  for (int i = 0; i < 2000; i++) {
    seed = seed * 1103515245u + 12345u;
    size_t size = 16 + (seed >> 8) % ((seed & 7) == 0 ? 200000 : 2000);
    held.push_back(malloc(size));
    if (held.size() > 64) {
      free(held[seed % held.size()]);
      held[seed % held.size()] = held.back();
      held.pop_back();
    }
    if (i % 200 == 0) {
      try { thrower(3); } catch (const std::exception &e) { caught.fetch_add(1); }
    }
    if (i % 500 == 0 && module) {
      void *h = dlopen(module, RTLD_NOW | RTLD_LOCAL);
      if (!h) { std::fprintf(stderr, "dlopen: %s\n", dlerror()); failures.fetch_add(1); }
      else {
        auto fn = (void *(*)(size_t))dlsym(h, "prof_stress_module_alloc");
        if (fn) free(fn(3000));
        dlclose(h);
      }
    }
  }
  for (void *p : held) free(p);
  return nullptr;
}

static void *signaller(void *) {
  int n = 0;
  while (!stop.load()) {
    kill(getpid(), SIGUSR1);
    if (++n % 50 == 0) kill(getpid(), SIGUSR2);   // prof_signal: a dump by the background thread
    usleep(2000);
  }
  return nullptr;
}

int main(int argc, char **argv) {
  module = argc > 1 ? argv[1] : nullptr;
  alarm(100);   // watchdog: SIGALRM's default action ends a hung run
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, nullptr);
  pthread_t sig;
  pthread_create(&sig, nullptr, signaller, nullptr);
  for (int round = 0; round < 12; round++) {
    pthread_t t[4];
    for (int k = 0; k < 4; k++) pthread_create(&t[k], nullptr, worker, (void *)(uintptr_t)(round * 4 + k + 1));
    pid_t pid = fork();   // while the workers allocate, sample and unwind
    if (pid == 0) {
      void *p[100];
      for (int i = 0; i < 100; i++) p[i] = malloc(5000 + i);
      for (int i = 0; i < 100; i++) free(p[i]);
      try { thrower(2); } catch (...) {}
      _exit(0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "fork child failed (status %d)\n", status);
      failures.fetch_add(1);
    }
    for (int k = 0; k < 4; k++) pthread_join(t[k], nullptr);
  }
  stop.store(true);
  pthread_join(sig, nullptr);
  size_t sz = sizeof(uint64_t);
  uint64_t samples = 0, dumps = 0, epoch = 1;
  tidal_ctl("epoch", nullptr, nullptr, &epoch, sizeof epoch);
  tidal_ctl("stats.prof.samples", &samples, &sz, nullptr, 0);
  tidal_ctl("stats.prof.dumps", &dumps, &sz, nullptr, 0);
  std::printf("prof_stress: %d exceptions caught, %d signals, %llu samples live, %llu dumps, %d failures\n",
              caught.load(), signals_seen.load(), (unsigned long long)samples, (unsigned long long)dumps,
              failures.load());
  return failures.load() || caught.load() != 12 * 4 * 10 ? 1 : 0;
}
