/* bench_profile_store.c — what the profile store costs the sampler thread,
 * and how big and how compressible its encoding is.
 *
 *   cc -std=c11 -O2 -D_GNU_SOURCE -o /tmp/bench_profile_store \
 *      bench/bench_profile_store.c native/profile/[a-z]*.c -lz
 *   /tmp/bench_profile_store
 *
 * Per sample it does what the sampler does: for each of `depth` frames,
 * intern (func, line) as a frame and (parent, frame) as a stack node, then
 * record the sample. Stacks come from a fixed set of 64 call paths, so the
 * tables are warm after the first round (the steady state of a real run).
 * Then it encodes a 1M-sample profile and deflates it (zlib level 6, what
 * the card's DecompressionStream reads).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "../native/profile/profile.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

enum { NFUNCS = 500, NPATHS = 64, MAXDEPTH = 200 };

static uint32_t funcs[NFUNCS];
static uint32_t paths[NPATHS][MAXDEPTH][2]; /* func, line */

static mfp_profile *setup(size_t cap, int depth, uint32_t *threads) {
    mfp_profile *p = mfp_profile_new(cap);
    char name[32];
    for (int i = 0; i < NFUNCS; i++) {
        snprintf(name, sizeof name, "function_%d", i);
        uint32_t n = mfp_profile_string(p, name, strlen(name));
        snprintf(name, sizeof name, "pkg/module_%d.py", i % 40);
        uint32_t f = mfp_profile_string(p, name, strlen(name));
        funcs[i] = mfp_profile_func(p, n, f, (uint32_t)(i * 7), 0);
    }
    for (int k = 0; k < NPATHS; k++)
        for (int d = 0; d < depth; d++) {
            /* Paths share their outer frames, like real programs. */
            uint64_t r = d < depth / 2 ? (uint64_t)d * 31 : rng();
            paths[k][d][0] = funcs[r % NFUNCS];
            paths[k][d][1] = (uint32_t)(r % 300);
        }
    for (int t = 0; t < 4; t++)
        threads[t] = mfp_profile_thread(p, 1000 + (uint64_t)t, 0, t == 0);
    return p;
}

static void one_sample(mfp_profile *p, int depth, int k, uint64_t t, uint32_t thread) {
    uint32_t node = MFP_NONE;
    for (int d = 0; d < depth; d++) {
        uint32_t fr = mfp_profile_frame(p, paths[k][d][0], paths[k][d][1]);
        node = mfp_profile_stack(p, node, fr);
    }
    mfp_profile_sample(p, t, node, thread, 1000000, MFP_SAMPLE_ON_CPU);
}

static void bench_depth(int depth) {
    uint32_t th[4];
    mfp_profile *p = setup(0, depth, th);
    for (int k = 0; k < NPATHS; k++) /* warm up */
        one_sample(p, depth, k, 0, th[0]);
    const int n = depth >= 200 ? 100000 : 400000;
    uint64_t t0 = now_ns();
    for (int i = 0; i < n; i++)
        one_sample(p, depth, (int)(rng() % NPATHS), (uint64_t)i * 1000000, th[i & 3]);
    uint64_t dt = now_ns() - t0;
    printf("depth %3d: %7.1f ns/sample, %5.2f ns/frame (%d samples)\n", depth,
           (double)dt / n, (double)dt / n / depth, n);
    mfp_profile_free(p);
}

static void bench_encode(void) {
    uint32_t th[4];
    const int depth = 30, n = 1000000;
    mfp_profile *p = setup(0, depth, th);
    uint64_t t = 0;
    for (int i = 0; i < n; i++) {
        t += 1000000 + rng() % 50000; /* 1 ms interval with jitter */
        one_sample(p, depth, (int)(rng() % NPATHS), t, th[i & 3]);
    }
    uint32_t cpu = mfp_profile_series(p, "cpu_pct", "%", 1);
    for (int i = 0; i < 2000; i++)
        mfp_profile_point(p, cpu, (uint64_t)i * 500000000ull, 950 + (int64_t)(rng() % 100));
    mfp_profile_counts c;
    mfp_profile_get_counts(p, &c);
    size_t len;
    uint64_t t0 = now_ns();
    uint8_t *b = mfp_profile_encode(p, &len);
    uint64_t enc = now_ns() - t0;
    t0 = now_ns();
    const char *err;
    mfp_profile *q = mfp_profile_decode(b, len, &err);
    uint64_t dec = now_ns() - t0;
    uLongf zlen = compressBound(len);
    uint8_t *z = malloc(zlen);
    t0 = now_ns();
    compress2(z, &zlen, b, len, 6);
    uint64_t zt = now_ns() - t0;
    printf("encode: %zu samples kept (%zu stacks, %zu totals): %zu bytes in %.1f ms "
           "(%.2f B/sample), decode %.1f ms %s\n",
           c.samples, c.stacks, c.totals, len, enc / 1e6, (double)len / c.samples, dec / 1e6,
           q ? "ok" : err);
    printf("deflate: %lu bytes (%.1f%% of encoded, %.2f B/sample) in %.1f ms\n",
           (unsigned long)zlen, 100.0 * zlen / len, (double)zlen / c.samples, zt / 1e6);
    free(z);
    free(b);
    mfp_profile_free(q);
    mfp_profile_free(p);
}

int main(void) {
    bench_depth(10);
    bench_depth(50);
    bench_depth(200);
    bench_encode();
    return 0;
}
