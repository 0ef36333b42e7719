/* sampler.c — see sampler.h.
 *
 * Why it is built this way. Every read of interpreter memory is a syscall
 * (memread.h) costing microseconds, so a pass is organised to make few:
 *  - one vectored copy of the list head and of at most BATCH_THREADS
 *    thread states (all of them when there are no more), checked against
 *    the roster of the last pass (roster_check);
 *  - at most about CLOCK_BUDGET per-thread CPU clock reads (each a syscall);
 *  - per thread whose CPU clock moved, a walk of its frames and a decode
 *    of its code objects by native/python/ (its thread state copied afresh
 *    in one syscall with its newest data-stack chunk and whatever its last
 *    walk read elsewhere, bulk copies of older chunks; one vectored copy of
 *    the code headers of the frames that changed since its last stack
 *    (build_stack), names and line tables only for a new (code,
 *    instruction) pair);
 *  - a thread that did not run keeps its last stack without any read;
 *  - the GIL's holder in place (gil.c), a futex wait between passes.
 * One busy thread: 6 syscalls a pass (13 before, bench/RESULTS.md "A
 * pass's system calls").
 * So a pass over thousands of waiting threads costs a sample each and a
 * bounded number of syscalls (bench/bench_threads.py).
 * Everything read is validated and a failure drops the sample, never the
 * process.
 * A fork never lands inside a pass (pass_lock, taken by a pthread_atfork
 * handler): the thread may run through a fork (children.py), and what it
 * may hold mid-pass (the allocator's locks: ASan's are not fork-safe) must
 * not be left taken in the child.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sampler.h"

#include <Python.h>

#include "../python/python.h"
#include "memread.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The profiler's own Python threads (the live card's, the children's
 * flusher): a few slots, the oldest replaced when full. */
#define IGNORED_MAX 4
static _Atomic uint64_t ignored_tids[IGNORED_MAX];
static atomic_uint ignored_next;

void mfp_sampler_ignore_thread(uint64_t tid) {
    atomic_store(&ignored_tids[atomic_fetch_add(&ignored_next, 1) % IGNORED_MAX], tid);
}

static int ignored(uint64_t tid) {
    for (int i = 0; i < IGNORED_MAX; i++)
        if (atomic_load_explicit(&ignored_tids[i], memory_order_relaxed) == tid) return 1;
    return 0;
}

const char *const mfp_drop_reason_names[MFP_DROP_REASONS] = {
    "read_fault", "invalid", "too_deep", "no_memory"};

/* The drop reasons of a stack read are native/python/'s errors. */
_Static_assert(MFP_DROP_READ_FAULT == (int)MFP_PYTHON_READ_FAULT && MFP_DROP_INVALID == (int)MFP_PYTHON_INVALID &&
                   MFP_DROP_TOO_DEEP == (int)MFP_PYTHON_TOO_DEEP &&
                   MFP_DROP_NO_MEMORY == (int)MFP_PYTHON_NO_MEMORY,
               "drop reasons follow mfp_python_error");

#define MAX_THREADS 65536 /* threads remembered (thread_for) */
#define FIRST_THREADS 256   /* room for threads at start, doubled as needed */
#define BATCH_THREADS 256   /* thread states copied in one syscall per pass */
#define CLOCK_BUDGET 256    /* thread CPU clocks read per pass (sample_all_direct) */
#define FRAME_CACHE_BITS 16
#define MOMENT_NS 200000 /* a stack read longer than this was interrupted */
#define WAKE_CHECKS 4    /* threads a pass holds back for settle_waiting, at most */
#define STACK_MEMORIES 16 /* threads whose last stack is remembered (build_stack) */

/* Reads for native/python/: checked copies. */
static const mfp_python_mem checked_mem = {mfp_mem_read, mfp_mem_readv, 0};

/* A deep stack of one thread as last built, root first: the frames and the
 * stack node of each prefix. */
typedef struct {
    uint64_t tid; /* 0: empty */
    int depth, cap;
    mfp_python_frame *raw;
    uint32_t *node;
} stack_memory;

typedef struct {
    uint64_t tid;
    uint64_t cpu_ns;     /* its CPU clock at its last sample */
    const void *tstate;  /* its thread state at its last sample */
    uint32_t index;      /* thread index in the profile */
    uint32_t last_node;  /* its stack at its last sample */
    int64_t cpu_debt;    /* CPU time used but not yet reported (see add_sample) */
    int hot;             /* its CPU clock moved at its last sample, or it is new */
    uint64_t clock_at;   /* when cpu_ns was read (0: not yet) */
    int busy_run;        /* samples in a row it ran most of the time before, in one place,
                            without the GIL (sample_thread) */
} thread_entry;

struct mfp_sampler {
    mfp_profile *profile;
    PyInterpreterState *interp;
    const void *threads_head; /* where interp keeps its thread list */
    const void *gil;          /* where interp's GIL keeps its holder; NULL unknown */
    const void *pass_holder;  /* the GIL's holder when this pass began */
    uint64_t rng;             /* state of next_gap's generator, never 0 */
    uint64_t interval_ns, t0_ns, last_ns;
    uint64_t avg_gap_ns; /* moving average of the time between passes */
    uint64_t gap_ns;     /* time since the previous pass, uncapped */
    int late;            /* this pass began more than a moment after it was due */
    int cpus;            /* online CPUs */
    int loadavg_fd;      /* /proc/loadavg kept open (machine_runnable); -1: none */
    /* This pass: threads found not run since their last sample while the
     * GIL was free, their samples held back until the pass knows how many
     * of ours it saw running (settle_waiting); and that count. */
    struct {
        uint64_t tid, cpu;
        const void *tstate;
        uint32_t node;
    } waiting[WAKE_CHECKS];
    int nwaiting, seen_running;
    mfp_new_thread_hook on_new_thread;
    int gil_mode;
    char mode[320]; /* how this sampler reads stacks, for the card */
    pid_t pid;
    pthread_t thread;
    int running;
    atomic_int stop; /* also the futex the thread sleeps on (sleep_until) */
    /* Held by a pass while it writes the store and the stats, and by
     * mfp_sampler_snapshot: never held while waiting for the GIL. */
    pthread_mutex_t store_lock;

    thread_entry *threads;
    size_t nthreads, threads_cap;
    uint32_t *thread_table;
    unsigned table_bits; /* the table has 2^table_bits slots, twice threads_cap */

    /* Readers and scratch space reused by every pass (sampler thread only). */
    mfp_python_walker *walker;
    mfp_python_decoder *decoder;
    mfp_python_frame *frames;
    struct iovec *local_iov, *remote_iov;
    uint32_t *frame_ids;
    uint32_t elided_frame; /* the marker between the halves of a deep stack */
    stack_memory memories[STACK_MEMORIES];
    unsigned next_memory;

    /* The interpreter's threads as last seen (roster_check) and room for
     * copies of BATCH_THREADS thread states. */
    const void **roster, **walk; /* walk: the next roster, while it is read */
    mfp_python_thread *roster_ts, *walk_ts;
    size_t nroster, roster_cap, walk_cap;
    int roster_ok;
    size_t window;             /* where the next check of links starts */
    size_t new_from;           /* the first entry new this pass (SIZE_MAX: none) */
    size_t clock_window;       /* where this pass's window of clock reads starts */
    size_t tstate_size;
    char *ts_copies;

    mfp_sampler_stats stats;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of one thread of this process, from its kernel tid: the
 * per-thread CPU clock id encodes the tid (Linux ABI). 0 when it died. */
static uint64_t thread_cpu_ns(uint64_t tid) {
    clockid_t cid = (clockid_t)((~(unsigned)tid << 3) | 6u);
    struct timespec ts;
    if (clock_gettime(cid, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether thread tid of this process is runnable (state R in /proc: on
 * a core or queued for one); 0 when that cannot be read. */
static int thread_runnable(uint64_t tid) {
    char path[48], buf[128];
    snprintf(path, sizeof path, "/proc/self/task/%llu/stat", (unsigned long long)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the name in parentheses may hold anything */
    return p && p[1] == ' ' && p[2] == 'R';
}

/* Tasks runnable on the whole machine now, this sampler among them (the
 * fourth field of /proc/loadavg, "running/total", read anew at offset 0);
 * -1 when unreadable. */
static int machine_runnable(int fd) {
    char buf[128];
    ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *p = buf;
    for (int i = 0; i < 3 && p; i++)
        if ((p = strchr(p, ' '))) p++;
    return p ? atoi(p) : -1;
}

/* ---- threads ----------------------------------------------------------- */

/* Threads by OS tid: an open-addressing table of indices into s->threads
 * (0 = empty, else index + 1), twice as many slots as entries so probes
 * stay short, so a pass costs O(threads) however many threads came and
 * went. Both grow with the threads seen, up to MAX_THREADS entries; then
 * every entry is forgotten (most are of dead threads) and the live ones
 * come back as they are sampled. */
static size_t tid_slot(uint64_t tid, unsigned bits) {
    return (size_t)((tid * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static thread_entry *thread_find(mfp_sampler *s, uint64_t tid) {
    const size_t mask = ((size_t)1 << s->table_bits) - 1;
    for (size_t i = tid_slot(tid, s->table_bits);; i = (i + 1) & mask) {
        uint32_t k = s->thread_table[i];
        if (!k) return NULL;
        if (s->threads[k - 1].tid == tid) return &s->threads[k - 1];
    }
}

static void table_insert(mfp_sampler *s, size_t index) {
    const size_t mask = ((size_t)1 << s->table_bits) - 1;
    size_t i = tid_slot(s->threads[index].tid, s->table_bits);
    while (s->thread_table[i]) i = (i + 1) & mask;
    s->thread_table[i] = (uint32_t)index + 1;
}

/* Room for twice the entries (0), or -1 with the old table kept. */
static int threads_grow(mfp_sampler *s) {
    size_t cap = s->threads_cap * 2;
    thread_entry *t = realloc(s->threads, cap * sizeof *t);
    if (!t) return -1;
    s->threads = t;
    uint32_t *table = calloc((size_t)2 << s->table_bits, sizeof *table);
    if (!table) return -1;
    free(s->thread_table);
    s->thread_table = table;
    s->threads_cap = cap;
    s->table_bits++;
    for (size_t i = 0; i < s->nthreads; i++) table_insert(s, i);
    return 0;
}

static thread_entry *thread_for(mfp_sampler *s, uint64_t tid) {
    thread_entry *t = thread_find(s, tid);
    if (t) return t;
    if (s->nthreads == s->threads_cap && (s->threads_cap == MAX_THREADS || threads_grow(s) != 0)) {
        s->nthreads = 0; /* forget old, mostly dead ones */
        memset(s->thread_table, 0, sizeof(uint32_t) << s->table_bits);
    }
    uint32_t idx = mfp_profile_thread(s->profile, tid, 0, 0);
    if (idx == MFP_NONE) return NULL;
    t = &s->threads[s->nthreads];
    *t = (thread_entry){tid, UINT64_MAX, NULL, idx, MFP_NONE, 0, 1, 0, 0};
    table_insert(s, s->nthreads++);
    if (s->on_new_thread) s->on_new_thread();
    return t;
}

/* The stack node of s->frame_ids[0..depth) (leaf first); MFP_NONE when the
 * store is full. */
static uint32_t stack_node(mfp_sampler *s, int depth) {
    uint32_t node = MFP_NONE;
    for (int i = depth - 1; i >= 0; i--) {
        node = mfp_profile_stack(s->profile, node, s->frame_ids[i]);
        if (node == MFP_NONE) break;
    }
    return node;
}

/* What the sampler saw of a thread while it read its stack (add_sample). */
enum {
    SEEN_UNKNOWN = -1, /* the GIL-taking reader: its own hold of the GIL is what
                          keeps the others waiting, so it cannot tell */
    SEEN_IDLE = 0,     /* it did not run since its last sample, or it was found
                          waiting: without the GIL and its CPU clock still */
    SEEN_RUNNING = 1,  /* it held the GIL, or its CPU clock moved while we read */
};

/* One sample of thread tid at stack node, standing for dt ns; te is its
 * entry when the caller already found it (else NULL); seen: SEEN_*.
 *
 * "On CPU" is yes or no per sample, but a thread may have run for part of
 * the time a sample stands for (a busy machine, short waits). So the CPU
 * time a thread used accumulates as a debt, and a sample is marked on CPU
 * while the debt is at least half its weight, which pays it off (error
 * diffusion): per thread, the on-CPU samples' weights add up to the CPU
 * time used, within a sample, and a thread that got 60 % of a core shows
 * 60 % on CPU. (Half a weight, not any debt: a sample after the sampler
 * was held up stands for tens of ms; paying one such with a few ms of debt
 * gave its stack all of that weight — 12 % of a run's on-CPU time on the
 * `while` line of 8 compute+sleep threads on a saturated machine. Where
 * few samples may pay the debt grows, and then each one pays.)
 *
 * Which samples pay matters as much as how many. The CPU used since the
 * last sample was spent before this one, perhaps elsewhere: a thread that
 * computed, then went to sleep, shows the sleep now; on a busy machine it
 * may even be runnable again, still in the sleep, waiting for a core. So
 * only a sample of a thread seen running pays, and the debt of one seen
 * waiting waits for the next one seen running. A thread running Python
 * code holds the GIL, also when a busy machine (or this sampler) has just
 * taken its core; one in C code that released the GIL (numpy) is seen
 * running when its CPU clock moves while we read its stack. Per function,
 * the on-CPU weights are then the time the thread was found running there,
 * scaled to the CPU it used. */
static void add_sample(mfp_sampler *s, thread_entry *te, uint64_t tid, const void *tstate,
                       uint32_t node, uint64_t cpu, int seen, uint64_t t, uint64_t dt) {
    if (node == MFP_NONE)
        te = NULL;
    else if (!te) /* the caller had not seen this thread yet */
        te = thread_for(s, tid);
    if (!te) {
        s->stats.dropped[MFP_DROP_NO_MEMORY]++;
        return;
    }
    uint64_t used = te->cpu_ns == UINT64_MAX || cpu < te->cpu_ns ? cpu : cpu - te->cpu_ns;
    if (te->cpu_ns == cpu && te->tstate == tstate) dt = s->gap_ns; /* did not run: all of it */
    te->hot = te->cpu_ns != cpu;
    te->cpu_ns = cpu;
    te->tstate = tstate;
    te->last_node = node;
    te->cpu_debt += (int64_t)(used < dt ? used : dt);
    uint32_t flags = 0;
    if (seen != SEEN_IDLE && 2 * te->cpu_debt >= (int64_t)dt) {
        flags = MFP_SAMPLE_ON_CPU;
        te->cpu_debt -= (int64_t)dt;
    }
    if (mfp_profile_sample(s->profile, t, node, te->index, dt, flags) != 0)
        s->stats.dropped[MFP_DROP_NO_MEMORY]++;
    else
        s->stats.samples++;
}

/* A stack of more than MFP_SAMPLER_MAX_DEPTH frames keeps its leaf-most
 * and root-most halves (frame_ids[0..depth), as native/python/ leaves
 * them): put the marker frame between the two. Returns the new depth. */
static int mark_elided(mfp_sampler *s, int depth) {
    int lo = depth / 2;
    memmove(s->frame_ids + lo + 1, s->frame_ids + lo, (size_t)(depth - lo) * sizeof *s->frame_ids);
    s->frame_ids[lo] = s->elided_frame;
    s->stats.elided++;
    return depth + 1;
}

/* ---- the GIL-free reader (native/python/ knows the structures) -------- */

/* Room for depth frames in m: 0, or -1 (m is then forgotten). */
static int memory_reserve(stack_memory *m, int depth) {
    if (depth <= m->cap) return 0;
    int cap = m->cap ? m->cap : 64;
    while (cap < depth) cap *= 2;
    mfp_python_frame *raw = realloc(m->raw, (size_t)cap * sizeof *raw);
    if (raw) m->raw = raw;
    uint32_t *node = raw ? realloc(m->node, (size_t)cap * sizeof *node) : NULL;
    if (node) m->node = node;
    if (!node) {
        m->tid = 0;
        return -1;
    }
    m->cap = cap;
    return 0;
}

/* The stack node of s->frames[0..depth) (leaf first, just walked). A stack
 * mostly repeats the thread's last one from the root up (callers wait at
 * the same call sites in the same frames): that part's nodes are taken from
 * its memory and only the frames above it are decoded and added. So a pass
 * copies the code headers of the changed frames only (one page each to the
 * kernel: 30 of them cost ~20 us a pass here), and a 10,000-frame stack
 * costs its copy, not 10,000 lookups. A remembered frame is the same frame
 * when its address, code object and instruction are: it is still on the
 * stack, so its code object is alive. MFP_NONE with *reason on failure. */
static uint32_t build_stack(mfp_sampler *s, uint64_t tid, int depth, int *reason) {
    stack_memory *m = NULL;
    for (int i = 0; i < STACK_MEMORIES && !m; i++)
        if (s->memories[i].tid == tid) m = &s->memories[i];
    if (!m) {
        m = &s->memories[s->next_memory++ % STACK_MEMORIES];
        m->tid = 0;
    }
    if (memory_reserve(m, depth) != 0) m = NULL;
    int same = 0;
    if (m && m->tid == tid) {
        int lim = depth < m->depth ? depth : m->depth;
        while (same < lim) {
            const mfp_python_frame *f = &s->frames[depth - 1 - same], *r = &m->raw[same];
            if (f->frame != r->frame || f->code != r->code || f->lasti != r->lasti) break;
            same++;
        }
    }
    int fresh = depth - same;
    if (fresh && mfp_python_decode(s->decoder, s->frames, fresh, s->frame_ids, reason) != 0) {
        if (m) m->tid = 0;
        return MFP_NONE;
    }
    uint32_t node = same ? m->node[same - 1] : MFP_NONE;
    for (int i = fresh - 1; i >= 0; i--) {
        node = mfp_profile_stack(s->profile, node, s->frame_ids[i]);
        if (node == MFP_NONE) {
            *reason = MFP_DROP_NO_MEMORY;
            if (m) m->tid = 0;
            return MFP_NONE;
        }
        if (m) {
            m->raw[depth - 1 - i] = s->frames[i];
            m->node[depth - 1 - i] = node;
        }
    }
    if (m) {
        m->tid = tid;
        m->depth = depth;
    }
    return node;
}

/* Whether a thread state that said tid was and now says now is still the
 * same thread: a thread's state is made before the thread runs, and says
 * its tid only once the thread does (0 until then). */
static int same_thread(uint64_t was, uint64_t now) { return was == now || was == 0; }

/* Threads found not run since their last sample (sample_thread holds
 * back a few a pass, in a pass that began on time with the GIL free): one
 * that is runnable now (made so, not yet on a core) was woken this moment
 * and is about to run where it is, if the machine has a CPU for every
 * runnable task: so it is counted running.
 *
 * A sleeper's wake-up (the system call's return, re-taking the GIL) is
 * most of its sleep's CPU: 20 of 24 us a 10 ms sleep on 3.14 here, 3-5 %
 * of a loop computing 0.5 ms between such sleeps. Passes that met it
 * found the thread not yet run (all of those within 30 us of the sleep's
 * return: woken with the sampler, its core not yet running it), so that
 * CPU ran between passes and was charged to the next sample seen running,
 * the compute that follows: 1.8-2.6 points too much there. Counting such
 * a thread running where it is took it back (0.0 points, 3.11 and 3.14).
 * On a full machine, or with the GIL held, a runnable thread may wait long
 * before it runs, and counting it gave its sleep line a third of its CPU:
 * so only when neither. The machine's count (one read) only when a pass
 * has such threads, and a thread's state (three syscalls) only while the
 * count leaves runnable tasks unexplained by us and ours seen running. */
static void settle_waiting(mfp_sampler *s, uint64_t t, uint64_t dt) {
    int others = 0; /* runnable tasks but this sampler and our threads seen running */
    if (s->nwaiting) {
        int r = machine_runnable(s->loadavg_fd);
        if (r > 0 && r <= s->cpus) others = r - 1 - s->seen_running;
    }
    for (int i = 0; i < s->nwaiting; i++) {
        int woken = others > 0 && thread_runnable(s->waiting[i].tid);
        others -= woken;
        add_sample(s, NULL, s->waiting[i].tid, s->waiting[i].tstate, s->waiting[i].node, s->waiting[i].cpu,
                   woken ? SEEN_RUNNING : SEEN_IDLE, t, dt);
    }
    s->nwaiting = s->seen_running = 0;
}

/* Sample the thread whose state at addr said ts, in a copy made this pass
 * or an earlier one (its tid and state address still hold; the walk reads
 * the state anew with its frames if it ran). */
static void sample_thread(mfp_sampler *s, const void *addr, const mfp_python_thread *ts, uint64_t t,
                          uint64_t dt) {
    if (ts->tid == 0 || ignored(ts->tid)) return; /* 0: not running yet */
    /* A thread that has not run since its last sample (waiting for the GIL,
     * a lock, I/O) cannot have changed its stack: reuse it, skipping every
     * read but the thread state's. The GIL's holder is walked all the same
     * (one walk a pass): holding it, it is the thread most likely running. */
    uint64_t cpu = thread_cpu_ns(ts->tid), cpu_at = now_ns();
    thread_entry *te = thread_find(s, ts->tid);
    if (te && te->last_node != MFP_NONE && te->tstate == addr && te->cpu_ns == cpu &&
        s->pass_holder != addr) {
        te->clock_at = cpu_at;
        te->busy_run = 0;
        if (!s->late && !s->pass_holder && s->nwaiting < WAKE_CHECKS) { /* settle_waiting */
            s->waiting[s->nwaiting].tid = ts->tid;
            s->waiting[s->nwaiting].cpu = cpu;
            s->waiting[s->nwaiting].tstate = addr;
            s->waiting[s->nwaiting++].node = te->last_node;
        } else {
            add_sample(s, te, ts->tid, addr, te->last_node, cpu, SEEN_IDLE, t, dt);
        }
        return;
    }
    /* Whether the stack read next is the one running (add_sample). */
    uint64_t read_from = now_ns();
    const void *holder = s->gil ? mfp_python_gil_holder(s->gil, &checked_mem) : NULL;
    /* The thread runs on while its frames are copied, so a walk can meet a
     * frame torn by a call or return; a moment later the stack is whole
     * again. Walk again (each walk copies the thread state afresh with its
     * frames) a couple of times before counting a drop. */
    mfp_python_thread now = *ts;
    int reason = MFP_DROP_INVALID, depth = -1;
    size_t elided = 0;
    uint32_t node = MFP_NONE;
    for (int attempt = 0; attempt < 3; attempt++) {
        depth = mfp_python_walk(s->walker, addr, &now, s->frames, MFP_SAMPLER_MAX_DEPTH, &elided,
                                &reason);
        if (now.interp != (const void *)s->interp || !same_thread(ts->tid, now.tid)) {
            s->roster_ok = 0; /* it ended: walk the list again next pass */
            return;
        }
        if (depth == 0) return; /* no Python code running in this thread */
        if (depth > 0 && !elided) {
            node = build_stack(s, ts->tid, depth, &reason);
            if (node != MFP_NONE) break;
        } else if (depth > 0 && mfp_python_decode(s->decoder, s->frames, depth, s->frame_ids, &reason) == 0) {
            node = stack_node(s, mark_elided(s, depth));
            if (node != MFP_NONE) break;
            reason = MFP_DROP_NO_MEMORY;
        }
        depth = -1;
        if (reason == MFP_DROP_TOO_DEEP || reason == MFP_DROP_NO_MEMORY) break; /* no better later */
    }
    if (depth < 0) {
        s->stats.dropped[reason]++;
        return;
    }
    /* Seen running: holding the GIL from before the read to after it
     * (running Python code there, or pushed off its core for a moment while
     * doing so) having run since its last sample (one that held it and did
     * not run at all was pushed off its core all that time: a woken
     * sleeper preempted at its sleep line), or on a core while we read (its
     * CPU clock moved during a read short enough to be one moment: another
     * core's thread's clock is read live; not in a pass that began late,
     * below). C code that released the GIL (hashlib, numpy) on the
     * sampler's own core is not caught by the second: it does not run while
     * we read (its clock is still then; that is what looked like a clock
     * moving "only at ticks" before). Between
     * passes it ran, so it is found by that: a thread whose clock advanced
     * by three quarters of the time or more since its last sample, twice in
     * a row, seen in the same place and without the GIL each time, was
     * running there. (A compute-then-sleep loop, compute c and sleep s, can
     * fit a whole compute between two samples that both find it sleeping;
     * twice in a row above 3/4 only if c >= 1.5 s. At half, c 0.75 ms and
     * s 1 ms met it: 34 % of its on-CPU time showed on its sleep line.)
     *
     * A pass that began late (the machine busy, the sampler woken at a
     * scheduler tick) began when other sleepers woke too: a thread seen
     * moving then is mostly one woken with us, in its wake-up path. A
     * saturated machine lined 13 such passes of one thread up on the 4 ms
     * tick, each finding it waking from its 1 ms sleep, and gave the sleep
     * line a third of its on-CPU time (66 % in compute against 98.6 %
     * true). The GIL held then still says running. */
    int seen = SEEN_UNKNOWN;
    if (s->gil) {
        int held = holder == addr && mfp_python_gil_holder(s->gil, &checked_mem) == addr;
        uint64_t cpu2 = thread_cpu_ns(ts->tid), rd = now_ns() - read_from;
        int moved = cpu2 > cpu && rd < MOMENT_NS;
        if (te && te->cpu_ns == cpu && !moved) held = 0; /* preempted holding it all along */
        moved = moved && !s->late;
        int busy = 0;
        if (te) {
            busy = !held && te->clock_at && te->cpu_ns != UINT64_MAX && cpu >= te->cpu_ns &&
                   te->last_node == node && 4 * (cpu - te->cpu_ns) >= 3 * (cpu_at - te->clock_at);
            te->busy_run = busy ? te->busy_run + 1 : 0;
            busy = te->busy_run >= 2;
        }
        seen = held || moved || busy ? SEEN_RUNNING : SEEN_IDLE;
    }
    s->seen_running += seen == SEEN_RUNNING;
    add_sample(s, te, ts->tid, addr, node, cpu, seen, t, dt);
    if (!te) te = thread_find(s, ts->tid);
    if (te) te->clock_at = cpu_at;
}

/* ---- the roster: the interpreter's list of threads, as last seen -------- */

/* The roster holds the thread states of the interpreter's list, oldest
 * first (roster[n - 1] is the list's head: CPython puts a new thread state
 * at the head), with what each said when last copied. A pass checks it
 * for a bounded cost however many threads there are: it copies the list
 * head and a window of at most BATCH_THREADS states (in one syscall),
 * checks their links, and moves the window on; a new head is followed
 * back to the old one (the threads started since). Any link that does not
 * hold (a thread ended) has the list walked anew, one state at a time. */

/* Room for n entries in the roster (walk = 0) or in the one a walk builds
 * (walk = 1): 0, or -1. */
static int roster_reserve(mfp_sampler *s, int walk, size_t n) {
    size_t *capp = walk ? &s->walk_cap : &s->roster_cap;
    const void ***ap = walk ? &s->walk : &s->roster;
    mfp_python_thread **dp = walk ? &s->walk_ts : &s->roster_ts;
    if (n <= *capp) return 0;
    size_t cap = *capp ? *capp : FIRST_THREADS;
    while (cap < n) cap *= 2;
    const void **a = realloc(*ap, cap * sizeof *a);
    if (a) *ap = a;
    mfp_python_thread *d = a ? realloc(*dp, cap * sizeof *d) : NULL;
    if (d) *dp = d;
    if (!d) return -1;
    *capp = cap;
    return 0;
}

/* The whole list, one state at a time (its links are known only as it is
 * read), into the roster. 0, or -1 with the drop counted and the old
 * roster kept (its threads are sampled as known so far). */
static int roster_walk(mfp_sampler *s) {
    const void *addr;
    s->roster_ok = 0;
    if (mfp_mem_read(&addr, s->threads_head, sizeof addr) != 0) {
        s->stats.dropped[MFP_DROP_READ_FAULT]++;
        return -1;
    }
    size_t n = 0;
    for (; addr && n < MAX_THREADS; n++) {
        if (roster_reserve(s, 1, n + 1) != 0) {
            s->stats.dropped[MFP_DROP_NO_MEMORY]++;
            return -1;
        }
        if (mfp_mem_read(s->ts_copies, addr, s->tstate_size) != 0) {
            s->stats.dropped[MFP_DROP_READ_FAULT]++;
            return -1;
        }
        mfp_python_thread_decode(s->ts_copies, &s->walk_ts[n]);
        if (s->walk_ts[n].interp != (const void *)s->interp) { /* freed under us: the list moved */
            s->stats.dropped[MFP_DROP_INVALID]++;
            return -1;
        }
        s->walk[n] = addr;
        addr = s->walk_ts[n].next;
    }
    for (size_t i = 0, j = n ? n - 1 : 0; i < j; i++, j--) { /* oldest first */
        const void *a = s->walk[i];
        mfp_python_thread d = s->walk_ts[i];
        s->walk[i] = s->walk[j];
        s->walk_ts[i] = s->walk_ts[j];
        s->walk[j] = a;
        s->walk_ts[j] = d;
    }
    const void **a = s->roster;
    mfp_python_thread *d = s->roster_ts;
    size_t cap = s->roster_cap;
    s->roster = s->walk;
    s->roster_ts = s->walk_ts;
    s->roster_cap = s->walk_cap;
    s->walk = a;
    s->walk_ts = d;
    s->walk_cap = cap;
    s->nroster = n;
    s->window = 0;
    s->roster_ok = !addr; /* else more than MAX_THREADS, or a loop: walk again next pass */
    return 0;
}

/* Check the roster against the list (see above), updating the window of
 * entries copied this pass: 0 when it holds, else -1. */
static int roster_check(mfp_sampler *s) {
    size_t n = s->nroster, tsz = s->tstate_size;
    if (!s->roster_ok || n == 0) return -1;
    size_t w0 = s->window < n ? s->window : 0, w1 = w0 + BATCH_THREADS < n ? w0 + BATCH_THREADS : n;
    const void *head;
    s->local_iov[0] = (struct iovec){&head, sizeof head};
    s->remote_iov[0] = (struct iovec){(void *)s->threads_head, sizeof head};
    for (size_t i = w0; i < w1; i++) {
        s->local_iov[i - w0 + 1] = (struct iovec){s->ts_copies + (i - w0) * tsz, tsz};
        s->remote_iov[i - w0 + 1] = (struct iovec){(void *)s->roster[i], tsz};
    }
    size_t cnt = w1 - w0 + 1;
    if (mfp_mem_readv(s->local_iov, s->remote_iov, cnt) != cnt) return -1;
    /* A thread that ended is unlinked: the next thread's link skips it.
     * Those are crossed out (NULL), and so is a state freed or reused by
     * another thread (that one is found at the head, below). */
    size_t dead = 0;
    for (size_t i = w0; i < w1; i++) {
        mfp_python_thread d;
        mfp_python_thread_decode(s->ts_copies + (i - w0) * tsz, &d);
        if (d.interp != (const void *)s->interp || !same_thread(s->roster_ts[i].tid, d.tid)) {
            s->roster[i] = NULL;
            dead++;
            continue;
        }
        size_t j = i; /* roster[j - 1] is the state d links to */
        if (d.next == NULL)
            j = 0;
        else
            while (j > 0 && i - j < BATCH_THREADS && s->roster[j - 1] != d.next) j--;
        if (d.next != NULL && (j == 0 || s->roster[j - 1] != d.next)) return -1; /* not one we know */
        for (size_t k = j; k < i; k++)
            if (s->roster[k]) {
                s->roster[k] = NULL;
                dead++;
            }
        s->roster_ts[i] = d;
    }
    if (dead) {
        size_t m = 0, m0 = 0, m1 = 0;
        for (size_t i = 0; i < n; i++) {
            if (i == w0) m0 = m;
            if (i == w1) m1 = m;
            if (s->roster[i]) {
                s->roster[m] = s->roster[i];
                s->roster_ts[m++] = s->roster_ts[i];
            }
        }
        if (w1 == n) m1 = m;
        s->nroster = n = m;
        w0 = m0;
        w1 = m1;
        if (n == 0) return -1;
    }
    s->window = w1;
    /* Threads started since: from the new head back to the old one. */
    const void *old = s->roster[n - 1], *addr = head;
    size_t added = 0;
    while (addr != old) {
        if (!addr || added == BATCH_THREADS || roster_reserve(s, 0, n + added + 1) != 0 ||
            mfp_mem_read(s->ts_copies, addr, tsz) != 0)
            return -1;
        mfp_python_thread d;
        mfp_python_thread_decode(s->ts_copies, &d);
        if (d.interp != (const void *)s->interp) return -1;
        s->roster[n + added] = addr;
        s->roster_ts[n + added] = d;
        added++;
        addr = d.next;
    }
    /* Found newest first: make them oldest first after the old head. */
    for (size_t i = n, j = n + added - 1; added && i < j; i++, j--) {
        const void *a = s->roster[i];
        mfp_python_thread d = s->roster_ts[i];
        s->roster[i] = s->roster[j];
        s->roster_ts[i] = s->roster_ts[j];
        s->roster[j] = a;
        s->roster_ts[j] = d;
    }
    s->nroster = n + added;
    s->new_from = n;
    return 0;
}

/* One pass over every thread state of the interpreter, without the GIL:
 * touches only interpreter memory through memread, and the sampler's own
 * state and store.
 *
 * A thread's CPU clock costs a syscall to read, so with many threads a
 * pass reads at most CLOCK_BUDGET of them: those of the threads that ran
 * at their last sample (hot) or are new, the GIL's holder's, and a window
 * that moves on each pass; every other thread repeats its last stack as
 * one that did not run. A thread that starts running C code without the
 * GIL is so found within threads / CLOCK_BUDGET passes, and the CPU it
 * used meanwhile is counted then (add_sample's debt). */
static void sample_all_direct(mfp_sampler *s, uint64_t t, uint64_t dt) {
    s->pass_holder = s->gil ? mfp_python_gil_holder(s->gil, &checked_mem) : NULL;
    s->new_from = SIZE_MAX;
    if (roster_check(s) != 0) roster_walk(s);
    size_t n = s->nroster, spare = n > CLOCK_BUDGET ? CLOCK_BUDGET : n;
    size_t r0 = s->clock_window < n ? s->clock_window : 0;
    for (size_t k = n; k-- > 0;) { /* the list's order: newest first */
        const void *addr = s->roster[k];
        const mfp_python_thread *ts = &s->roster_ts[k];
        if (n > CLOCK_BUDGET && k < s->new_from && addr != s->pass_holder) {
            thread_entry *te = thread_find(s, ts->tid);
            int in_window = (k + n - r0) % n < CLOCK_BUDGET / 2;
            if (te && te->last_node != MFP_NONE && te->tstate == addr && !in_window &&
                !(te->hot && spare > 0)) {
                if (!ignored(ts->tid))
                    add_sample(s, te, ts->tid, addr, te->last_node, te->cpu_ns, SEEN_IDLE, t, dt);
                continue;
            }
            if (te && te->hot && !in_window) spare--;
        }
        sample_thread(s, addr, ts, t, dt);
    }
    settle_waiting(s, t, dt);
    s->clock_window = (r0 + CLOCK_BUDGET / 2) % (n ? n : 1);
}

/* The slower sampler on the public C API, for where interpreter memory
 * cannot be copied (a seccomp filter forbids process_vm_readv and
 * /proc/self/mem is closed) or MFP_SAMPLER=gil asks for it. It takes the GIL
 * for each pass, so it slows the profiled threads more. Code objects may die
 * between passes, so nothing is cached by address: every frame is interned,
 * which the store makes cheap. Runs on the sampler thread with the GIL. */
static uint32_t gil_frame(mfp_sampler *s, PyCodeObject *co, int line) {
    Py_ssize_t nlen, flen;
    const char *name = PyUnicode_AsUTF8AndSize(co->co_qualname, &nlen);
    const char *file = name ? PyUnicode_AsUTF8AndSize(co->co_filename, &flen) : NULL;
    if (!file) {
        PyErr_Clear();
        return MFP_NONE;
    }
    uint32_t n = mfp_profile_string(s->profile, name, (size_t)nlen);
    uint32_t f = mfp_profile_string(s->profile, file, (size_t)flen);
    uint32_t func = mfp_profile_func(s->profile, n, f, (uint32_t)co->co_firstlineno, MFP_FUNC_PYTHON);
    return mfp_profile_frame(s->profile, func, line > 0 ? (uint32_t)line : 0);
}

static void sample_all_gil(mfp_sampler *s, uint64_t t, uint64_t dt) {
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(s->interp); ts; ts = PyThreadState_Next(ts)) {
        if (ignored((uint64_t)ts->native_thread_id)) continue;
        PyFrameObject *f = PyThreadState_GetFrame(ts);
        /* Past the maximum, the root-most half is a ring (as native/python/
         * keeps a deep stack): the frames falling out are the middle. */
        const int max = MFP_SAMPLER_MAX_DEPTH, lo = max / 2;
        int depth = 0, next = lo;
        size_t elided = 0;
        while (f) {
            PyCodeObject *co = PyFrame_GetCode(f);
            uint32_t id = gil_frame(s, co, PyFrame_GetLineNumber(f));
            Py_DECREF(co);
            if (id != MFP_NONE && depth < max) {
                s->frame_ids[depth++] = id;
            } else if (id != MFP_NONE) {
                s->frame_ids[next] = id;
                next = next + 1 == max ? lo : next + 1;
                elided++;
            }
            PyFrameObject *back = PyFrame_GetBack(f);
            Py_DECREF(f);
            f = back;
        }
        if (elided) {
            /* oldest first: rotate the ring left by next - lo */
            uint32_t *r = s->frame_ids + lo;
            int n = max - lo, k = next - lo;
            for (int a = 0, b = k - 1; a < b; a++, b--) { uint32_t x = r[a]; r[a] = r[b]; r[b] = x; }
            for (int a = k, b = n - 1; a < b; a++, b--) { uint32_t x = r[a]; r[a] = r[b]; r[b] = x; }
            for (int a = 0, b = n - 1; a < b; a++, b--) { uint32_t x = r[a]; r[a] = r[b]; r[b] = x; }
            depth = mark_elided(s, depth);
        }
        if (depth > 0)
            add_sample(s, NULL, ts->native_thread_id, ts, stack_node(s, depth),
                       thread_cpu_ns(ts->native_thread_id), SEEN_UNKNOWN, t, dt);
    }
}

static pthread_mutex_t pass_lock = PTHREAD_MUTEX_INITIALIZER; /* every sampler's */
static void pass_fork_prepare(void) { pthread_mutex_lock(&pass_lock); }
static void pass_fork_parent(void) { pthread_mutex_unlock(&pass_lock); }
static void pass_fork_child(void) { pthread_mutex_init(&pass_lock, NULL); }
static pthread_once_t pass_fork_once = PTHREAD_ONCE_INIT;
static void pass_fork_register(void) {
    pthread_atfork(pass_fork_prepare, pass_fork_parent, pass_fork_child);
}

/* One sampler pass over every thread: the weights, then the reader. */
static void sample_all(mfp_sampler *s) {
    uint64_t woke = now_ns();
    PyGILState_STATE g = PyGILState_UNLOCKED;
    if (s->gil_mode) {
        /* The time starts when the stacks can be read: after the wait. A
         * stop while waiting (mfp_sampler_request_stop) must not hand that
         * wait to the stack it is stopping from. */
        g = PyGILState_Ensure();
        if (atomic_load(&s->stop)) {
            PyGILState_Release(g);
            return;
        }
    }
    pthread_mutex_lock(&pass_lock);
    pthread_mutex_lock(&s->store_lock);
    uint64_t t = now_ns();
    uint64_t gap = t - s->last_ns;
    s->last_ns = t;
    /* A sample stands for the time since the previous pass, but a thread
     * that ran in that time gets at most twice the usual gap: when the
     * sampler itself was held up (a busy machine descheduled it), giving
     * all that time to whatever the thread runs when the sampler wakes
     * would skew the profile. A thread that did not run keeps the whole
     * gap: its stack cannot have changed (see add_sample). The GIL-taking
     * sampler is late by design (it waits for the GIL, ~5 ms), so its
     * samples keep the whole gap. */
    s->avg_gap_ns = s->avg_gap_ns ? s->avg_gap_ns - s->avg_gap_ns / 16 + gap / 16 : s->interval_ns;
    uint64_t usual = s->avg_gap_ns > s->interval_ns ? s->avg_gap_ns : s->interval_ns;
    uint64_t dt = s->gil_mode || gap < 2 * usual ? gap : 2 * usual;
    s->gap_ns = gap;
    s->stats.passes++;
    if (!s->gil_mode) {
        sample_all_direct(s, t - s->t0_ns, dt);
        s->stats.busy_ns += now_ns() - woke;
        pthread_mutex_unlock(&s->store_lock);
        pthread_mutex_unlock(&pass_lock);
        return;
    }
    sample_all_gil(s, t - s->t0_ns, dt);
    s->stats.busy_ns += now_ns() - woke;
    pthread_mutex_unlock(&s->store_lock);
    pthread_mutex_unlock(&pass_lock);
    PyGILState_Release(g);
}

/* The time to the next pass: the interval on average, uniform over half to
 * one and a half of it. Passes on a fixed grid lock in phase with a
 * program's own periodic timers (a loop sleeping 1 ms wakes with the
 * sampler's tick, the kernel merging the two wake-ups within its timer
 * slack), and then every sample finds it at the same point of its cycle
 * (just woken, still in the sleep); random phases sample every point alike. */
static uint64_t next_gap(mfp_sampler *s) {
    uint64_t x = s->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    return s->interval_ns / 2 + (x >> 11) % (s->interval_ns + 1);
}

/* Ask the kernel for a short time slice for the sampler thread (Linux
 * 6.12+ EEVDF reads a fair task's sched_attr.sched_runtime as its slice;
 * older kernels ignore it or refuse, and then nothing changes): a waking
 * task with a shorter slice preempts the running one at once. Without it,
 * on a core shared with a profiled thread that sleeps often (so is owed
 * time), a pass waits until that thread blocks and always finds it
 * blocked: bursts shorter than a slice (1.4 ms here) are never seen —
 * 8 of 1,942 samples found a thread computing 0.7 ms between 10 ms sleeps
 * in compute, the other core busy; 94-105 with the short slice, minutes
 * later. Only from the default policy, and at the thread's own nice. */
static void ask_short_slice(void) {
#ifdef SYS_sched_setattr
    if (sched_getscheduler(0) != SCHED_OTHER) return;
    struct {
        uint32_t size, policy;
        uint64_t flags;
        int32_t nice;
        uint32_t priority;
        uint64_t runtime, deadline, period;
    } attr = {sizeof attr, 0 /* SCHED_OTHER */, 0, 0, 0, 100000 /* 0.1 ms */, 0, 0};
    attr.nice = getpriority(PRIO_PROCESS, 0); /* keep the thread's nice as it is */
    (void)syscall(SYS_sched_setattr, 0, &attr, 0);
#endif
}

/* Sleep until deadline (CLOCK_MONOTONIC) or a stop, whichever is first:
 * a futex wait on the stop word, one system call. (A condition variable's
 * timed wait cost a second one a pass: glibc takes its mutex back marked
 * contended, so the unlock that follows enters the kernel to wake nobody.) */
static void sleep_until(mfp_sampler *s, uint64_t deadline) {
    struct timespec ts = {(time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u)};
    (void)syscall(SYS_futex, &s->stop, FUTEX_WAIT_BITSET_PRIVATE, 0, &ts, NULL, FUTEX_BITSET_MATCH_ANY);
}

static void wake_to_stop(mfp_sampler *s) {
    atomic_store(&s->stop, 1);
    (void)syscall(SYS_futex, &s->stop, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void *sampler_main(void *arg) {
    mfp_sampler *s = arg;
    pthread_setname_np(pthread_self(), "mfp-sampler"); /* an engine thread (module.c) */
    ask_short_slice();
    uint64_t next = now_ns() + next_gap(s);
    while (!atomic_load(&s->stop)) {
        sleep_until(s, next);
        if (atomic_load(&s->stop)) break;
        uint64_t now = now_ns();
        if (now < next) continue; /* woken early (a signal to the process) */
        s->late = now - next > MOMENT_NS;
        sample_all(s);
        next += next_gap(s);
        now = now_ns();
        /* Fell behind: skip ticks. The GIL-taking sampler falls behind by
         * waiting for the GIL (up to the switch interval, 5 ms): it asks
         * again at once, so it gets a pass at each switch the GIL allows
         * instead of waiting an interval on top of each switch. */
        if (next <= now) next = s->gil_mode ? now : now + next_gap(s);
    }
    return NULL;
}

/* ---- lifetime ---------------------------------------------------------- */

void mfp_sampler_free(mfp_sampler *s) {
    if (!s) return;
    mfp_sampler_stop(s);
    for (int i = 0; i < STACK_MEMORIES; i++) {
        free(s->memories[i].raw);
        free(s->memories[i].node);
    }
    mfp_python_walker_free(s->walker);
    mfp_python_decoder_free(s->decoder);
    free(s->threads);
    free(s->ts_copies);
    free(s->roster);
    free(s->roster_ts);
    free(s->walk);
    free(s->walk_ts);
    free(s->thread_table);
    free(s->frames);
    free(s->local_iov);
    free(s->remote_iov);
    free(s->frame_ids);
    if (s->loadavg_fd >= 0) close(s->loadavg_fd);
    if (getpid() == s->pid) pthread_mutex_destroy(&s->store_lock); /* a fork's copy may be held */
    free(s);
}

/* The thread takes no signal: they belong to the program's threads. One
 * that reached it would leave a main thread blocked in a system call
 * unaware of it, and a Python handler waiting forever. */
static int create_thread(mfp_sampler *s) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, sampler_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

mfp_sampler *mfp_sampler_start(mfp_profile *p, uint64_t interval_ns, uint64_t t0_ns,
                               mfp_new_thread_hook on_new_thread, char *err, size_t errlen) {
    mfp_sampler *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->loadavg_fd = -1; /* before any way out through mfp_sampler_free */
    const char *forced = getenv("MFP_SAMPLER");
    char why[200];
    /* Whatever the mode: the heap's search for pymalloc's pools, after
     * this, reads through memread too. */
    int unreadable = mfp_mem_init() != 0 ? errno : 0;
    if (mfp_python_check_layout(why, sizeof why) != 0) {
        /* An interpreter this build does not know, or one whose own
         * account of its layout disagrees with the build's. */
        s->gil_mode = 1;
        snprintf(s->mode, sizeof s->mode, "public C API with the GIL: %s", why);
    } else if (forced && strcmp(forced, "gil") == 0) {
        s->gil_mode = 1;
        snprintf(s->mode, sizeof s->mode, "public C API with the GIL (MFP_SAMPLER=gil)");
    } else if (unreadable) {
        s->gil_mode = 1;
        snprintf(s->mode, sizeof s->mode,
                 "public C API with the GIL: cannot read own memory (process_vm_readv and "
                 "/proc/self/mem: %s)", strerror(unreadable));
    } else {
        snprintf(s->mode, sizeof s->mode, "without the GIL, through %s", mfp_mem_mechanism());
    }
    pthread_once(&pass_fork_once, pass_fork_register);
    s->profile = p;
    s->interp = PyInterpreterState_Get();
    s->gil = mfp_python_gil(s->interp);
    s->rng = (uint64_t)t0_ns * 0x9E3779B97F4A7C15ull | 1;
    s->interval_ns = interval_ns;
    s->on_new_thread = on_new_thread;
    s->t0_ns = s->last_ns = t0_ns;
    s->pid = getpid();
    s->cpus = (int)sysconf(_SC_NPROCESSORS_ONLN); /* as /proc/loadavg counts: the machine's */
    s->loadavg_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC); /* -1: never counted running */
    pthread_mutex_init(&s->store_lock, NULL);
    s->threads_head = mfp_python_threads_head(s->interp);
    s->tstate_size = mfp_python_tstate_size();
    s->threads_cap = FIRST_THREADS;
    s->table_bits = 9;
    s->threads = calloc(FIRST_THREADS, sizeof *s->threads);
    s->ts_copies = malloc(BATCH_THREADS * s->tstate_size);
    s->thread_table = calloc((size_t)1 << s->table_bits, sizeof *s->thread_table);
    s->frames = malloc(MFP_SAMPLER_MAX_DEPTH * sizeof *s->frames);
    s->local_iov = malloc((BATCH_THREADS + 1) * sizeof *s->local_iov);
    s->remote_iov = malloc((BATCH_THREADS + 1) * sizeof *s->remote_iov);
    s->frame_ids = malloc((MFP_SAMPLER_MAX_DEPTH + 1) * sizeof *s->frame_ids); /* + a marker */
    if (!s->ts_copies || !s->threads || !s->thread_table ||
        !s->frames || !s->local_iov || !s->remote_iov || !s->frame_ids)
        goto oom;
    static const char elided_name[] = "[deep stack: frames elided]";
    uint32_t en = mfp_profile_string(p, elided_name, sizeof elided_name - 1);
    uint32_t ef = en == MFP_NONE ? MFP_NONE : mfp_profile_string(p, "", 0);
    uint32_t efn = ef == MFP_NONE ? MFP_NONE : mfp_profile_func(p, en, ef, 0, MFP_FUNC_SYNTHETIC);
    s->elided_frame = efn == MFP_NONE ? MFP_NONE : mfp_profile_frame(p, efn, 0);
    if (s->elided_frame == MFP_NONE) goto oom;
    if (!s->gil_mode) {
        s->walker = mfp_python_walker_new(&checked_mem);
        s->decoder = mfp_python_decoder_new(p, &checked_mem, MFP_SAMPLER_MAX_DEPTH, FRAME_CACHE_BITS);
        if (!s->walker || !s->decoder) goto oom;
    }
    int rc = create_thread(s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the sampler thread: %s", strerror(rc));
        mfp_sampler_free(s);
        return NULL;
    }
    s->running = 1;
    return s;
oom:
    snprintf(err, errlen, "out of memory starting the sampler");
    mfp_sampler_free(s);
    return NULL;
}

void mfp_sampler_request_stop(mfp_sampler *s) {
    if (!s || !s->running || getpid() != s->pid) return;
    wake_to_stop(s);
}

void mfp_sampler_stop(mfp_sampler *s) {
    if (!s || !s->running) return;
    s->running = 0;
    if (getpid() != s->pid) return; /* forked child: the thread is not here */
    wake_to_stop(s);
    pthread_join(s->thread, NULL);
}

int mfp_sampler_resume(mfp_sampler *s) {
    if (!s || s->running || getpid() != s->pid) return -1;
    atomic_store(&s->stop, 0);
    s->last_ns = now_ns(); /* the pause is nobody's time */
    if (create_thread(s) != 0) return -1;
    s->running = 1;
    return 0;
}

const char *mfp_sampler_mode(const mfp_sampler *s) { return s->mode; }
int mfp_sampler_takes_gil(const mfp_sampler *s) { return s->gil_mode; }
int mfp_sampler_knows_layout(void) { return mfp_python_layout_known(); }

/* The lock is taken through a cast: the stats are logically read-only
 * here, but a running pass writes them. */
void mfp_sampler_get_stats(const mfp_sampler *s, mfp_sampler_stats *out) {
    pthread_mutex_t *l = (pthread_mutex_t *)&s->store_lock;
    pthread_mutex_lock(l);
    *out = s->stats;
    pthread_mutex_unlock(l);
}

int mfp_sampler_snapshot(mfp_sampler *s, mfp_profile *mirror, mfp_sampler_stats *stats) {
    pthread_mutex_lock(&s->store_lock);
    int rc = mfp_profile_sync(mirror, s->profile);
    if (stats) *stats = s->stats;
    pthread_mutex_unlock(&s->store_lock);
    return rc;
}
