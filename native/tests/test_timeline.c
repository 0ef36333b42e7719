/* test_timeline.c — the resource poller against what the test itself did
 * (busy loops, a child process, 64 MB written and fsync'd, bytes sent over
 * 127.0.0.1), against fake /proc and cgroup trees (exact figures, garbage
 * and missing files), and against a fake NVML (build/libfake_nvml.so,
 * named by MFP_FAKE_NVML, which the Makefile sets). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../timeline/timeline.h"
#include "check.h"

#define MB (1024.0 * 1024.0)

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static volatile uint64_t sink;
static void spin_ms(int ms) {
    uint64_t end = mono_ns() + (uint64_t)ms * 1000000ull;
    while (mono_ns() < end)
        for (int i = 0; i < 1000; i++) sink += (uint64_t)i * 7;
}

/* ---- reading the exported profile ------------------------------------ */

static int series(const mfp_profile *p, const char *name, mfp_series_view *v) {
    size_t n = mfp_profile_series_count(p);
    for (uint32_t i = 0; i < n; i++) {
        if (mfp_profile_series_at(p, i, v) != 0) continue;
        size_t len;
        const char *s = mfp_profile_string_at(p, v->name, &len);
        if (s && len == strlen(name) && memcmp(s, name, len) == 0) return 1;
    }
    return 0;
}

static double scaled(const mfp_series_view *v, size_t i) {
    double d = (double)v->value[i];
    for (uint32_t k = 0; k < v->scale; k++) d /= 10;
    return d;
}

/* Area under a rate series between a and b (ns since t0): each point
 * stands for the interval since the previous one (the first since 0). */
static double area(const mfp_series_view *v, uint64_t a, uint64_t b) {
    double sum = 0;
    uint64_t prev = 0;
    for (size_t i = 0; i < v->n; i++) {
        uint64_t lo = prev > a ? prev : a, hi = v->t_ns[i] < b ? v->t_ns[i] : b;
        if (hi > lo) sum += scaled(v, i) * (double)(hi - lo) / 1e9;
        prev = v->t_ns[i];
    }
    return sum;
}

/* The area of every point whose interval overlaps [a, b], whole: what a
 * burst inside [a, b] moved, however late a busy machine let the poller
 * run (a point spreads its bytes over its whole interval, so the clipped
 * area() would lose the part of the burst's interval outside the window). */
static double area_covering(const mfp_series_view *v, uint64_t a, uint64_t b) {
    double sum = 0;
    uint64_t prev = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (v->t_ns[i] > a && prev < b) sum += scaled(v, i) * (double)(v->t_ns[i] - prev) / 1e9;
        prev = v->t_ns[i];
    }
    return sum;
}

static double peak(const mfp_series_view *v) {
    double m = 0;
    for (size_t i = 0; i < v->n; i++)
        if (i == 0 || scaled(v, i) > m) m = scaled(v, i);
    return m;
}

/* The number after "key": in a JSON text (keys here are unique). */
static int json_num(const char *json, const char *key, double *out) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    if (!p) return 0;
    *out = strtod(p + strlen(pat), NULL);
    return 1;
}

/* The same within one object of the JSON ("peaks", "averages", ...). */
static int json_num_in(const char *json, const char *object, const char *key, double *out) {
    char pat[128], part[4096];
    snprintf(pat, sizeof pat, "\"%s\": {", object);
    const char *p = strstr(json, pat), *end = p ? strchr(p, '}') : NULL;
    if (!p || !end || (size_t)(end - p) >= sizeof part) return 0;
    memcpy(part, p, (size_t)(end - p));
    part[end - p] = '\0';
    return json_num(part, key, out);
}

/* Waits (at most 10 s: the machine may be loaded) until the poller has
 * taken n readings; 1 when it did. */
static int wait_polls(const mfp_timeline *t, double n) {
    char info[8192];
    double got = 0;
    for (int i = 0; i < 2000; i++) {
        mfp_timeline_info_json(t, info, sizeof info);
        if (json_num(info, "polls", &got) && got >= n) return 1;
        sleep_ms(5);
    }
    return 0;
}

static double near(double got, double want) { return want ? (got - want) / want : got; }

static int has_note(const char *info, const char *needle);

/* ---- the real process -------------------------------------------------- */

static uint64_t statm_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t io_write_bytes(void) {
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    unsigned long long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %llu", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

static void *drain(void *arg) {
    int fd = *(int *)arg;
    static char buf[1 << 16];
    uint64_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) got += (uint64_t)r;
        else if (r == 0 || errno != EINTR) break;
    }
    return (void *)(uintptr_t)got;
}

/* Sends n bytes to ourselves over TCP on 127.0.0.1; returns bytes read. */
static uint64_t loopback_send(uint64_t n) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0)
        return 0;
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0) return 0;
    int s = accept(ls, NULL, NULL);
    pthread_t th;
    if (s < 0 || pthread_create(&th, NULL, drain, &s) != 0) return 0;
    static char buf[1 << 16];
    memset(buf, 'x', sizeof buf);
    uint64_t sent = 0;
    while (sent < n) {
        size_t want = n - sent < sizeof buf ? (size_t)(n - sent) : sizeof buf;
        ssize_t w = write(c, buf, want);
        if (w > 0) sent += (uint64_t)w;
        else if (errno != EINTR) break;
    }
    shutdown(c, SHUT_WR);
    void *got;
    pthread_join(th, &got);
    close(c);
    close(s);
    close(ls);
    return (uint64_t)(uintptr_t)got;
}

static void test_real(void) {
    const uint64_t ms = 1000000ull;
    mfp_timeline_options o;
    memset(&o, 0, sizeof o);
    o.interval_ns = 20 * ms;
    o.include_loopback = 1;
    o.nvml_library = "";
    char err[256] = "";
    uint64_t t0 = mono_ns();
    mfp_timeline *t = mfp_timeline_start_opts(&o, err, sizeof err);
    CHECK(t != NULL);
    if (!t) return;

    /* 1. a busy loop: the CPU we really got over a window vs the series'
     * mean over it. 30 ms of quiet at both ends (polls every 20 ms) so the
     * intervals straddling the edges hold no busy time. */
    uint64_t busy_a = mono_ns() - t0, c_a = cpu_ns();
    sleep_ms(30);
    spin_ms(400);
    sleep_ms(30);
    uint64_t busy_b = mono_ns() - t0, c_b = cpu_ns();
    double busy_want = 100.0 * (double)(c_b - c_a) / (double)(busy_b - busy_a);

    /* 2. 64 MB touched: RSS */
    size_t big = 64u << 20;
    char *mem = malloc(big);
    CHECK(mem != NULL);
    if (mem) memset(mem, 1, big);
    sleep_ms(60);
    uint64_t rss_at = mono_ns() - t0, rss_want = statm_rss();

    /* 3. a child that spins 0.4 s of CPU while alive; reaped only at the end */
    uint64_t child_a = mono_ns() - t0;
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t child = fork();
    if (child == 0) {
        while (cpu_ns() < 400 * ms) spin_ms(1);
        if (write(pfd[1], "x", 1) != 1) _exit(1);
        for (;;) pause();
    }
    CHECK(child > 0);
    char byte;
    CHECK(read(pfd[0], &byte, 1) == 1);
    close(pfd[0]);
    close(pfd[1]);
    sleep_ms(60);
    uint64_t child_b = mono_ns() - t0;
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }

    /* 4. 64 MB written and fsync'd, next to the test binary (not tmpfs).
     * Each measured phase has 30 ms of quiet on both sides so the polls
     * (every 20 ms) that straddle its edges fall inside the window. */
    char path[] = "build/timeline_io_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    uint64_t disk_a = mono_ns() - t0;
    sleep_ms(30);
    uint64_t wb_a = io_write_bytes();
    if (fd >= 0) {
        for (size_t off = 0; off < big;) {
            ssize_t w = write(fd, mem + off, big - off);
            if (w <= 0) break;
            off += (size_t)w;
        }
        CHECK(fsync(fd) == 0);
        close(fd);
        unlink(path);
    }
    uint64_t wb_b = io_write_bytes();
    sleep_ms(30);
    uint64_t disk_b = mono_ns() - t0;

    /* 5. bytes over loopback */
    uint64_t net_n = 256ull << 20;
    uint64_t net_a = mono_ns() - t0;
    sleep_ms(30);
    CHECK(loopback_send(net_n) == net_n);
    sleep_ms(30);
    uint64_t net_b = mono_ns() - t0;

    mfp_timeline_stop(t);
    free(mem);
    mfp_profile *p = mfp_profile_new(0);
    CHECK(mfp_timeline_export(t, p, t0) == 0);
    mfp_series_view v;

    CHECK(series(p, "cpu_pct", &v));
    CHECK(v.scale == 1);
    double busy_got = area(&v, busy_a, busy_b) / ((double)(busy_b - busy_a) / 1e9);
    printf("timeline: busy loop cpu %.1f%% (measured %.1f%%)\n", busy_got, busy_want);
    CHECK(busy_got > busy_want - 10 && busy_got < busy_want + 10);
    CHECK(peak(&v) > 0);
    /* the child spun 0.4 s before anyone waited for it: live children count */
    double child_cpu = area(&v, child_a, child_b) / 100; /* % x s -> CPU s */
    printf("timeline: cpu during the child's life %.3f s (child used 0.4 s)\n", child_cpu);
    CHECK(child_cpu > 0.38 && child_cpu < 0.6);
    CHECK(series(p, "children", &v) && peak(&v) >= 1);

    CHECK(series(p, "rss_bytes", &v));
    double rss_got = 0;
    for (size_t i = 0; i < v.n; i++)
        if (v.t_ns[i] <= rss_at) rss_got = scaled(&v, i);
    printf("timeline: rss %.1f MB (statm %.1f MB)\n", rss_got / MB, (double)rss_want / MB);
    CHECK(near(rss_got, (double)rss_want) > -0.05 && near(rss_got, (double)rss_want) < 0.05);
    CHECK(series(p, "rss_peak_bytes", &v) && peak(&v) >= 64 * MB);
    CHECK(series(p, "threads", &v) && peak(&v) >= 3); /* main, poller, drain */

    CHECK(series(p, "disk_write_Bps", &v));
    double wrote = area_covering(&v, disk_a, disk_b);
    printf("timeline: disk write %.2f MB (wrote 64 MB, /proc/self/io says %.2f MB)\n",
           wrote / MB, (double)(wb_b - wb_a) / MB);
    CHECK(near(wrote, 64 * MB) > -0.05 && near(wrote, 64 * MB) < 0.05);
    CHECK(series(p, "disk_read_Bps", &v));

    CHECK(series(p, "net_sent_Bps", &v));
    double sent = area_covering(&v, net_a, net_b);
    printf("timeline: net sent %.2f MB (sent %.0f MB over 127.0.0.1)\n", sent / MB,
           (double)net_n / MB);
    CHECK(near(sent, (double)net_n) > -0.05 && near(sent, (double)net_n) < 0.05);
    CHECK(series(p, "net_recv_Bps", &v) && area_covering(&v, net_a, net_b) > 0.95 * (double)net_n);

    char info[8192];
    size_t len = mfp_timeline_info_json(t, info, sizeof info);
    CHECK(len < sizeof info && len == strlen(info));
    double x;
    /* at least the busy loop and the child */
    CHECK(json_num(info, "cpu_s", &x) && x > (double)(c_b - c_a) / 1e9 + 0.38);
    CHECK(json_num(info, "disk_write_bytes", &x) && x >= 64 * MB * 0.95);
    CHECK(json_num(info, "cpus", &x) && x >= 1);
    CHECK(json_num(info, "memory_total_bytes", &x) && x > 64 * MB);
    CHECK(json_num(info, "rss_peak_bytes", &x) && x >= 64 * MB);
    /* this machine's cgroup: read, or said why not */
    CHECK(series(p, "cgroup_mem_bytes", &v) || has_note(info, "cgroup"));
    /* a buffer too small still gets a NUL and the needed length */
    char tiny[8];
    CHECK(mfp_timeline_info_json(t, tiny, sizeof tiny) == len && tiny[7] == '\0');
    mfp_profile_free(p);
    mfp_timeline_free(t);
}

/* ---- fake trees ---------------------------------------------------------- */

static char fake_dir[256];

static void put(const char *rel, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes <fake_dir>/<rel> atomically (the poller may be reading it). */
static void put(const char *rel, const char *fmt, ...) {
    char path[512], tmp[520], dir[512];
    snprintf(path, sizeof path, "%s/%s", fake_dir, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + strlen(fake_dir) + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(dir, 0755);
        *p = '/';
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    rename(tmp, path);
}

static void gone(const char *rel) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fake_dir, rel);
    unlink(path);
}

static void rm_tree(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fake_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fake_dir);
}

static void new_tree(void) {
    snprintf(fake_dir, sizeof fake_dir, "build/timeline_fake_XXXXXX");
    if (!mkdtemp(fake_dir)) snprintf(fake_dir, sizeof fake_dir, "build/timeline_fake");
}

/* utime, stime in ticks; rss in pages; tpgid -1 and a ')' in the name as
 * the kernel may write them */
static void put_stat(const char *rel, int ut, int ct, int threads, int rss_pages) {
    put(rel, "4242 (py (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 %d 0 %d 0 20 0 %d 0 "
             "1234 100000000 %d 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n",
        ut, ct, threads, rss_pages);
}

static void put_net(uint64_t lo, uint64_t eth_rx, uint64_t eth_tx) {
    put("proc/self/net/dev",
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        "errs drop fifo colls carrier compressed\n"
        "    lo: %llu 10 0 0 0 0 0 0 %llu 10 0 0 0 0 0 0\n"
        "  eth0: %llu 20 0 0 0 0 0 0 %llu 30 0 0 0 0 0 0\n",
        (unsigned long long)lo, (unsigned long long)lo, (unsigned long long)eth_rx,
        (unsigned long long)eth_tx);
}

static void put_io(const char *rel, uint64_t rb, uint64_t wb) {
    put(rel, "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: %llu\nwrite_bytes: %llu\n"
             "cancelled_write_bytes: 0\n",
        (unsigned long long)rb, (unsigned long long)wb);
}

static uint64_t fake_t0; /* export times count from just before start */

static mfp_timeline *start_fake(uint64_t interval_ms, size_t max_points) {
    char proc[300], cg[300], err[256] = "";
    snprintf(proc, sizeof proc, "%s/proc", fake_dir);
    snprintf(cg, sizeof cg, "%s/cg", fake_dir);
    mfp_timeline_options o;
    memset(&o, 0, sizeof o);
    o.interval_ns = interval_ms * 1000000ull;
    o.proc_root = proc;
    o.cgroup_root = cg;
    o.nvml_library = "";
    o.max_points = max_points;
    fake_t0 = mono_ns();
    mfp_timeline *t = mfp_timeline_start_opts(&o, err, sizeof err);
    if (!t) fprintf(stderr, "start failed: %s\n", err);
    return t;
}

static void good_tree(void) {
    new_tree();
    long pg = sysconf(_SC_PAGESIZE);
    put_stat("proc/self/stat", 100, 20, 5, (int)((100 << 20) / pg));
    put("proc/self/status", "Name:\tpy\nVmPeak:\t  999 kB\nVmHWM:\t  204800 kB\nThreads:\t5\n");
    put_io("proc/self/io", 1000, 2000);
    put_net(5000, 100, 200);
    put("proc/self/task/4242/children", "4300 ");
    put("proc/self/task/4243/children", "%s", "");
    put_stat("proc/4300/stat", 50, 0, 1, (int)((10 << 20) / pg));
    put_io("proc/4300/io", 0, 1 << 20);
    put("proc/4300/task/4300/children", "%s", "");
    put("proc/meminfo", "MemTotal:       16384000 kB\nMemFree: 1 kB\n");
    put("proc/self/cgroup", "0::/job/step\n");
    put("cg/cgroup.controllers", "cpu memory\n");
    put("cg/job/memory.max", "2000000000\n");
    put("cg/job/cpu.max", "max 100000\n");
    put("cg/job/step/memory.current", "1500000000\n");
    put("cg/job/step/memory.max", "max\n");
    put("cg/job/step/memory.peak", "1900000000\n");
    put("cg/job/step/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n");
    put("cg/job/step/cpu.max", "50000 100000\n");
    put("cg/job/step/cpu.stat", "usage_usec 100\nnr_throttled 0\nthrottled_usec 1000\n");
}

static int has_note(const char *info, const char *needle) {
    const char *notes = strstr(info, "\"notes\"");
    return notes && strstr(notes, needle) != NULL;
}

static void test_fake_v2(void) {
    good_tree();
    long pg = sysconf(_SC_PAGESIZE);
    mfp_timeline *t = start_fake(5, 0);
    CHECK(t != NULL);
    if (!t) return;
    CHECK(wait_polls(t, 3));
    /* what happens during the "step": */
    put_io("proc/self/io", 1000, 2000 + 10000000);        /* 10 MB written */
    put_net(5000 + 99000000, 100 + 3000000, 200 + 5000000); /* lo not counted */
    put_stat("proc/4300/stat", 50 + 40, 0, 1, (int)((10 << 20) / pg)); /* child: 0.4 s */
    put_stat("proc/self/stat", 100 + 10, 20, 5, (int)((100 << 20) / pg)); /* us: 0.1 s */
    put("cg/job/step/cpu.stat", "usage_usec 100\nnr_throttled 4\nthrottled_usec 51000\n");
    put("cg/job/step/memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 3\n");
    put("cg/job/step/memory.current", "1800000000\n");
    sleep_ms(40);
    mfp_timeline_stop(t);

    mfp_profile *p = mfp_profile_new(0);
    CHECK(mfp_timeline_export(t, p, fake_t0) == 0);
    mfp_series_view v;
    const char *want[] = {"cpu_pct", "rss_bytes", "rss_peak_bytes", "threads", "children",
                          "children_rss_bytes", "disk_read_Bps", "disk_write_Bps",
                          "net_recv_Bps", "net_sent_Bps", "cgroup_mem_bytes",
                          "cgroup_mem_limit_bytes", "cgroup_oom_kills", "cpu_throttled_pct"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int found = series(p, want[i], &v);
        CHECK(found && v.n >= 2);
        if (!found) fprintf(stderr, "  missing series %s\n", want[i]);
    }
    CHECK(!series(p, "gpu0_util_pct", &v));
    CHECK(series(p, "rss_bytes", &v) && scaled(&v, 0) == 100 * MB);
    CHECK(series(p, "rss_peak_bytes", &v) && scaled(&v, 0) == 200 * MB);
    CHECK(series(p, "children_rss_bytes", &v) && scaled(&v, 0) == 10 * MB);
    CHECK(series(p, "threads", &v) && scaled(&v, 0) == 5);
    CHECK(series(p, "cgroup_mem_limit_bytes", &v) && scaled(&v, 0) == 2e9);
    CHECK(series(p, "cgroup_mem_bytes", &v) && peak(&v) == 1.8e9);
    CHECK(series(p, "cgroup_oom_kills", &v) && scaled(&v, 0) == 0 && peak(&v) == 1);
    /* areas under the rates are the counters' increases */
    CHECK(series(p, "disk_write_Bps", &v) && fabs(near(area(&v, 0, UINT64_MAX), 1e7)) < 0.01);
    CHECK(series(p, "net_sent_Bps", &v) && fabs(near(area(&v, 0, UINT64_MAX), 5e6)) < 0.01);
    CHECK(series(p, "net_recv_Bps", &v) && fabs(near(area(&v, 0, UINT64_MAX), 3e6)) < 0.01);
    CHECK(series(p, "cpu_pct", &v) && fabs(near(area(&v, 0, UINT64_MAX) / 100, 0.5)) < 0.01);

    char info[8192];
    mfp_timeline_info_json(t, info, sizeof info);
    double x;
    CHECK(json_num(info, "disk_write_bytes", &x) && x == 1e7);
    CHECK(json_num(info, "disk_read_bytes", &x) && x == 0);
    CHECK(json_num(info, "net_sent_bytes", &x) && x == 5e6);
    CHECK(json_num(info, "net_recv_bytes", &x) && x == 3e6);
    CHECK(json_num(info, "cpu_s", &x) && fabs(x - 0.5) < 0.001);
    CHECK(json_num(info, "memory_limit_bytes", &x) && x == 2e9);
    CHECK(json_num(info, "memory_total_bytes", &x) && x == 16384000.0 * 1024);
    CHECK(json_num(info, "cgroup_memory_peak_bytes", &x) && x == 1.9e9);
    CHECK(json_num(info, "oom_kills", &x) && x == 1);
    CHECK(json_num(info, "cpu_quota_cores", &x) && x == 0.5);
    CHECK(json_num(info, "cpu_throttled_s", &x) && fabs(x - 0.05) < 1e-9);
    CHECK(json_num_in(info, "peaks", "cgroup_mem_bytes", &x) && x == 1.8e9);
    CHECK(json_num_in(info, "averages", "rss_bytes", &x) && x == 100 * MB);
    CHECK(json_num_in(info, "averages", "threads", &x) && x == 5);
    CHECK(json_num_in(info, "averages", "cgroup_mem_bytes", &x) && x > 1.5e9 && x < 1.8e9);
    CHECK(strstr(info, "\"cgroup\": \"v2\"") != NULL);
    CHECK(has_note(info, "OOM-killed"));
    CHECK(!has_note(info, "stat"));
    CHECK(!has_note(info, "net/dev"));
    mfp_profile_free(p);
    mfp_timeline_free(t);
    rm_tree();
}

/* A child forked by a thread that had none is found at the next full
 * scan of our threads (about every 100 ms), and its CPU counted then. */
static void test_new_parent_thread(void) {
    good_tree();
    mfp_timeline *t = start_fake(5, 0);
    CHECK(t != NULL);
    if (!t) return;
    sleep_ms(20);
    put_stat("proc/4400/stat", 30, 0, 1, 10);
    put_io("proc/4400/io", 0, 0);
    put("proc/4400/task/4400/children", "%s", "");
    put("proc/self/task/4244/children", "4400\n");
    /* Until a full scan has run: about 100 ms on a quiet machine, longer
     * when the poller waits for a core (export is safe while it runs). */
    for (int waited = 0; waited < 20000; waited += 50) {
        sleep_ms(50);
        mfp_profile *seen = mfp_profile_new(0);
        mfp_series_view c;
        int found = seen && mfp_timeline_export(t, seen, fake_t0) == 0 &&
                    series(seen, "children", &c) && scaled(&c, c.n - 1) == 2;
        mfp_profile_free(seen);
        if (found) break;
    }
    mfp_timeline_stop(t);
    mfp_profile *p = mfp_profile_new(0);
    mfp_series_view v;
    CHECK(mfp_timeline_export(t, p, fake_t0) == 0);
    CHECK(series(p, "children", &v) && peak(&v) == 2 && scaled(&v, v.n - 1) == 2);
    CHECK(series(p, "cpu_pct", &v) && fabs(near(area(&v, 0, UINT64_MAX) / 100, 0.3)) < 0.01);
    mfp_profile_free(p);
    mfp_timeline_free(t);
    rm_tree();
}

/* The environment variables a test or a container can set. */
static void test_env(void) {
    good_tree();
    char proc[300], cg[300], info[8192];
    snprintf(proc, sizeof proc, "%s/proc", fake_dir);
    snprintf(cg, sizeof cg, "%s/cg", fake_dir);
    setenv("MFP_PROC_ROOT", proc, 1);
    setenv("MFP_CGROUP_ROOT", cg, 1);
    setenv("MFP_TIMELINE_LOOPBACK", "1", 1);
    setenv("MFP_NVML_LIBRARY", "", 1); /* empty: the default library */
    mfp_timeline *t = mfp_timeline_start(2000000ull, NULL, 0);
    CHECK(t != NULL);
    if (t) {
        sleep_ms(10);
        put_net(5000 + 7000000, 100, 200 + 1000); /* lo counts now */
        sleep_ms(10);
        mfp_timeline_stop(t);
        mfp_timeline_info_json(t, info, sizeof info);
        double x;
        CHECK(json_num(info, "net_sent_bytes", &x) && x == 7001000);
        CHECK(json_num(info, "memory_limit_bytes", &x) && x == 2e9);
        mfp_timeline_free(t);
    }
    unsetenv("MFP_PROC_ROOT");
    unsetenv("MFP_CGROUP_ROOT");
    unsetenv("MFP_TIMELINE_LOOPBACK");
    unsetenv("MFP_NVML_LIBRARY");
    rm_tree();
}

/* v1 controllers with "unlimited" written as a huge number, as on our CI */
static void test_fake_v1(void) {
    new_tree();
    put_stat("proc/self/stat", 1, 0, 2, 100);
    put("proc/self/cgroup", "4:memory:/a/b\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n");
    put("cg/memory/a/b/memory.usage_in_bytes", "123456789\n");
    put("cg/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
    put("cg/memory/a/b/memory.max_usage_in_bytes", "223456789\n");
    put("cg/memory/a/b/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    put("cg/memory/a/memory.limit_in_bytes", "1073741824\n");
    put("cg/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    put("cg/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("cg/cpu,cpuacct/cpu.stat", "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n");
    mfp_timeline *t = start_fake(5, 0);
    CHECK(t != NULL);
    if (!t) return;
    sleep_ms(20);
    mfp_timeline_stop(t);
    char info[8192];
    mfp_timeline_info_json(t, info, sizeof info);
    double x;
    CHECK(strstr(info, "\"cgroup\": \"v1\"") != NULL);
    CHECK(json_num(info, "memory_limit_bytes", &x) && x == 1073741824.0); /* the parent's */
    CHECK(json_num(info, "cgroup_memory_peak_bytes", &x) && x == 223456789.0);
    CHECK(json_num(info, "oom_kills", &x) && x == 0);
    CHECK(json_num(info, "cpu_throttled_s", &x) && x == 0);
    CHECK(!json_num(info, "cpu_quota_cores", &x)); /* -1 = no quota */
    mfp_profile *p = mfp_profile_new(0);
    mfp_series_view v;
    CHECK(mfp_timeline_export(t, p, fake_t0) == 0);
    CHECK(series(p, "cgroup_mem_bytes", &v) && scaled(&v, 0) == 123456789.0);
    CHECK(series(p, "cpu_throttled_pct", &v) && peak(&v) == 0);
    /* the files this tree lacks are notes, not errors */
    CHECK(!series(p, "disk_write_Bps", &v) && has_note(info, "self/io"));
    CHECK(!series(p, "net_sent_Bps", &v) && has_note(info, "net/dev"));
    CHECK(!series(p, "rss_peak_bytes", &v) && has_note(info, "VmHWM"));
    CHECK(has_note(info, "children"));
    mfp_profile_free(p);
    mfp_timeline_free(t);
    rm_tree();
}

/* Garbage everywhere: fewer series and notes, never an error. */
static void test_fake_garbage(void) {
    new_tree();
    put("proc/self/stat", "garbage without a closing paren");
    put("proc/self/status", "VmHWM: lots\n");
    put("proc/self/io", "read_bytes: -1\nwrite_bytes: x\n");
    put("proc/self/net/dev", "header\nheader\n  eth0: 1 2 3\n");
    put("proc/self/cgroup", "::::\n");
    mfp_timeline *t = start_fake(2, 0);
    CHECK(t != NULL);
    if (!t) return;
    sleep_ms(15);
    mfp_timeline_stop(t);
    mfp_profile *p = mfp_profile_new(0);
    CHECK(mfp_timeline_export(t, p, fake_t0) == 0);
    CHECK(mfp_profile_series_count(p) == 0);
    char info[8192];
    mfp_timeline_info_json(t, info, sizeof info);
    CHECK(has_note(info, "self/stat"));
    CHECK(has_note(info, "VmHWM"));
    CHECK(has_note(info, "self/io"));
    CHECK(has_note(info, "net/dev"));
    CHECK(has_note(info, "self/cgroup"));
    mfp_profile_free(p);
    mfp_timeline_free(t);
    rm_tree();

    /* an empty root: nothing at all */
    new_tree();
    t = start_fake(2, 0);
    CHECK(t != NULL);
    if (t) {
        mfp_timeline_stop(t);
        mfp_timeline_info_json(t, info, sizeof info);
        CHECK(has_note(info, "cgroup"));
        mfp_timeline_free(t);
    }
    rm_tree();

    /* files that break during the run: a note, the series just stop */
    good_tree();
    t = start_fake(2, 0);
    CHECK(t != NULL);
    if (!t) return;
    CHECK(wait_polls(t, 3));
    put("proc/self/io", "nonsense\n");
    gone("cg/job/step/memory.current");
    char before[8192];
    mfp_timeline_info_json(t, before, sizeof before);
    double polls0 = 0;
    json_num(before, "polls", &polls0);
    CHECK(wait_polls(t, polls0 + 2));
    mfp_timeline_stop(t);
    mfp_timeline_info_json(t, info, sizeof info);
    CHECK(has_note(info, "stopped being readable"));
    CHECK(has_note(info, "cgroup file stopped"));
    p = mfp_profile_new(0);
    mfp_series_view v;
    CHECK(mfp_timeline_export(t, p, fake_t0) == 0 && series(p, "disk_write_Bps", &v));
    mfp_profile_free(p);
    mfp_timeline_free(t);
    rm_tree();
}

/* Past max_points the series halve: rates keep their area, gauges their
 * peak. */
static void test_halving(void) {
    good_tree();
    long pg = sysconf(_SC_PAGESIZE);
    mfp_timeline *t = start_fake(1, 16);
    CHECK(t != NULL);
    if (!t) return;
    uint64_t wb = 2000;
    double polls = 0;
    char buf[8192];
    for (int i = 0; i < 100; i++) {
        wb += 100000;
        put_io("proc/self/io", 1000, wb);
        /* a spike held for some polls */
        if (i == 50) put_stat("proc/self/stat", 100, 20, 5, (int)((900 << 20) / pg));
        if (i == 50) CHECK(wait_polls(t, polls + 3));
        if (i == 51) put_stat("proc/self/stat", 100, 20, 5, (int)((100 << 20) / pg));
        mfp_timeline_info_json(t, buf, sizeof buf);
        json_num(buf, "polls", &polls);
        sleep_ms(2);
    }
    CHECK(wait_polls(t, polls + 1));
    mfp_timeline_info_json(t, buf, sizeof buf);
    CHECK(json_num(buf, "polls", &polls) && polls > 40); /* it did halve */
    mfp_timeline_stop(t);
    mfp_profile *p = mfp_profile_new(0);
    CHECK(mfp_timeline_export(t, p, fake_t0) == 0);
    mfp_series_view v;
    CHECK(series(p, "disk_write_Bps", &v) && v.n <= 16 && v.n >= 8);
    for (size_t i = 1; i < v.n; i++) CHECK(v.t_ns[i] > v.t_ns[i - 1]);
    CHECK(fabs(near(area(&v, 0, UINT64_MAX), 1e7)) < 0.01);
    CHECK(series(p, "rss_bytes", &v) && v.n <= 16 && peak(&v) == 900 * MB);
    char info[8192];
    double x;
    mfp_timeline_info_json(t, info, sizeof info);
    CHECK(json_num(info, "disk_write_bytes", &x) && x == 1e7);
    CHECK(json_num(info, "rss_bytes", &x) && x == 900 * MB);
    mfp_profile_free(p);
    mfp_timeline_free(t);
    rm_tree();
}

/* ---- NVML ---------------------------------------------------------------- */

static mfp_timeline *start_gpu(const char *lib) {
    mfp_timeline_options o;
    memset(&o, 0, sizeof o);
    o.interval_ns = 2000000ull;
    o.nvml_library = lib;
    char err[256];
    return mfp_timeline_start_opts(&o, err, sizeof err);
}

static void test_gpu(void) {
    const char *lib = getenv("MFP_FAKE_NVML");
    if (!lib) lib = "build/libfake_nvml.so";
    /* hold our own reference so the fake's counters outlive the timeline's */
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL);
    if (!h) {
        fprintf(stderr, "  %s\n", dlerror());
        return;
    }
    void (*calls)(int *, int *, int *) =
        (void (*)(int *, int *, int *))dlsym(h, "fake_nvml_calls");
    CHECK(calls != NULL);
    if (!calls) return;
    unsetenv("FAKE_NVML_DEVICES");
    unsetenv("FAKE_NVML_INIT_ERROR");

    mfp_timeline *t = start_gpu(lib);
    CHECK(t != NULL);
    if (!t) return;
    CHECK(wait_polls(t, 3));
    mfp_timeline_stop(t);
    mfp_profile *p = mfp_profile_new(0);
    CHECK(mfp_timeline_export(t, p, 0) == 0);
    mfp_series_view v;
    CHECK(series(p, "gpu0_util_pct", &v) && v.n >= 2 && peak(&v) == 30 && scaled(&v, 0) == 30);
    CHECK(series(p, "gpu1_util_pct", &v) && peak(&v) == 70);
    CHECK(series(p, "gpu0_mem_bytes", &v) && peak(&v) == 1024 * MB);
    CHECK(series(p, "gpu1_mem_total_bytes", &v) && peak(&v) == 24 * 1024 * MB);
    CHECK(!series(p, "gpu2_util_pct", &v));
    char info[8192];
    mfp_timeline_info_json(t, info, sizeof info);
    CHECK(strstr(info, "\"name\": \"Fake GPU 1\"") != NULL);
    mfp_profile_free(p);
    mfp_timeline_free(t);
    int init, shut, q;
    calls(&init, &shut, &q);
    CHECK(init == 1 && shut == 1 && q >= 4);

    /* no device, a failing init, no library: no GPU series, a note, no error */
    setenv("FAKE_NVML_DEVICES", "0", 1);
    t = start_gpu(lib);
    CHECK(t != NULL);
    if (t) {
        mfp_timeline_stop(t);
        mfp_timeline_info_json(t, info, sizeof info);
        CHECK(has_note(info, "no device"));
        CHECK(strstr(info, "\"gpus\": []") != NULL);
        mfp_timeline_free(t);
    }
    calls(&init, &shut, &q);
    CHECK(init == 2 && shut == 2);
    unsetenv("FAKE_NVML_DEVICES");
    setenv("FAKE_NVML_INIT_ERROR", "999", 1);
    t = start_gpu(lib);
    CHECK(t != NULL);
    if (t) {
        mfp_timeline_stop(t);
        mfp_timeline_info_json(t, info, sizeof info);
        CHECK(has_note(info, "nvmlInit failed"));
        mfp_timeline_free(t);
    }
    unsetenv("FAKE_NVML_INIT_ERROR");
    t = start_gpu("build/no_such_libnvidia-ml.so");
    CHECK(t != NULL);
    if (t) {
        mfp_timeline_stop(t);
        p = mfp_profile_new(0);
        CHECK(mfp_timeline_export(t, p, 0) == 0 && !series(p, "gpu0_util_pct", &v));
        CHECK(series(p, "cpu_pct", &v)); /* the rest still works */
        mfp_timeline_info_json(t, info, sizeof info);
        CHECK(has_note(info, "no NVML library"));
        mfp_profile_free(p);
        mfp_timeline_free(t);
    }
    /* MFP_NVML_LIBRARY is honoured when no library is given */
    setenv("MFP_NVML_LIBRARY", lib, 1);
    t = mfp_timeline_start(2000000ull, NULL, 0);
    CHECK(t != NULL);
    if (t) {
        mfp_timeline_stop(t);
        mfp_timeline_info_json(t, info, sizeof info);
        CHECK(strstr(info, "Fake GPU 0") != NULL);
        mfp_timeline_free(t);
    }
    unsetenv("MFP_NVML_LIBRARY");
    dlclose(h);
}

/* ---- lifecycle ------------------------------------------------------------ */

static void test_lifecycle(void) {
    char err[128] = "";
    CHECK(mfp_timeline_start(999999, err, sizeof err) == NULL && strstr(err, "1 ms"));
    CHECK(mfp_timeline_start_opts(NULL, NULL, 0) == NULL);
    mfp_timeline_free(NULL);
    mfp_timeline_stop(NULL);

    /* a long interval: stop wakes the thread at once instead of waiting */
    uint64_t a = mono_ns();
    mfp_timeline *t = mfp_timeline_start(60ull * 1000000000ull, err, sizeof err);
    CHECK(t != NULL);
    if (!t) return;
    sleep_ms(10);
    mfp_timeline_stop(t);
    mfp_timeline_stop(t); /* idempotent */
    CHECK(mono_ns() - a < 2000000000ull);
    mfp_profile *p = mfp_profile_new(0);
    mfp_series_view v;
    CHECK(mfp_timeline_export(t, p, a) == 0);
    /* the last point, 10 ms after the first, was merged into it */
    CHECK(series(p, "rss_bytes", &v) && v.n == 1);
    CHECK(series(p, "cpu_pct", &v) && v.n == 1);
    mfp_profile_free(p);
    mfp_timeline_free(t);

    /* a forked child: stop, export and free neither hang nor touch the
     * parent's thread */
    t = mfp_timeline_start(2000000ull, err, sizeof err);
    CHECK(t != NULL);
    if (!t) return;
    sleep_ms(5);
    pid_t pid = fork();
    if (pid == 0) {
        mfp_profile *cp = mfp_profile_new(0);
        int rc = mfp_timeline_export(t, cp, 0) == -1 ? 0 : 3;
        mfp_timeline_stop(t);
        char buf[4096];
        if (mfp_timeline_info_json(t, buf, sizeof buf) == 0) rc = 4;
        mfp_timeline_free(t);
        mfp_profile_free(cp);
        _exit(rc);
    }
    CHECK(pid > 0);
    int status = -1, done = 0;
    for (int i = 0; i < 500 && !done; i++) {
        done = waitpid(pid, &status, WNOHANG) == pid;
        if (!done) sleep_ms(10);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    CHECK(done && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(wait_polls(t, 3)); /* the parent's poller still runs */
    mfp_timeline_stop(t);
    p = mfp_profile_new(0);
    CHECK(mfp_timeline_export(t, p, 0) == 0 && series(p, "rss_bytes", &v) && v.n >= 3);
    mfp_profile_free(p);
    mfp_timeline_free(t);
}

/* A child forked while the poller may be inside NVML starts a timeline of
 * its own: no poll is under way at a fork (timeline.c, poll_lock). The fake
 * holds its lock through each query, 0.4 ms of a 1 ms interval: without
 * poll_lock about every other child found it taken and hung. */
static void test_gpu_fork(void) {
    const char *lib = getenv("MFP_FAKE_NVML");
    if (!lib) lib = "build/libfake_nvml.so";
    unsetenv("FAKE_NVML_DEVICES");
    unsetenv("FAKE_NVML_INIT_ERROR");
    setenv("FAKE_NVML_QUERY_US", "200", 1);
    mfp_timeline_options o;
    memset(&o, 0, sizeof o);
    o.interval_ns = 1000000ull;
    o.nvml_library = lib;
    char err[256];
    mfp_timeline *t = mfp_timeline_start_opts(&o, err, sizeof err);
    CHECK(t != NULL);
    if (!t) return;
    int bad = 0;
    for (int i = 0; i < 30; i++) {
        struct timespec ts = {0, 137000L * (i % 7)}; /* forks at many phases of a poll */
        nanosleep(&ts, NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(2); /* a hung child dies of SIGALRM */
            mfp_timeline *c = mfp_timeline_start_opts(&o, err, sizeof err);
            if (c) {
                mfp_timeline_stop(c);
                mfp_timeline_free(c);
            }
            _exit(c ? 0 : 3);
        }
        int status = -1;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            bad++;
    }
    CHECK(bad == 0);
    if (bad) fprintf(stderr, "  %d of 30 forked children failed or hung\n", bad);
    mfp_timeline_stop(t);
    mfp_timeline_free(t);
    unsetenv("FAKE_NVML_QUERY_US");
}

int main(void) {
    test_lifecycle();
    test_fake_v2();
    test_fake_v1();
    test_env();
    test_new_parent_thread();
    test_fake_garbage();
    test_halving();
    test_gpu();
    test_gpu_fork();
    test_real();
    return check_done("timeline");
}
