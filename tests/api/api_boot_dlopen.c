/*
 * Bootstrap: dlopen/dlsym/dlerror (which allocate inside the dynamic loader
 * and libc) before main's first malloc, then repeated dlopen/dlclose mixed
 * with the program's own allocations.
 */
#include "testutil.h"

#include <math.h>

int main(void)
{
    /* first thing: the loader allocates (handles, scopes, error strings) */
    void *h = dlopen("libm.so.6", RTLD_NOW);
    CHECK(h != NULL, "dlopen(libm.so.6): %s", dlerror());
    double (*cosine)(double) = (double (*)(double))(uintptr_t)dlsym(h, "cos");
    CHECK(cosine != NULL && cosine(0.0) == 1.0);
    CHECK(dlopen("libtidal-test-does-not-exist.so", RTLD_NOW) == NULL);
    const char *err = dlerror();
    CHECK(err != NULL && strstr(err, "libtidal-test-does-not-exist") != NULL, "dlerror: %s", err ? err : "(null)");
    CHECK(dlsym(h, "tidal_test_no_such_symbol") == NULL);
    CHECK(dlerror() != NULL);

    tt_expect_tidalloc();

    void *keep[200];
    for (int i = 0; i < 200; i++) {
        void *r = dlopen(i % 2 ? "libresolv.so.2" : "libutil.so.1", RTLD_NOW | (i % 3 ? RTLD_LOCAL : RTLD_GLOBAL));
        CHECK(r != NULL, "dlopen round %d: %s", i, dlerror());
        keep[i] = malloc((size_t)i * 100 + 1);
        CHECK(keep[i] != NULL);
        tt_fill(keep[i], (size_t)i * 100 + 1, (uint64_t)i);
        CHECK(dlopen("libtidal-test-does-not-exist.so", RTLD_LAZY) == NULL);
        CHECK(dlerror() != NULL);
        CHECK(dlclose(r) == 0);
    }
    for (int i = 0; i < 200; i++) {
        CHECK(tt_check(keep[i], (size_t)i * 100 + 1, (uint64_t)i) == SIZE_MAX, "block %d changed", i);
        free(keep[i]);
    }
    CHECK(dlclose(h) == 0);
    printf("api_boot_dlopen: OK\n");
    return 0;
}
