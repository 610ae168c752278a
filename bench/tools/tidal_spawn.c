/* tidal_spawn: run one benchmark command and report its wall time and peak
 * RSS, as measured by wait4().
 *
 * Why not wait4 from bench/run.py directly: Linux carries the parent's
 * high-water RSS into the child's ru_maxrss across fork+exec (exec records
 * the old mm's peak), so a child of the ~20 MiB Python runner never reports
 * less than ~20 MiB.  This launcher is a ~1 MiB process, so the number it
 * reports is the command's own peak to within that constant, which is the
 * same for every allocator.  The allocator is preloaded only into the
 * command (-p), never into the launcher.
 *
 * usage: tidal_spawn [-p PRELOAD] RESULT_FILE COMMAND [ARG...]
 * writes "seconds maxrss_kb status" to RESULT_FILE, where status is the exit
 * code, or -N if the command was killed by signal N.  Exits 0 if it could
 * run the command, 125 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *preload = NULL;
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "-p") == 0) {
        preload = argv[i + 1];
        i += 2;
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: tidal_spawn [-p PRELOAD] RESULT_FILE COMMAND [ARG...]\n");
        return 125;
    }
    const char *result = argv[i];
    char **cmd = &argv[i + 1];

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("tidal_spawn: fork");
        return 125;
    }
    if (pid == 0) {
        if (preload && *preload && setenv("LD_PRELOAD", preload, 1) != 0)
            _exit(127);
        execvp(cmd[0], cmd);
        fprintf(stderr, "tidal_spawn: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("tidal_spawn: wait4");
            return 125;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? -WTERMSIG(status) : -1;

    FILE *f = fopen(result, "w");
    if (!f) {
        perror("tidal_spawn: result file");
        return 125;
    }
    fprintf(f, "%.6f %ld %d\n", secs, (long)ru.ru_maxrss, code);
    return fclose(f) == 0 ? 0 : 125;
}
