/* sampler.c — see sampler.h.
 *
 * Why it is built this way. Every read of interpreter memory is a syscall
 * (memread.h) costing microseconds, so a pass is organised to make few:
 *  - one vectored copy of all the thread states (plus each running
 *    thread's _PyCFrame on 3.11/3.12), while the list of threads is the
 *    one of the last pass;
 *  - one bulk copy of the used part of each of the thread's data-stack chunks, where
 *    the interpreter keeps the frames of running functions, so walking the
 *    frame chain is local work (generator frames live elsewhere and are
 *    read one by one);
 *  - one vectored copy of the headers of all distinct code objects on the
 *    stack, to validate the cache entries below;
 *  - names, files and line tables only when a (code, instruction) pair is
 *    new: a cache maps it to the profile's frame index, checked against the
 *    code header fields so a freed and reused code address is caught.
 * Everything read is validated (type pointers, bounds, depth) and a failure
 * drops the sample, never the process.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sampler.h"

#include "layout.h"
#include "memread.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *const mfp_drop_reason_names[MFP_DROP_REASONS] = {
    "read_fault", "invalid", "too_deep", "no_memory"};

#define MAX_THREADS 4096
#define BATCH_THREADS 256 /* thread states copied in one syscall per pass */
#define THREAD_TABLE_BITS 13 /* twice MAX_THREADS: probes stay short */
#define CHUNK_COPY_MAX (4u << 20)
#define MAX_CHUNKS 64
#define FRAME_CACHE_BITS 16
#define NAME_MAX_CHARS 1024
#define LINETABLE_MAX (1u << 16)

typedef struct {
    const void *code;            /* remote code object; NULL = empty slot */
    int32_t lasti;               /* instruction index in code units */
    const void *name, *file, *linetable; /* header fields when cached */
    int firstline;
    uint32_t frame;              /* index in the profile */
} frame_cache_entry;

typedef struct {
    uint64_t tid;
    uint64_t cpu_ns;     /* its CPU clock at its last sample */
    const void *tstate;  /* its thread state at its last sample */
    uint32_t index;      /* thread index in the profile */
    uint32_t last_node;  /* its stack at its last sample */
    int64_t cpu_debt;    /* CPU time used but not yet reported (see add_sample) */
} thread_entry;

typedef struct {
    const void *code;
    int32_t lasti;
    uint32_t hdr;  /* which copied code header is this frame's */
} raw_frame;

typedef struct {
    const char *remote; /* where the chunk lives in the interpreter */
    size_t len;
    const char *local;  /* where its copy is in s->chunk */
} copied_region;

struct mfp_sampler {
    mfp_profile *profile;
    PyInterpreterState *interp;
    uint64_t interval_ns, t0_ns, last_ns;
    uint64_t avg_gap_ns; /* moving average of the time between passes */
    uint64_t gap_ns;     /* time since the previous pass, uncapped */
    mfp_new_thread_hook on_new_thread;
    int gil_mode;
    char mode[160]; /* how this sampler reads stacks, for the card */
    pid_t pid;
    pthread_t thread;
    int running;
    atomic_int stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;

    frame_cache_entry *cache;
    size_t cache_used;
    thread_entry *threads;
    size_t nthreads;
    uint32_t *thread_table;

    /* Scratch space reused by every pass (sampler thread only). */
    char *chunk;
    size_t chunk_cap;
    copied_region regions[MAX_CHUNKS];
    size_t nregions, last_region;
    raw_frame *frames;
    const void **codes;      /* distinct code objects of the current stack */
    char *code_hdrs;         /* their copied headers */
    struct iovec *local_iov, *remote_iov;
    uint32_t *frame_ids;
    uint8_t *linetable;      /* LINETABLE_MAX bytes */

    /* The thread states of the last pass, in list order (when at most
     * BATCH_THREADS), and room for copies of them. */
    const void *known_ts[BATCH_THREADS];
    size_t nknown;
    PyThreadState *ts_copies;

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

/* ---- threads ----------------------------------------------------------- */

/* Threads by OS tid: an open-addressing table of indices into s->threads
 * (0 = empty, else index + 1), so a pass costs O(threads) however many
 * threads came and went. */
static size_t tid_slot(uint64_t tid) {
    return (size_t)((tid * 0x9E3779B97F4A7C15ull) >> (64 - THREAD_TABLE_BITS));
}

static thread_entry *thread_find(mfp_sampler *s, uint64_t tid) {
    const size_t mask = ((size_t)1 << THREAD_TABLE_BITS) - 1;
    for (size_t i = tid_slot(tid);; i = (i + 1) & mask) {
        uint32_t k = s->thread_table[i];
        if (!k) return NULL;
        if (s->threads[k - 1].tid == tid) return &s->threads[k - 1];
    }
}

static thread_entry *thread_for(mfp_sampler *s, uint64_t tid) {
    thread_entry *t = thread_find(s, tid);
    if (t) return t;
    if (s->nthreads == MAX_THREADS) { /* forget old, mostly dead ones */
        s->nthreads = 0;
        memset(s->thread_table, 0, sizeof(uint32_t) << THREAD_TABLE_BITS);
    }
    uint32_t idx = mfp_profile_thread(s->profile, tid, 0, 0);
    if (idx == MFP_NONE) return NULL;
    t = &s->threads[s->nthreads++];
    *t = (thread_entry){tid, UINT64_MAX, NULL, idx, MFP_NONE, 0};
    const size_t mask = ((size_t)1 << THREAD_TABLE_BITS) - 1;
    size_t i = tid_slot(tid);
    while (s->thread_table[i]) i = (i + 1) & mask;
    s->thread_table[i] = (uint32_t)s->nthreads; /* index + 1 */
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

/* One sample of thread tid at stack node, standing for dt ns; te is its
 * entry when the caller already found it (else NULL).
 *
 * "On CPU" is yes or no per sample, but a thread may have run for part of
 * the time a sample stands for (a busy machine, short waits). So the CPU
 * time a thread used accumulates as a debt, and a sample is marked on CPU
 * when the debt reaches half its weight, which pays off that weight (error
 * diffusion): per thread, the on-CPU samples' weights add up to the CPU
 * time used, within one sample, and a thread that got 60 % of a core shows
 * 60 % on CPU, not 100 % or 0 %. */
static void add_sample(mfp_sampler *s, thread_entry *te, uint64_t tid, const void *tstate,
                       uint32_t node, uint64_t cpu, uint64_t t, uint64_t dt) {
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
    te->cpu_ns = cpu;
    te->tstate = tstate;
    te->last_node = node;
    te->cpu_debt += (int64_t)(used < dt ? used : dt);
    uint32_t flags = 0;
    if (te->cpu_debt * 2 >= (int64_t)dt) {
        flags = MFP_SAMPLE_ON_CPU;
        te->cpu_debt -= (int64_t)dt;
    }
    if (mfp_profile_sample(s->profile, t, node, te->index, dt, flags) != 0)
        s->stats.dropped[MFP_DROP_NO_MEMORY]++;
    else
        s->stats.samples++;
}

/* ---- the GIL-free reader ------------------------------------------------ *
 * Compiled only where layout.h knows the interpreter's frame layout. */
#if MFP_LAYOUT_KNOWN

/* ---- strings and line tables (sampler thread; reads only via memread) -- */

static size_t put_utf8(char *out, uint32_t c) {
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) { out[0] = (char)(0xC0 | (c >> 6)); out[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12)); out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F)); return 3;
    }
    if (c > 0x10FFFF) c = 0xFFFD;
    out[0] = (char)(0xF0 | (c >> 18)); out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F)); out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Copy a str object into the profile's string table. MFP_NONE on a bad
 * read or an object that is not a compact str. */
static uint32_t read_string(mfp_sampler *s, const void *obj) {
    PyASCIIObject hdr;
    if (!obj || mfp_mem_read(&hdr, obj, sizeof hdr) != 0) return MFP_NONE;
    if (hdr.ob_base.ob_type != &PyUnicode_Type || !hdr.state.compact) return MFP_NONE;
    size_t n = (size_t)hdr.length, kind = hdr.state.kind;
    if (n > NAME_MAX_CHARS) n = NAME_MAX_CHARS;
    if (kind != 1 && kind != 2 && kind != 4) return MFP_NONE;
    const char *data = hdr.state.ascii ? (const char *)obj + sizeof(PyASCIIObject)
                                       : (const char *)obj + sizeof(PyCompactUnicodeObject);
    uint8_t raw[NAME_MAX_CHARS * 4];
    char utf8[NAME_MAX_CHARS * 4];
    if (mfp_mem_read(raw, data, n * kind) != 0) return MFP_NONE;
    if (hdr.state.ascii) return mfp_profile_string(s->profile, (const char *)raw, n);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c;
        if (kind == 1) {
            c = raw[i];
        } else if (kind == 2) {
            uint16_t u;
            memcpy(&u, raw + 2 * i, 2);
            c = u;
        } else {
            memcpy(&c, raw + 4 * i, 4);
        }
        len += put_utf8(utf8 + len, c);
    }
    return mfp_profile_string(s->profile, utf8, len);
}

/* The location table of 3.11+ (Objects/locations.md): entries of a header
 * byte 1cccclll (code c, covering l+1 code units) and code-specific data
 * in 6-bit varints. We only need the start line of the entry covering
 * lasti. */
static unsigned lt_varint(const uint8_t *p, size_t n, size_t *i) {
    unsigned v = 0, shift = 0;
    while (*i < n) {
        uint8_t b = p[(*i)++];
        v |= (unsigned)(b & 63) << shift;
        if (!(b & 64) || shift > 24) break;
        shift += 6;
    }
    return v;
}

static int lt_svarint(const uint8_t *p, size_t n, size_t *i) {
    unsigned u = lt_varint(p, n, i);
    return (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
}

static int line_for(const uint8_t *t, size_t n, int firstline, int32_t lasti) {
    int line = firstline;
    int32_t addr = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t h = t[i++];
        if (!(h & 0x80)) return 0; /* not an entry start: corrupt */
        int code = (h >> 3) & 15, len = (h & 7) + 1, entry_line = -1;
        if (code == 15) {
            entry_line = -1;
        } else if (code == 14) {
            line += lt_svarint(t, n, &i);
            entry_line = line;
            lt_varint(t, n, &i); lt_varint(t, n, &i); lt_varint(t, n, &i);
        } else if (code == 13) {
            line += lt_svarint(t, n, &i);
            entry_line = line;
        } else if (code >= 10) {
            line += code - 10;
            entry_line = line;
            i += 2;
        } else {
            entry_line = line;
            i += 1;
        }
        if (lasti < addr + len) return entry_line > 0 ? entry_line : 0;
        addr += len;
    }
    return 0;
}

static int read_line(mfp_sampler *s, const void *linetable, int firstline, int32_t lasti) {
    PyBytesObject hdr;
    uint8_t *buf = s->linetable;
    if (!linetable || lasti < 0) return 0;
    if (mfp_mem_read(&hdr, linetable, offsetof(PyBytesObject, ob_sval)) != 0) return 0;
    if (hdr.ob_base.ob_base.ob_type != &PyBytes_Type) return 0;
    size_t n = (size_t)hdr.ob_base.ob_size;
    if (n > LINETABLE_MAX) n = LINETABLE_MAX;
    if (mfp_mem_read(buf, (const char *)linetable + offsetof(PyBytesObject, ob_sval), n) != 0)
        return 0;
    return line_for(buf, n, firstline, lasti);
}

/* ---- caches ------------------------------------------------------------ */

static size_t cache_slot(const void *code, int32_t lasti) {
    uint64_t h = (uint64_t)(uintptr_t)code * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)lasti * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h >> (64 - FRAME_CACHE_BITS));
}

/* The profile's frame index for (code, lasti), given the code's copied
 * header. MFP_NONE when the header does not validate or the store is full. */
static uint32_t resolve_frame(mfp_sampler *s, const void *code, const PyCodeObject *hdr,
                              int32_t lasti, int *reason) {
    const size_t mask = ((size_t)1 << FRAME_CACHE_BITS) - 1;
    size_t i = cache_slot(code, lasti);
    for (;; i = (i + 1) & mask) {
        frame_cache_entry *e = &s->cache[i];
        if (!e->code) break;
        if (e->code == code && e->lasti == lasti) {
            if (e->name == hdr->co_qualname && e->file == hdr->co_filename &&
                e->linetable == hdr->co_linetable && e->firstline == hdr->co_firstlineno)
                return e->frame;
            break; /* stale: the address now holds another code object */
        }
    }
    uint32_t name = read_string(s, hdr->co_qualname);
    uint32_t file = read_string(s, hdr->co_filename);
    if (name == MFP_NONE || file == MFP_NONE) {
        *reason = MFP_DROP_INVALID;
        return MFP_NONE;
    }
    int line = read_line(s, hdr->co_linetable, hdr->co_firstlineno, lasti);
    uint32_t func = mfp_profile_func(s->profile, name, file, (uint32_t)hdr->co_firstlineno,
                                     MFP_FUNC_PYTHON);
    uint32_t frame = func == MFP_NONE ? MFP_NONE : mfp_profile_frame(s->profile, func, (uint32_t)line);
    if (frame == MFP_NONE) {
        *reason = MFP_DROP_NO_MEMORY;
        return MFP_NONE;
    }
    if (s->cache_used * 2 > mask) { /* keep probing short: start over */
        memset(s->cache, 0, sizeof(frame_cache_entry) << FRAME_CACHE_BITS);
        s->cache_used = 0;
    }
    for (i = cache_slot(code, lasti);; i = (i + 1) & mask) {
        frame_cache_entry *e = &s->cache[i];
        if (!e->code) { s->cache_used++; break; }
        if (e->code == code && e->lasti == lasti) break;
    }
    s->cache[i] = (frame_cache_entry){code, lasti, hdr->co_qualname, hdr->co_filename,
                                      hdr->co_linetable, hdr->co_firstlineno, frame};
    return frame;
}

/* ---- one thread's stack ------------------------------------------------ */

/* Copy the used part of the thread's data-stack chunks (newest first) into
 * s->chunk, recording where each landed. Frames of running functions live
 * there, so the walk reads them locally; 2 syscalls per older chunk beat
 * one per frame. Stops quietly at the first chunk it cannot copy. */
static void copy_chunks(mfp_sampler *s, const PyThreadState *ts) {
    const char *remote = (const char *)ts->datastack_chunk;
    size_t used = remote && ts->datastack_top
                      ? (size_t)((uintptr_t)ts->datastack_top - (uintptr_t)remote) : 0;
    size_t filled = 0;
    s->nregions = 0;
    while (remote && s->nregions < MAX_CHUNKS) {
        if (used == 0 || used > s->chunk_cap - filled ||
            mfp_mem_read(s->chunk + filled, remote, used) != 0)
            break;
        s->regions[s->nregions++] = (copied_region){remote, used, s->chunk + filled};
        _PyStackChunk hdr;
        memcpy(&hdr, s->chunk + filled, sizeof hdr < used ? sizeof hdr : used);
        filled += used;
        if (used < sizeof hdr || !hdr.previous) break;
        remote = (const char *)hdr.previous;
        /* An older chunk is full up to its saved top (counted in slots). */
        _PyStackChunk prev;
        if (mfp_mem_read(&prev, remote, offsetof(_PyStackChunk, data)) != 0) break;
        if (prev.top > prev.size / sizeof(PyObject *)) break;
        used = offsetof(_PyStackChunk, data) + prev.top * sizeof(PyObject *);
    }
}

/* Frame at remote address addr: from the copied chunks when it lies
 * inside one (*region = its index), else copied on its own into *tmp
 * (*region = SIZE_MAX). NULL when unreadable. */
static const mfp_py_frame *frame_at(mfp_sampler *s, const void *addr, mfp_py_frame *tmp,
                                    size_t *region) {
    /* addr may be garbage (a frame torn while it was copied): compare as
     * integers, so no pointer arithmetic can overflow. */
    uintptr_t a = (uintptr_t)addr;
    for (size_t k = 0; k < s->nregions; k++) {
        size_t i = (s->last_region + k) % s->nregions; /* the walk moves region by region */
        const copied_region *r = &s->regions[i];
        uintptr_t off = a - (uintptr_t)r->remote;
        if (a >= (uintptr_t)r->remote && off < r->len && r->len - off >= sizeof(mfp_py_frame)) {
            s->last_region = *region = i;
            return (const mfp_py_frame *)(r->local + off);
        }
    }
    *region = SIZE_MAX;
    return mfp_mem_read(tmp, addr, sizeof *tmp) == 0 ? tmp : NULL;
}

/* Walk the frame chain from `top`, filling s->frames leaf first.
 * Returns the depth, or -1 with *reason set. The thread runs on while its
 * frames are copied, so the chain may be torn: inside one data-stack chunk
 * a caller always sits below its callee, and any other loop is caught by
 * Brent's cycle check, so garbage costs a few steps, not a full-depth walk. */
static int walk_frames(mfp_sampler *s, const PyThreadState *ts, const void *top, int *reason) {
    copy_chunks(s, ts);
    s->last_region = 0;
    int depth = 0;
    mfp_py_frame tmp;
    const void *mark = top; /* Brent: compared with every address ... */
    size_t steps = 0, lap = 1; /* ... and moved forward after lap steps, lap doubling */
    size_t prev_region = SIZE_MAX;
    uintptr_t prev_addr = 0;
    for (const void *addr = top; addr;) {
        size_t region;
        const mfp_py_frame *f = frame_at(s, addr, &tmp, &region);
        if (!f) { *reason = MFP_DROP_READ_FAULT; return -1; }
        if (region != SIZE_MAX && region == prev_region && (uintptr_t)addr >= prev_addr) {
            *reason = MFP_DROP_INVALID;
            return -1;
        }
        prev_region = region;
        prev_addr = (uintptr_t)addr;
        if (!MFP_FRAME_IS_SHIM(f)) {
            if (depth == MFP_SAMPLER_MAX_DEPTH) { *reason = MFP_DROP_TOO_DEEP; return -1; }
            const void *code = MFP_FRAME_CODE(f);
            if (!code) { *reason = MFP_DROP_INVALID; return -1; }
            /* Unchecked values: integer arithmetic only. */
            uintptr_t off = (uintptr_t)MFP_FRAME_INSTR(f) - ((uintptr_t)code + MFP_CODE_HEADER_SIZE);
            int32_t lasti = off < (1u << 28) ? (int32_t)(off / sizeof(_Py_CODEUNIT)) : -1;
            s->frames[depth++] = (raw_frame){code, lasti, 0};
        }
        addr = f->previous;
        if (addr == mark) { *reason = MFP_DROP_INVALID; return -1; }
        if (++steps == lap) {
            mark = addr;
            steps = 0;
            lap *= 2;
        }
    }
    return depth;
}

/* Copy the headers of the distinct code objects in s->frames[0..depth) and
 * turn every frame into a profile frame index (s->frame_ids). */
static int resolve_stack(mfp_sampler *s, int depth, int *reason) {
    size_t ncodes = 0;
    for (int i = 0; i < depth; i++) {
        const void *c = s->frames[i].code;
        /* Stacks repeat the same code (recursion) next to each other. */
        size_t j = ncodes;
        size_t lo = ncodes > 8 ? ncodes - 8 : 0;
        for (j = lo; j < ncodes; j++)
            if (s->codes[j] == c) break;
        s->frames[i].hdr = (uint32_t)j;
        if (j == ncodes) {
            s->codes[ncodes] = c;
            s->local_iov[ncodes] = (struct iovec){s->code_hdrs + ncodes * MFP_CODE_HEADER_SIZE, MFP_CODE_HEADER_SIZE};
            s->remote_iov[ncodes] = (struct iovec){(void *)c, MFP_CODE_HEADER_SIZE};
            ncodes++;
        }
    }
    if (mfp_mem_readv(s->local_iov, s->remote_iov, ncodes) != ncodes) {
        *reason = MFP_DROP_READ_FAULT;
        return -1;
    }
    for (size_t j = 0; j < ncodes; j++) {
        const PyCodeObject *h = (const PyCodeObject *)(s->code_hdrs + j * MFP_CODE_HEADER_SIZE);
        if (h->ob_base.ob_base.ob_type != &PyCode_Type || h->co_firstlineno < 0) {
            *reason = MFP_DROP_INVALID;
            return -1;
        }
    }
    for (int i = 0; i < depth; i++) {
        const raw_frame *f = &s->frames[i];
        const PyCodeObject *h = (const PyCodeObject *)(s->code_hdrs + f->hdr * MFP_CODE_HEADER_SIZE);
        uint32_t id = resolve_frame(s, f->code, h, f->lasti, reason);
        if (id == MFP_NONE) return -1;
        s->frame_ids[i] = id;
    }
    return 0;
}

static void sample_thread(mfp_sampler *s, const void *addr, const PyThreadState *ts, uint64_t t,
                          uint64_t dt) {
    /* A thread that has not run since its last sample (waiting for the GIL,
     * a lock, I/O) cannot have changed its stack: reuse it, skipping every
     * read but the thread state's. */
    uint64_t cpu = thread_cpu_ns(ts->native_thread_id);
    thread_entry *te = thread_find(s, ts->native_thread_id);
    if (te && te->last_node != MFP_NONE && te->tstate == addr && te->cpu_ns == cpu) {
        add_sample(s, te, ts->native_thread_id, addr, te->last_node, cpu, t, dt);
        return;
    }
    /* The thread runs on while its frames are copied, so a walk can meet a
     * frame torn by a call or return; a moment later the stack is whole
     * again. Retry from a fresh copy of the thread state a couple of times
     * before counting a drop. */
    PyThreadState fresh;
    int reason = MFP_DROP_INVALID, depth = -1;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt > 0) {
            if (mfp_mem_read(&fresh, addr, sizeof fresh) != 0 || fresh.interp != s->interp) break;
            ts = &fresh;
        }
        const void *top;
#if MFP_TSTATE_HAS_CFRAME
        _PyCFrame cf;
        if (!ts->cframe) return;
        if (mfp_mem_read(&cf, ts->cframe, sizeof cf) != 0) {
            reason = MFP_DROP_READ_FAULT;
            continue;
        }
        top = cf.current_frame;
#else
        top = ts->current_frame;
#endif
        if (!top) return; /* no Python code running in this thread */
        depth = walk_frames(s, ts, top, &reason);
        if (depth == 0) return;
        if (depth > 0 && resolve_stack(s, depth, &reason) == 0) break;
        depth = -1;
        if (reason == MFP_DROP_TOO_DEEP || reason == MFP_DROP_NO_MEMORY) break; /* no better later */
    }
    if (depth < 0) {
        s->stats.dropped[reason]++;
        return;
    }
    add_sample(s, te, ts->native_thread_id, addr, stack_node(s, depth), cpu, t, dt);
}

/* One pass over every thread state of the interpreter, without the GIL:
 * touches only interpreter memory through memread, and the sampler's own
 * state and store. */
static void sample_all_direct(mfp_sampler *s, uint64_t t, uint64_t dt) {
    PyThreadState *head, *copies = s->ts_copies;
    size_t n = s->nknown;
    /* Usually the threads are those of the last pass: copy their states
     * and the list head in one syscall, and check the links. */
    if (n > 0) {
        s->local_iov[0] = (struct iovec){&head, sizeof head};
        s->remote_iov[0] = (struct iovec){&s->interp->threads.head, sizeof head};
        for (size_t i = 0; i < n; i++) {
            s->local_iov[i + 1] = (struct iovec){&copies[i], sizeof *copies};
            s->remote_iov[i + 1] = (struct iovec){(void *)s->known_ts[i], sizeof *copies};
        }
        int same = mfp_mem_readv(s->local_iov, s->remote_iov, n + 1) == n + 1 &&
                   head == s->known_ts[0];
        for (size_t i = 0; same && i < n; i++)
            same = copies[i].interp == s->interp &&
                   (const void *)copies[i].next == (i + 1 < n ? s->known_ts[i + 1] : NULL);
        if (same) {
            for (size_t i = 0; i < n; i++) sample_thread(s, s->known_ts[i], &copies[i], t, dt);
            return;
        }
    }
    /* A thread came or went: walk the list one state at a time. */
    s->nknown = 0;
    if (mfp_mem_read(&head, &s->interp->threads.head, sizeof head) != 0) {
        s->stats.dropped[MFP_DROP_READ_FAULT]++;
        return;
    }
    PyThreadState one, *ts = &one;
    const PyThreadState *addr = head;
    for (n = 0; addr && n < MAX_THREADS; n++, addr = ts->next) {
        ts = n < BATCH_THREADS ? &copies[n] : &one;
        if (mfp_mem_read(ts, addr, sizeof *ts) != 0) {
            s->stats.dropped[MFP_DROP_READ_FAULT]++;
            return;
        }
        if (ts->interp != s->interp) { /* freed under us: the list moved */
            s->stats.dropped[MFP_DROP_INVALID]++;
            return;
        }
        if (n < BATCH_THREADS) s->known_ts[n] = addr;
        sample_thread(s, addr, ts, t, dt);
    }
    if (!addr && n <= BATCH_THREADS) s->nknown = n;
}
#endif /* MFP_LAYOUT_KNOWN */

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
        PyFrameObject *f = PyThreadState_GetFrame(ts);
        int depth = 0;
        while (f) {
            if (depth == MFP_SAMPLER_MAX_DEPTH) {
                s->stats.dropped[MFP_DROP_TOO_DEEP]++;
                depth = -1;
                break;
            }
            PyCodeObject *co = PyFrame_GetCode(f);
            uint32_t id = gil_frame(s, co, PyFrame_GetLineNumber(f));
            Py_DECREF(co);
            if (id != MFP_NONE) s->frame_ids[depth++] = id;
            PyFrameObject *back = PyFrame_GetBack(f);
            Py_DECREF(f);
            f = back;
        }
        Py_XDECREF(f);
        if (depth > 0)
            add_sample(s, NULL, ts->native_thread_id, ts, stack_node(s, depth),
                       thread_cpu_ns(ts->native_thread_id), t, dt);
    }
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
#if MFP_LAYOUT_KNOWN
    if (!s->gil_mode) {
        sample_all_direct(s, t - s->t0_ns, dt);
        s->stats.busy_ns += now_ns() - woke;
        return;
    }
#endif
    sample_all_gil(s, t - s->t0_ns, dt);
    PyGILState_Release(g);
    s->stats.busy_ns += now_ns() - woke;
}

static void *sampler_main(void *arg) {
    mfp_sampler *s = arg;
    uint64_t next = now_ns() + s->interval_ns;
    pthread_mutex_lock(&s->lock);
    while (!atomic_load(&s->stop)) {
        struct timespec ts = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
        if (atomic_load(&s->stop)) break;
        uint64_t now = now_ns();
        if (now < next) continue; /* spurious wake-up */
        pthread_mutex_unlock(&s->lock);
        sample_all(s);
        pthread_mutex_lock(&s->lock);
        next += s->interval_ns;
        now = now_ns();
        if (next <= now) next = now + s->interval_ns; /* fell behind: skip ticks */
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- lifetime ---------------------------------------------------------- */

void mfp_sampler_free(mfp_sampler *s) {
    if (!s) return;
    mfp_sampler_stop(s);
    free(s->cache);
    free(s->threads);
    free(s->ts_copies);
    free(s->thread_table);
    free(s->chunk);
    free(s->frames);
    free(s->codes);
    free(s->code_hdrs);
    free(s->local_iov);
    free(s->remote_iov);
    free(s->frame_ids);
    free(s->linetable);
    /* In a forked child the condition variable still counts the parent's
     * waiting sampler thread, and destroying it would wait forever. */
    if (getpid() == s->pid) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
    }
    free(s);
}

mfp_sampler *mfp_sampler_start(mfp_profile *p, uint64_t interval_ns, uint64_t t0_ns,
                               mfp_new_thread_hook on_new_thread, char *err, size_t errlen) {
    mfp_sampler *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    const char *forced = getenv("MFP_SAMPLER");
    if (!MFP_LAYOUT_KNOWN) {
        s->gil_mode = 1;
        snprintf(s->mode, sizeof s->mode,
                 "public C API with the GIL: this build does not know the frame layout of "
                 "Python %.20s", Py_GetVersion());
    } else if (forced && strcmp(forced, "gil") == 0) {
        s->gil_mode = 1;
        snprintf(s->mode, sizeof s->mode, "public C API with the GIL (MFP_SAMPLER=gil)");
    } else if (mfp_mem_init() != 0) {
        s->gil_mode = 1;
        snprintf(s->mode, sizeof s->mode,
                 "public C API with the GIL: cannot read own memory (process_vm_readv and "
                 "/proc/self/mem: %s)", strerror(errno));
    } else {
        snprintf(s->mode, sizeof s->mode, "without the GIL, through %s", mfp_mem_mechanism());
    }
    s->profile = p;
    s->interp = PyInterpreterState_Get();
    s->interval_ns = interval_ns;
    s->on_new_thread = on_new_thread;
    s->t0_ns = s->last_ns = t0_ns;
    s->pid = getpid();
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    s->cache = calloc((size_t)1 << FRAME_CACHE_BITS, sizeof *s->cache);
    s->threads = calloc(MAX_THREADS, sizeof *s->threads);
    s->ts_copies = malloc(BATCH_THREADS * sizeof *s->ts_copies);
    s->thread_table = calloc((size_t)1 << THREAD_TABLE_BITS, sizeof *s->thread_table);
    s->chunk_cap = CHUNK_COPY_MAX;
    s->chunk = malloc(s->chunk_cap);
    s->frames = malloc(MFP_SAMPLER_MAX_DEPTH * sizeof *s->frames);
    s->codes = malloc(MFP_SAMPLER_MAX_DEPTH * sizeof *s->codes);
    s->code_hdrs = malloc(MFP_SAMPLER_MAX_DEPTH * MFP_CODE_HEADER_SIZE); /* 1 byte when unknown */
    s->local_iov = malloc(MFP_SAMPLER_MAX_DEPTH * sizeof *s->local_iov);
    s->remote_iov = malloc(MFP_SAMPLER_MAX_DEPTH * sizeof *s->remote_iov);
    s->frame_ids = malloc(MFP_SAMPLER_MAX_DEPTH * sizeof *s->frame_ids);
    s->linetable = malloc(LINETABLE_MAX);
    if (!s->linetable || !s->ts_copies || !s->cache || !s->threads || !s->thread_table || !s->chunk || !s->frames || !s->codes || !s->code_hdrs ||
        !s->local_iov || !s->remote_iov || !s->frame_ids)
        goto oom;
    int rc = pthread_create(&s->thread, NULL, sampler_main, s);
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
    if (s && s->running) atomic_store(&s->stop, 1);
}

void mfp_sampler_stop(mfp_sampler *s) {
    if (!s || !s->running) return;
    s->running = 0;
    if (getpid() != s->pid) return; /* forked child: the thread is not here */
    pthread_mutex_lock(&s->lock);
    atomic_store(&s->stop, 1);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
}

const char *mfp_sampler_mode(const mfp_sampler *s) { return s->mode; }
int mfp_sampler_takes_gil(const mfp_sampler *s) { return s->gil_mode; }
int mfp_sampler_knows_layout(void) { return MFP_LAYOUT_KNOWN; }

void mfp_sampler_get_stats(const mfp_sampler *s, mfp_sampler_stats *out) {
    *out = s->stats;
}
