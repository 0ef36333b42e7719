/* test_profile_snapshot.c — snapshots of a store that keeps growing
 * (mfp_profile_sync, mfp_profile_clone): after every sync, a clone of the
 * mirror encodes to exactly the bytes of the source, through new strings,
 * stacks, threads, renames, decimation under a small SAMPLES cap, and an
 * allocation failure in the middle of a sync; a clone is a working store
 * (interning finds what it holds) and changing it leaves the mirror alone.
 * A thread writing the store while another syncs is exercised under the
 * sampler's lock by the Python tests (tests/unit/test_live.py). */
#include <stdlib.h>
#include <string.h>

#include "../profile/profile.h"
#include "../profile/store.h"
#include "check.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int same_bytes(const mfp_profile *a, const mfp_profile *b) {
    size_t na, nb;
    uint8_t *ea = mfp_profile_encode(a, &na), *eb = mfp_profile_encode(b, &nb);
    int same = ea && eb && na == nb && memcmp(ea, eb, na) == 0;
    free(ea);
    free(eb);
    return same;
}

/* What the sampler does: new frames now and then, samples on a few threads. */
static void grow(mfp_profile *p, uint64_t *t, int steps) {
    char name[32];
    for (int i = 0; i < steps; i++) {
        int k = (int)(rng() % 40);
        snprintf(name, sizeof name, "f%d", k);
        uint32_t s = mfp_profile_string(p, name, strlen(name));
        uint32_t file = mfp_profile_string(p, "x.py", 4);
        uint32_t fn = mfp_profile_func(p, s, file, (uint32_t)k, MFP_FUNC_PYTHON);
        uint32_t fr = mfp_profile_frame(p, fn, (uint32_t)(rng() % 5));
        uint32_t root = mfp_profile_stack(p, MFP_NONE, 0);
        uint32_t st = mfp_profile_stack(p, root, fr);
        uint32_t th = mfp_profile_thread(p, 100 + rng() % 3, 0, 0);
        *t += 1000 + rng() % 5000;
        CHECK(mfp_profile_sample(p, *t, st, th, 1000000, (uint32_t)(rng() & 1)) == 0);
    }
}

static void test_sync_tracks_source(void) {
    mfp_profile *src = mfp_profile_new(64); /* small cap: decimation happens often */
    mfp_profile *m = mfp_profile_new(0);
    uint64_t t = 0;
    int all_same = 1;
    uint32_t strides_seen = 0;
    for (int round = 0; round < 200; round++) {
        grow(src, &t, (int)(rng() % 30));
        if (round % 17 == 5) { /* a rename in place */
            uint32_t nm = mfp_profile_string(src, "worker", 6);
            mfp_profile_thread(src, 101, nm, round % 2 ? MFP_THREAD_MAIN : 0);
        }
        CHECK(mfp_profile_sync(m, src) == 0);
        mfp_profile *c = mfp_profile_clone(m);
        CHECK(c != NULL);
        if (!c || !same_bytes(c, src)) all_same = 0;
        mfp_profile_free(c);
        mfp_profile_counts k;
        mfp_profile_get_counts(src, &k);
        strides_seen |= k.decimation;
    }
    CHECK(all_same);
    CHECK(strides_seen > 2); /* decimation did happen along the way */
    mfp_profile_free(src);
    mfp_profile_free(m);
}

static void test_sync_survives_oom(void) {
    mfp_profile *src = mfp_profile_new(128);
    mfp_profile *m = mfp_profile_new(0);
    uint64_t t = 0;
    int failed = 0;
    for (int round = 0; round < 60; round++) {
        grow(src, &t, 25);
        mfp_profile_fail_countdown = round % 3 == 1 ? 1 + rng() % 6 : 0;
        if (mfp_profile_sync(m, src) != 0) failed++;
        mfp_profile_fail_countdown = 0;
    }
    CHECK(failed > 0);
    CHECK(mfp_profile_sync(m, src) == 0);
    CHECK(same_bytes(m, src));
    mfp_profile_free(src);
    mfp_profile_free(m);
}

static void test_clone_is_a_working_store(void) {
    mfp_profile *src = mfp_profile_new(0);
    uint64_t t = 0;
    grow(src, &t, 500);
    CHECK(mfp_profile_series(src, "rss_bytes", "B", 0) == 0);
    CHECK(mfp_profile_point(src, 0, 5, 42) == 0);
    CHECK(mfp_profile_memory(src, 1, 10, 20, 1) == 0);
    CHECK(mfp_profile_heap_event(src, 1, 100, 5000, 9000) == 0);
    CHECK(mfp_profile_leak(src, 1, 7) == 0);
    CHECK(mfp_profile_set_meta(src, "{\"a\":1}", 7) == 0);
    mfp_profile *c = mfp_profile_clone(src);
    CHECK(c != NULL && same_bytes(c, src));
    mfp_profile_counts before, after;
    mfp_profile_get_counts(src, &before);
    CHECK(mfp_profile_string(c, "f3", 2) == mfp_profile_string(src, "f3", 2)); /* found, not added */
    CHECK(mfp_profile_thread(c, 101, 0, 0) == mfp_profile_thread(src, 101, 0, 0));
    uint32_t nm = mfp_profile_string(c, "renamed", 7);
    CHECK(mfp_profile_thread(c, 102, nm, 0) != MFP_NONE);
    CHECK(mfp_profile_memory(c, 1, 5, 5, 1) == 0);
    CHECK(mfp_profile_point(c, 0, 9, 43) == 0);
    CHECK(mfp_profile_leak(c, 1, 3) == 0 && mfp_profile_heap_event(c, 1, 1, 9000, MFP_STILL_LIVE) == 0);
    size_t nl;
    CHECK(mfp_profile_leaks(src, &nl)[0].live_bytes == 7 && nl == 1);
    CHECK(mfp_profile_heap_events(src, &nl) != NULL && nl == 1);
    mfp_profile_get_counts(src, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK(!same_bytes(c, src));
    mfp_profile_free(c);
    /* Clones fail cleanly at any allocation. */
    for (unsigned long k = 1; k < 40; k++) {
        mfp_profile_fail_countdown = k;
        mfp_profile *f = mfp_profile_clone(src);
        mfp_profile_fail_countdown = 0;
        if (f) CHECK(same_bytes(f, src));
        mfp_profile_free(f);
    }
    mfp_profile_free(src);
}

int main(void) {
    test_sync_tracks_source();
    test_sync_survives_oom();
    test_clone_is_a_working_store();
    return check_done("test_profile_snapshot");
}
