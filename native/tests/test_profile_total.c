/* test_profile_total.c — mfp_profile_total(), the aggregate rows a profile
 * without time order (the deterministic tracer, foreign profilers) is made
 * of: rows add up per (stack, thread, flags), SAMPLES stays empty, the
 * rows survive an encode/decode round trip, bad indices record nothing. */
#include <stdlib.h>
#include <string.h>

#include "../profile/profile.h"
#include "check.h"

static uint32_t str(mfp_profile *p, const char *s) { return mfp_profile_string(p, s, strlen(s)); }

int main(void) {
    mfp_profile *p = mfp_profile_new(0);
    CHECK(p != NULL);
    uint32_t fn = mfp_profile_func(p, str(p, "f"), str(p, "a.py"), 3, MFP_FUNC_PYTHON);
    uint32_t gn = mfp_profile_func(p, str(p, "g"), str(p, "a.py"), 9, MFP_FUNC_PYTHON);
    uint32_t root = mfp_profile_stack(p, MFP_NONE, mfp_profile_frame(p, fn, 0));
    uint32_t leaf = mfp_profile_stack(p, root, mfp_profile_frame(p, gn, 0));
    uint32_t th = mfp_profile_thread(p, 42, str(p, "main"), MFP_THREAD_MAIN);
    CHECK(leaf != MFP_NONE && th != MFP_NONE);

    CHECK(mfp_profile_total(p, root, th, 1, 1, 500000) == 0);
    CHECK(mfp_profile_total(p, leaf, th, 1, 10, 2000000) == 0);
    CHECK(mfp_profile_total(p, leaf, th, 1, 5, 1000000) == 0);
    CHECK(mfp_profile_total(p, leaf, th, 0, 0, 7000000) == 0); /* other flags: own row */
    CHECK(mfp_profile_total(p, leaf + 1, th, 1, 1, 1) == -1);
    CHECK(mfp_profile_total(p, leaf, th + 1, 1, 1, 1) == -1);
    CHECK(mfp_profile_total(NULL, leaf, th, 1, 1, 1) == -1);

    mfp_profile_counts c;
    mfp_profile_get_counts(p, &c);
    CHECK(c.samples == 0 && c.totals == 3);

    size_t len;
    uint8_t *buf = mfp_profile_encode(p, &len);
    CHECK(buf != NULL);
    const char *err = NULL;
    mfp_profile *q = buf ? mfp_profile_decode(buf, len, &err) : NULL;
    CHECK(q != NULL && err == NULL);
    if (q) {
        size_t n;
        const mfp_total *t = mfp_profile_totals(q, &n);
        CHECK(n == 3);
        uint64_t calls = 0, w_leaf_cpu = 0, w_all = 0;
        for (size_t i = 0; i < n; i++) {
            w_all += t[i].weight_ns;
            if (t[i].stack == leaf && t[i].flags == 1) {
                calls = t[i].count;
                w_leaf_cpu = t[i].weight_ns;
            }
        }
        CHECK(calls == 15 && w_leaf_cpu == 3000000 && w_all == 10500000);
        mfp_profile_samples(q, &n);
        CHECK(n == 0);
        mfp_profile_free(q);
    }
    free(buf);
    mfp_profile_free(p);
    return check_done("test_profile_total");
}
