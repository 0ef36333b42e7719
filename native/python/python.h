/* python.h — everything native/ knows about CPython's internals.
 *
 * What: the interpreter's structures as the sampler (sampler/) and the heap
 * profiler (heap/) read them — the interpreter's thread list, a thread's
 * current frame chain, and a code object + instruction turned into a
 * profile frame (qualname, file, first line, current line). A new CPython
 * release is a change to this folder alone (layout.h names the fields that
 * moved; tests/test_python_frames.c walks synthetic frame chains built with
 * that release's headers).
 *
 * How memory is read is the caller's choice (mfp_python_mem):
 *  - a checked copy (the sampler: memread.h), for another thread's
 *    structures, which change and are freed while they are read. Nothing is
 *    dereferenced in place; everything copied is validated (type pointers,
 *    bounds, cycles) and a failure is an error code, never a crash;
 *  - mfp_python_direct, plain loads, for the calling thread's own frames
 *    (the heap hook: the thread is inside an allocation and cannot change
 *    them). Frames are used in place; those without a code object are
 *    skipped.
 *
 * A build for an interpreter layout.h does not know (newer, free-threaded,
 * or MFP_PORTABLE=1) still compiles: mfp_python_layout_known() is 0 and
 * every reader here refuses to start (NULL), so callers fall back to the
 * public C API.
 *
 * Memory: a walker and a decoder own their scratch space and caches; the
 * decoder writes strings, functions and frames into the profile store it was
 * made with, which the caller owns and must keep alive while it is used.
 * Threads: each walker or decoder is used by one thread at a time (the
 * caller's lock or thread); none of these functions takes the GIL,
 * allocates after creation, or calls into the interpreter.
 */
#ifndef MFP_PYTHON_H
#define MFP_PYTHON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../profile/profile.h"

/* 1 when this build knows the interpreter's layout (and the readers below
 * work), 0 when only the public C API may be used. */
int mfp_python_layout_known(void);

/* Check this build's layout against what the running interpreter
 * publishes about itself (_PyRuntime.debug_offsets, 3.13+): 0 when they
 * agree (or the interpreter publishes nothing: 3.11, 3.12), else -1 with
 * the first disagreement in words in why (e.g. "thread_state.next is at
 * 16 in the running interpreter, 8 in this build"); the readers must then
 * not be used. The layout unknown: -1. */
int mfp_python_check_layout(char *why, size_t cap);

/* The same check against a _Py_DebugOffsets at p (tests give doctored
 * copies). */
int mfp_python_check_offsets(const void *p, char *why, size_t cap);

/* Why a read failed; the sampler counts its drops by these. */
enum mfp_python_error {
    MFP_PYTHON_READ_FAULT, /* an address could not be copied */
    MFP_PYTHON_INVALID,    /* what was copied did not validate */
    MFP_PYTHON_TOO_DEEP,   /* more frames than the caller's maximum */
    MFP_PYTHON_NO_MEMORY,  /* the profile store could not grow */
    MFP_PYTHON_ERRORS
};

/* How memory is read. read: copy n bytes at src (an address in this
 * process) to dst, 0 when complete. readv: cnt regions at once, returns how
 * many leading regions were copied completely. direct: the memory cannot
 * change or vanish under the reader, so structures may be used in place. */
typedef struct {
    int (*read)(void *dst, const void *src, size_t n);
    size_t (*readv)(const struct iovec *local, const struct iovec *remote, size_t cnt);
    int direct;
} mfp_python_mem;

/* Plain loads (memcpy), for the calling thread's own frames. */
extern const mfp_python_mem mfp_python_direct;

/* ---- threads ------------------------------------------------------------- */

/* What a thread state says, decoded from a copy of it. */
typedef struct {
    const void *next;    /* the next thread state of the interpreter, or NULL */
    const void *interp;  /* its interpreter */
    uint64_t tid;        /* native (kernel) thread id */
    const void *frame;   /* where its current frame is found (NULL: no Python code) */
    /* its data stack (frames of running functions): the newest chunk, its
     * top and its end */
    const void *chunk, *chunk_top, *chunk_limit;
} mfp_python_thread;

/* Bytes of a thread state to copy for mfp_python_thread_decode (1 when the
 * layout is unknown). */
size_t mfp_python_tstate_size(void);

/* Address of the head of interp's thread list (a pointer to copy), or NULL
 * when the layout is unknown. interp is a PyInterpreterState *. */
const void *mfp_python_threads_head(const void *interp);

/* Decode a copy of mfp_python_tstate_size() bytes of a thread state (or,
 * with mfp_python_direct, the live thread state itself). */
void mfp_python_thread_decode(const void *copy, mfp_python_thread *out);

/* ---- pymalloc's free lists (pymalloc.c) ----------------------------------- */

/* The head of one of pymalloc's pools (Objects/obmalloc.c; 3.12+:
 * pycore_obmalloc.h), the same from 3.11 to 3.15. */
typedef struct mfp_python_pool {
    union {
        void *padding;
        unsigned count; /* blocks in use */
    } ref;
    void **freeblock; /* its free blocks, each holding the next */
    struct mfp_python_pool *nextpool, *prevpool;
    unsigned arenaindex, szidx;
    unsigned nextoffset, maxnextoffset; /* where its next never-used block is, its last */
} mfp_python_pool;

/* pymalloc's usedpools (the first pool with a free block of each size
 * class), found through blocks taken with alloc and given back with
 * release (pymalloc's malloc and free, ctx their context) and read through
 * mem; NULL when not found and checked for every size class. With the GIL,
 * while the main interpreter is the only one. */
mfp_python_pool **mfp_python_pymalloc_pools(const mfp_python_mem *mem, void *(*alloc)(void *, size_t),
                                            void (*release)(void *, void *), void *ctx);

/* A block of n bytes (1..512) taken from used as pymalloc takes it, or
 * NULL where pymalloc has more to do (no pool of that size class has a
 * free block, or the one taken fills its pool): then pymalloc is to be
 * called. With the GIL of the interpreter that owns used. */
static inline void *mfp_python_pymalloc_take(mfp_python_pool **used, size_t n) {
    size_t c = (n - 1) >> 4;
    mfp_python_pool *pool = used[c + c];
    if (pool == pool->nextpool) return NULL; /* the list's header: no pool */
    void **block = pool->freeblock;
    void **next = (void **)*block;
    if (!next) { /* the pool's last free block: carve the next one, as pymalloc would */
        if (pool->nextoffset > pool->maxnextoffset) return NULL; /* it fills the pool */
        next = (void **)((char *)pool + pool->nextoffset);
        pool->nextoffset += (unsigned)(c + 1) << 4;
        *next = NULL;
    }
    pool->freeblock = next;
    pool->ref.count++;
    return block;
}

/* Where the runtime keeps the head of its list of interpreters (the
 * newest, a PyInterpreterState *), or NULL when the layout is unknown. */
void *const *mfp_python_interpreters(void);

/* ---- the GIL (gil.c) ------------------------------------------------------ */

/* Where interp's GIL keeps its state (interp is a PyInterpreterState *;
 * call with the GIL held, the answer stays valid for the interpreter's
 * life). NULL when the layout is unknown. */
const void *mfp_python_gil(const void *interp);

/* The thread state holding that GIL now, read through mem; NULL when it is
 * free or cannot be read. */
const void *mfp_python_gil_holder(const void *gil, const mfp_python_mem *mem);

/* ---- frame chains -------------------------------------------------------- */

/* One Python frame as found on a stack: where the frame is, its code
 * object (an address, not yet validated) and the index of its instruction
 * in code units (-1 when unknown). hdr is the decoder's scratch. */
typedef struct {
    const void *frame, *code;
    int32_t lasti;
    uint32_t hdr;
} mfp_python_frame;

typedef struct mfp_python_walker mfp_python_walker;

/* A walker reading through mem (copied: the pointer must outlive the
 * walker). With a checked copy it keeps a buffer for the thread's data
 * stack (4 MiB). NULL when out of memory or the layout is unknown. */
mfp_python_walker *mfp_python_walker_new(const mfp_python_mem *mem);
void mfp_python_walker_free(mfp_python_walker *w);

/* The Python frames of the thread whose state *t was decoded from, leaf
 * first, into out[0..max). Returns the depth (0: no Python code running),
 * or -1 with *error.
 *
 * addr is where that thread state lives. With a checked copy the walk
 * copies it afresh, in one vectored read with the newest data-stack chunk
 * (where *t says it is), and *t becomes that copy: a state copied earlier,
 * even a few tens of µs, points into frames a call or return has rewritten
 * since. When it cannot be copied (t->interp is then NULL: -1,
 * MFP_PYTHON_READ_FAULT) or is no longer a thread state of *t's
 * interpreter (-1, MFP_PYTHON_INVALID), the caller compares *t with what
 * it knew to tell an ended thread from a torn stack. Reading directly,
 * addr is not used and *t is what the walk follows.
 *
 * The thread runs on while a checked copy is made, so the chain may still
 * be torn: a walk that meets a loop, or a caller above its callee inside
 * one data-stack chunk, fails as MFP_PYTHON_INVALID within a few frames
 * (read again a moment later, it is usually whole).
 *
 * A stack of more than max frames keeps its leaf-most max/2 frames in
 * out[0..max/2) and its root-most ones in out[max/2..max), returns max and
 * sets *elided to the number of frames left out between (else *elided is
 * 0); past MFP_PYTHON_WALK_MAX frames: -1 with MFP_PYTHON_TOO_DEEP. */
#define MFP_PYTHON_WALK_MAX (1 << 22)
int mfp_python_walk(mfp_python_walker *w, const void *addr, mfp_python_thread *t,
                    mfp_python_frame *out, int max, size_t *elided, int *error);

/* ---- code objects -------------------------------------------------------- */

typedef struct mfp_python_decoder mfp_python_decoder;

/* A decoder writing into store, reading through mem, for stacks of up to
 * max_depth frames, with a (code, instruction) cache of 2^cache_bits
 * entries. NULL when out of memory or the layout is unknown. */
mfp_python_decoder *mfp_python_decoder_new(mfp_profile *store, const mfp_python_mem *mem,
                                           int max_depth, unsigned cache_bits);
void mfp_python_decoder_free(mfp_python_decoder *d);

/* Turn frames[0..depth) into profile frame indices ids[0..depth): each code
 * object's header is copied once and validated (its type, its first line);
 * names and line tables are read only for a (code, instruction) pair the
 * cache does not hold, and a cached pair is used only while the header's
 * names, line table and first line are those it was cached with (a freed
 * and reused code address is caught). 0, or -1 with *error. */
int mfp_python_decode(mfp_python_decoder *d, mfp_python_frame *frames, int depth, uint32_t *ids,
                      int *error);

#endif
