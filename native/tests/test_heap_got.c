/* GOT patching (native/heap/got.c) on this very program: its calls to
 * malloc and free go through its own GOT, which the heap profiler patches in
 * every loaded object. Checks that patched calls reach the hook, that the
 * hook reaches the real function, that patching twice is a no-op, that
 * unpatching puts the old slot value back (calls stop reaching the hook)
 * and that the cycle can be repeated. got.c is included, not linked: the
 * Makefile links every test with the profile and timeline sources only.
 * It is also built as a non-PIE executable (as Debian's python3.14 is):
 * this program takes malloc's address, so there dlsym(RTLD_DEFAULT,
 * "malloc") is its own PLT stub and only mfp_got_real finds the function a
 * hook may call without calling itself. */
#include "../heap/got.c"

#include "check.h"

#include <dlfcn.h>
#include <stdio.h>

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static int mallocs, frees;

static void *hook_malloc(size_t n) {
    mallocs++;
    return real_malloc(n);
}

static void hook_free(void *p) {
    if (p) frees++;
    real_free(p);
}

/* Called through a pointer the compiler cannot see through, so the
 * malloc/free pair is not optimised away. */
static void *(*volatile do_malloc)(size_t) = malloc;
static void (*volatile do_free)(void *) = free;

static void cycle(void) {
    char *p = malloc(100);
    if (p) p[0] = 1;
    free(p);
}

int main(void) {
    *(void **)&real_malloc = mfp_got_real("malloc");
    *(void **)&real_free = mfp_got_real("free");
    CHECK(real_malloc && real_free);
    Dl_info in_malloc, in_main;
    CHECK(dladdr((void *)real_malloc, &in_malloc) && dladdr((void *)main, &in_main) &&
          in_malloc.dli_fbase != in_main.dli_fbase); /* not a stub of this program */
    CHECK(mfp_got_real("no_such_function_anywhere") == NULL);
    static const mfp_got_hook hooks[] = {{"malloc", (void *)hook_malloc}, {"free", (void *)hook_free}};

    for (int round = 0; round < 3; round++) {
        mallocs = frees = 0;
        /* self = NULL: this program is not skipped, unlike the extension. */
        long n = mfp_got_patch_all(hooks, 2, NULL, 0);
        CHECK(n >= 2);
        size_t objects = 0;
        CHECK(mfp_got_patched_slots(&objects) == (size_t)n && objects >= 1);
        CHECK(mfp_got_patch_all(hooks, 2, NULL, 0) == 0); /* already patched */
        CHECK(mfp_got_patch_all(hooks, 2, NULL, 1) == 0);
        cycle();
        CHECK(mallocs >= 1 && frees >= 1);
        mfp_got_unpatch_all();
        CHECK(mfp_got_patched_slots(NULL) == 0);
        int m = mallocs, f = frees;
        cycle();
        void *q = do_malloc(10);
        do_free(q);
        CHECK(mallocs == m && frees == f); /* the hooks are gone */
    }
    return check_done("heap_got");
}
