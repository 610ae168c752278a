/*
 * Linked with libtidalloc.a instead of libtidalloc.so. Built twice:
 *   api_link_static       dynamic executable (libc.so), TIDAL_TEST_STATIC
 *   api_link_full_static  fully -static executable, TIDAL_TEST_FULL_STATIC
 *                         (linked by link_full_static.sh at test time)
 * malloc resolves to tidalloc in the program and inside libc (stdio, strdup,
 * getline, asprintf...), so blocks from either side can be freed by the other.
 */
#include "testutil.h"

#include <pthread.h>

static void *worker(void *arg)
{
    for (int i = 0; i < 5000; i++) {
        char *s;
        CHECK(asprintf(&s, "worker %d %d", (int)(intptr_t)arg, i) > 0);
        CHECK(tidal_usable_size(s) >= strlen(s) + 1, "asprintf's buffer is not tidalloc's");
        void *p = malloc((size_t)i % 3000 + 1);
        CHECK(p != NULL);
        free(s);
        free(p);
    }
    return NULL;
}

int main(void)
{
#ifdef TIDAL_TEST_FULL_STATIC
    /* No dynamic symbol table to ask: the link itself decided (the script
     * checks libc.a's malloc.o was not linked in); check the blocks. */
#else
    tt_expect_tidalloc();
#endif
    CHECK(tidal_version() != NULL && tidal_version()[0] != 0);
    void *p = malloc(100);
    CHECK(p != NULL && tidal_usable_size(p) >= 100 && tidal_usable_size(p) == malloc_usable_size(p),
          "malloc's block is not tidalloc's");
    free(p);

    /* memory allocated inside libc is tidalloc's */
    char *s = strdup("hello, static world");
    CHECK(s != NULL && tidal_usable_size(s) >= 20, "strdup's block is not tidalloc's");
    free(s);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    CHECK(m != NULL);
    for (int i = 0; i < 10000; i++)
        fprintf(m, "%d\n", i);
    CHECK(fclose(m) == 0 && len > 10000);
    CHECK(tidal_usable_size(buf) >= len, "open_memstream's buffer is not tidalloc's");
    free(buf);
    FILE *f = tmpfile();
    CHECK(f != NULL);
    for (int i = 0; i < 1000; i++)
        fprintf(f, "line %d\n", i);
    rewind(f);
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) > 0)
        n++;
    CHECK(n == 1000);
    CHECK(tidal_usable_size(line) >= cap, "getline's buffer is not tidalloc's");
    free(line);
    fclose(f);

    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
#ifdef TIDAL_TEST_FULL_STATIC
    printf("api_link_full_static: OK\n");
#else
    printf("api_link_static: OK\n");
#endif
    return 0;
}
