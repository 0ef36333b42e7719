/* heap.c — see heap.h.
 *
 * Why it is built this way.
 *  - Cost: every allocation and free of the process passes through a hook,
 *    so the common case must be a few instructions. The hottest callers
 *    are pymalloc's (the mem and obj domains, 1..512 bytes, with the GIL):
 *    their malloc and calloc touch no TLS and set no flag, only a countdown
 *    shared under the GIL, before a tail call to pymalloc (PY_FAST_HOOKS);
 *    their free is pymalloc's own, not hooked. That works because a
 *    sampled small block is placed outside pymalloc's arenas (gil_malloc),
 *    and pymalloc passes the free and realloc of such a pointer to the raw
 *    domain, whose hooks see it; mfp_heap_start probes all of that before
 *    trusting it. PyMem_SetAllocator interposition itself costs about
 *    0.5 ns a call (one more indirect call), so the frees, as many as the
 *    allocations, are not interposed at all, and an allocation that
 *    pymalloc has a block ready for is served by the hook itself from
 *    pymalloc's free lists (native/python/pymalloc.c), so the hook takes
 *    the place of pymalloc's call instead of adding one: the default
 *    then costs about what pymalloc's own call does (bench/RESULTS.md,
 *    "pymalloc's blocks taken by the hook"). realloc (rarer) is hooked
 *    with the busy flag, as the raw domain resizes blocks outside the
 *    arenas and would count them again.
 *    Elsewhere an allocation that is not sampled costs a thread-local
 *    countdown decrement (the TLS uses the initial-exec model: no call, no
 *    allocation), and a free a load from a 64 KiB counting filter (one
 *    counter per 64-byte block) and a lock-free probe of the live table
 *    only when the filter says a sampled block may be there. Measured:
 *    bench/RESULTS.md, issues #7, #16.
 *  - Unbiased estimates: sampling is a Poisson process over allocated
 *    bytes with mean interval `rate`. The countdown to the next sample point
 *    is exponential, so an allocation of n bytes is sampled with
 *    probability 1 - exp(-n/rate) and stands for n / that probability
 *    bytes. Big buffers are always sampled at their own size; small ones
 *    are sampled rarely and each stands for about `rate` bytes.
 *  - Peak without snapshots: the live estimate L rises and falls by each
 *    sampled allocation's weight. When L reaches a new maximum the peak
 *    generation advances; each stack saves its live bytes the first time it
 *    changes after that, so "live at peak" of a stack is the saved value if
 *    it was saved in the current generation and its live value otherwise.
 *    O(1) per sampled event, exact for the sampled process.
 *  - One lock for the sampled (rare) path: the live table, the stack store
 *    and per-stack counters. The store is a private mfp_profile; stacks are
 *    copied into the caller's profile at export, after stop.
 *  - Hooks must survive being removed: a thread may be inside a hook when
 *    stop rewrites the GOT. Hooks only call the real functions (kept in
 *    static memory for the life of the process), check `active` under the
 *    lock before touching bookkeeping, and the live tables are mapped once
 *    per process and never unmapped, so a late lock-free probe reads valid
 *    memory. Nothing a hook may touch is freed while it can run.
 *  - dlopen is hooked so objects loaded while profiling are patched too.
 *    The price: the loader sees our object as dlopen's caller, which only
 *    matters to a library that dlopens a bare name relying on its own
 *    DT_RPATH (Python loads extensions by full path).
 *  - Reentrancy: a thread-local `busy` flag is set while a Python-domain
 *    hook calls down into the allocator it wraps (pymalloc asks the raw
 *    domain and mmap for memory), so one allocation is counted once, at
 *    the outermost level. Our own calls to malloc go straight to the C
 *    library: this object's GOT is never patched.
 *  - Fork: the child inherits the patched slots but not the session that
 *    would export them, so in the child the hooks pass straight through.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "heap.h"

#include <Python.h>

#include "../python/python.h"
#include "got.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TABLE_BITS 19
#define TABLE_CAP ((size_t)1 << TABLE_BITS)
#define TABLE_MAX_LIVE (TABLE_CAP / 2)
#define TABLE_MAX_USED (TABLE_CAP * 3 / 4)
#define FILTER_BITS 16
#define KEY_EMPTY ((uintptr_t)0)
#define KEY_TOMB ((uintptr_t)1)
#define MAX_DEPTH 1024
#define FRAME_CACHE_BITS 14
#define EVENTS_MAX ((size_t)1 << 19) /* > TABLE_MAX_LIVE: compaction always makes room */
#define SMALL_MAX 512 /* pymalloc's largest block, 3.8 .. 3.15 */

enum { SRC_PYTHON, SRC_NATIVE, SRC_MMAP, SRC_KINDS };

/* ---- the real functions (set once, never cleared) ----------------------- */

typedef struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    int (*munmap)(void *, size_t);
    void *(*dlopen)(const char *, int);
} real_fns;

static real_fns real;
static PyMemAllocatorEx py_orig[3];
static int py_orig_set;

/* ---- per-thread state ---------------------------------------------------- */

typedef struct {
    int64_t countdown; /* bytes until the next sample point */
    uint64_t rng;
    uint32_t gen;      /* session the countdown belongs to */
    int busy;          /* inside a hook's call down, or our own slow path */
    int probing;       /* mfp_heap_start is asking what the PyMem domains call */
    int probe_hits;    /* allocations that reached a hook below the domain probed */
    int probe_frees;   /* frees and reallocs of probe_ptr that reached the raw hooks */
    void *probe_ptr;
} tls_state;

static __thread tls_state tls __attribute__((tls_model("initial-exec")));

/* ---- live table ---------------------------------------------------------- */

typedef struct {
    uint64_t weight; /* estimated bytes this sample stands for */
    uint32_t stack;
    uint32_t ev;     /* its event in G.events, or MFP_NONE */
} entry;

/* When a sampled allocation was made and freed (0: not yet), monotonic ns. */
typedef struct {
    uint64_t t_alloc, t_free, weight;
    uint32_t stack, pad;
} hevent;

typedef struct {
    _Atomic uintptr_t *keys;
    entry *vals;
    size_t used; /* live + tombstones (lock) */
    size_t live;
} table;

typedef struct {
    uint64_t live, saved, alloc;
    double count;
    uint32_t saved_gen;
} stack_stat;

/* Everything the hooks share. Fields marked (lock) are read and written
 * only with `lock` held; the atomics are read by the fast paths. */
static struct {
    pthread_mutex_t lock;
    atomic_int active;
    atomic_uint gen;
    atomic_size_t live_entries;
    _Atomic(table *) table;
    table tables[2];     /* mapped once per process */
    int mapped;
    double rate;

    mfp_profile *store;  /* (lock) stacks of sampled allocations */
    stack_stat *stats;   /* (lock) per store stack */
    size_t nstats;
    mfp_python_walker *walker;   /* (lock) the allocating thread's frames, read directly */
    mfp_python_decoder *decoder; /* (lock) (code, lasti) -> store frame */
    uint32_t leaf[SRC_KINDS];
    uint32_t elided;     /* the frame between the halves of a deep stack */
    mfp_python_frame *scratch;
    uint32_t *ids;

    uint64_t live, peak, alloc_total, samples, dropped; /* (lock) */
    hevent *events;      /* (lock) in t_alloc order, at most EVENTS_MAX */
    size_t nevents, cap_events;
    uint64_t min_life_ns, events_dropped; /* (lock) what compaction left out */
    uint32_t peak_gen;
    uint64_t rss_at_peak, rss_checked_peak;
    int statm_fd;
    pid_t pid;
    int fast_domains; /* bit 0 mem, bit 1 obj: the pymalloc fast hooks */
} G = {.lock = PTHREAD_MUTEX_INITIALIZER, .statm_fd = -1};

struct mfp_heap {
    uint64_t rate;
    int running;
    long patched;
    size_t patched_objects;
    /* Moved out of G at stop; read by export and info. */
    mfp_profile *store;
    stack_stat *stats;
    size_t nstats;
    uint64_t peak, alloc_total, samples, dropped, live_at_stop, rss_at_peak, rss_peak;
    size_t live_samples;
    hevent *events;
    size_t nevents;
    uint64_t min_life_ns, events_dropped;
    uint32_t peak_gen;
    int forked, fast_domains, take;
};

static mfp_heap *current;

/* Counting filter in front of the live table: a free whose counter is 0
 * cannot be a sampled pointer, and 64 KiB stays in cache where the table
 * would not. Counters stick at 255. Written under the lock, read by any
 * hook; incremented before a key is published, decremented after it is
 * removed, so it never says "absent" for a present key. */
static uint8_t filter[(size_t)1 << FILTER_BITS];

/* Bytes until the next sample point of the PyMem/PyObject domains when
 * they are pymalloc (fast_domains): those are called with the GIL held, so
 * one process-wide countdown needs no TLS. Relaxed loads and stores, not a
 * read-modify-write: with several GILs (subinterpreters) an update may be
 * lost, which skews the sampling a little and nothing else. Two countdowns
 * (this and each thread's) are independent Poisson processes over the bytes
 * that flow through them, so the estimates stay unbiased. */
static _Atomic int64_t gil_countdown;
static uint64_t gil_rng; /* (lock) */

/* ---- small helpers (any thread, no allocation) --------------------------- */

static uint64_t next_rand(uint64_t *rng) {
    /* xorshift64*: quality is plenty for sample intervals. */
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static int64_t draw_interval(uint64_t *rng) {
    double u = ((double)(next_rand(rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double v = -log(u) * G.rate;
    return v > 4e18 ? (int64_t)4e18 : (int64_t)v + 1;
}

static size_t slot_of(uintptr_t k) {
    return (size_t)(((uint64_t)k >> 4) * 0x9E3779B97F4A7C15ull >> (64 - TABLE_BITS));
}

/* One counter per 64-byte block, not hashed: frees come in runs from the
 * same region (pymalloc pools, arrays of objects), and neighbouring blocks
 * share a cache line of counters, so the filter stays in cache; blocks
 * 4 MiB apart share a counter, which only costs a probe. */
static uint8_t *filter_at(uintptr_t k) {
    return &filter[(k >> 6) & (((size_t)1 << FILTER_BITS) - 1)];
}

static void filter_add(uintptr_t k, int delta) { /* (lock) */
    uint8_t *c = filter_at(k), v = __atomic_load_n(c, __ATOMIC_RELAXED);
    if (v == 255 || (delta < 0 && v == 0)) return;
    __atomic_store_n(c, (uint8_t)(v + delta), __ATOMIC_RELEASE);
}

/* (lock) Hooks read the filter without it, so byte by byte, atomically. */
static void filter_clear(void) {
    for (size_t i = 0; i < sizeof filter; i++) __atomic_store_n(&filter[i], 0, __ATOMIC_RELAXED);
}

/* Lock-free: may run on any thread, in any hook. */
static int table_has(const table *t, uintptr_t k) {
    size_t i = slot_of(k);
    for (size_t n = 0; n < TABLE_CAP; n++, i = (i + 1) & (TABLE_CAP - 1)) {
        uintptr_t v = atomic_load_explicit(&t->keys[i], memory_order_relaxed);
        if (v == k) return 1;
        if (v == KEY_EMPTY) return 0;
    }
    return 0;
}

/* (lock) The slot of k, or of the place to put it (*found 0). */
static size_t table_find(const table *t, uintptr_t k, int *found) {
    size_t i = slot_of(k), first_free = SIZE_MAX;
    for (size_t n = 0; n < TABLE_CAP; n++, i = (i + 1) & (TABLE_CAP - 1)) {
        uintptr_t v = atomic_load_explicit(&t->keys[i], memory_order_relaxed);
        if (v == k) { *found = 1; return i; }
        if (v == KEY_TOMB && first_free == SIZE_MAX) first_free = i;
        if (v == KEY_EMPTY) { *found = 0; return first_free == SIZE_MAX ? i : first_free; }
    }
    *found = 0;
    return first_free;
}

static void table_clear(table *t) {
    /* Zero pages come back on the next touch; a late probe reads zeros. */
    madvise((void *)t->keys, TABLE_CAP * sizeof(uintptr_t), MADV_DONTNEED);
    madvise(t->vals, TABLE_CAP * sizeof(entry), MADV_DONTNEED);
    t->used = t->live = 0;
}

/* (lock) Copy the live entries into the other table and publish it. */
static void table_rebuild(void) {
    table *old = atomic_load(&G.table);
    table *nt = old == &G.tables[0] ? &G.tables[1] : &G.tables[0];
    table_clear(nt);
    for (size_t i = 0; i < TABLE_CAP; i++) {
        uintptr_t k = atomic_load_explicit(&old->keys[i], memory_order_relaxed);
        if (k == KEY_EMPTY || k == KEY_TOMB) continue;
        int found;
        size_t j = table_find(nt, k, &found);
        nt->vals[j] = old->vals[i];
        atomic_store_explicit(&nt->keys[j], k, memory_order_release);
        nt->used++;
        nt->live++;
    }
    atomic_store(&G.table, nt);
}

/* ---- per-stack statistics (lock) ---------------------------------------- */

static stack_stat *stat_for(uint32_t stack) {
    if (stack >= G.nstats) {
        size_t n = G.nstats ? G.nstats : 1024;
        while (n <= stack) n *= 2;
        stack_stat *s = realloc(G.stats, n * sizeof *s);
        if (!s) return NULL;
        memset(s + G.nstats, 0, (n - G.nstats) * sizeof *s);
        G.stats = s;
        G.nstats = n;
    }
    stack_stat *s = &G.stats[stack];
    if (s->saved_gen != G.peak_gen) { /* first change since the peak */
        s->saved = s->live;
        s->saved_gen = G.peak_gen;
    }
    return s;
}

static uint64_t read_rss(void) {
    char buf[128];
    if (G.statm_fd < 0) return 0;
    ssize_t n = pread(G.statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = 0;
    unsigned long long size = 0, resident = 0;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2) return 0;
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void account_alloc(uint32_t stack, uint64_t w, size_t n) {
    stack_stat *s = stat_for(stack);
    if (!s) { G.dropped++; return; }
    s->live += w;
    s->alloc += w;
    s->count += (double)w / (double)(n ? n : 1);
    G.live += w;
    G.alloc_total += w;
    G.samples++;
    if (G.live > G.peak) {
        G.peak = G.live;
        G.peak_gen++;
        /* RSS at the peak, re-read when the peak grew by 1% (a pread). */
        if (G.peak > G.rss_checked_peak + G.rss_checked_peak / 100) {
            G.rss_checked_peak = G.peak;
            G.rss_at_peak = read_rss();
        }
    }
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* (lock) Make room in a full event log: drop freed events that lived less
 * than a threshold, doubled until a quarter of the log goes (they are the
 * ones a time range shows least: allocated and gone within it), and move
 * the live table's event indices with them. -1 when nothing can go. */
static int events_compact(void) {
    uint64_t life = G.min_life_ns ? G.min_life_ns : 1000000, longest = 0;
    size_t n = G.nevents, gone;
    for (size_t i = 0; i < n; i++)
        if (G.events[i].t_free && G.events[i].t_free - G.events[i].t_alloc > longest)
            longest = G.events[i].t_free - G.events[i].t_alloc;
    for (;; life *= 2) {
        gone = 0;
        for (size_t i = 0; i < n; i++)
            gone += G.events[i].t_free && G.events[i].t_free - G.events[i].t_alloc < life;
        if (gone >= n / 4 || life > longest) break;
    }
    uint32_t *map = malloc(n * sizeof *map);
    if (!gone || !map) {
        free(map);
        return -1;
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        const hevent *e = &G.events[i];
        if (e->t_free && e->t_free - e->t_alloc < life) {
            map[i] = MFP_NONE;
            continue;
        }
        map[i] = (uint32_t)j;
        G.events[j++] = *e;
    }
    table *t = atomic_load(&G.table);
    for (size_t i = 0; i < TABLE_CAP; i++) {
        uintptr_t k = atomic_load_explicit(&t->keys[i], memory_order_relaxed);
        if (k != KEY_EMPTY && k != KEY_TOMB && t->vals[i].ev < n) t->vals[i].ev = map[t->vals[i].ev];
    }
    free(map);
    G.nevents = j;
    G.min_life_ns = life;
    return 0;
}

/* (lock) The index of a new event, or MFP_NONE (counted). */
static uint32_t event_add(uint32_t stack, uint64_t w, uint64_t now) {
    if (G.nevents == G.cap_events) {
        if (G.cap_events < EVENTS_MAX) {
            size_t cap = G.cap_events ? G.cap_events * 2 : 4096;
            hevent *e = realloc(G.events, cap * sizeof *e);
            if (e) {
                G.events = e;
                G.cap_events = cap;
            }
        }
        if (G.nevents == G.cap_events && events_compact() != 0) {
            G.events_dropped++;
            return MFP_NONE;
        }
    }
    G.events[G.nevents] = (hevent){now, 0, w, stack, 0};
    return (uint32_t)G.nevents++;
}

static void account_free(const entry *e, uint64_t now) {
    if (e->ev < G.nevents) G.events[e->ev].t_free = now;
    stack_stat *s = stat_for(e->stack);
    if (s) s->live = s->live > e->weight ? s->live - e->weight : 0;
    G.live = G.live > e->weight ? G.live - e->weight : 0;
}

/* ---- stacks (lock; on the allocating thread) ----------------------------- */

static uint32_t intern_func(const char *name, size_t nlen, const char *file, size_t flen,
                            uint32_t line, uint32_t kind) {
    uint32_t n = mfp_profile_string(G.store, name, nlen);
    uint32_t f = mfp_profile_string(G.store, file, flen);
    if (n == MFP_NONE || f == MFP_NONE) return MFP_NONE;
    return mfp_profile_func(G.store, n, f, line, kind);
}

static uint32_t thread_root(void) {
    char name[64] = "";
    char text[128];
    prctl(PR_GET_NAME, name, 0, 0, 0);
    name[sizeof name - 1] = 0;
    int n = snprintf(text, sizeof text, "thread %s (%ld)", name, (long)syscall(SYS_gettid));
    uint32_t func = intern_func(text, (size_t)n, "", 0, 0, MFP_FUNC_THREAD);
    uint32_t frame = func == MFP_NONE ? MFP_NONE : mfp_profile_frame(G.store, func, 0);
    return frame == MFP_NONE ? MFP_NONE : mfp_profile_stack(G.store, MFP_NONE, frame);
}

/* The calling thread's Python stack as a store stack (leaf = allocator
 * kind for native allocations). Reads this thread's own frames directly:
 * with the GIL held nobody else changes them, and without it the thread is
 * inside malloc and is not changing them either. A stack deeper than
 * MAX_DEPTH keeps its leaf-most and root-most halves, with the marker frame
 * between them. */
static uint32_t capture_stack(int src) {
    int depth = 0, error;
    size_t elided = 0;
    PyThreadState *ts = PyGILState_GetThisThreadState();
    if (ts) {
        mfp_python_thread t;
        mfp_python_thread_decode(ts, &t);
        depth = mfp_python_walk(G.walker, ts, &t, G.scratch, MAX_DEPTH, &elided, &error);
        if (depth < 0) depth = 0;
    }
    if (depth && mfp_python_decode(G.decoder, G.scratch, depth, G.ids, &error) != 0) return MFP_NONE;
    if (elided) {
        int lo = depth / 2;
        memmove(G.ids + lo + 1, G.ids + lo, (size_t)(depth - lo) * sizeof *G.ids);
        G.ids[lo] = G.elided;
        depth++;
    }
    uint32_t node = depth ? MFP_NONE : thread_root();
    if (!depth && node == MFP_NONE) return MFP_NONE;
    for (int i = depth - 1; i >= 0; i--) {
        node = mfp_profile_stack(G.store, node, G.ids[i]);
        if (node == MFP_NONE) return MFP_NONE;
    }
    if (src != SRC_PYTHON) node = mfp_profile_stack(G.store, node, G.leaf[src]);
    return node;
}

/* ---- the sampled path ---------------------------------------------------- */

/* (lock) Record p, n bytes, as a sample standing for w bytes. */
static void record_alloc(void *p, size_t n, double w, int src) {
    table *t = atomic_load(&G.table);
    uint32_t stack = capture_stack(src);
    int found = 0;
    size_t i = SIZE_MAX;
    if (stack != MFP_NONE && t->live < TABLE_MAX_LIVE) {
        if (t->used >= TABLE_MAX_USED) {
            table_rebuild();
            t = atomic_load(&G.table);
        }
        i = table_find(t, (uintptr_t)p, &found);
    }
    if (i == SIZE_MAX) {
        G.dropped++;
        return;
    }
    uint64_t now = now_ns();
    if (found) { /* freed without us seeing it: forget the old one */
        account_free(&t->vals[i], now);
        t->live--;
    } else if (atomic_load_explicit(&t->keys[i], memory_order_relaxed) == KEY_EMPTY) {
        t->used++;
    }
    if (!found) filter_add((uintptr_t)p, 1);
    t->vals[i] = (entry){(uint64_t)(w + 0.5), stack, event_add(stack, (uint64_t)(w + 0.5), now)};
    atomic_store_explicit(&t->keys[i], (uintptr_t)p, memory_order_release);
    t->live++;
    atomic_store(&G.live_entries, t->live);
    account_alloc(stack, (uint64_t)(w + 0.5), n);
}

/* What a sample of n bytes stands for: n / P(sampled). */
static double weight_of(size_t n) {
    double x = (double)n / G.rate;
    return x > 40 ? (double)n : (double)n / -expm1(-x);
}

/* Runs on the allocating thread, with or without the GIL. Touches the
 * thread's TLS, and G under the lock. Never allocates through a hook. */
__attribute__((noinline)) static void sample_alloc(void *p, size_t n, int src) {
    if (tls.probing) { /* a hook was reached below a PyMem domain */
        tls.probe_hits++;
        tls.countdown = 1;
        return;
    }
    unsigned gen = atomic_load(&G.gen);
    if (tls.gen != gen) { /* first allocation of this thread in this session */
        tls.gen = gen;
        tls.rng = ((uint64_t)syscall(SYS_gettid) << 32) ^ (uint64_t)(uintptr_t)&tls ^
                  (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ull;
        if (!tls.rng) tls.rng = 1;
        tls.countdown = draw_interval(&tls.rng) - (int64_t)n;
        if (tls.countdown > 0) return;
    }
    tls.countdown = draw_interval(&tls.rng);
    double w = weight_of(n);
    tls.busy = 1;
    pthread_mutex_lock(&G.lock);
    if (atomic_load(&G.active) && atomic_load(&G.gen) == gen) record_alloc(p, n, w, src);
    pthread_mutex_unlock(&G.lock);
    tls.busy = 0;
}

/* The fast domains' sampled path (the GIL countdown reached 0), with the
 * GIL held. A sampled block is not taken from pymalloc's arenas: asked for
 * more than pymalloc serves, pymalloc takes it from the raw domain (and
 * counts it as its own there, so sys.getallocatedblocks stays right).
 * pymalloc's free and realloc hand every pointer outside its arenas to the
 * raw domain, so a sampled block's free and realloc reach the raw hooks and
 * the fast domains need no free hook at all. busy is set across the call so
 * the raw hook does not count the block a second time. */
#define OUTSIDE_ARENAS (SMALL_MAX + 1)

static int gil_begin(int *busy) {
    *busy = tls.busy;
    tls.busy = 1;
    return !*busy && atomic_load(&G.active);
}

static void *gil_end(void *p, size_t n, int busy, int rec) {
    pthread_mutex_lock(&G.lock);
    atomic_store_explicit(&gil_countdown, draw_interval(&gil_rng), memory_order_relaxed);
    if (p && rec && atomic_load(&G.active)) record_alloc(p, n, weight_of(n), SRC_PYTHON);
    pthread_mutex_unlock(&G.lock);
    tls.busy = busy;
    return p;
}

__attribute__((noinline)) static void *gil_malloc(int d, void *ctx, size_t n) {
    int b, rec = gil_begin(&b);
    return gil_end(py_orig[d].malloc(ctx, rec ? OUTSIDE_ARENAS : n), n, b, rec);
}

__attribute__((noinline)) static void *gil_calloc(int d, void *ctx, size_t k, size_t size, size_t n) {
    int b, rec = gil_begin(&b);
    return gil_end(rec ? py_orig[d].calloc(ctx, 1, OUTSIDE_ARENAS) : py_orig[d].calloc(ctx, k, size),
                   n, b, rec);
}

/* realloc, with the sampled-path caller's busy flag b: a sampled result
 * of 1..512 bytes is moved outside the arenas (larger ones are there
 * already). The old block was screened by the caller. */
__attribute__((noinline)) static void *gil_realloc(int d, void *ctx, void *old, size_t n, int b) {
    int rec = !b && atomic_load(&G.active);
    size_t ask = rec && n - 1 < SMALL_MAX ? OUTSIDE_ARENAS : n;
    return gil_end(py_orig[d].realloc(ctx, old, ask), n ? n : 1, b, rec);
}

static inline void on_alloc(void *p, size_t n, int src) {
    if (!p || !atomic_load_explicit(&G.active, memory_order_relaxed) || tls.busy) return;
    if ((tls.countdown -= (int64_t)n) > 0) return;
    sample_alloc(p, n, src);
}

__attribute__((noinline)) static void sample_free(void *p) {
    pthread_mutex_lock(&G.lock);
    if (atomic_load(&G.active)) {
        table *t = atomic_load(&G.table);
        int found;
        size_t i = table_find(t, (uintptr_t)p, &found);
        if (found) {
            account_free(&t->vals[i], now_ns());
            atomic_store_explicit(&t->keys[i], KEY_TOMB, memory_order_release);
            filter_add((uintptr_t)p, -1);
            t->live--;
            atomic_store(&G.live_entries, t->live);
        }
    }
    pthread_mutex_unlock(&G.lock);
}

/* Before the memory goes back: once freed, the address may be handed to
 * another thread and sampled again. */
static inline void on_free(void *p) {
    if (!p || !atomic_load_explicit(&G.active, memory_order_relaxed) || tls.busy ||
        !atomic_load_explicit(&G.live_entries, memory_order_relaxed))
        return;
    if (!__atomic_load_n(filter_at((uintptr_t)p), __ATOMIC_RELAXED)) return;
    if (table_has(atomic_load_explicit(&G.table, memory_order_acquire), (uintptr_t)p)) sample_free(p);
}

/* ---- native hooks (any thread, GIL or not) ------------------------------- */

static void *hk_malloc(size_t n) {
    void *p = real.malloc(n);
    on_alloc(p, n, SRC_NATIVE);
    return p;
}

static void *hk_calloc(size_t k, size_t n) {
    void *p = real.calloc(k, n);
    on_alloc(p, k * n, SRC_NATIVE);
    return p;
}

static void *hk_realloc(void *old, size_t n) {
    on_free(old);
    void *p = real.realloc(old, n);
    on_alloc(p, n, SRC_NATIVE);
    return p;
}

static void hk_free(void *p) {
    on_free(p);
    real.free(p);
}

static int hk_posix_memalign(void **out, size_t align, size_t n) {
    int rc = real.posix_memalign(out, align, n);
    if (rc == 0) on_alloc(*out, n, SRC_NATIVE);
    return rc;
}

static void *hk_aligned_alloc(size_t align, size_t n) {
    void *p = real.aligned_alloc(align, n);
    on_alloc(p, n, SRC_NATIVE);
    return p;
}

static void *hk_memalign(size_t align, size_t n) {
    void *p = real.memalign(align, n);
    on_alloc(p, n, SRC_NATIVE);
    return p;
}

static void *hk_valloc(size_t n) {
    void *p = real.valloc(n);
    on_alloc(p, n, SRC_NATIVE);
    return p;
}

static void *hk_mmap(void *addr, size_t n, int prot, int flags, int fd, off_t off) {
    void *p = real.mmap(addr, n, prot, flags, fd, off);
    /* Anonymous private mappings are heap; file mappings are not. */
    if (p != MAP_FAILED && (flags & MAP_ANONYMOUS) && !(flags & MAP_SHARED))
        on_alloc(p, n, SRC_MMAP);
    return p;
}

static int hk_munmap(void *p, size_t n) {
    on_free(p);
    return real.munmap(p, n);
}

static long patch_loaded(int nonblocking);

/* Libraries loaded while profiling get their slots patched too. */
static void *hk_dlopen(const char *file, int flags) {
    void *h = real.dlopen(file, flags);
    if (h && atomic_load(&G.active) && getpid() == G.pid) patch_loaded(1);
    return h;
}

static const mfp_got_hook native_hooks[] = {
    {"malloc", (void *)hk_malloc},
    {"calloc", (void *)hk_calloc},
    {"realloc", (void *)hk_realloc},
    {"free", (void *)hk_free},
    {"posix_memalign", (void *)hk_posix_memalign},
    {"aligned_alloc", (void *)hk_aligned_alloc},
    {"memalign", (void *)hk_memalign},
    {"valloc", (void *)hk_valloc},
    {"mmap", (void *)hk_mmap},
    {"mmap64", (void *)hk_mmap},
    {"munmap", (void *)hk_munmap},
    {"dlopen", (void *)hk_dlopen},
};

static long patch_loaded(int nonblocking) {
    return mfp_got_patch_all(native_hooks, sizeof native_hooks / sizeof *native_hooks,
                             (const void *)hk_dlopen, nonblocking);
}

/* ---- Python allocator domains -------------------------------------------- */

/* mfp_heap_start's probe: a free or realloc of the block it watches got
 * to the raw domain. */
static void probe_free(void *p) {
    if (p && p == tls.probe_ptr) tls.probe_frees++;
}

/* Our ctx is the wrapped allocator's ctx, so a thread that reads the
 * domain while it is being swapped (the raw domain is used without the
 * GIL) gets a working (ctx, function) pair either way. */
#define PY_HOOKS(D, name)                                                            \
    static void *name##_malloc(void *ctx, size_t n) {                                \
        int b = tls.busy;                                                            \
        tls.busy = 1;                                                                \
        void *p = py_orig[D].malloc(ctx, n);                                         \
        tls.busy = b;                                                                \
        on_alloc(p, n ? n : 1, SRC_PYTHON);                                          \
        return p;                                                                     \
    }                                                                                 \
    static void *name##_calloc(void *ctx, size_t k, size_t n) {                      \
        int b = tls.busy;                                                            \
        tls.busy = 1;                                                                \
        void *p = py_orig[D].calloc(ctx, k, n);                                      \
        tls.busy = b;                                                                \
        on_alloc(p, (k * n) > 0 ? k * n : 1, SRC_PYTHON);                             \
        return p;                                                                     \
    }                                                                                 \
    static void *name##_realloc(void *ctx, void *old, size_t n) {                    \
        if (D == PYMEM_DOMAIN_RAW && tls.probing) probe_free(old);                   \
        on_free(old);                                                                \
        int b = tls.busy;                                                            \
        tls.busy = 1;                                                                \
        void *p = py_orig[D].realloc(ctx, old, n);                                   \
        tls.busy = b;                                                                \
        on_alloc(p, n ? n : 1, SRC_PYTHON);                                          \
        return p;                                                                     \
    }                                                                                 \
    static void name##_free(void *ctx, void *p) {                                    \
        if (D == PYMEM_DOMAIN_RAW && tls.probing) probe_free(p);                     \
        on_free(p); /* nested frees need no guard: p is gone from the table */      \
        py_orig[D].free(ctx, p);                                                     \
    }

PY_HOOKS(PYMEM_DOMAIN_RAW, raw)
PY_HOOKS(PYMEM_DOMAIN_MEM, mem)
PY_HOOKS(PYMEM_DOMAIN_OBJ, obj)

/* The hooks of the mem and obj domains when they are pymalloc (probed by
 * mfp_heap_start). pymalloc serves 1..512 bytes from its pools without
 * calling any other hooked function (its arenas come through arena_alloc,
 * which sets busy) and hands larger requests to the raw domain, whose hook
 * counts them. So malloc and calloc of 1..512 bytes cost a range check and
 * a decrement of the GIL countdown before a tail call to pymalloc; free is
 * pymalloc's own, not hooked: sampled blocks live outside the arenas
 * (gil_malloc), where pymalloc's free and realloc pass them on to the raw
 * domain's hooks. realloc is rarer and cannot be a tail call: a block
 * outside the arenas (sampled, or over 512 bytes) is resized by the raw
 * domain, whose hook would count it a second time, so this hook screens
 * the old block and counts every size itself, with busy set. */
static inline int gil_count(size_t n) {
    int64_t c = atomic_load_explicit(&gil_countdown, memory_order_relaxed) - (int64_t)n;
    atomic_store_explicit(&gil_countdown, c, memory_order_relaxed);
    return c <= 0;
}

/* pymalloc's free lists (mfp_python_pymalloc_take), once found and while
 * the main interpreter is the only one: a block that pymalloc has ready is
 * taken here instead of calling pymalloc for it, so the hook replaces a
 * call rather than adding one (PyMem_SetAllocator's interposition, 0.5 ns
 * a call, was most of the hooks' cost). */
static mfp_python_pool **pools;
/* The runtime's newest interpreter, and the main one while it is alone:
 * then a new interpreter (made after it) is the head instead. Until
 * pools are found the head is a word that is never the main one. */
static void *const no_interpreter = (void *)1;
static void *const *interp_head = &no_interpreter;
static void *interp_main;

/* MFP_HEAP_TAKE=0 leaves every block to pymalloc (for measuring this). */
static int take_off(void) {
    const char *v = getenv("MFP_HEAP_TAKE");
    return v && strcmp(v, "0") == 0;
}

static inline void *take(size_t n) {
    return *interp_head == interp_main ? mfp_python_pymalloc_take(pools, n) : NULL;
}

#define PY_FAST_HOOKS(D, name)                                                       \
    static void *name##_malloc_fast(void *ctx, size_t n) {                           \
        if (n - 1 < SMALL_MAX) {                                                      \
            if (gil_count(n)) return gil_malloc(D, ctx, n);                           \
            void *p = take(n);                                                        \
            if (p) return p;                                                          \
        }                                                                             \
        return py_orig[D].malloc(ctx, n);                                             \
    }                                                                                 \
    static void *name##_calloc_fast(void *ctx, size_t k, size_t size) {              \
        size_t n;                                                                     \
        if (!__builtin_mul_overflow(k, size, &n) && n - 1 < SMALL_MAX) {              \
            if (gil_count(n)) return gil_calloc(D, ctx, k, size, n);                  \
            void *p = take(n);                                                        \
            if (p) return memset(p, 0, n);                                            \
        }                                                                             \
        return py_orig[D].calloc(ctx, k, size);                                       \
    }                                                                                 \
    static void *name##_realloc_fast(void *ctx, void *old, size_t n) {               \
        on_free(old);                                                                \
        int b = tls.busy;                                                            \
        tls.busy = 1;                                                                \
        if (gil_count(n ? n : 1)) return gil_realloc(D, ctx, old, n, b);              \
        void *p = py_orig[D].realloc(ctx, old, n);                                   \
        tls.busy = b;                                                                \
        return p;                                                                     \
    }

PY_FAST_HOOKS(PYMEM_DOMAIN_MEM, mem)
PY_FAST_HOOKS(PYMEM_DOMAIN_OBJ, obj)

/* pymalloc's arenas are mmap'd below the hooks: not an allocation of
 * their own (the objects in them are counted). */
static PyObjectArenaAllocator arena_orig;
static int arena_orig_set;

static void *arena_alloc(void *ctx, size_t n) {
    (void)ctx;
    int b = tls.busy;
    tls.busy = 1;
    void *p = arena_orig.alloc(arena_orig.ctx, n);
    tls.busy = b;
    return p;
}

static void arena_free(void *ctx, void *p, size_t n) {
    (void)ctx;
    int b = tls.busy;
    tls.busy = 1;
    arena_orig.free(arena_orig.ctx, p, n);
    tls.busy = b;
}

/* Whether pymalloc serves domain d: 1 and 512 bytes reach no hook below
 * it, 513 bytes reach the raw domain's, and that block's realloc and free
 * reach the raw domain's too (what the fast hooks' sampled blocks rely
 * on). Otherwise (PYTHONMALLOC=malloc, debug hooks, another tool's
 * wrapper) the careful hooks are used. Runs with the raw domain and the
 * GOT hooked and the GIL held. */
static int domain_is_pymalloc(int d) {
    PyMemAllocatorEx *a = &py_orig[d];
    tls.probing = 1;
    tls.probe_hits = tls.probe_frees = 0;
    int64_t saved = tls.countdown;
    tls.countdown = 1;
    void *p1 = a->malloc(a->ctx, 1), *p2 = a->malloc(a->ctx, SMALL_MAX);
    if (p1) a->free(a->ctx, p1);
    if (p2) a->free(a->ctx, p2);
    int small_hits = tls.probe_hits;
    tls.countdown = 1;
    void *p3 = a->malloc(a->ctx, OUTSIDE_ARENAS), *p4 = NULL;
    int big_hits = tls.probe_hits - small_hits;
    if (p3) {
        tls.probe_ptr = p3;
        p4 = a->realloc(a->ctx, p3, 16);
        tls.probe_ptr = p4 ? p4 : p3;
        a->free(a->ctx, tls.probe_ptr);
    }
    int frees = tls.probe_frees;
    tls.probing = 0;
    tls.probe_ptr = NULL;
    tls.countdown = saved;
    return p1 && p2 && p3 && p4 && small_hits == 0 && big_hits == 1 && frees == 2;
}

static int is_ours(void *f) {
    return f == (void *)raw_malloc || f == (void *)mem_malloc || f == (void *)obj_malloc ||
           f == (void *)mem_malloc_fast || f == (void *)obj_malloc_fast;
}

/* After the GOT is patched and with G.active set: the probe needs both. */
static void py_install(const mfp_python_mem *checked) {
    PyMemAllocatorEx cur;
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &cur);
    /* If our hooks are still installed (someone restored them after we
     * left), the saved originals are still right: never wrap ourselves. */
    if (!py_orig_set || !is_ours((void *)cur.malloc)) {
        for (int d = 0; d < 3; d++) PyMem_GetAllocator((PyMemAllocatorDomain)d, &py_orig[d]);
        py_orig_set = 1;
    }
    PyObjectArenaAllocator arena;
    PyObject_GetArenaAllocator(&arena);
    if (!arena_orig_set || arena.alloc != arena_alloc) {
        arena_orig = arena;
        arena_orig_set = 1;
    }
    PyObjectArenaAllocator ours = {NULL, arena_alloc, arena_free};
    PyObject_SetArenaAllocator(&ours);
    PyMemAllocatorEx raw = {py_orig[0].ctx, raw_malloc, raw_calloc, raw_realloc, raw_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &raw);
    PyMemAllocatorEx a[2] = {
        {py_orig[1].ctx, mem_malloc, mem_calloc, mem_realloc, mem_free},
        {py_orig[2].ctx, obj_malloc, obj_calloc, obj_realloc, obj_free},
    };
    if (domain_is_pymalloc(PYMEM_DOMAIN_MEM)) {
        a[0] = (PyMemAllocatorEx){py_orig[1].ctx, mem_malloc_fast, mem_calloc_fast, mem_realloc_fast,
                                  py_orig[1].free};
        G.fast_domains |= 1;
    }
    if (domain_is_pymalloc(PYMEM_DOMAIN_OBJ)) {
        a[1] = (PyMemAllocatorEx){py_orig[2].ctx, obj_malloc_fast, obj_calloc_fast, obj_realloc_fast,
                                  py_orig[2].free};
        G.fast_domains |= 2;
    }
    /* Found with pymalloc's own functions (the obj domain's, which the mem
     * domain shares), before ours are in place; kept for the process: the
     * array lives as long as the interpreter. */
    void *const *head = mfp_python_interpreters();
    if (G.fast_domains == 3 && !pools && checked && !take_off() && head && *head == (void *)PyInterpreterState_Main() &&
        PyInterpreterState_Next(PyInterpreterState_Head()) == NULL && py_orig[1].malloc == py_orig[2].malloc &&
        (pools = mfp_python_pymalloc_pools(checked, py_orig[2].malloc, py_orig[2].free, py_orig[2].ctx))) {
        interp_main = *head;
        interp_head = head;
    }
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &a[0]);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &a[1]);
}

static void py_remove(void) {
    for (int d = 0; d < 3; d++) {
        PyMemAllocatorEx cur;
        PyMem_GetAllocator((PyMemAllocatorDomain)d, &cur);
        /* Only take ours out: a tool that wrapped us keeps its hooks, and
         * ours then forward to the originals. */
        if (is_ours((void *)cur.malloc)) PyMem_SetAllocator((PyMemAllocatorDomain)d, &py_orig[d]);
    }
    PyObjectArenaAllocator arena;
    PyObject_GetArenaAllocator(&arena);
    if (arena.alloc == arena_alloc) PyObject_SetArenaAllocator(&arena_orig);
}

/* ---- fork ---------------------------------------------------------------- */

static void atfork_prepare(void) {
    mfp_got_atfork_prepare();
    pthread_mutex_lock(&G.lock);
}

static void atfork_parent(void) {
    pthread_mutex_unlock(&G.lock);
    mfp_got_atfork_parent();
}

static void atfork_child(void) {
    pthread_mutex_init(&G.lock, NULL);
    mfp_got_atfork_child();
    atomic_store(&G.active, 0); /* nobody exports here: pass through */
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_register(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }
void mfp_heap_fork_register(void) { pthread_once(&atfork_once, atfork_register); }

/* ---- lifetime (controlling thread, GIL held) ------------------------------ */

static int resolve_real(void) {
    if (real.malloc) return 0;
#define REAL(f) *(void **)&real.f = mfp_got_real(#f)
    REAL(malloc); REAL(calloc); REAL(realloc); REAL(free); REAL(posix_memalign);
    REAL(aligned_alloc); REAL(memalign); REAL(valloc); REAL(mmap); REAL(munmap); REAL(dlopen);
#undef REAL
    if (!real.malloc || !real.calloc || !real.realloc || !real.free || !real.posix_memalign ||
        !real.aligned_alloc || !real.memalign || !real.valloc || !real.mmap || !real.munmap ||
        !real.dlopen) {
        memset(&real, 0, sizeof real);
        return -1;
    }
    return 0;
}

static int map_tables(void) {
    if (G.mapped) return 0;
    for (int i = 0; i < 2; i++) {
        void *k = mmap(NULL, TABLE_CAP * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        void *v = mmap(NULL, TABLE_CAP * sizeof(entry), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (k == MAP_FAILED || v == MAP_FAILED) {
            if (k != MAP_FAILED) munmap(k, TABLE_CAP * sizeof(uintptr_t));
            if (v != MAP_FAILED) munmap(v, TABLE_CAP * sizeof(entry));
            return -1; /* the first pair, if mapped, is kept for next time */
        }
        G.tables[i].keys = k;
        G.tables[i].vals = v;
    }
    G.mapped = 1;
    return 0;
}

static void release_locked_state(void) {
    mfp_python_walker_free(G.walker);
    mfp_python_decoder_free(G.decoder);
    free(G.scratch);
    free(G.ids);
    G.walker = NULL;
    G.decoder = NULL;
    G.scratch = NULL;
    G.ids = NULL;
}

static int make_leaf(int src, const char *name) {
    uint32_t f = intern_func(name, strlen(name), "", 0, 0, MFP_FUNC_NATIVE);
    G.leaf[src] = f == MFP_NONE ? MFP_NONE : mfp_profile_frame(G.store, f, 0);
    return G.leaf[src] == MFP_NONE ? -1 : 0;
}

static int make_elided(void) {
    static const char name[] = "[deep stack: frames elided]"; /* as the sampler's */
    uint32_t f = intern_func(name, sizeof name - 1, "", 0, 0, MFP_FUNC_SYNTHETIC);
    G.elided = f == MFP_NONE ? MFP_NONE : mfp_profile_frame(G.store, f, 0);
    return G.elided == MFP_NONE ? -1 : 0;
}

mfp_heap *mfp_heap_start(uint64_t rate_bytes, const mfp_python_mem *checked, char *err, size_t errlen) {
    char why[200];
    if (!mfp_python_layout_known()) {
        const char *v = Py_GetVersion();
        snprintf(err, errlen, "the memory profiler does not know Python %.*s", (int)strcspn(v, " "), v);
        return NULL;
    }
    if (mfp_python_check_layout(why, sizeof why) != 0) {
        snprintf(err, errlen, "the memory profiler cannot read stacks here: %s", why);
        return NULL;
    }
    if (rate_bytes < 1 || rate_bytes > ((uint64_t)1 << 40)) {
        snprintf(err, errlen, "memory sampling rate must be 1 byte .. 1 TiB");
        return NULL;
    }
    if (current && current->running && G.pid != getpid()) {
        /* A forked child starting its own profile: the parent's tracker
         * was copied here but nothing records into it (atfork_child), so
         * retire it and drop its copied bookkeeping. The hooks stay in
         * place and are reused. */
        current->running = 0;
        current->forked = 1;
        current = NULL;
        pthread_mutex_lock(&G.lock);
        mfp_profile_free(G.store);
        free(G.stats);
        free(G.events);
        G.store = NULL;
        G.stats = NULL;
        G.events = NULL;
        G.nstats = G.nevents = G.cap_events = 0;
        release_locked_state();
        if (G.statm_fd >= 0) close(G.statm_fd);
        G.statm_fd = -1;
        pthread_mutex_unlock(&G.lock);
    }
    if (atomic_load(&G.active) || (current && current->running)) {
        snprintf(err, errlen, "another memory profile is running in this process");
        return NULL;
    }
    if (resolve_real() != 0) {
        snprintf(err, errlen, "cannot find the C library's allocator functions");
        return NULL;
    }
    if (map_tables() != 0) {
        snprintf(err, errlen, "out of memory mapping the live-allocation table");
        return NULL;
    }
    mfp_heap *h = calloc(1, sizeof *h);
    if (!h) goto oom;
    h->rate = rate_bytes;
    pthread_mutex_lock(&G.lock);
    G.store = mfp_profile_new(1);
    G.walker = mfp_python_walker_new(&mfp_python_direct);
    G.decoder = G.store ? mfp_python_decoder_new(G.store, &mfp_python_direct, MAX_DEPTH, FRAME_CACHE_BITS) : NULL;
    G.scratch = malloc(MAX_DEPTH * sizeof *G.scratch);
    G.ids = malloc((MAX_DEPTH + 1) * sizeof *G.ids); /* + the elided marker */
    int ok = G.store && G.walker && G.decoder && G.scratch && G.ids && make_leaf(SRC_NATIVE, "[native malloc]") == 0 &&
             make_leaf(SRC_MMAP, "[native mmap]") == 0 && make_elided() == 0;
    if (!ok) {
        mfp_profile_free(G.store);
        G.store = NULL;
        release_locked_state();
        pthread_mutex_unlock(&G.lock);
        free(h);
        goto oom;
    }
    table_clear(&G.tables[0]);
    table_clear(&G.tables[1]);
    filter_clear();
    atomic_store(&G.table, &G.tables[0]);
    atomic_store(&G.live_entries, 0);
    G.stats = NULL;
    G.nstats = 0;
    G.events = NULL;
    G.nevents = G.cap_events = 0;
    G.min_life_ns = G.events_dropped = 0;
    G.rate = (double)rate_bytes;
    G.live = G.peak = G.alloc_total = G.samples = G.dropped = 0;
    G.peak_gen = 1;
    G.rss_at_peak = G.rss_checked_peak = 0;
    G.pid = getpid();
    G.statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    G.fast_domains = 0;
    gil_rng = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ 0xD1B54A32D192ED03ull;
    atomic_store_explicit(&gil_countdown, draw_interval(&gil_rng), memory_order_relaxed);
    atomic_fetch_add(&G.gen, 1);
    atomic_store(&G.active, 1);
    pthread_mutex_unlock(&G.lock);
    mfp_heap_fork_register();
    h->patched = patch_loaded(0);
    py_install(checked);
    mfp_got_patched_slots(&h->patched_objects);
    h->running = 1;
    current = h;
    return h;
oom:
    snprintf(err, errlen, "out of memory starting the memory profiler");
    return NULL;
}

void mfp_heap_stop(mfp_heap *h) {
    if (!h || !h->running) return;
    h->running = 0;
    h->forked = getpid() != G.pid;
    h->patched = (long)mfp_got_patched_slots(&h->patched_objects);
    mfp_got_unpatch_all();
    py_remove();
    pthread_mutex_lock(&G.lock);
    atomic_store(&G.active, 0);
    h->store = G.store;
    h->stats = G.stats;
    h->nstats = G.nstats;
    h->peak = G.peak;
    h->peak_gen = G.peak_gen;
    h->alloc_total = G.alloc_total;
    h->samples = G.samples;
    h->dropped = G.dropped;
    h->live_at_stop = G.live;
    h->live_samples = atomic_load(&G.table)->live;
    h->rss_at_peak = G.rss_at_peak;
    h->fast_domains = G.fast_domains;
    h->take = pools != NULL;
    h->events = G.events;
    h->nevents = G.nevents;
    h->min_life_ns = G.min_life_ns;
    h->events_dropped = G.events_dropped;
    G.store = NULL;
    G.stats = NULL;
    G.events = NULL;
    G.nstats = G.nevents = G.cap_events = 0;
    release_locked_state();
    table_clear(&G.tables[0]);
    table_clear(&G.tables[1]);
    filter_clear(); /* a hook still called (a wrapper kept it) screens nothing */
    atomic_store(&G.live_entries, 0);
    if (G.statm_fd >= 0) close(G.statm_fd);
    G.statm_fd = -1;
    pthread_mutex_unlock(&G.lock);
    /* One rule for the whole record: events made after the last compaction
     * that lived less than its threshold go too. */
    size_t j = 0;
    for (size_t i = 0; i < h->nevents; i++) {
        const hevent *e = &h->events[i];
        if (!e->t_free || e->t_free - e->t_alloc >= h->min_life_ns) h->events[j++] = *e;
    }
    h->nevents = j;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) h->rss_peak = (uint64_t)ru.ru_maxrss * 1024u;
    if (current == h) current = NULL;
}

void mfp_heap_free(mfp_heap *h) {
    if (!h) return;
    mfp_heap_stop(h);
    mfp_profile_free(h->store);
    free(h->stats);
    free(h->events);
    free(h);
}

/* ---- results ------------------------------------------------------------- */

/* What export reads: the frozen results after stop, or G under its lock. */
typedef struct {
    const mfp_profile *store;
    const stack_stat *stats;
    size_t nstats;
    uint32_t peak_gen;
    const hevent *events;
    size_t nevents;
    uint64_t min_life_ns;
} view;

static uint64_t live_at_peak(const view *v, const stack_stat *s) {
    return s->saved_gen == v->peak_gen ? s->saved : s->live;
}

typedef struct {
    const mfp_profile *src;
    mfp_profile *dst;
    uint32_t *stack_map, *frame_map;
    size_t nframes;
} importer;

static uint32_t import_frame(importer *im, uint32_t frame) {
    if (frame >= im->nframes) return MFP_NONE;
    if (im->frame_map[frame] != MFP_NONE) return im->frame_map[frame];
    size_t n;
    const mfp_frame *fr = mfp_profile_frames(im->src, &n);
    const mfp_func *fn = mfp_profile_funcs(im->src, &n);
    const mfp_func *f = &fn[fr[frame].func];
    size_t nl, fl;
    const char *name = mfp_profile_string_at(im->src, f->name, &nl);
    const char *file = mfp_profile_string_at(im->src, f->file, &fl);
    uint32_t sn = mfp_profile_string(im->dst, name, nl), sf = mfp_profile_string(im->dst, file, fl);
    if (sn == MFP_NONE || sf == MFP_NONE) return MFP_NONE;
    uint32_t func = mfp_profile_func(im->dst, sn, sf, f->line, f->kind);
    uint32_t out = func == MFP_NONE ? MFP_NONE : mfp_profile_frame(im->dst, func, fr[frame].line);
    im->frame_map[frame] = out;
    return out;
}

/* The destination node of source stack s; parents first, iteratively. */
static uint32_t import_stack(importer *im, uint32_t s) {
    size_t n;
    const mfp_stack_node *st = mfp_profile_stacks(im->src, &n);
    if (im->stack_map[s] != MFP_NONE) return im->stack_map[s];
    uint32_t path[MAX_DEPTH + 4];
    int depth = 0;
    uint32_t cur = s;
    while (cur != MFP_NONE && im->stack_map[cur] == MFP_NONE && depth < MAX_DEPTH + 4) {
        path[depth++] = cur;
        cur = st[cur].parent;
    }
    uint32_t node = cur == MFP_NONE ? MFP_NONE : im->stack_map[cur];
    for (int i = depth - 1; i >= 0; i--) {
        uint32_t fr = import_frame(im, st[path[i]].frame);
        if (fr == MFP_NONE) return MFP_NONE;
        node = mfp_profile_stack(im->dst, node, fr);
        if (node == MFP_NONE) return MFP_NONE;
        im->stack_map[path[i]] = node;
    }
    return node;
}

static uint64_t since(uint64_t t, uint64_t t0) { return t > t0 ? t - t0 : 0; }

static int export_view(const view *v, mfp_profile *p, uint64_t t0_ns) {
    if (!v->store) return 0;
    size_t nstacks, nframes;
    mfp_profile_stacks(v->store, &nstacks);
    mfp_profile_frames(v->store, &nframes);
    importer im = {v->store, p, malloc((nstacks + 1) * sizeof(uint32_t)),
                   malloc((nframes + 1) * sizeof(uint32_t)), nframes};
    int rc = 0;
    if (!im.stack_map || !im.frame_map) {
        rc = -1;
        goto done;
    }
    memset(im.stack_map, 0xFF, (nstacks + 1) * sizeof(uint32_t));
    memset(im.frame_map, 0xFF, (nframes + 1) * sizeof(uint32_t));
    for (size_t s = 0; s < nstacks && s < v->nstats; s++) {
        const stack_stat *st = &v->stats[s];
        uint64_t live = live_at_peak(v, st);
        uint64_t count = (uint64_t)(st->count + 0.5);
        if (!live && !st->alloc) continue;
        uint32_t node = import_stack(&im, (uint32_t)s);
        if (node == MFP_NONE || mfp_profile_memory(p, node, live, st->alloc, count) != 0) rc = -1;
        /* Allocated while profiling and live at its end (or now). */
        if (node != MFP_NONE && st->live && mfp_profile_leak(p, node, st->live) != 0) rc = -1;
    }
    for (size_t i = 0; i < v->nevents; i++) {
        const hevent *e = &v->events[i];
        if (e->t_free && e->t_free - e->t_alloc < v->min_life_ns) continue; /* as at stop */
        uint32_t node = e->stack < nstacks ? import_stack(&im, e->stack) : MFP_NONE;
        if (node == MFP_NONE ||
            mfp_profile_heap_event(p, node, e->weight, since(e->t_alloc, t0_ns),
                                   e->t_free ? since(e->t_free, t0_ns) : MFP_STILL_LIVE) != 0)
            rc = -1;
    }
done:
    free(im.stack_map);
    free(im.frame_map);
    return rc;
}

int mfp_heap_export(const mfp_heap *h, mfp_profile *p, uint64_t t0_ns) {
    if (!h || h->running) return -1;
    view v = {h->store, h->stats, h->nstats, h->peak_gen, h->events, h->nevents, h->min_life_ns};
    return export_view(&v, p, t0_ns);
}

void mfp_heap_ignore_this_thread(void) { tls.busy = 1; }

/* Under the lock the hooks' slow path takes, with this thread marked busy
 * so nothing it does is sampled. The heap's result fields of h are
 * filled in from G, as stop would, for mfp_heap_info_json. */
int mfp_heap_snapshot(mfp_heap *h, mfp_profile *p, uint64_t t0_ns) {
    if (!h || !h->running) return -1;
    int busy = tls.busy;
    tls.busy = 1;
    pthread_mutex_lock(&G.lock);
    int rc = -1;
    if (atomic_load(&G.active) && G.store && getpid() == G.pid) {
        view v = {G.store, G.stats, G.nstats, G.peak_gen, G.events, G.nevents, G.min_life_ns};
        rc = export_view(&v, p, t0_ns);
        h->peak = G.peak;
        h->alloc_total = G.alloc_total;
        h->samples = G.samples;
        h->dropped = G.dropped;
        h->live_at_stop = G.live;
        h->live_samples = atomic_load(&G.table)->live;
        h->rss_at_peak = G.rss_at_peak;
        h->fast_domains = G.fast_domains;
        h->take = pools != NULL;
        h->nevents = G.nevents;
        h->min_life_ns = G.min_life_ns;
        h->events_dropped = G.events_dropped;
    }
    pthread_mutex_unlock(&G.lock);
    tls.busy = busy;
    struct rusage ru;
    if (rc == 0 && getrusage(RUSAGE_SELF, &ru) == 0) h->rss_peak = (uint64_t)ru.ru_maxrss * 1024u;
    return rc;
}

size_t mfp_heap_info_json(const mfp_heap *h, char *buf, size_t cap) {
    char notes[512] = "";
    if (h->dropped)
        snprintf(notes, sizeof notes,
                 "\"memory: %llu sampled allocations not recorded (table full or out of memory)\"",
                 (unsigned long long)h->dropped);
    if (h->forked)
        snprintf(notes + strlen(notes), sizeof notes - strlen(notes),
                 "%s\"memory: stopped in a forked child; only the parent is profiled\"",
                 notes[0] ? "," : "");
    if (h->min_life_ns || h->events_dropped)
        snprintf(notes + strlen(notes), sizeof notes - strlen(notes),
                 "%s\"memory over time: allocations freed within %.0f ms of being made are left "
                 "out (the time record keeps %zu)\"",
                 notes[0] ? "," : "", (double)h->min_life_ns / 1e6, h->nevents);
    int n = snprintf(buf, cap,
                     "{\"rate_bytes\":%llu,\"peak_bytes\":%llu,\"rss_at_peak_bytes\":%llu,"
                     "\"rss_peak_bytes\":%llu,\"allocated_bytes\":%llu,\"samples\":%llu,"
                     "\"live_samples_at_stop\":%zu,\"live_bytes_at_stop\":%llu,\"dropped\":%llu,"
                     "\"patched_slots\":%ld,\"patched_objects\":%zu,\"fast_hooks\":%s,\"pymalloc_take\":%s,"
                     "\"events\":%zu,\"events_min_life_us\":%llu,\"events_dropped\":%llu,"
                     "\"notes\":[%s]}",
                     (unsigned long long)h->rate, (unsigned long long)h->peak,
                     (unsigned long long)h->rss_at_peak, (unsigned long long)h->rss_peak,
                     (unsigned long long)h->alloc_total, (unsigned long long)h->samples,
                     h->live_samples, (unsigned long long)h->live_at_stop,
                     (unsigned long long)h->dropped, h->patched, h->patched_objects,
                     h->fast_domains == 3 ? "true" : "false", h->take ? "true" : "false", h->nevents,
                     (unsigned long long)(h->min_life_ns / 1000),
                     (unsigned long long)h->events_dropped, notes);
    return n < 0 ? 0 : (size_t)n;
}
