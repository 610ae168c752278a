/*
 * Bootstrap: the program's first allocations happen in a constructor (before
 * main), more in a later constructor and in main, and the last ones in an
 * atexit handler and a destructor (after main). Every block stays intact.
 */
#include "testutil.h"

static void *early[64];
static size_t early_n[64];
static char *early_str;

__attribute__((constructor(101))) static void first_ctor(void)
{
    /* no stdio before this: the first allocation is ours */
    for (int i = 0; i < 64; i++) {
        early_n[i] = (size_t)1 << (i % 23);
        switch (i % 4) {
        case 0: early[i] = malloc(early_n[i]); break;
        case 1: early[i] = calloc(1, early_n[i]); break;
        case 2: early[i] = realloc(NULL, early_n[i]); break;
        default: early[i] = tt_aligned_alloc(64, early_n[i]); break;
        }
        CHECK(early[i] != NULL, "allocation %d of %zu bytes in the first constructor failed", i, early_n[i]);
        if (i % 4 == 1)
            CHECK(tt_first_nonzero(early[i], early_n[i]) == SIZE_MAX, "calloc in a constructor: not zeroed");
        tt_fill(early[i], early_n[i], (uint64_t)i);
    }
    for (int i = 0; i < 64; i += 3) {
        free(early[i]);
        early[i] = NULL;
    }
    early_str = strdup("allocated before main");
    CHECK(early_str != NULL);
}

__attribute__((constructor(200))) static void second_ctor(void)
{
    for (int i = 1; i < 64; i += 3) {
        early[i] = realloc(early[i], early_n[i] * 2 + 1);
        CHECK(early[i] != NULL);
        CHECK(tt_check(early[i], early_n[i], (uint64_t)i) == SIZE_MAX, "realloc in a constructor lost data");
        tt_fill(early[i], early_n[i] * 2 + 1, (uint64_t)i);
        early_n[i] = early_n[i] * 2 + 1;
    }
}

static void *late;
static void at_exit_handler(void)
{
    for (int i = 0; i < 1000; i++) {
        void *p = malloc((size_t)i * 8 + 1);
        CHECK(p != NULL, "malloc in an atexit handler failed");
        free(p);
    }
    late = malloc(12345);
    CHECK(late != NULL);
}

__attribute__((destructor)) static void dtor(void)
{
    CHECK(late != NULL);
    free(late);
    void *p = calloc(100, 100);
    CHECK(p != NULL && tt_first_nonzero(p, 10000) == SIZE_MAX, "calloc in a destructor");
    free(p);
}

int main(void)
{
    tt_expect_tidalloc();
    for (int i = 0; i < 64; i++) {
        if (!early[i])
            continue;
        TT_CTX("block %d (%zu bytes) from a constructor", i, early_n[i]);
        CHECK(malloc_usable_size(early[i]) >= early_n[i]);
        CHECK(tidal_usable_size(early[i]) >= early_n[i], "block from a constructor unknown to tidalloc");
        CHECK(tt_check(early[i], early_n[i], (uint64_t)i) == SIZE_MAX, "block from a constructor changed");
        free(early[i]);
    }
    tt_ctx[0] = 0;
    CHECK(strcmp(early_str, "allocated before main") == 0);
    free(early_str);
    atexit(at_exit_handler);
    printf("api_boot_ctor: OK\n");
    return 0;
}
