/* test_profile.c — the profile store and its codec: interning, the stack
 * prefix tree, decimation under the SAMPLES cap, encode/decode round trips,
 * a hand-written byte string that pins docs/FORMAT.md independently of the
 * encoder, and corrupt inputs (every truncation, random byte flips, each
 * validation rule). */
#include <stdlib.h>
#include <string.h>

#include "../profile/profile.h"
#include "../profile/store.h" /* to check the memory the store holds */
#include "check.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint32_t str(mfp_profile *p, const char *s) { return mfp_profile_string(p, s, strlen(s)); }

static int str_is(const mfp_profile *p, uint32_t i, const char *want) {
    size_t len;
    const char *s = mfp_profile_string_at(p, i, &len);
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

static void test_interning(void) {
    mfp_profile *p = mfp_profile_new(0);
    CHECK(p != NULL);
    CHECK(str(p, "") == 0);
    uint32_t a = str(p, "alpha"), b = str(p, "beta");
    CHECK(a != MFP_NONE && b != MFP_NONE && a != b && a != 0);
    CHECK(str(p, "alpha") == a);
    CHECK(mfp_profile_string(p, "alphabet", 5) == a); /* by length, not NUL */
    CHECK(mfp_profile_string(p, "a\0b", 3) != mfp_profile_string(p, "a\0c", 3));
    CHECK(mfp_profile_string(p, NULL, 0) == 0);
    CHECK(mfp_profile_string(p, NULL, 3) == MFP_NONE);
    /* Re-interning a pointer into the store's own buffer, across growth. */
    size_t len;
    const char *in = mfp_profile_string_at(p, b, &len);
    CHECK(mfp_profile_string(p, in, len) == b);
    CHECK(mfp_profile_string(p, in, 2) != b && str_is(p, mfp_profile_string(p, in, 2), "be"));
    /* Many strings: every index survives the index growing. */
    char buf[32];
    uint32_t ids[5000];
    for (int i = 0; i < 5000; i++) {
        snprintf(buf, sizeof buf, "s%d", i);
        ids[i] = str(p, buf);
    }
    int ok = 1;
    for (int i = 0; i < 5000; i++) {
        snprintf(buf, sizeof buf, "s%d", i);
        ok &= str(p, buf) == ids[i] && str_is(p, ids[i], buf);
        ok &= strlen(mfp_profile_string_at(p, ids[i], NULL)) == strlen(buf); /* NUL-terminated */
    }
    CHECK(ok);
    CHECK(mfp_profile_string_at(p, 1u << 30, &len) == NULL && len == 0);

    uint32_t f1 = mfp_profile_func(p, a, b, 10, MFP_FUNC_PYTHON);
    uint32_t f2 = mfp_profile_func(p, a, b, 11, MFP_FUNC_PYTHON);
    uint32_t f3 = mfp_profile_func(p, a, b, 10, MFP_FUNC_NATIVE);
    CHECK(f1 != MFP_NONE && f1 != f2 && f1 != f3 && f2 != f3);
    CHECK(mfp_profile_func(p, a, b, 10, MFP_FUNC_PYTHON) == f1);
    CHECK(mfp_profile_func(p, 1u << 30, b, 1, 0) == MFP_NONE);
    size_t n;
    const mfp_func *fs = mfp_profile_funcs(p, &n);
    CHECK(n == 3 && fs[f2].line == 11 && fs[f3].kind == MFP_FUNC_NATIVE && fs[f1].file == b);

    uint32_t fr1 = mfp_profile_frame(p, f1, 12), fr2 = mfp_profile_frame(p, f1, 13);
    CHECK(fr1 != fr2 && mfp_profile_frame(p, f1, 12) == fr1);
    CHECK(mfp_profile_frame(p, 99, 1) == MFP_NONE);
    const mfp_frame *frs = mfp_profile_frames(p, &n);
    CHECK(n == 2 && frs[fr2].func == f1 && frs[fr2].line == 13);

    uint32_t t1 = mfp_profile_thread(p, 1001, 0, 0);
    uint32_t t2 = mfp_profile_thread(p, 1002, a, MFP_THREAD_MAIN);
    CHECK(t1 != t2 && mfp_profile_thread(p, 1001, 0, 0) == t1);
    CHECK(mfp_profile_thread(p, 1001, b, 0) == t1);  /* renames */
    CHECK(mfp_profile_thread(p, 1001, 0, 0) == t1);  /* "" keeps the name */
    CHECK(mfp_profile_thread(p, 7, 1u << 30, 0) == MFP_NONE);
    const mfp_thread *ths = mfp_profile_threads(p, &n);
    CHECK(n == 2 && ths[t1].name == b && ths[t1].tid == 1001 && ths[t2].flags == MFP_THREAD_MAIN);

    /* Series are found again by name. */
    uint32_t s1 = mfp_profile_series(p, "cpu_pct", "%", 1);
    CHECK(s1 != MFP_NONE && mfp_profile_series(p, "cpu_pct", "%", 1) == s1);
    CHECK(mfp_profile_series(p, "rss_bytes", "B", 0) != s1);
    CHECK(mfp_profile_series_count(p) == 2);
    CHECK(mfp_profile_point(p, 9, 0, 0) == -1);

    size_t ml;
    CHECK(strcmp(mfp_profile_meta(p, &ml), "") == 0 && ml == 0);
    CHECK(mfp_profile_set_meta(p, "{\"a\":1}", 7) == 0);
    CHECK(mfp_profile_set_meta(p, "{\"b\":2}", 7) == 0);
    CHECK(strcmp(mfp_profile_meta(p, &ml), "{\"b\":2}") == 0 && ml == 7);
    mfp_profile_free(p);
    mfp_profile_free(NULL);
}

static void test_prefix_tree(void) {
    mfp_profile *p = mfp_profile_new(0);
    uint32_t f = mfp_profile_func(p, str(p, "f"), str(p, "x.py"), 1, 0);
    uint32_t fa = mfp_profile_frame(p, f, 2), fb = mfp_profile_frame(p, f, 3);
    uint32_t fc = mfp_profile_frame(p, f, 4), fd = mfp_profile_frame(p, f, 5);
    /* a → b → c and a → b → d share a and b. */
    uint32_t a = mfp_profile_stack(p, MFP_NONE, fa);
    uint32_t ab = mfp_profile_stack(p, a, fb);
    uint32_t abc = mfp_profile_stack(p, ab, fc);
    uint32_t abd = mfp_profile_stack(p, ab, fd);
    CHECK(mfp_profile_stack(p, MFP_NONE, fa) == a);
    CHECK(mfp_profile_stack(p, a, fb) == ab);
    CHECK(mfp_profile_stack(p, ab, fc) == abc);
    CHECK(abc != abd);
    /* The same frame under another parent is another node; b as a root too. */
    uint32_t b = mfp_profile_stack(p, MFP_NONE, fb);
    CHECK(b != ab && b != MFP_NONE);
    CHECK(mfp_profile_stack(p, b, fc) != abc);
    CHECK(mfp_profile_stack(p, 1000, fc) == MFP_NONE);
    CHECK(mfp_profile_stack(p, a, 1000) == MFP_NONE);
    size_t n;
    const mfp_stack_node *st = mfp_profile_stacks(p, &n);
    CHECK(n == 6);
    CHECK(st[a].parent == MFP_NONE && st[ab].parent == a && st[abc].parent == ab &&
          st[abd].parent == ab && st[abd].frame == fd && st[b].parent == MFP_NONE);
    /* A deep chain: walking the leaf back reaches the root in order. */
    uint32_t node = MFP_NONE;
    for (int d = 0; d < 300; d++)
        node = mfp_profile_stack(p, node, d % 2 ? fa : fb);
    st = mfp_profile_stacks(p, &n);
    int depth = 0;
    for (uint32_t x = node; x != MFP_NONE; x = st[x].parent)
        depth++;
    CHECK(depth == 300);
    mfp_profile_free(p);
}

/* A store with a little of everything, times in whole µs/ms so that a
 * round trip through the format is exact. */
static mfp_profile *rich_profile(size_t cap, int nsamples) {
    mfp_profile *p = mfp_profile_new(cap);
    uint32_t files[3] = {str(p, "app/main.py"), str(p, "lib/ü.py"), str(p, "<native>")};
    uint32_t frames[40];
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "fn_%d", i);
        uint32_t f = mfp_profile_func(p, str(p, name), files[i % 3], (uint32_t)(i * 10),
                                      (uint32_t)(i % 4));
        frames[i] = mfp_profile_frame(p, f, (uint32_t)(i * 10 + 3));
    }
    uint32_t th[3] = {mfp_profile_thread(p, 4242, str(p, "MainThread"), MFP_THREAD_MAIN),
                      mfp_profile_thread(p, 4243, str(p, "worker"), 0),
                      mfp_profile_thread(p, 1ull << 40, 0, 0)};
    uint64_t t = 0;
    for (int i = 0; i < nsamples; i++) {
        uint32_t node = MFP_NONE;
        int depth = 1 + (int)(rng() % 12);
        for (int d = 0; d < depth; d++)
            node = mfp_profile_stack(p, node, frames[rng() % 8 + (uint64_t)d * 2]);
        t += 1000 * (rng() % 3);
        mfp_profile_sample(p, t, node, th[i % 3], 1000 * (1 + rng() % 5), (uint32_t)(rng() & 1));
        if (i % 7 == 0)
            mfp_profile_memory(p, node, rng() % 100000, rng() % 1000000, rng() % 50);
        if (i % 5 == 0) {
            uint64_t life = 1000 * (rng() % 4000);
            mfp_profile_heap_event(p, node, rng() % 1000000, t, i % 3 ? t + life : MFP_STILL_LIVE);
        }
        if (i % 11 == 0)
            mfp_profile_leak(p, node, rng() % 100000);
    }
    uint32_t s1 = mfp_profile_series(p, "cpu_pct", "%", 1);
    uint32_t s2 = mfp_profile_series(p, "rss_bytes", "B", 0);
    mfp_profile_series(p, "empty", "", 0);
    for (int i = 0; i < 50; i++) {
        mfp_profile_point(p, s1, (uint64_t)i * 500000000ull, (int64_t)(rng() % 2000) - 1000);
        mfp_profile_point(p, s2, (uint64_t)i * 500000000ull, (int64_t)(rng() >> 1));
    }
    mfp_profile_point(p, s1, 30000000000ull, INT64_MIN);
    mfp_profile_point(p, s1, 30001000000ull, INT64_MAX);
    const char *meta = "{\"backend\":\"sample\",\"title\":\"t\"}";
    mfp_profile_set_meta(p, meta, strlen(meta));
    return p;
}

/* The tables of two stores are equal. */
static int same_profile(const mfp_profile *a, const mfp_profile *b) {
    mfp_profile_counts ca, cb;
    mfp_profile_get_counts(a, &ca);
    mfp_profile_get_counts(b, &cb);
    if (ca.strings != cb.strings || ca.funcs != cb.funcs || ca.frames != cb.frames ||
        ca.stacks != cb.stacks || ca.threads != cb.threads || ca.samples != cb.samples ||
        ca.totals != cb.totals || ca.series != cb.series || ca.memory != cb.memory)
        return 0;
    for (uint32_t i = 0; i < ca.strings; i++) {
        size_t la, lb;
        const char *sa = mfp_profile_string_at(a, i, &la), *sb = mfp_profile_string_at(b, i, &lb);
        if (la != lb || memcmp(sa, sb, la))
            return 0;
    }
    size_t n;
    const mfp_func *fa = mfp_profile_funcs(a, &n), *fb = mfp_profile_funcs(b, &n);
    if (n && memcmp(fa, fb, n * sizeof *fa))
        return 0;
    const mfp_frame *ra = mfp_profile_frames(a, &n), *rb = mfp_profile_frames(b, &n);
    if (n && memcmp(ra, rb, n * sizeof *ra))
        return 0;
    const mfp_stack_node *na = mfp_profile_stacks(a, &n), *nb = mfp_profile_stacks(b, &n);
    if (n && memcmp(na, nb, n * sizeof *na))
        return 0;
    const mfp_thread *ta = mfp_profile_threads(a, &n), *tb = mfp_profile_threads(b, &n);
    for (size_t i = 0; i < n; i++)
        if (ta[i].tid != tb[i].tid || ta[i].name != tb[i].name || ta[i].flags != tb[i].flags)
            return 0;
    const mfp_sample *sa = mfp_profile_samples(a, &n), *sb = mfp_profile_samples(b, &n);
    for (size_t i = 0; i < n; i++)
        if (sa[i].t_ns != sb[i].t_ns || sa[i].weight_ns != sb[i].weight_ns ||
            sa[i].stack != sb[i].stack || sa[i].thread != sb[i].thread ||
            sa[i].flags != sb[i].flags)
            return 0;
    const mfp_total *xa = mfp_profile_totals(a, &n), *xb = mfp_profile_totals(b, &n);
    for (size_t i = 0; i < n; i++)
        if (xa[i].count != xb[i].count || xa[i].weight_ns != xb[i].weight_ns ||
            xa[i].stack != xb[i].stack || xa[i].thread != xb[i].thread ||
            xa[i].flags != xb[i].flags)
            return 0;
    const mfp_memory *ma = mfp_profile_memories(a, &n), *mb = mfp_profile_memories(b, &n);
    for (size_t i = 0; i < n; i++)
        if (ma[i].stack != mb[i].stack || ma[i].live_bytes != mb[i].live_bytes ||
            ma[i].alloc_bytes != mb[i].alloc_bytes || ma[i].alloc_count != mb[i].alloc_count)
            return 0;
    size_t n2;
    const mfp_heap_event *ea = mfp_profile_heap_events(a, &n), *eb = mfp_profile_heap_events(b, &n2);
    if (n != n2)
        return 0;
    for (size_t i = 0; i < n; i++) /* field by field: the struct has padding */
        if (ea[i].stack != eb[i].stack || ea[i].bytes != eb[i].bytes ||
            ea[i].t_alloc_ns != eb[i].t_alloc_ns || ea[i].t_free_ns != eb[i].t_free_ns)
            return 0;
    const mfp_leak *ka = mfp_profile_leaks(a, &n), *kb = mfp_profile_leaks(b, &n2);
    if (n != n2)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ka[i].stack != kb[i].stack || ka[i].live_bytes != kb[i].live_bytes)
            return 0;
    for (uint32_t k = 0; k < ca.series; k++) {
        mfp_series_view va, vb;
        if (mfp_profile_series_at(a, k, &va) || mfp_profile_series_at(b, k, &vb))
            return 0;
        if (va.name != vb.name || va.unit != vb.unit || va.scale != vb.scale || va.n != vb.n)
            return 0;
        for (size_t i = 0; i < va.n; i++)
            if (va.t_ns[i] != vb.t_ns[i] || va.value[i] != vb.value[i])
                return 0;
    }
    size_t la, lb;
    const char *ma_ = mfp_profile_meta(a, &la), *mb_ = mfp_profile_meta(b, &lb);
    return la == lb && memcmp(ma_, mb_, la) == 0;
}

static void test_decimation(void) {
    enum { CAP = 1024, N = 100000, NT = 3 };
    mfp_profile *p = mfp_profile_new(CAP);
    uint32_t f = mfp_profile_func(p, str(p, "f"), str(p, "x.py"), 1, 0);
    uint32_t st[5], th[NT];
    for (int i = 0; i < 5; i++)
        st[i] = mfp_profile_stack(p, MFP_NONE, mfp_profile_frame(p, f, (uint32_t)i));
    for (int i = 0; i < NT; i++)
        th[i] = mfp_profile_thread(p, (uint64_t)(100 + i), 0, 0);
    static uint64_t want_count[NT][5][2], want_weight[NT][5][2];
    uint64_t thread_weight[NT] = {0}, total_weight = 0;
    int ok = 1;
    for (int i = 0; i < N; i++) {
        int t = i % NT, s = (int)(rng() % 5), fl = (int)(rng() & 1);
        uint64_t w = 1 + rng() % 2000;
        ok &= mfp_profile_sample(p, (uint64_t)i * 1000, st[s], th[t], w, (uint32_t)fl) == 0;
        want_count[t][s][fl]++;
        want_weight[t][s][fl] += w;
        thread_weight[t] += w;
        total_weight += w;
    }
    CHECK(ok);
    mfp_profile_counts c;
    mfp_profile_get_counts(p, &c);
    CHECK(c.samples_seen == N);
    CHECK(c.samples <= CAP && c.samples >= CAP / 4);
    CHECK(c.decimation > 1 && (c.decimation & (c.decimation - 1)) == 0);
    CHECK(p->cap_samples <= CAP); /* the memory held, not just the count */
    CHECK(c.totals == NT * 5 * 2);

    /* TOTALS are exact. */
    size_t n;
    const mfp_total *tot = mfp_profile_totals(p, &n);
    int exact = 1;
    for (size_t i = 0; i < n; i++) {
        int t = (int)tot[i].thread, s = (int)(tot[i].stack - st[0]), fl = (int)tot[i].flags;
        exact &= tot[i].count == want_count[t][s][fl] && tot[i].weight_ns == want_weight[t][s][fl];
    }
    CHECK(exact);

    /* SAMPLES: in time order, every thread still present, and each thread's
     * weights add up to what it was sampled for (decimation pairs records
     * within a thread, so nothing leaks from one thread to another). */
    const mfp_sample *sm = mfp_profile_samples(p, &n);
    uint64_t got[NT] = {0}, sum = 0;
    size_t per_thread[NT] = {0};
    int ordered = 1;
    for (size_t i = 0; i < n; i++) {
        got[sm[i].thread] += sm[i].weight_ns;
        per_thread[sm[i].thread]++;
        sum += sm[i].weight_ns;
        if (i)
            ordered &= sm[i].t_ns >= sm[i - 1].t_ns;
    }
    CHECK(ordered);
    CHECK(sum == total_weight);
    for (int t = 0; t < NT; t++) {
        CHECK(got[t] == thread_weight[t]);
        CHECK(per_thread[t] > n / NT / 2);
    }
    /* Each kept record stands for `decimation` samples of its thread, so
     * the kept records are evenly spread over the run. */
    size_t stride = c.decimation;
    CHECK(per_thread[0] == (N / NT + 1 + stride - 1) / stride);

    /* It still encodes and decodes to the same tables. */
    size_t len;
    uint8_t *bytes = mfp_profile_encode(p, &len);
    const char *err = NULL;
    mfp_profile *q = mfp_profile_decode(bytes, len, &err);
    CHECK(q != NULL && err == NULL);
    mfp_profile_counts cq;
    mfp_profile_get_counts(q, &cq);
    CHECK(cq.samples == c.samples && cq.totals == c.totals && cq.samples_seen == N);
    free(bytes);
    mfp_profile_free(q);
    mfp_profile_free(p);

    /* More threads than the cap: SAMPLES stays within the cap. */
    p = mfp_profile_new(4);
    uint32_t s0 = st[0] = mfp_profile_stack(
        p, MFP_NONE, mfp_profile_frame(p, mfp_profile_func(p, 0, 0, 0, 0), 0));
    uint32_t ths[10];
    for (int i = 0; i < 10; i++)
        ths[i] = mfp_profile_thread(p, (uint64_t)i, 0, 0);
    for (int i = 0; i < 1000; i++)
        CHECK(mfp_profile_sample(p, (uint64_t)i, s0, ths[i % 10], 1, 0) == 0);
    mfp_profile_get_counts(p, &c);
    CHECK(c.samples <= 4 && c.samples_seen == 1000);
    mfp_profile_free(p);
}

static void test_sample_rules(void) {
    mfp_profile *p = mfp_profile_new(0);
    uint32_t s = mfp_profile_stack(p, MFP_NONE,
                                   mfp_profile_frame(p, mfp_profile_func(p, 0, 0, 0, 0), 0));
    uint32_t t = mfp_profile_thread(p, 1, 0, 0);
    CHECK(mfp_profile_sample(p, 5000, s, t, 1000, MFP_SAMPLE_ON_CPU) == 0);
    CHECK(mfp_profile_sample(p, 4000, s, t, 1000, MFP_SAMPLE_ON_CPU) == 0); /* clock went back */
    CHECK(mfp_profile_sample(p, 6000, s + 1, t, 1000, 0) == -1);
    CHECK(mfp_profile_sample(p, 6000, s, t + 1, 1000, 0) == -1);
    size_t n;
    const mfp_sample *sm = mfp_profile_samples(p, &n);
    CHECK(n == 2 && sm[1].t_ns == 5000);
    const mfp_total *tot = mfp_profile_totals(p, &n);
    CHECK(n == 1 && tot[0].count == 2 && tot[0].weight_ns == 2000);
    CHECK(mfp_profile_memory(p, s, 10, 20, 1) == 0);
    CHECK(mfp_profile_memory(p, s, 5, 5, 2) == 0);
    CHECK(mfp_profile_memory(p, s + 1, 5, 5, 2) == -1);
    const mfp_memory *m = mfp_profile_memories(p, &n);
    CHECK(n == 1 && m[0].live_bytes == 15 && m[0].alloc_bytes == 25 && m[0].alloc_count == 3);
    CHECK(mfp_profile_leak(p, s, 7) == 0 && mfp_profile_leak(p, s, 3) == 0);
    CHECK(mfp_profile_leak(p, s + 1, 1) == -1);
    const mfp_leak *lk = mfp_profile_leaks(p, &n);
    CHECK(n == 1 && lk[0].live_bytes == 10);
    /* Events keep t_alloc order; a free is never before its allocation. */
    CHECK(mfp_profile_heap_event(p, s, 100, 9000, 12000) == 0);
    CHECK(mfp_profile_heap_event(p, s, 100, 8000, 7000) == 0);
    CHECK(mfp_profile_heap_event(p, s, 100, 9500, MFP_STILL_LIVE) == 0);
    CHECK(mfp_profile_heap_event(p, s + 1, 100, 9500, MFP_STILL_LIVE) == -1);
    const mfp_heap_event *he = mfp_profile_heap_events(p, &n);
    CHECK(n == 3 && he[1].t_alloc_ns == 9000 && he[1].t_free_ns == 9000 &&
          he[2].t_free_ns == MFP_STILL_LIVE);
    mfp_profile_free(p);
}

static void test_round_trip(void) {
    mfp_profile *p = rich_profile(0, 3000);
    size_t len1, len2;
    uint8_t *b1 = mfp_profile_encode(p, &len1);
    CHECK(b1 != NULL && len1 > 6 && memcmp(b1, "MFPROF", 6) == 0);
    const char *err = "unset";
    mfp_profile *q = mfp_profile_decode(b1, len1, &err);
    CHECK(q != NULL && err == NULL);
    CHECK(same_profile(p, q));
    uint8_t *b2 = mfp_profile_encode(q, &len2);
    CHECK(b2 != NULL && len1 == len2 && memcmp(b1, b2, len1) == 0);
    /* A decoded store is a working store: interning finds what it holds. */
    size_t n;
    const mfp_stack_node *st = mfp_profile_stacks(q, &n);
    CHECK(n > 0 && mfp_profile_stack(q, st[n - 1].parent, st[n - 1].frame) == n - 1);
    CHECK(str(q, "app/main.py") == str(p, "app/main.py"));

    /* Sub-µs parts are dropped without drifting: absolute times floor. */
    mfp_profile *r = mfp_profile_new(0);
    uint32_t s = mfp_profile_stack(r, MFP_NONE,
                                   mfp_profile_frame(r, mfp_profile_func(r, 0, 0, 0, 0), 0));
    uint32_t t = mfp_profile_thread(r, 1, 0, 0);
    for (int i = 1; i <= 10; i++)
        mfp_profile_sample(r, (uint64_t)i * 1999, s, t, 1499, 0);
    uint8_t *b3 = mfp_profile_encode(r, &len1);
    mfp_profile *r2 = mfp_profile_decode(b3, len1, &err);
    CHECK(r2 != NULL);
    const mfp_sample *sm = mfp_profile_samples(r2, &n);
    CHECK(n == 10 && sm[9].t_ns == 19000 && sm[0].t_ns == 1000 && sm[0].weight_ns == 1000);
    const mfp_total *tot = mfp_profile_totals(r2, &n);
    CHECK(n == 1 && tot[0].weight_ns == 15000 && tot[0].count == 10);

    /* An empty store round-trips too. */
    mfp_profile *e = mfp_profile_new(0);
    uint8_t *b4 = mfp_profile_encode(e, &len1);
    mfp_profile *e2 = mfp_profile_decode(b4, len1, &err);
    CHECK(e2 != NULL && same_profile(e, e2));

    free(b1);
    free(b2);
    free(b3);
    free(b4);
    mfp_profile_free(p);
    mfp_profile_free(q);
    mfp_profile_free(r);
    mfp_profile_free(r2);
    mfp_profile_free(e);
    mfp_profile_free(e2);
}

/* Whatever the decoder accepts re-encodes into bytes it accepts again. */
static int decode_is_sane(const uint8_t *b, size_t len) {
    const char *err = NULL;
    mfp_profile *p = mfp_profile_decode(b, len, &err);
    if (!p)
        return err != NULL && err[0] != '\0';
    size_t l2;
    uint8_t *again = mfp_profile_encode(p, &l2);
    mfp_profile *q = again ? mfp_profile_decode(again, l2, &err) : NULL;
    int ok = q != NULL && same_profile(p, q);
    free(again);
    mfp_profile_free(q);
    mfp_profile_free(p);
    return ok;
}

static void test_corrupt_inputs(void) {
    mfp_profile *p = rich_profile(0, 300);
    size_t len;
    uint8_t *b = mfp_profile_encode(p, &len);
    mfp_profile_free(p);

    /* Every prefix. A prefix cut between sections is a valid profile with
     * sections missing; anything else must be refused. */
    int ok = 1, accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees overreads */
        memcpy(copy, b, cut);
        const char *err = NULL;
        mfp_profile *q = mfp_profile_decode(copy, cut, &err);
        ok &= q ? err == NULL : err != NULL;
        accepted += q != NULL;
        ok &= decode_is_sane(copy, cut);
        mfp_profile_free(q);
        free(copy);
    }
    CHECK(ok);
    CHECK(accepted == 12); /* cut after the header or after one of the first 11 sections */

    /* Random flips of 1–4 bytes, deterministic seed. */
    rng_state = 12345;
    ok = 1;
    int decoded = 0;
    uint8_t *copy = malloc(len);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, b, len);
        int flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < flips; k++)
            copy[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
        ok &= decode_is_sane(copy, len);
        mfp_profile *q = mfp_profile_decode(copy, len, NULL);
        decoded += q != NULL;
        mfp_profile_free(q);
    }
    CHECK(ok);
    CHECK(decoded > 0); /* some flips land in values and still decode */
    /* Random garbage after a valid header. */
    for (int iter = 0; iter < 2000; iter++) {
        size_t l = 7 + rng() % 60;
        memcpy(copy, "MFPROF\x01", 7);
        for (size_t i = 7; i < l; i++)
            copy[i] = (uint8_t)(rng() % 4 ? rng() % 12 : rng());
        ok &= decode_is_sane(copy, l);
    }
    CHECK(ok);
    free(copy);
    free(b);
}

/* Decoding `bytes` fails with an error containing `want`. */
static int rejects(const char *bytes, size_t len, const char *want) {
    const char *err = NULL;
    mfp_profile *p = mfp_profile_decode((const uint8_t *)bytes, len, &err);
    int ok = p == NULL && err != NULL && strstr(err, want) != NULL;
    if (!ok)
        fprintf(stderr, "  want \"%s\", got \"%s\"\n", want, err ? err : "(accepted)");
    mfp_profile_free(p);
    return ok;
}
#define REJECTS(lit, want) CHECK(rejects(lit, sizeof(lit) - 1, want))

static void test_validation(void) {
    REJECTS("", "magic");
    REJECTS("MFPRO", "magic");
    REJECTS("MFPROX\x01", "magic");
    REJECTS("MFPROF", "truncated varint");
    REJECTS("MFPROF\x02", "version");
    REJECTS("MFPROF\x81", "truncated varint");
    REJECTS("MFPROF\x01\x02\x80", "truncated varint");
    REJECTS("MFPROF\x01\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "10 bytes");
    REJECTS("MFPROF\x01\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", "64 bits");
    REJECTS("MFPROF\x01\x02\x05\x02\x00\x00", "past the end");
    REJECTS("MFPROF\x01\x63\x05\x00", "past the end"); /* unknown tags too */
    REJECTS("MFPROF\x01\x02\x01\x00\x02\x01\x00", "twice");
    REJECTS("MFPROF\x01\x02\x01\x01", "can hold"); /* 1 string, no bytes */
    REJECTS("MFPROF\x01\x02\x04\x7f\x00\x00\x00", "can hold"); /* absurd count */
    REJECTS("MFPROF\x01\x02\x03\x01\x01x", "string 0");
    REJECTS("MFPROF\x01\x02\x03\x02\x00\x05", "string runs past");
    REJECTS("MFPROF\x01\x02\x03\x01\x00\x00", "after its content");
    /* FUNCS name 1 with only string 0. */
    REJECTS("MFPROF\x01\x03\x05\x01\x01\x00\x00\x00", "string index");
    REJECTS("MFPROF\x01\x03\x09\x01\x00\x00\x80\x80\x80\x80\x10\x00", "32 bits");
    REJECTS("MFPROF\x01\x04\x03\x01\x00\x00", "function index");
    /* One func, one frame, then stacks. */
#define FF "MFPROF\x01\x03\x05\x01\x00\x00\x00\x00\x04\x03\x01\x00\x00"
    REJECTS(FF "\x05\x03\x01\x01\x00", "precede");
    REJECTS(FF "\x05\x05\x02\x00\x02\x00\x00", "precede");
    REJECTS(FF "\x05\x03\x01\x00\x01", "frame index");
    /* With one root node and one thread: samples, totals, memory. */
#define FST FF "\x05\x03\x01\x00\x00\x06\x04\x01\x07\x00\x00"
    REJECTS(FST "\x06\x04\x01\x07\x01\x00", "twice");
    REJECTS(FST "\x07\x06\x01\x00\x01\x00\x00\x00", "stack index");
    REJECTS(FST "\x07\x06\x01\x00\x00\x01\x00\x00", "thread index");
    REJECTS(FST "\x07\x07\x01\x00\x00\x00\x00\x00\x00", "after its content");
    REJECTS(FST "\x07\x05\x01\x00\x00\x00\x00", "can hold");
    REJECTS(FST "\x07\x0e\x01\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00\x00\x00\x00", "overflow");
    REJECTS(FST "\x08\x06\x01\x02\x00\x00\x00\x00", "stack index");
    REJECTS(FST "\x08\x06\x01\x00\x01\x00\x00\x00", "thread index");
    REJECTS(FST "\x0a\x05\x01\x01\x00\x00\x00", "stack index");
    REJECTS(FST "\x09\x07\x01\x01\x00\x00\x01\x00\x00", "string index");
    REJECTS(FST "\x09\x07\x01\x00\x00\x00\x02\x00\x00", "can hold");
    REJECTS(FST "\x09\x02\x02\x00", "can hold");
    REJECTS(FST "\x01\x02\x05\x00", "META");
    /* The same prefix with valid tails is accepted (the cases above fail
     * for the reason they name, not for a typo in the prefix). */
    const char ok1[] = FST "\x07\x06\x01\x00\x00\x00\x00\x00\x0a\x05\x01\x00\x00\x00\x00";
    const char *err = NULL;
    mfp_profile *p = mfp_profile_decode((const uint8_t *)ok1, sizeof ok1 - 1, &err);
    CHECK(p != NULL && err == NULL);
    mfp_profile_free(p);
#undef FST
#undef FF
}

/* A profile written by hand from docs/FORMAT.md, sections out of order and
 * an unknown section in the middle. Pins the format apart from the encoder. */
static const uint8_t HAND[] = {
    'M', 'F', 'P', 'R', 'O', 'F', 0x01,
    /* STRINGS: "", "main", "a.py", "T" */
    0x02, 0x0e, 0x04, 0x00, 0x04, 'm', 'a', 'i', 'n', 0x04, 'a', '.', 'p', 'y', 0x01, 'T',
    /* FUNCS: name [1,3] file [2,0] line [10,0] kind [0,2] */
    0x03, 0x09, 0x02, 0x01, 0x03, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x02,
    /* FRAMES: func [0,0,1] line [12,300,0] */
    0x04, 0x08, 0x03, 0x00, 0x00, 0x01, 0x0c, 0xac, 0x02, 0x00,
    /* STACKS: parent_delta [0,1,2] frame [2,0,1] */
    0x05, 0x07, 0x03, 0x00, 0x01, 0x02, 0x02, 0x00, 0x01,
    /* THREADS: tid [123456] name [3] flags [1] */
    0x06, 0x06, 0x01, 0xc0, 0xc4, 0x07, 0x03, 0x01,
    /* SAMPLES: dt_us [1000,1000,0] stack [1,2,2] thread [0,0,0]
     * weight_us [1000,1000,500] flags [1,0,1] */
    0x07, 0x15, 0x03, 0xe8, 0x07, 0xe8, 0x07, 0x00, 0x01, 0x02, 0x02, 0x00, 0x00, 0x00,
    0xe8, 0x07, 0xe8, 0x07, 0xf4, 0x03, 0x01, 0x00, 0x01,
    /* tag 42, unknown: skipped */
    0x2a, 0x03, 0xff, 0xff, 0xff,
    /* TOTALS: stack [1,2] thread [0,0] flags [1,0] count [1,2] weight_us [1000,1500] */
    0x08, 0x0d, 0x02, 0x01, 0x02, 0x00, 0x00, 0x01, 0x00, 0x01, 0x02, 0xe8, 0x07, 0xdc, 0x0b,
    /* MEMORY: stack [2] live [4096] alloc [10000] count [3] */
    0x0a, 0x07, 0x01, 0x02, 0x80, 0x20, 0x90, 0x4e, 0x03,
    /* TIMELINE: 1 series: name 1, unit 0, scale 1, n 3, dt_ms [0,500,500],
     * value deltas [5,-8,10] as zigzag [10,15,20] */
    0x09, 0x0d, 0x01, 0x01, 0x00, 0x01, 0x03, 0x00, 0xf4, 0x03, 0xf4, 0x03, 0x0a, 0x0f, 0x14,
    /* META: "{}" */
    0x01, 0x03, 0x02, '{', '}',
};

static void test_hand_made(void) {
    const char *err = NULL;
    mfp_profile *p = mfp_profile_decode(HAND, sizeof HAND, &err);
    CHECK(p != NULL && err == NULL);
    if (!p) {
        fprintf(stderr, "  hand-made profile: %s\n", err);
        return;
    }
    mfp_profile_counts c;
    mfp_profile_get_counts(p, &c);
    CHECK(c.strings == 4 && c.funcs == 2 && c.frames == 3 && c.stacks == 3 && c.threads == 1 &&
          c.samples == 3 && c.totals == 2 && c.series == 1 && c.memory == 1);
    CHECK(str_is(p, 0, "") && str_is(p, 1, "main") && str_is(p, 2, "a.py") && str_is(p, 3, "T"));
    size_t n;
    const mfp_func *f = mfp_profile_funcs(p, &n);
    CHECK(f[0].name == 1 && f[0].file == 2 && f[0].line == 10 && f[0].kind == MFP_FUNC_PYTHON);
    CHECK(f[1].name == 3 && f[1].file == 0 && f[1].line == 0 && f[1].kind == MFP_FUNC_THREAD);
    const mfp_frame *fr = mfp_profile_frames(p, &n);
    CHECK(fr[0].func == 0 && fr[0].line == 12 && fr[1].func == 0 && fr[1].line == 300 &&
          fr[2].func == 1 && fr[2].line == 0);
    const mfp_stack_node *st = mfp_profile_stacks(p, &n);
    CHECK(st[0].parent == MFP_NONE && st[0].frame == 2 && st[1].parent == 0 &&
          st[1].frame == 0 && st[2].parent == 0 && st[2].frame == 1);
    const mfp_thread *th = mfp_profile_threads(p, &n);
    CHECK(th[0].tid == 123456 && th[0].name == 3 && th[0].flags == MFP_THREAD_MAIN);
    const mfp_sample *s = mfp_profile_samples(p, &n);
    CHECK(s[0].t_ns == 1000000 && s[1].t_ns == 2000000 && s[2].t_ns == 2000000);
    CHECK(s[0].stack == 1 && s[1].stack == 2 && s[2].stack == 2 && s[2].thread == 0);
    CHECK(s[0].weight_ns == 1000000 && s[2].weight_ns == 500000);
    CHECK(s[0].flags == MFP_SAMPLE_ON_CPU && s[1].flags == 0 && s[2].flags == 1);
    const mfp_total *t = mfp_profile_totals(p, &n);
    CHECK(t[0].stack == 1 && t[0].flags == 1 && t[0].count == 1 && t[0].weight_ns == 1000000);
    CHECK(t[1].stack == 2 && t[1].flags == 0 && t[1].count == 2 && t[1].weight_ns == 1500000);
    CHECK(c.samples_seen == 3);
    const mfp_memory *m = mfp_profile_memories(p, &n);
    CHECK(m[0].stack == 2 && m[0].live_bytes == 4096 && m[0].alloc_bytes == 10000 &&
          m[0].alloc_count == 3);
    mfp_series_view v;
    CHECK(mfp_profile_series_at(p, 0, &v) == 0);
    CHECK(v.name == 1 && v.unit == 0 && v.scale == 1 && v.n == 3);
    CHECK(v.t_ns[0] == 0 && v.t_ns[1] == 500000000 && v.t_ns[2] == 1000000000);
    CHECK(v.value[0] == 5 && v.value[1] == -3 && v.value[2] == 7);
    CHECK(mfp_profile_series_at(p, 1, &v) == -1);
    size_t ml;
    CHECK(strcmp(mfp_profile_meta(p, &ml), "{}") == 0 && ml == 2);

    /* Our encoder writes the same tables in tag order, without tag 42. */
    size_t len;
    uint8_t *b = mfp_profile_encode(p, &len);
    mfp_profile *q = mfp_profile_decode(b, len, &err);
    CHECK(q != NULL && same_profile(p, q));
    CHECK(len == sizeof HAND - 5);
    /* The first section written is META, bytes as above. */
    static const uint8_t head[] = {'M', 'F', 'P', 'R', 'O', 'F', 0x01, 0x01, 0x03, 0x02, '{', '}'};
    CHECK(len > sizeof head && memcmp(b, head, sizeof head) == 0);
    free(b);
    mfp_profile_free(q);
    mfp_profile_free(p);
}

/* Once the tables hold what the sampler sees and SAMPLES reached its cap,
 * a sample with its interning allocates nothing (the countdown counts
 * allocations). */
static void test_no_alloc_when_warm(void) {
    mfp_profile *p = mfp_profile_new(256);
    uint32_t th = mfp_profile_thread(p, 1, 0, 0);
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            mfp_profile_fail_countdown = (unsigned long)-1;
        for (int i = 0; i < 2000; i++) {
            uint32_t node = MFP_NONE;
            for (int d = 0; d < 20; d++) {
                char name[8];
                snprintf(name, sizeof name, "f%d", (d * 7 + i) % 13);
                uint32_t f = mfp_profile_func(p, str(p, name), str(p, "m.py"), 1, 0);
                node = mfp_profile_stack(p, node, mfp_profile_frame(p, f, (uint32_t)d));
            }
            mfp_profile_thread(p, 1, 0, 0);
            mfp_profile_sample(p, (uint64_t)i, node, th, 1, 0);
        }
    }
    CHECK(mfp_profile_fail_countdown == (unsigned long)-1);
    mfp_profile_fail_countdown = 0;
    mfp_profile_free(p);
}

/* Every allocation the store, encoder and decoder make, failed in turn:
 * nothing crashes or leaks (ASan checks leaks), the adders report it, and
 * the store left behind is consistent: it encodes, decodes back to the
 * same tables, and its TOTALS still match samples_seen. */
static void test_out_of_memory(void) {
    int consistent = 1, failures_seen = 0;
    unsigned long k;
    for (k = 1; k < 100000; k++) {
        rng_state = 99;
        mfp_profile_fail_countdown = k;
        mfp_profile *p = rich_profile(64, 200);
        int hit = mfp_profile_fail_countdown == 0;
        mfp_profile_fail_countdown = 0;
        if (!hit) { /* the k-th allocation never came: all were covered */
            mfp_profile_free(p);
            break;
        }
        failures_seen++;
        if (!p)
            continue;
        size_t len;
        uint8_t *b = mfp_profile_encode(p, &len);
        const char *err = NULL;
        mfp_profile *q = b ? mfp_profile_decode(b, len, &err) : NULL;
        consistent &= q != NULL && same_profile(p, q);
        mfp_profile_counts c;
        mfp_profile_get_counts(p, &c);
        size_t n;
        const mfp_total *t = mfp_profile_totals(p, &n);
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += t[i].count;
        consistent &= sum == c.samples_seen;
        free(b);
        mfp_profile_free(q);
        mfp_profile_free(p);
    }
    CHECK(consistent);
    CHECK(failures_seen > 20 && k < 100000);

    /* The codec under the same treatment. */
    rng_state = 99;
    mfp_profile *p = rich_profile(0, 200);
    size_t len;
    uint8_t *good = mfp_profile_encode(p, &len);
    int ok = 1;
    for (k = 1; k < 100000; k++) {
        mfp_profile_fail_countdown = k;
        size_t l2;
        uint8_t *b = mfp_profile_encode(p, &l2);
        const char *err = NULL;
        mfp_profile *q = mfp_profile_decode(good, len, &err);
        int hit = mfp_profile_fail_countdown == 0;
        mfp_profile_fail_countdown = 0;
        ok &= b == NULL || (l2 == len && memcmp(b, good, len) == 0);
        ok &= q != NULL ? same_profile(p, q) : strcmp(err, "out of memory") == 0;
        free(b);
        mfp_profile_free(q);
        if (!hit)
            break;
    }
    CHECK(ok && k > 20 && k < 100000);
    free(good);
    mfp_profile_free(p);
}

int main(void) {
    test_interning();
    test_prefix_tree();
    test_sample_rules();
    test_decimation();
    test_round_trip();
    test_hand_made();
    test_validation();
    test_corrupt_inputs();
    test_no_alloc_when_warm();
    test_out_of_memory();
    return check_done("test_profile");
}
