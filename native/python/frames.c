/* frames.c — thread states and frame chains; see python.h.
 *
 * Why it is built this way. With a checked copy every read is a syscall
 * costing microseconds, so a walk makes few: one bulk copy of the used part
 * of each of the thread's data-stack chunks, where the interpreter keeps
 * the frames of running functions, so following the chain is local work
 * (generator frames live elsewhere and are copied one by one). The thread
 * state is copied in the same vectored read as the newest chunk: the
 * kernel copies one right after the other, so the current frame it names
 * is rarely one the thread has returned from and overwritten since, as
 * it often is for a state copied at the start of a pass (tens of µs
 * before, with other threads read in between). What a walk had to read
 * outside the chunks (3.11/3.12's C frame record, the entry frames C code
 * keeps on its own stack, generator frames) is copied in that same read
 * the next time, at the addresses the thread's last walk found, which
 * hold as long as it stays inside the same outer calls: a wrong guess
 * costs bytes, a right one a system call (two a pass on 3.12).
 */
#include "python.h"

#include "layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_COPY_MAX (4u << 20)
#define MAX_CHUNKS 1024
#define CHUNK_GUESS (16u << 10) /* CPython's DATA_STACK_CHUNK_SIZE */
#define CHUNK_SLACK 2048        /* frames pushed since the thread state was last copied */
#define GUESS_BITS 6            /* 2^6 threads' reads outside the chunks are remembered */
#define GUESSES 6               /* reads remembered a thread, the root-most left out */

static int direct_read(void *dst, const void *src, size_t n) {
    memcpy(dst, src, n);
    return 0;
}

static size_t direct_readv(const struct iovec *local, const struct iovec *remote, size_t cnt) {
    for (size_t i = 0; i < cnt; i++) memcpy(local[i].iov_base, remote[i].iov_base, local[i].iov_len);
    return cnt;
}

const mfp_python_mem mfp_python_direct = {direct_read, direct_readv, 1};

int mfp_python_layout_known(void) { return MFP_LAYOUT_KNOWN; }

#if !MFP_LAYOUT_KNOWN

int mfp_python_check_layout(char *why, size_t cap) {
    /* The version alone: the rest of Py_GetVersion() is build details. */
    const char *v = Py_GetVersion();
    snprintf(why, cap, "this build does not know the frame layout of Python %.*s%s",
             (int)strcspn(v, " "), v,
#ifdef Py_GIL_DISABLED
             " (free-threaded)"
#else
             ""
#endif
    );
    return -1;
}
int mfp_python_check_offsets(const void *p, char *why, size_t cap) {
    (void)p;
    return mfp_python_check_layout(why, cap);
}
size_t mfp_python_tstate_size(void) { return 1; }
const void *mfp_python_threads_head(const void *interp) { (void)interp; return NULL; }
void mfp_python_thread_decode(const void *copy, mfp_python_thread *out) {
    (void)copy;
    memset(out, 0, sizeof *out);
}
mfp_python_walker *mfp_python_walker_new(const mfp_python_mem *mem) { (void)mem; return NULL; }
void mfp_python_walker_free(mfp_python_walker *w) { (void)w; }
int mfp_python_walk(mfp_python_walker *w, const void *addr, mfp_python_thread *t,
                    mfp_python_frame *out, int max, size_t *elided, int *error) {
    (void)w; (void)addr; (void)t; (void)out; (void)max;
    *elided = 0;
    *error = MFP_PYTHON_INVALID;
    return -1;
}

#else

/* ---- the running interpreter's own account of its layout ------------------ */

#if MFP_HAS_DEBUG_OFFSETS
int mfp_python_check_offsets(const void *p, char *why, size_t cap) {
    const _Py_DebugOffsets *d = p;
    if (memcmp(d->cookie, _Py_Debug_Cookie, sizeof d->cookie) != 0) {
        snprintf(why, cap, "the running interpreter publishes no debug offsets");
        return -1;
    }
    if (d->version >> 16 != PY_VERSION_HEX >> 16 || d->free_threaded) {
        snprintf(why, cap, "this build is for Python %d.%d, the running interpreter is %d.%d%s",
                 PY_MAJOR_VERSION, PY_MINOR_VERSION, (int)(d->version >> 24 & 255),
                 (int)(d->version >> 16 & 255), d->free_threaded ? " (free-threaded)" : "");
        return -1;
    }
#define F(group, field, expect) {#group "." #field, d->group.field, (uint64_t)(expect)}
    const struct { const char *name; uint64_t have, want; } fields[] = {
        F(interpreter_state, threads_head, offsetof(PyInterpreterState, threads.head)),
        F(thread_state, next, offsetof(PyThreadState, next)),
        F(thread_state, interp, offsetof(PyThreadState, interp)),
        F(thread_state, current_frame, offsetof(PyThreadState, current_frame)),
        F(thread_state, native_thread_id, offsetof(PyThreadState, native_thread_id)),
        F(thread_state, datastack_chunk, offsetof(PyThreadState, datastack_chunk)),
        F(interpreter_frame, previous, offsetof(mfp_py_frame, previous)),
        F(interpreter_frame, executable, offsetof(mfp_py_frame, f_executable)),
        F(interpreter_frame, instr_ptr, offsetof(mfp_py_frame, instr_ptr)),
        F(interpreter_frame, owner, offsetof(mfp_py_frame, owner)),
        F(code_object, filename, offsetof(PyCodeObject, co_filename)),
        F(code_object, qualname, offsetof(PyCodeObject, co_qualname)),
        F(code_object, linetable, offsetof(PyCodeObject, co_linetable)),
        F(code_object, firstlineno, offsetof(PyCodeObject, co_firstlineno)),
        F(code_object, co_code_adaptive, offsetof(PyCodeObject, co_code_adaptive)),
    };
#undef F
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        if (fields[i].have != fields[i].want) {
            snprintf(why, cap, "%s is at %llu in the running interpreter, %llu in this build",
                     fields[i].name, (unsigned long long)fields[i].have,
                     (unsigned long long)fields[i].want);
            return -1;
        }
    }
    return 0;
}

int mfp_python_check_layout(char *why, size_t cap) {
    return mfp_python_check_offsets(&_PyRuntime.debug_offsets, why, cap);
}
#else /* 3.11, 3.12 publish nothing: the headers are all there is */
int mfp_python_check_offsets(const void *p, char *why, size_t cap) {
    (void)p;
    (void)why;
    (void)cap;
    return 0;
}
int mfp_python_check_layout(char *why, size_t cap) { return mfp_python_check_offsets(NULL, why, cap); }
#endif

/* ---- threads ------------------------------------------------------------- */

size_t mfp_python_tstate_size(void) { return sizeof(PyThreadState); }

const void *mfp_python_threads_head(const void *interp) {
    return &((const PyInterpreterState *)interp)->threads.head;
}

void mfp_python_thread_decode(const void *copy, mfp_python_thread *out) {
    const PyThreadState *ts = copy;
    out->next = ts->next;
    out->interp = ts->interp;
    out->tid = (uint64_t)ts->native_thread_id;
#if MFP_TSTATE_HAS_CFRAME
    out->frame = ts->cframe; /* the walk reads current_frame through it */
#else
    out->frame = ts->current_frame;
#endif
    out->chunk = ts->datastack_chunk;
    out->chunk_top = ts->datastack_top;
    out->chunk_limit = ts->datastack_limit;
}

/* ---- the walker ---------------------------------------------------------- */

typedef struct {
    const char *remote; /* where the chunk lives in the interpreter */
    size_t len;
    const char *local;  /* where its copy is in w->chunk */
} copied_region;

/* A thread's reads outside its chunks in its last walk, in walk order. */
typedef struct {
    const void *tstate; /* NULL: empty slot */
    unsigned n;
    struct {
        const void *at;
        size_t len;
    } read[GUESSES];
} guess_set;

struct mfp_python_walker {
    mfp_python_mem mem;
    char *chunk; /* NULL when reading directly */
    copied_region regions[MAX_CHUNKS];
    size_t nregions, last_region;
    PyThreadState fresh;
    guess_set guesses[1 << GUESS_BITS]; /* by thread state address */
    guess_set *guess;                 /* this walk's thread's, filled as it reads */
    unsigned nguessed;                /* guesses copied with the state this walk */
    guess_set guessed;                /* those, copied into: */
    mfp_py_frame guessed_copy[GUESSES];
};

mfp_python_walker *mfp_python_walker_new(const mfp_python_mem *mem) {
    mfp_python_walker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->mem = *mem;
    if (!mem->direct && !(w->chunk = malloc(CHUNK_COPY_MAX))) {
        free(w);
        return NULL;
    }
    return w;
}

void mfp_python_walker_free(mfp_python_walker *w) {
    if (!w) return;
    free(w->chunk);
    free(w);
}

/* Copy the thread state at addr afresh into *t, in one vectored read with
 * the newest chunk the old *t names, into w->chunk: its used part and
 * CHUNK_SLACK more (frames pushed since), within the chunk. Returns how
 * many bytes of the fresh state's newest chunk that copied (0: not it, or
 * not all of it), or -1 when the state could not be copied. */
static long copy_state(mfp_python_walker *w, const void *addr, mfp_python_thread *t) {
    uintptr_t c = (uintptr_t)t->chunk, top = (uintptr_t)t->chunk_top, end = (uintptr_t)t->chunk_limit;
    size_t len = 0;
    if (c && top >= c && end > top) {
        len = top - c + CHUNK_SLACK;
        if (len > end - c) len = end - c;
        if (len > CHUNK_COPY_MAX) len = CHUNK_COPY_MAX;
    }
    struct iovec local[2 + GUESSES] = {{&w->fresh, sizeof w->fresh}, {w->chunk, len}};
    struct iovec remote[2 + GUESSES] = {{(void *)addr, sizeof w->fresh}, {(void *)c, len}};
    size_t cnt = len ? 2 : 1, first_guess = cnt;
    guess_set *g = &w->guesses[((uintptr_t)addr >> 4) * 0x9E3779B97F4A7C15ull >> (64 - GUESS_BITS)];
    w->guessed = g->tstate == addr ? *g : (guess_set){0};
    for (unsigned i = 0; i < w->guessed.n; i++, cnt++) {
        local[cnt] = (struct iovec){&w->guessed_copy[i], w->guessed.read[i].len};
        remote[cnt] = (struct iovec){(void *)w->guessed.read[i].at, w->guessed.read[i].len};
    }
    *g = (guess_set){addr, 0, {{0}}}; /* this walk's reads, from here on */
    w->guess = g;
    size_t got = w->mem.readv(local, remote, cnt);
    w->nguessed = got > first_guess ? (unsigned)(got - first_guess) : 0;
    if (got == 0) {
        t->interp = NULL;
        return -1;
    }
    mfp_python_thread_decode(&w->fresh, t);
    uintptr_t fc = (uintptr_t)t->chunk, ftop = (uintptr_t)t->chunk_top;
    return len && got >= 2 && fc == c && ftop >= fc && ftop - fc <= len ? (long)(ftop - fc) : 0;
}

/* n bytes (at most a frame's) at addr, outside the copied chunks: this
 * walk's copy when the guesses held it, else read now into tmp; either
 * way a guess for the thread's next walk. NULL when unreadable. */
static const void *read_outside(mfp_python_walker *w, const void *addr, void *tmp, size_t n) {
    const void *got = NULL;
    for (unsigned i = 0; i < w->nguessed && !got; i++)
        if (w->guessed.read[i].at == addr && w->guessed.read[i].len == n) got = &w->guessed_copy[i];
    if (!got && w->mem.read(tmp, addr, n) == 0) got = tmp;
    if (got && w->guess && w->guess->n < GUESSES) {
        w->guess->read[w->guess->n].at = addr;
        w->guess->read[w->guess->n++].len = n;
    }
    return got;
}

/* Copy the used part of the thread's data-stack chunks (newest first) into
 * w->chunk, recording where each landed; the first have bytes of the
 * newest are there already (copy_state). An older chunk is full up to its
 * saved top, which only its header says: its first CHUNK_GUESS bytes (the
 * size the interpreter gives a chunk unless one frame needs more) are
 * copied with the header, so a chunk usually costs one syscall, not two.
 * Stops quietly at the first chunk it cannot copy. */
static void copy_chunks(mfp_python_walker *w, const mfp_python_thread *t, size_t have) {
    const size_t head = offsetof(_PyStackChunk, data);
    const char *remote = t->chunk;
    size_t used = remote && t->chunk_top ? (size_t)((uintptr_t)t->chunk_top - (uintptr_t)remote) : 0;
    size_t filled = 0;
    w->nregions = 0;
    w->last_region = 0;
    for (int newest = 1; remote && w->nregions < MAX_CHUNKS; newest = 0) {
        char *at = w->chunk + filled;
        size_t room = CHUNK_COPY_MAX - filled;
        if (newest) {
            if (used == 0 || used > room || (used != have && w->mem.read(at, remote, used) != 0)) break;
        } else {
            size_t guess = CHUNK_GUESS < room ? CHUNK_GUESS : room;
            if (guess < head || w->mem.read(at, remote, guess) != 0) break;
            _PyStackChunk prev;
            memcpy(&prev, at, head);
            if (prev.top > prev.size / sizeof(PyObject *)) break;
            used = head + prev.top * sizeof(PyObject *);
            if (used > room || (used > guess && w->mem.read(at + guess, remote + guess, used - guess) != 0))
                break;
        }
        w->regions[w->nregions++] = (copied_region){remote, used, at};
        _PyStackChunk hdr;
        memcpy(&hdr, at, sizeof hdr < used ? sizeof hdr : used);
        filled += used;
        if (used < sizeof hdr || !hdr.previous) break;
        remote = (const char *)hdr.previous;
    }
}

/* Frame at address addr: in place when reading directly; else from the
 * copied chunks when it lies inside one (*region = its index), or copied
 * on its own into *tmp (*region = SIZE_MAX). NULL when unreadable. */
static const mfp_py_frame *frame_at(mfp_python_walker *w, const void *addr, mfp_py_frame *tmp,
                                    size_t *region) {
    *region = SIZE_MAX;
    if (w->mem.direct) return addr;
    /* addr may be garbage (a frame torn while it was copied): compare as
     * integers, so no pointer arithmetic can overflow. */
    uintptr_t a = (uintptr_t)addr;
    for (size_t k = 0; k < w->nregions; k++) {
        size_t i = (w->last_region + k) % w->nregions; /* the walk moves region by region */
        const copied_region *r = &w->regions[i];
        uintptr_t off = a - (uintptr_t)r->remote;
        if (a >= (uintptr_t)r->remote && off < r->len && r->len - off >= sizeof(mfp_py_frame)) {
            w->last_region = *region = i;
            return (const mfp_py_frame *)(r->local + off);
        }
    }
    return read_outside(w, addr, tmp, sizeof *tmp);
}

/* Put the ring of root-most frames in order: out[lo..max) holds them
 * oldest first starting at out[lo + next - lo]. */
static void unroll(mfp_python_frame *out, int lo, int max, int next) {
    int n = max - lo, k = next - lo; /* rotate left by k */
    for (int a = 0, b = k - 1; a < b; a++, b--) { mfp_python_frame x = out[lo + a]; out[lo + a] = out[lo + b]; out[lo + b] = x; }
    for (int a = k, b = n - 1; a < b; a++, b--) { mfp_python_frame x = out[lo + a]; out[lo + a] = out[lo + b]; out[lo + b] = x; }
    for (int a = 0, b = n - 1; a < b; a++, b--) { mfp_python_frame x = out[lo + a]; out[lo + a] = out[lo + b]; out[lo + b] = x; }
}

/* Inside one data-stack chunk a caller always sits below its callee, and
 * any other loop is caught by Brent's cycle check, so garbage costs a few
 * steps, not a full-depth walk. Past max frames the root-most half of out
 * is a ring: the frames that fall out of it are the elided middle. */
int mfp_python_walk(mfp_python_walker *w, const void *addr, mfp_python_thread *t,
                    mfp_python_frame *out, int max, size_t *elided, int *error) {
    const void *top = NULL;
    size_t have = 0;
    *elided = 0;
    if (!w->mem.direct) {
        const void *interp = t->interp;
        long got = copy_state(w, addr, t);
        if (got < 0 || t->interp != interp) {
            *error = got < 0 ? MFP_PYTHON_READ_FAULT : MFP_PYTHON_INVALID;
            return -1;
        }
        have = (size_t)got;
    }
#if MFP_TSTATE_HAS_CFRAME
    _PyCFrame cf;
    const _PyCFrame *cfp;
    if (!t->frame) return 0;
    _Static_assert(sizeof cf <= sizeof(mfp_py_frame), "read_outside copies a frame's size at most");
    if (!(cfp = read_outside(w, t->frame, &cf, sizeof cf))) {
        *error = MFP_PYTHON_READ_FAULT;
        return -1;
    }
    top = cfp->current_frame;
#else
    top = t->frame;
#endif
    if (!top) return 0; /* no Python code running in this thread */
    if (w->mem.direct) w->nregions = 0;
    else copy_chunks(w, t, have);
    int depth = 0, lo = max / 2, next = 0; /* next: the ring's oldest slot once full */
    size_t total = 0;
    mfp_py_frame tmp;
    const void *mark = top;    /* Brent: compared with every address ... */
    size_t steps = 0, lap = 1; /* ... and moved forward after lap steps, lap doubling */
    size_t prev_region = SIZE_MAX;
    uintptr_t prev_addr = 0;
    int ends = 0; /* the last frame read can be a thread's root-most */
    for (const void *addr = top; addr;) {
        /* A torn link can point anywhere, also between words: a frame
         * is never there, and a copy is not read through such a pointer. */
        if ((uintptr_t)addr % _Alignof(mfp_py_frame)) { *error = MFP_PYTHON_INVALID; return -1; }
        size_t region;
        const mfp_py_frame *f = frame_at(w, addr, &tmp, &region);
        if (!f) { *error = MFP_PYTHON_READ_FAULT; return -1; }
        if (region != SIZE_MAX && region == prev_region && (uintptr_t)addr >= prev_addr) {
            *error = MFP_PYTHON_INVALID;
            return -1;
        }
        prev_region = region;
        prev_addr = (uintptr_t)addr;
        const void *code = MFP_FRAME_CODE(f);
        /* Direct reads see the thread's own, whole stack: a frame without a
         * code object is not Python code, not a torn read. A copied leaf
         * without one is, where the interpreter clears a returning frame's
         * code after the thread state names its caller, the frame being
         * popped: the caller's stack is the one running. */
        int skip = MFP_FRAME_IS_SHIM(f) ||
                   (w->mem.direct && (!code || Py_TYPE((PyObject *)code) != &PyCode_Type)) ||
                   (MFP_POP_CLEARS_CODE && !code && addr == top);
        if (!skip) {
            if (!code) { *error = MFP_PYTHON_INVALID; return -1; }
            if (++total > MFP_PYTHON_WALK_MAX) { *error = MFP_PYTHON_TOO_DEEP; return -1; }
            /* Unchecked values: integer arithmetic only. */
            uintptr_t off = (uintptr_t)MFP_FRAME_INSTR(f) - ((uintptr_t)code + MFP_CODE_HEADER_SIZE);
            int32_t lasti = off < (1u << 28) ? (int32_t)(off / sizeof(_Py_CODEUNIT)) : -1;
            mfp_python_frame fr = {addr, code, lasti, 0};
            if (depth < max) {
                out[depth++] = fr;
                if (depth == max) next = lo;
            } else { /* overwrite the oldest of the root-most frames */
                out[next] = fr;
                next = next + 1 == max ? lo : next + 1;
                ++*elided;
            }
        }
        ends = MFP_FRAME_ENDS_STACK(f);
        addr = f->previous;
        if (addr == mark) { *error = MFP_PYTHON_INVALID; return -1; }
        if (++steps == lap) {
            mark = addr;
            steps = 0;
            lap *= 2;
        }
    }
    /* A copied chain that ends elsewhere than where a stack can end was
     * read torn (layout.h), and lost its callers: at a frame being pushed
     * (3 in 9,825 samples of calls of varying depth on 3.12 under ASan, the
     * clean-clone CI's test_exports failure on 3.11), or at a generator's
     * frame read across a yield — its caller link is set only while it
     * runs, and the thread state named it before (16 % of the samples of
     * a generator expression summed in a loop on 3.13, as stacks of that
     * frame alone). A thread reading its own stack sees it whole. */
    if (!w->mem.direct && !ends) {
        *error = MFP_PYTHON_INVALID;
        return -1;
    }
    if (*elided) unroll(out, lo, max, next);
    return depth;
}

#endif /* MFP_LAYOUT_KNOWN */
