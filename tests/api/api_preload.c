/*
 * LD_PRELOAD=libtidalloc.so into a program that is not linked to tidalloc
 * (CTest sets LD_PRELOAD): malloc and friends resolve to tidalloc, and a mixed
 * workload, including memory allocated inside libc (strdup, stdio, getline,
 * open_memstream, asprintf, qsort) and by threads, works.
 */
#include "testutil.h"

#include <pthread.h>

static void *worker(void *arg)
{
    for (int i = 0; i < 20000; i++) {
        char *s;
        CHECK(asprintf(&s, "thread %d item %d", (int)(intptr_t)arg, i) > 0);
        char *d = strdup(s);
        CHECK(d && strcmp(s, d) == 0);
        free(s);
        d = realloc(d, 1000);
        CHECK(d != NULL);
        free(d);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    const char *pre = getenv("LD_PRELOAD");
    CHECK(pre && strstr(pre, "libtidalloc"), "run this test with LD_PRELOAD=libtidalloc.so (LD_PRELOAD=%s)",
          pre ? pre : "");
    tt_expect_tidalloc();

    /* libc-internal allocations */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    CHECK(m != NULL);
    for (int i = 0; i < 50000; i++)
        fprintf(m, "line %d\n", i);
    CHECK(fclose(m) == 0 && len > 100000);
    FILE *f = fmemopen(buf, len, "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    while (getline(&line, &cap, f) > 0)
        lines++;
    CHECK(lines == 50000, "read %d lines", lines);
    free(line);
    fclose(f);
    free(buf);

    enum { N = 20000 };
    static char *strs[N];
    for (int i = 0; i < N; i++) {
        CHECK(asprintf(&strs[i], "%08d", (i * 7919) % N) > 0);
    }
    qsort(strs, N, sizeof strs[0], cmp);
    for (int i = 0; i < N; i++) {
        char want[16];
        snprintf(want, sizeof want, "%08d", i);
        CHECK(strcmp(strs[i], want) == 0);
        free(strs[i]);
    }

    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    void *p;
    CHECK(posix_memalign(&p, 4096, 10000) == 0 && ((uintptr_t)p & 4095) == 0);
    free(p);
    printf("api_preload: OK\n");
    return 0;
}
