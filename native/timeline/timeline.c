/* timeline.c — the poller thread, the series it fills, export and info.
 *
 * Why this way: the step's own threads must not pay for the timeline, so a
 * native thread does all of it without the GIL, sleeping on a condition
 * variable (CLOCK_MONOTONIC) between polls so stop() wakes it at once.
 * Every poll fills one snapshot from the readers (procfs.c, cgroup.c,
 * nvml.c) without holding the lock, then turns it into points under the
 * lock: counters become rates over the time since the previous poll, so
 * the area under a rate series is the bytes or CPU seconds really used.
 * Series memory is bounded: when one is full its points are merged in
 * pairs — rates by time-weighted mean (the area is kept), gauges by max
 * (the peak is kept) — so the resolution halves instead of the memory
 * growing. Peaks and totals are also kept exactly on the side for the card.
 *
 * fork(): the child inherits this memory but not the thread, and the mutex
 * may have been held at the fork. So every entry point compares getpid()
 * with the creator's pid and, in a child, neither locks nor joins. A poll
 * is never under way at a fork (poll_lock, taken by a pthread_atfork
 * handler): the poller may be left running through a fork (children.py),
 * and a child that starts a timeline of its own must not find NVML's
 * locks, the allocator's, or a file of ours, taken halfway.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "timeline.h"
#include "timeline_int.h"

#define DEFAULT_MAX_POINTS 65536
#define MIN_MAX_POINTS 16

enum { KIND_GAUGE, KIND_RATE };
enum { MERGE_MAX, MERGE_MEAN };

typedef struct {
    char name[32];
    const char *unit;
    uint32_t scale;
    uint8_t kind, merge;
    double mult;     /* rate: value = delta * mult / dt_ns */
    size_t n, cap;
    uint64_t *t;
    int64_t *v;
    uint64_t t_base; /* start of the first point's interval */
    int64_t peak;
    int have_peak;
    uint64_t total;  /* rate: sum of the counter's increases */
    double wsum, wdt; /* sum of value x ns and of ns: the time-weighted mean */
} series;

struct mfp_timeline {
    uint64_t interval_ns;
    size_t max_points;
    pid_t pid;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping, stopped;
    int paused; /* thread joined by mfp_timeline_pause */
    mfp_timeline_procfs pf;
    mfp_timeline_cgroup cg;
    mfp_timeline_gpu gpu;
    mfp_timeline_notes notes;
    series s[MFP_TL_NSERIES];
    mfp_timeline_snap prev;
    int have_prev;
    uint64_t oom_base;
    int have_oom_base;
    uint64_t cg_peak;
    int have_cg_peak;
    int cpus;
    int oom_note;
    /* The kernel's peak RSS (VmHWM) brackets the run: read at start and at
     * stop. Not reset (clear_refs): that would also lower what the process
     * itself and its parent (getrusage, /usr/bin/time) see as its peak. */
    uint64_t hwm_start, hwm_stop;
    int have_hwm;
    uint64_t kids_maxrss_start, kids_maxrss_stop; /* largest waited-for child, bytes */
    int cg_others; /* most processes seen in our cgroup that are not ours; -1 unknown */
    uint64_t polls; /* readings taken, the baseline included */
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int in_child(const mfp_timeline *t) { return getpid() != t->pid; }

static void note_v(mfp_timeline_notes *ns, int lock, const char *fmt, va_list ap) {
    char text[MFP_TL_NOTE_LEN];
    vsnprintf(text, sizeof text, fmt, ap);
    if (lock && ns->mu) pthread_mutex_lock(ns->mu);
    int dup = 0;
    for (int i = 0; i < ns->n && !dup; i++) dup = strcmp(ns->text[i], text) == 0;
    if (!dup && ns->n < MFP_TL_NOTE_MAX) memcpy(ns->text[ns->n++], text, sizeof text);
    if (lock && ns->mu) pthread_mutex_unlock(ns->mu);
}

void mfp_timeline_note(mfp_timeline_notes *ns, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    note_v(ns, 1, fmt, ap);
    va_end(ap);
}

/* For code that already holds the lock (record). */
static void note_locked(mfp_timeline_notes *ns, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_locked(mfp_timeline_notes *ns, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    note_v(ns, 0, fmt, ap);
    va_end(ap);
}

/* ---- series ---------------------------------------------------------- */

static void define(series *s, const char *name, const char *unit, uint32_t scale, int kind,
                   int merge, double mult) {
    snprintf(s->name, sizeof s->name, "%s", name);
    s->unit = unit;
    s->scale = scale;
    s->kind = (uint8_t)kind;
    s->merge = (uint8_t)merge;
    s->mult = mult;
}

static void define_all(mfp_timeline *t) {
    series *s = t->s;
    /* percent with one decimal: ns of CPU per ns of wall x 100 x 10 */
    define(&s[MFP_TL_CPU], "cpu_pct", "%", 1, KIND_RATE, MERGE_MEAN, 1000.0);
    define(&s[MFP_TL_RSS], "rss_bytes", "B", 0, KIND_GAUGE, MERGE_MAX, 0);
    define(&s[MFP_TL_RSS_PEAK], "rss_peak_bytes", "B", 0, KIND_GAUGE, MERGE_MAX, 0);
    define(&s[MFP_TL_THREADS], "threads", "", 0, KIND_GAUGE, MERGE_MAX, 0);
    define(&s[MFP_TL_CHILDREN], "children", "", 0, KIND_GAUGE, MERGE_MAX, 0);
    define(&s[MFP_TL_CHILDREN_RSS], "children_rss_bytes", "B", 0, KIND_GAUGE, MERGE_MAX, 0);
    define(&s[MFP_TL_DISK_R], "disk_read_Bps", "B/s", 0, KIND_RATE, MERGE_MEAN, 1e9);
    define(&s[MFP_TL_DISK_W], "disk_write_Bps", "B/s", 0, KIND_RATE, MERGE_MEAN, 1e9);
    define(&s[MFP_TL_NET_R], "net_recv_Bps", "B/s", 0, KIND_RATE, MERGE_MEAN, 1e9);
    define(&s[MFP_TL_NET_S], "net_sent_Bps", "B/s", 0, KIND_RATE, MERGE_MEAN, 1e9);
    define(&s[MFP_TL_SOCK_R], "sock_recv_Bps", "B/s", 0, KIND_RATE, MERGE_MEAN, 1e9);
    define(&s[MFP_TL_SOCK_S], "sock_sent_Bps", "B/s", 0, KIND_RATE, MERGE_MEAN, 1e9);
    define(&s[MFP_TL_CG_MEM], "cgroup_mem_bytes", "B", 0, KIND_GAUGE, MERGE_MAX, 0);
    define(&s[MFP_TL_CG_LIMIT], "cgroup_mem_limit_bytes", "B", 0, KIND_GAUGE, MERGE_MAX, 0);
    define(&s[MFP_TL_CG_OOM], "cgroup_oom_kills", "", 0, KIND_GAUGE, MERGE_MAX, 0);
    define(&s[MFP_TL_CG_THROTTLE], "cpu_throttled_pct", "%", 1, KIND_RATE, MERGE_MEAN, 1000.0);
    for (int i = 0; i < MFP_TL_MAX_GPU; i++) {
        char name[32];
        int b = MFP_TL_GPU0 + 3 * i;
        snprintf(name, sizeof name, "gpu%d_util_pct", i);
        define(&s[b], name, "%", 0, KIND_GAUGE, MERGE_MEAN, 0);
        snprintf(name, sizeof name, "gpu%d_mem_bytes", i);
        define(&s[b + 1], name, "B", 0, KIND_GAUGE, MERGE_MAX, 0);
        snprintf(name, sizeof name, "gpu%d_mem_total_bytes", i);
        define(&s[b + 2], name, "B", 0, KIND_GAUGE, MERGE_MAX, 0);
    }
}

/* Length of the interval point i stands for. */
static uint64_t span(const series *s, size_t i, uint64_t t_before) {
    uint64_t from = i == 0 ? s->t_base : t_before;
    return s->t[i] > from ? s->t[i] - from : 0;
}

static int64_t combine(const series *s, int64_t a, uint64_t da, int64_t b, uint64_t db) {
    if (s->merge == MERGE_MAX) return a > b ? a : b;
    if (da + db == 0) return (int64_t)llround(((double)a + (double)b) / 2);
    return (int64_t)llround(((double)a * (double)da + (double)b * (double)db) /
                            (double)(da + db));
}

/* Merges neighbours in pairs: n points become ceil(n/2). */
static void halve(series *s) {
    size_t j = 0;
    uint64_t before = s->t_base; /* end of the interval preceding pair i */
    for (size_t i = 0; i + 1 < s->n; i += 2) {
        uint64_t d1 = span(s, i, before), d2 = s->t[i + 1] - s->t[i];
        uint64_t end = s->t[i + 1];
        int64_t v = combine(s, s->v[i], d1, s->v[i + 1], d2);
        s->t[j] = end;
        s->v[j] = v;
        j++;
        before = end;
    }
    if (s->n % 2) {
        s->t[j] = s->t[s->n - 1];
        s->v[j] = s->v[s->n - 1];
        j++;
    }
    s->n = j;
}

static int grow(series *s, size_t max_points) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    if (cap > max_points) cap = max_points;
    uint64_t *nt = realloc(s->t, cap * sizeof *nt);
    if (!nt) return -1;
    s->t = nt;
    int64_t *nv = realloc(s->v, cap * sizeof *nv);
    if (!nv) return -1;
    s->v = nv;
    s->cap = cap;
    return 0;
}

/* Appends (t, v), or folds it into the last point when merge_with is that
 * point's time (the last poll of stop() came too soon after it). */
static int add_point(mfp_timeline *t, series *s, uint64_t at, int64_t v, uint64_t t_from,
                     int merge, uint64_t merge_with) {
    if (merge && s->n > 0 && s->t[s->n - 1] == merge_with) {
        size_t k = s->n - 1;
        uint64_t d1 = span(s, k, k ? s->t[k - 1] : 0), d2 = at - s->t[k];
        s->v[k] = combine(s, s->v[k], d1, v, d2);
        s->t[k] = at;
        v = s->v[k];
    } else {
        if (s->n == t->max_points) halve(s);
        if (s->n == s->cap && grow(s, t->max_points) != 0) return -1;
        if (s->n == 0) s->t_base = t_from;
        s->t[s->n] = at;
        s->v[s->n] = v;
        s->n++;
    }
    if (!s->have_peak || v > s->peak) s->peak = v;
    s->have_peak = 1;
    return 0;
}

/* Turns a snapshot into points. Called with the lock held (or before the
 * thread exists / after it was joined). */
static void record(mfp_timeline *t, const mfp_timeline_snap *now, int merge) {
    const mfp_timeline_snap *prev = &t->prev;
    int oom = 0;
    for (int i = 0; i < MFP_TL_NSERIES; i++) {
        series *s = &t->s[i];
        if (!now->ok[i]) continue;
        int64_t v;
        uint64_t from = now->t_ns;
        if (s->kind == KIND_RATE) {
            if (!t->have_prev || !prev->ok[i] || now->t_ns <= prev->t_ns) continue;
            uint64_t d = now->v[i] > prev->v[i] ? now->v[i] - prev->v[i] : 0;
            s->total += d;
            from = prev->t_ns;
            v = (int64_t)llround((double)d * s->mult / (double)(now->t_ns - prev->t_ns));
        } else if (i == MFP_TL_CG_OOM) {
            if (!t->have_oom_base) {
                t->oom_base = now->v[i];
                t->have_oom_base = 1;
            }
            v = now->v[i] > t->oom_base ? (int64_t)(now->v[i] - t->oom_base) : 0;
            oom = v > 0;
        } else {
            v = now->v[i] > INT64_MAX ? INT64_MAX : (int64_t)now->v[i];
        }
        if (t->have_prev && now->t_ns > prev->t_ns) {
            double dt = (double)(now->t_ns - prev->t_ns);
            s->wsum += (double)v * dt;
            s->wdt += dt;
        }
        if (add_point(t, s, now->t_ns, v, from, merge, prev->t_ns) != 0)
            note_locked(&t->notes, "timeline: out of memory, points dropped");
    }
    if (oom && !t->oom_note) {
        t->oom_note = 1;
        note_locked(&t->notes, "cgroup: the kernel OOM-killed a process of this cgroup "
                               "during the run");
    }
    t->prev = *now;
    t->have_prev = 1;
    if (now->ok[MFP_TL_RSS_PEAK]) {
        if (!t->have_hwm) t->hwm_start = now->v[MFP_TL_RSS_PEAK];
        t->hwm_stop = now->v[MFP_TL_RSS_PEAK];
        t->have_hwm = 1;
    }
    t->polls++;
}

/* Peak RSS of the largest child waited for so far (Linux keeps the max of
 * each child's VmHWM at its exit), bytes; 0 when unknown. */
static uint64_t reaped_maxrss(const mfp_timeline *t) {
    struct rusage ru;
    if (!t->pf.real || getrusage(RUSAGE_CHILDREN, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024u;
}

static pthread_mutex_t poll_lock = PTHREAD_MUTEX_INITIALIZER; /* every timeline's: polls are short */
static void poll_fork_prepare(void) { pthread_mutex_lock(&poll_lock); }
static void poll_fork_parent(void) { pthread_mutex_unlock(&poll_lock); }
static void poll_fork_child(void) { pthread_mutex_init(&poll_lock, NULL); }
static pthread_once_t poll_fork_once = PTHREAD_ONCE_INIT;
static void poll_fork_register(void) {
    pthread_atfork(poll_fork_prepare, poll_fork_parent, poll_fork_child);
}

/* Reads every source without the series lock, then records under it; all
 * of it under poll_lock. */
static void poll_once(mfp_timeline *t, int final) {
    mfp_timeline_snap snap;
    memset(&snap, 0, sizeof snap);
    snap.t_ns = now_ns();
    pthread_mutex_lock(&poll_lock);
    mfp_timeline_procfs_read(&t->pf, &snap, &t->notes);
    mfp_timeline_cgroup_read(&t->cg, &snap, &t->notes);
    mfp_timeline_gpu_read(&t->gpu, &snap, &t->notes);
    int merge = final && t->have_prev && snap.t_ns - t->prev.t_ns < t->interval_ns / 2;
    /* notes.mu is set once the mutex exists (after the baseline poll) */
    if (t->notes.mu) pthread_mutex_lock(&t->mu);
    record(t, &snap, merge);
    if (t->notes.mu) pthread_mutex_unlock(&t->mu);
    pthread_mutex_unlock(&poll_lock);
}

/* ---- the thread ------------------------------------------------------- */

/* Runs off the GIL for the whole life of the poller: touches only *t (the
 * series under t->mu) and files under the proc and cgroup roots. */
static void *poller_main(void *arg) {
    mfp_timeline *t = arg;
    pthread_setname_np(pthread_self(), "mfp-timeline"); /* an engine thread (module.c) */
    uint64_t next = now_ns();
    pthread_mutex_lock(&t->mu);
    while (!t->stopping) {
        next += t->interval_ns;
        uint64_t now = now_ns();
        if (next < now) next = now + t->interval_ns; /* we fell behind: skip */
        struct timespec ts = {(time_t)(next / 1000000000ull), (long)(next % 1000000000ull)};
        while (!t->stopping) {
            /* 0 is a wake-up (stop, or spurious: wait on); anything else
             * is the deadline or an error, and either way time to poll */
            if (pthread_cond_timedwait(&t->cv, &t->mu, &ts) != 0) break;
        }
        if (t->stopping) break;
        pthread_mutex_unlock(&t->mu);
        poll_once(t, 0);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* The thread takes no signal: they belong to the program's threads. */
static int start_thread(mfp_timeline *t) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t->thread, NULL, poller_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void mfp_timeline_ask_pause(mfp_timeline *t) {
    if (!t || t->stopped || t->paused || in_child(t)) return;
    pthread_mutex_lock(&t->mu);
    t->stopping = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int mfp_timeline_pause(mfp_timeline *t) {
    if (!t || t->stopped || t->paused || in_child(t)) return -1;
    mfp_timeline_ask_pause(t);
    pthread_join(t->thread, NULL);
    t->stopping = 0;
    t->paused = 1;
    return 0;
}

int mfp_timeline_resume(mfp_timeline *t) {
    if (!t || t->stopped || !t->paused || in_child(t)) return -1;
    if (start_thread(t) != 0) return -1; /* stays paused: stop still works */
    t->paused = 0;
    return 0;
}

static const char *pick(const char *given, const char *env, const char *dflt) {
    if (given) return given;
    const char *e = getenv(env);
    return e && e[0] ? e : dflt;
}

static void set_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static void release(mfp_timeline *t) {
    for (int i = 0; i < MFP_TL_NSERIES; i++) {
        free(t->s[i].t);
        free(t->s[i].v);
    }
    mfp_timeline_procfs_close(&t->pf);
    free(t);
}

mfp_timeline *mfp_timeline_start_opts(const mfp_timeline_options *o, char *err,
                                      size_t errlen) {
    if (!o || o->interval_ns < 1000000ull) {
        set_err(err, errlen, "timeline interval must be at least 1 ms");
        return NULL;
    }
    mfp_timeline *t = calloc(1, sizeof *t);
    if (!t) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    t->interval_ns = o->interval_ns;
    t->max_points = o->max_points ? o->max_points : DEFAULT_MAX_POINTS;
    if (t->max_points < MIN_MAX_POINTS) t->max_points = MIN_MAX_POINTS;
    t->pid = getpid();
    pthread_once(&poll_fork_once, poll_fork_register);
    define_all(t);
    const char *lb = getenv("MFP_TIMELINE_LOOPBACK");
    int loopback = o->include_loopback || (lb && strcmp(lb, "1") == 0);
    const char *proc = pick(o->proc_root, "MFP_PROC_ROOT", "/proc");
    const char *cgroot = pick(o->cgroup_root, "MFP_CGROUP_ROOT", "/sys/fs/cgroup");
    const char *nvml = pick(o->nvml_library, "MFP_NVML_LIBRARY", "libnvidia-ml.so.1");
    if (mfp_timeline_procfs_open(&t->pf, proc, loopback, &t->notes) != 0) {
        release(t);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    /* a full scan of our threads for children about every 100 ms */
    t->pf.full_every = (int)(100000000ull / t->interval_ns);
    if (t->pf.full_every < 1) t->pf.full_every = 1;
    mfp_timeline_cgroup_open(&t->cg, proc, cgroot, &t->notes);
    mfp_timeline_gpu_open(&t->gpu, nvml, &t->notes);
    t->have_cg_peak = mfp_timeline_cgroup_peak(&t->cg, &t->cg_peak) == 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) t->cpus = CPU_COUNT(&set);
    poll_once(t, 0); /* the baseline: gauges get a point at once */
    t->kids_maxrss_start = reaped_maxrss(t);
    t->cg_others = mfp_timeline_cgroup_others(&t->cg, t->pf.root);

    pthread_condattr_t ca;
    if (pthread_mutex_init(&t->mu, NULL) != 0) goto fail_mu;
    if (pthread_condattr_init(&ca) != 0) goto fail_cv;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) goto fail_cv;
    t->notes.mu = &t->mu;
    rc = start_thread(t);
    if (rc != 0) {
        pthread_cond_destroy(&t->cv);
        goto fail_cv;
    }
    return t;
fail_cv:
    pthread_mutex_destroy(&t->mu);
fail_mu:
    mfp_timeline_gpu_close(&t->gpu);
    release(t);
    set_err(err, errlen, "cannot start the timeline thread");
    return NULL;
}

mfp_timeline *mfp_timeline_start(uint64_t interval_ns, char *err, size_t errlen) {
    mfp_timeline_options o;
    memset(&o, 0, sizeof o);
    o.interval_ns = interval_ns;
    return mfp_timeline_start_opts(&o, err, errlen);
}

void mfp_timeline_stop(mfp_timeline *t) {
    if (!t || t->stopped) return;
    t->stopped = 1;
    if (in_child(t)) return; /* no thread here, and the lock may be stuck */
    if (!t->paused) {
        pthread_mutex_lock(&t->mu);
        t->stopping = 1;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    poll_once(t, 1);
    t->kids_maxrss_stop = reaped_maxrss(t);
    int others = mfp_timeline_cgroup_others(&t->cg, t->pf.root);
    if (others > t->cg_others) t->cg_others = others;
    uint64_t pk;
    if (mfp_timeline_cgroup_peak(&t->cg, &pk) == 0) {
        t->cg_peak = pk;
        t->have_cg_peak = 1;
    }
}

void mfp_timeline_free(mfp_timeline *t) {
    if (!t) return;
    if (in_child(t)) {
        /* leave NVML and the mutex alone: they belong to the parent */
        release(t);
        return;
    }
    mfp_timeline_stop(t);
    mfp_timeline_gpu_close(&t->gpu);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    release(t);
}

/* ---- export ----------------------------------------------------------- */

int mfp_timeline_export(const mfp_timeline *t, mfp_profile *p, uint64_t t0_ns) {
    if (!t || !p || in_child(t)) return -1;
    mfp_timeline *mt = (mfp_timeline *)t; /* the lock only */
    int rc = 0;
    pthread_mutex_lock(&mt->mu);
    for (int i = 0; i < MFP_TL_NSERIES && rc == 0; i++) {
        const series *s = &t->s[i];
        if (s->n == 0) continue;
        uint32_t id = mfp_profile_series(p, s->name, s->unit, s->scale);
        if (id == MFP_NONE) {
            rc = -1;
            break;
        }
        for (size_t k = 0; k < s->n; k++) {
            uint64_t at = s->t[k] > t0_ns ? s->t[k] - t0_ns : 0;
            if (mfp_profile_point(p, id, at, s->v[k]) != 0) {
                rc = -1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&mt->mu);
    return rc;
}

/* ---- info JSON --------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t cap, len;
} jbuf;

static void jput(jbuf *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jput(jbuf *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = j->len < j->cap ? j->cap - j->len : 0;
    int n = vsnprintf(room ? j->buf + j->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) j->len += (size_t)n;
}

static void jstr(jbuf *j, const char *s) {
    jput(j, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') jput(j, "\\%c", *p);
        else if (*p < 0x20) jput(j, "\\u%04x", *p);
        else jput(j, "%c", *p);
    }
    jput(j, "\"");
}

/* key: value in the series' own unit (scale undone). */
static void jscaled(jbuf *j, const char *sep, const char *key, int64_t v, uint32_t scale) {
    jput(j, "%s", sep);
    jstr(j, key);
    if (scale == 0) {
        jput(j, ": %lld", (long long)v);
    } else {
        jput(j, ": %.*f", (int)scale, (double)v / pow(10.0, (double)scale));
    }
}

/* "rss": the peak of the profiled span. When VmHWM rose during the run,
 * the kernel's peak at stop is the span's peak, exact; when it did not, the
 * span never exceeded a peak reached before the start, and the best figure
 * is the largest RSS polled (a lower bound). Children: the largest of the
 * summed RSS of live descendants polled and the kernel's peak of the
 * largest child waited for during the run (when that grew). */
static void rss_body(const mfp_timeline *t, jbuf *j, int *pfirst) {
    const series *rss = &t->s[MFP_TL_RSS], *kids = &t->s[MFP_TL_CHILDREN_RSS];
    uint64_t polled = rss->have_peak && rss->peak > 0 ? (uint64_t)rss->peak : 0;
    int first = *pfirst;
#define RITEM(...)                                                          \
    do {                                                                    \
        jput(j, "%s", first ? "" : ", ");                                   \
        first = 0;                                                          \
        jput(j, __VA_ARGS__);                                               \
    } while (0)
    if (t->have_hwm && t->hwm_stop > t->hwm_start) {
        RITEM("\"peak_bytes\": %llu, \"peak_source\": \"kernel\"",
              (unsigned long long)(t->hwm_stop > polled ? t->hwm_stop : polled));
    } else if (polled) {
        RITEM("\"peak_bytes\": %llu, \"peak_source\": \"polled\"", (unsigned long long)polled);
    }
    if (t->have_hwm)
        RITEM("\"hwm_at_start_bytes\": %llu, \"hwm_at_stop_bytes\": %llu",
              (unsigned long long)t->hwm_start, (unsigned long long)t->hwm_stop);
    if (polled) RITEM("\"polled_peak_bytes\": %llu", (unsigned long long)polled);
    uint64_t kp = kids->have_peak && kids->peak > 0 ? (uint64_t)kids->peak : 0;
    const char *ksrc = "polled";
    if (t->kids_maxrss_stop > t->kids_maxrss_start && t->kids_maxrss_stop > kp) {
        kp = t->kids_maxrss_stop;
        ksrc = "kernel";
    }
    if (kids->n > 0 || kp)
        RITEM("\"children_peak_bytes\": %llu, \"children_peak_source\": \"%s\"",
              (unsigned long long)kp, ksrc);
#undef RITEM
    *pfirst = first;
}

static void info_body(const mfp_timeline *t, jbuf *j) {
    const char *sep = "";
    jput(j, "{\"limits\": {");
    const mfp_timeline_snap *last = &t->prev;
    int first = 1;
#define ITEM(...)                                                           \
    do {                                                                    \
        jput(j, "%s", first ? "" : ", ");                                   \
        first = 0;                                                          \
        jput(j, __VA_ARGS__);                                               \
    } while (0)
    if (t->have_prev && last->ok[MFP_TL_CG_LIMIT])
        ITEM("\"memory_limit_bytes\": %llu", (unsigned long long)last->v[MFP_TL_CG_LIMIT]);
    if (t->pf.memtotal)
        ITEM("\"memory_total_bytes\": %llu", (unsigned long long)t->pf.memtotal);
    if (t->have_cg_peak)
        ITEM("\"cgroup_memory_peak_bytes\": %llu", (unsigned long long)t->cg_peak);
    if (t->have_prev && last->ok[MFP_TL_CG_OOM] && t->have_oom_base)
        ITEM("\"oom_kills\": %llu",
             (unsigned long long)(last->v[MFP_TL_CG_OOM] - t->oom_base));
    if (t->cg.quota_cores > 0) ITEM("\"cpu_quota_cores\": %.3f", t->cg.quota_cores);
    if (t->cg.thr_ok)
        ITEM("\"cpu_throttled_s\": %.3f", (double)t->s[MFP_TL_CG_THROTTLE].total / 1e9);
    if (t->cpus > 0) ITEM("\"cpus\": %d", t->cpus);
    if (t->cg.mem_v || t->cg.cpu_v)
        ITEM("\"cgroup\": \"v%d\"", t->cg.mem_v ? t->cg.mem_v : t->cg.cpu_v);
    /* Whose the cgroup figures are: the step's when nothing else runs in
     * its cgroup (at start and at stop), else the container's. */
    if (t->cg_others >= 0)
        ITEM("\"cgroup_scope\": \"%s\", \"cgroup_other_processes\": %d",
             t->cg_others ? "container" : "step", t->cg_others);
    jput(j, "}, \"peaks\": {");
    sep = "";
    for (int i = 0; i < MFP_TL_NSERIES; i++) {
        const series *s = &t->s[i];
        if (!s->have_peak) continue;
        jscaled(j, sep, s->name, s->peak, s->scale);
        sep = ", ";
    }
    jput(j, "}, \"averages\": {");
    sep = "";
    for (int i = 0; i < MFP_TL_NSERIES; i++) {
        const series *s = &t->s[i];
        if (s->wdt <= 0) continue;
        jscaled(j, sep, s->name, (int64_t)llround(s->wsum / s->wdt), s->scale);
        sep = ", ";
    }
    jput(j, "}, \"totals\": {");
    first = 1;
    const series *s = t->s;
    if (s[MFP_TL_CPU].n) ITEM("\"cpu_s\": %.3f", (double)s[MFP_TL_CPU].total / 1e9);
    if (s[MFP_TL_DISK_R].n) {
        ITEM("\"disk_read_bytes\": %llu", (unsigned long long)s[MFP_TL_DISK_R].total);
        ITEM("\"disk_write_bytes\": %llu", (unsigned long long)s[MFP_TL_DISK_W].total);
    }
    if (s[MFP_TL_NET_R].n) {
        ITEM("\"net_recv_bytes\": %llu", (unsigned long long)s[MFP_TL_NET_R].total);
        ITEM("\"net_sent_bytes\": %llu", (unsigned long long)s[MFP_TL_NET_S].total);
    }
    if (s[MFP_TL_SOCK_R].n) {
        ITEM("\"sock_recv_bytes\": %llu", (unsigned long long)s[MFP_TL_SOCK_R].total);
        ITEM("\"sock_sent_bytes\": %llu", (unsigned long long)s[MFP_TL_SOCK_S].total);
    }
    /* Whose network figures these are: net_* count every process of the
     * network namespace; sock_* only this process's TCP sockets. */
    jput(j, "}, \"network\": {\"net_scope\": \"namespace\", \"loopback\": %s",
         t->pf.loopback ? "true" : "false");
    if (s[MFP_TL_SOCK_R].n) jput(j, ", \"sock_scope\": \"process_tcp\"");
    jput(j, "}, \"rss\": {");
    first = 1;
    rss_body(t, j, &first);
    jput(j, "}, \"gpus\": [");
    for (int i = 0; i < t->gpu.n; i++) {
        jput(j, "%s{\"index\": %d, \"name\": ", i ? ", " : "", i);
        jstr(j, t->gpu.name[i]);
        jput(j, ", \"memory_total_bytes\": %llu}", (unsigned long long)t->gpu.mem_total[i]);
    }
    jput(j, "], \"notes\": [");
    for (int i = 0; i < t->notes.n; i++) {
        if (i) jput(j, ", ");
        jstr(j, t->notes.text[i]);
    }
    jput(j, "], \"interval_s\": %.3f, \"polls\": %llu}", (double)t->interval_ns / 1e9,
         (unsigned long long)t->polls);
#undef ITEM
}

size_t mfp_timeline_info_json(const mfp_timeline *t, char *buf, size_t cap) {
    jbuf j = {buf, cap, 0};
    if (!t) {
        jput(&j, "{}");
        return j.len;
    }
    int lock = !in_child(t);
    mfp_timeline *mt = (mfp_timeline *)t;
    if (lock) pthread_mutex_lock(&mt->mu);
    info_body(t, &j);
    if (lock) pthread_mutex_unlock(&mt->mu);
    if (cap && j.len >= cap) buf[cap - 1] = '\0';
    return j.len;
}
