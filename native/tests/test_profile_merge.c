/* test_profile_merge.c — processes and mfp_profile_merge: identity kept
 * per thread and memory row, tables interned, samples and heap events in
 * time order and shifted, leaks added up, totals and weights preserved, a
 * nested child's processes no roots, the cap respected, the round trip
 * through the codec (tags 11 and 12), corrupt process maps refused, and
 * out-of-memory at every allocation leaving a consistent store. */
#include <stdlib.h>
#include <string.h>

#include "../profile/profile.h"
#include "check.h"

static uint32_t str(mfp_profile *p, const char *s) { return mfp_profile_string(p, s, strlen(s)); }

static int str_is(const mfp_profile *p, uint32_t i, const char *want) {
    size_t len;
    const char *s = mfp_profile_string_at(p, i, &len);
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

/* A one-process profile: thread tid, `n` samples every 1 ms from t0 of
 * stack main -> <leaf>, one memory row under main, two heap events of
 * main (one live at the end, at t0 + 1 ms; one freed, at t0 + 2 ms to
 * t0 + 3 ms) and a leak of 1000 bytes under main. */
static mfp_profile *one(const char *leaf, uint64_t tid, int n, uint64_t t0_ns) {
    mfp_profile *p = mfp_profile_new(0);
    uint32_t file = str(p, "w.py");
    uint32_t fmain = mfp_profile_func(p, str(p, "main"), file, 1, MFP_FUNC_PYTHON);
    uint32_t fleaf = mfp_profile_func(p, str(p, leaf), file, 10, MFP_FUNC_PYTHON);
    uint32_t root = mfp_profile_stack(p, MFP_NONE, mfp_profile_frame(p, fmain, 2));
    uint32_t s = mfp_profile_stack(p, root, mfp_profile_frame(p, fleaf, 11));
    uint32_t th = mfp_profile_thread(p, tid, str(p, "MainThread"), MFP_THREAD_MAIN);
    for (int i = 0; i < n; i++)
        mfp_profile_sample(p, t0_ns + (uint64_t)i * 1000000, s, th, 1000000, MFP_SAMPLE_ON_CPU);
    mfp_profile_memory(p, root, 4096, 8192, 2);
    mfp_profile_heap_event(p, root, 1000, t0_ns + 1000000, MFP_STILL_LIVE);
    mfp_profile_heap_event(p, root, 3000, t0_ns + 2000000, t0_ns + 3000000);
    mfp_profile_leak(p, root, 1000);
    return p;
}

static int heap_in_time_order(const mfp_profile *p) {
    size_t n;
    const mfp_heap_event *e = mfp_profile_heap_events(p, &n);
    for (size_t i = 1; i < n; i++)
        if (e[i].t_alloc_ns < e[i - 1].t_alloc_ns)
            return 0;
    return 1;
}

static uint64_t weight_of(const mfp_profile *p, uint32_t proc, int totals) {
    size_t n;
    uint64_t w = 0;
    if (totals) {
        const mfp_total *t = mfp_profile_totals(p, &n);
        for (size_t i = 0; i < n; i++)
            if (mfp_profile_thread_process(p, t[i].thread) == proc)
                w += t[i].weight_ns;
    } else {
        const mfp_sample *s = mfp_profile_samples(p, &n);
        for (size_t i = 0; i < n; i++)
            if (mfp_profile_thread_process(p, s[i].thread) == proc)
                w += s[i].weight_ns;
    }
    return w;
}

static int in_time_order(const mfp_profile *p) {
    size_t n;
    const mfp_sample *s = mfp_profile_samples(p, &n);
    for (size_t i = 1; i < n; i++)
        if (s[i].t_ns < s[i - 1].t_ns)
            return 0;
    return 1;
}

static void test_merge_children(void) {
    mfp_profile *parent = one("wait", 100, 50, 0);
    mfp_process self = {100, 1, str(parent, "MainProcess"), MFP_PROCESS_ROOT, 0, 50000000, 0, 0, 0};
    CHECK(mfp_profile_process(parent, &self) == 0);
    mfp_profile *a = one("hot", 200, 30, 0), *b = one("hot", 300, 20, 5000000);
    mfp_process_info ia = {200, 100, "ForkPoolWorker-1", 0, 30000000, 29000000, 1 << 20, 4096};
    mfp_process_info ib = {300, 200, "python child.py", MFP_PROCESS_PARTIAL, 0, 0, 0, 0};
    mfp_merge_input in[2] = {{a, 10000000, &ia}, {b, -2000000, &ib}};
    CHECK(mfp_profile_merge(parent, in, 2) == 0);

    mfp_profile_counts c;
    mfp_profile_get_counts(parent, &c);
    CHECK(c.processes == 3 && c.threads == 3 && c.memory == 3 && c.samples == 100);
    CHECK(in_time_order(parent));
    size_t n;
    const mfp_process *pr = mfp_profile_processes(parent, &n);
    CHECK(n == 3 && pr[0].pid == 100 && pr[1].pid == 200 && pr[1].ppid == 100 && pr[2].pid == 300);
    CHECK(str_is(parent, pr[1].name, "ForkPoolWorker-1") && str_is(parent, pr[2].name, "python child.py"));
    CHECK(pr[1].start_ns == 10000000 && pr[1].cpu_ns == 29000000 && pr[1].rss_peak_bytes == 1 << 20);
    CHECK(pr[2].flags == MFP_PROCESS_PARTIAL && pr[2].start_ns == 0);
    /* Threads keep their tid and belong to their process; the same stack
     * text in two processes is one stack node of the merged tree. */
    const mfp_thread *th = mfp_profile_threads(parent, &n);
    CHECK(th[1].tid == 200 && th[2].tid == 300 && str_is(parent, th[1].name, "MainThread"));
    CHECK(mfp_profile_thread_process(parent, 0) == 0 && mfp_profile_thread_process(parent, 1) == 1 &&
          mfp_profile_thread_process(parent, 2) == 2);
    CHECK(c.stacks == 3 && c.funcs == 3);
    CHECK(weight_of(parent, 1, 1) == 30000000 && weight_of(parent, 1, 0) == 30000000);
    CHECK(weight_of(parent, 2, 1) == 20000000 && weight_of(parent, 0, 1) == 50000000);
    /* Times: a's first sample at 10 ms, b's at 5 - 2 = 3 ms. */
    const mfp_sample *s = mfp_profile_samples(parent, &n);
    uint64_t first_a = UINT64_MAX, first_b = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        if (s[i].thread == 1 && s[i].t_ns < first_a) first_a = s[i].t_ns;
        if (s[i].thread == 2 && s[i].t_ns < first_b) first_b = s[i].t_ns;
    }
    CHECK(first_a == 10000000 && first_b == 3000000);
    CHECK(mfp_profile_memory_process(parent, 0) == 0 && mfp_profile_memory_process(parent, 1) == 1 &&
          mfp_profile_memory_process(parent, 2) == 2);
    /* Heap events come along in allocation order, shifted like SAMPLES (a
     * free too; "still live" stays); LEAKS are one row per stack. */
    const mfp_heap_event *ev = mfp_profile_heap_events(parent, &n);
    CHECK(n == 6 && heap_in_time_order(parent));
    int live = 0, a_freed = 0;
    for (size_t i = 0; i < n; i++) {
        live += ev[i].t_free_ns == MFP_STILL_LIVE;
        a_freed += ev[i].t_alloc_ns == 12000000 && ev[i].t_free_ns == 13000000;
    }
    CHECK(live == 3 && a_freed == 1 && ev[0].t_alloc_ns == 1000000);
    const mfp_leak *lk = mfp_profile_leaks(parent, &n);
    CHECK(n == 1 && lk[0].live_bytes == 3000);

    /* Round trip through the codec, then merging the merged profile into
     * an empty one keeps its three processes. */
    size_t len;
    uint8_t *bytes = mfp_profile_encode(parent, &len);
    const char *err = NULL;
    mfp_profile *q = mfp_profile_decode(bytes, len, &err);
    CHECK(q && !err);
    mfp_profile_get_counts(q, &c);
    CHECK(c.processes == 3 && mfp_profile_thread_process(q, 2) == 2 &&
          mfp_profile_memory_process(q, 1) == 1);
    pr = mfp_profile_processes(q, &n);
    CHECK(pr[1].start_ns == 10000000 && pr[1].cpu_ns == 29000000 && pr[1].heap_peak_bytes == 4096);
    CHECK(mfp_profile_heap_events(q, &n) && n == 6 && mfp_profile_leaks(q, &n) && n == 1);
    /* Merged into an empty profile (a merge of whole runs), it keeps its
     * three processes and no fourth appears; `as` names its process 0. */
    mfp_profile *e = mfp_profile_new(0);
    mfp_process_info label = {0, 0, "task 7", 0, 0, 0, 0, 0};
    mfp_merge_input all = {q, 0, &label};
    CHECK(mfp_profile_merge(e, &all, 1) == 0);
    mfp_profile_get_counts(e, &c);
    CHECK(c.processes == 3 && c.threads == 3 && mfp_profile_thread_process(e, 0) == 0 &&
          mfp_profile_thread_process(e, 2) == 2 && c.samples == 100);
    pr = mfp_profile_processes(e, &n);
    CHECK(str_is(e, pr[0].name, "task 7") && pr[0].pid == 100 && pr[0].flags == MFP_PROCESS_ROOT &&
          str_is(e, pr[1].name, "ForkPoolWorker-1"));
    CHECK(mfp_profile_heap_events(e, &n) && n == 6 && heap_in_time_order(e));
    CHECK(mfp_profile_merge(e, &all, 0) == 0 && mfp_profile_merge(q, &all, 1) == -1); /* src == dst */
    /* Into a parent's profile, a child that followed children of its own
     * (q: its own process a root there) brings none as a root; its own
     * process takes the partial flag `as` gives it, the others keep theirs. */
    mfp_profile *top = one("wait", 50, 10, 0);
    mfp_process me = {50, 1, str(top, "python flow.py"), MFP_PROCESS_ROOT, 0, 10000000, 0, 0, 0};
    CHECK(mfp_profile_process(top, &me) == 0);
    mfp_process_info child = {100, 50, "python child.py", MFP_PROCESS_PARTIAL, 0, 0, 0, 0};
    mfp_merge_input nested = {q, 0, &child};
    CHECK(mfp_profile_merge(top, &nested, 1) == 0);
    pr = mfp_profile_processes(top, &n);
    CHECK(n == 4 && pr[0].flags == MFP_PROCESS_ROOT && pr[1].pid == 100 &&
          pr[1].flags == MFP_PROCESS_PARTIAL && pr[2].flags == 0 &&
          pr[3].flags == MFP_PROCESS_PARTIAL && str_is(top, pr[1].name, "python child.py"));
    mfp_profile_free(top);
    free(bytes);
    mfp_profile_free(e);
    mfp_profile_free(q);
    mfp_profile_free(a);
    mfp_profile_free(b);
    mfp_profile_free(parent);
}

/* A one-process profile writes no tag 11/12 (old readers see what they
 * always saw). */
static void test_single_process_unchanged(void) {
    mfp_profile *p = one("x", 1, 3, 0);
    size_t len;
    uint8_t *b = mfp_profile_encode(p, &len);
    mfp_profile *q = mfp_profile_decode(b, len, NULL);
    mfp_profile_counts c;
    mfp_profile_get_counts(q, &c);
    CHECK(q && c.processes == 0 && mfp_profile_thread_process(q, 0) == 0);
    free(b);
    mfp_profile_free(q);
    mfp_profile_free(p);
}

/* Past the destination's cap, SAMPLES is halved per thread and weights
 * still add up to TOTALS. */
static void test_merge_cap(void) {
    mfp_profile *dst = mfp_profile_new(64);
    mfp_profile *kids[10];
    mfp_merge_input in[10];
    for (int i = 0; i < 10; i++) {
        kids[i] = one("hot", 1000 + (uint64_t)i, 40, (uint64_t)i * 100000);
        in[i] = (mfp_merge_input){kids[i], 0, NULL};
    }
    CHECK(mfp_profile_merge(dst, in, 10) == 0);
    mfp_profile_counts c;
    mfp_profile_get_counts(dst, &c);
    CHECK(c.samples <= 64 && c.decimation > 1 && in_time_order(dst));
    uint64_t ws = 0, wt = 0;
    for (uint32_t p = 0; p < 10; p++) { /* an empty dst: the kids are processes 0-9 */
        ws += weight_of(dst, p, 0);
        wt += weight_of(dst, p, 1);
    }
    CHECK(ws == wt && wt == 400000000ull);
    for (int i = 0; i < 10; i++)
        mfp_profile_free(kids[i]);
    mfp_profile_free(dst);
}

/* Hand-written tags 11 and 12 after a minimal profile with one thread. */
static void test_codec_rules(void) {
    static const uint8_t good[] = {
        'M', 'F', 'P', 'R', 'O', 'F', 0x01,
        0x02, 0x04, 0x02, 0x00, 0x01, 'w',                    /* STRINGS "", "w" */
        0x06, 0x07, 0x02, 0x05, 0x06, 0x00, 0x01, 0x01, 0x00, /* THREADS tid 5,6 */
        /* PROCESSES: 2 rows; pid [5,6] ppid [1,5] name [0,1] flags [1,2]
         * start_us sv [0,-1 -> 1] dur [10,20] cpu [3,4] rss [0,7] heap [0,0] */
        0x0b, 0x13, 0x02, 0x05, 0x06, 0x01, 0x05, 0x00, 0x01, 0x01, 0x02, 0x00, 0x01,
        0x0a, 0x14, 0x03, 0x04, 0x00, 0x07, 0x00, 0x00,
        /* PROCESS_MAP: threads [0,1], memory [] */
        0x0c, 0x04, 0x02, 0x00, 0x01, 0x00,
    };
    const char *err = NULL;
    mfp_profile *p = mfp_profile_decode(good, sizeof good, &err);
    CHECK(p && !err);
    if (p) {
        size_t n;
        const mfp_process *pr = mfp_profile_processes(p, &n);
        CHECK(n == 2 && pr[1].pid == 6 && pr[1].ppid == 5 && str_is(p, pr[1].name, "w") &&
              pr[1].flags == MFP_PROCESS_PARTIAL && pr[1].start_ns == -1000 &&
              pr[1].duration_ns == 20000 && pr[1].cpu_ns == 4000 && pr[1].rss_peak_bytes == 7);
        CHECK(mfp_profile_thread_process(p, 1) == 1 && mfp_profile_thread_process(p, 0) == 0);
    }
    mfp_profile_free(p);
    uint8_t bad[sizeof good];
    memcpy(bad, good, sizeof good);
    bad[sizeof good - 2] = 0x02; /* thread 1 -> process 2: out of range */
    CHECK(mfp_profile_decode(bad, sizeof bad, &err) == NULL && err && strstr(err, "process"));
    memcpy(bad, good, sizeof good);
    bad[sizeof good - 4] = 0x03; /* a map of 3 threads for 2 */
    CHECK(mfp_profile_decode(bad, sizeof bad, &err) == NULL && err);
    /* Every truncation is refused or decodes to a sane prefix. */
    int ok = 1;
    for (size_t cut = 0; cut < sizeof good; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, good, cut);
        mfp_profile *q = mfp_profile_decode(copy, cut, &err);
        ok &= q ? err == NULL : err != NULL;
        mfp_profile_free(q);
        free(copy);
    }
    CHECK(ok);
}

extern unsigned long mfp_profile_fail_countdown;

static void test_out_of_memory(void) {
    int consistent = 1, failed = 0;
    for (unsigned long k = 1; k < 2000; k++) {
        mfp_profile *dst = one("a", 1, 20, 0), *src = one("b", 2, 20, 500000);
        mfp_merge_input in = {src, 0, NULL};
        mfp_profile_fail_countdown = k;
        int rc = mfp_profile_merge(dst, &in, 1);
        int hit = mfp_profile_fail_countdown == 0;
        mfp_profile_fail_countdown = 0;
        failed += rc != 0;
        consistent &= hit || rc == 0;
        consistent &= in_time_order(dst) && heap_in_time_order(dst);
        size_t len;
        uint8_t *b = mfp_profile_encode(dst, &len);
        mfp_profile *q = b ? mfp_profile_decode(b, len, NULL) : NULL;
        consistent &= q != NULL;
        free(b);
        mfp_profile_free(q);
        mfp_profile_free(dst);
        mfp_profile_free(src);
        if (!hit)
            break; /* every allocation of a merge has failed once */
    }
    CHECK(consistent && failed > 5);
}

int main(void) {
    test_merge_children();
    test_single_process_unchanged();
    test_merge_cap();
    test_codec_rules();
    test_out_of_memory();
    return check_done("profile_merge");
}
