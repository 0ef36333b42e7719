/* pymalloc.c — pymalloc's free lists, for the heap profiler; see python.h.
 *
 * Why: the heap profiler's hooks on the PyMem and PyObject domains
 * (PyMem_SetAllocator) put one more indirect call between CPython and
 * pymalloc, and that alone cost 7 % of a loop allocating two ints every
 * 30 ns (bench/RESULTS.md, "floor"). A hook that takes the block from
 * pymalloc's free list itself, as pymalloc would, is that extra call
 * instead of an addition to it.
 *
 * What pymalloc does (Objects/obmalloc.c, pymalloc_alloc, 3.11 to 3.15):
 * usedpools[2c] is the first pool with a free block of size class
 * c = (n - 1) / 16, or when there is none the list's header: a fake pool
 * placed so that its nextpool field is usedpools[2c] itself. A pool's
 * freeblock heads a list of its free blocks; a block is taken by counting
 * it in ref.count and moving freeblock on; when that empties the list,
 * the next never-used block of the pool (at nextoffset) becomes the list.
 * A pool that block fills must be unlinked, and a size class without a
 * pool needs a new one: those are left to pymalloc
 * (mfp_python_pymalloc_take says NULL).
 *
 * Where usedpools is: static in 3.11's obmalloc.c, inside the obmalloc
 * state from 3.12. It is found the same way everywhere, from blocks
 * pymalloc hands out: the pool of a block just freed is first in its
 * class's list (pymalloc takes from, and puts back at, the front), so its
 * prevpool is the header, not at a pool boundary, whose nextpool is that
 * pool. Every size class must lead to the same array, through a pool of
 * that class, before it is trusted; all of it is read through mem (the
 * heap's checked copies: two system calls).
 *
 * One interpreter only: from 3.12 an isolated subinterpreter has pools
 * (and a GIL) of its own, so the caller takes blocks only while the main
 * interpreter is alone: the head of the runtime's list of interpreters
 * (mfp_python_interpreters), which a newer one replaces.
 */
#include "python.h"

#include "layout.h"

#define POOL_BYTES ((uintptr_t)1 << 14) /* 64-bit builds since 3.10 (radix tree) */
#define CLASSES 32                      /* 512 bytes in steps of 16 */

_Static_assert(offsetof(mfp_python_pool, nextpool) == 2 * sizeof(void *), "the header trick");
#if MFP_LAYOUT_KNOWN && PY_VERSION_HEX >= 0x030C0000 /* pycore_obmalloc.h, through layout.h */
_Static_assert(POOL_SIZE == POOL_BYTES && SMALL_REQUEST_THRESHOLD == 16 * CLASSES && ALIGNMENT == 16,
               "pymalloc's sizes");
_Static_assert(offsetof(struct pool_header, freeblock) == offsetof(mfp_python_pool, freeblock) &&
                   offsetof(struct pool_header, nextpool) == offsetof(mfp_python_pool, nextpool) &&
                   offsetof(struct pool_header, prevpool) == offsetof(mfp_python_pool, prevpool) &&
                   offsetof(struct pool_header, szidx) == offsetof(mfp_python_pool, szidx) &&
                   offsetof(struct pool_header, nextoffset) == offsetof(mfp_python_pool, nextoffset) &&
                   offsetof(struct pool_header, maxnextoffset) == offsetof(mfp_python_pool, maxnextoffset),
               "pymalloc's pool header");
#endif

mfp_python_pool **mfp_python_pymalloc_pools(const mfp_python_mem *mem, void *(*alloc)(void *, size_t),
                                            void (*release)(void *, void *), void *ctx) {
    if (!MFP_LAYOUT_KNOWN || sizeof(void *) != 8) return NULL;
    /* Two blocks of each class, the first given back: its pool then has a
     * free block and the second one in use, and is first in its list
     * (pymalloc took it from the front, or puts a full pool back there). */
    void *a[CLASSES], *b[CLASSES];
    int ok = 1;
    for (unsigned c = 0; c < CLASSES; c++) {
        a[c] = alloc(ctx, 16 * (size_t)(c + 1));
        b[c] = alloc(ctx, 16 * (size_t)(c + 1));
        ok = ok && a[c] && b[c];
    }
    for (unsigned c = 0; c < CLASSES; c++)
        if (a[c]) release(ctx, a[c]);
    mfp_python_pool pool[CLASSES], head[CLASSES];
    struct iovec local[CLASSES], remote[CLASSES];
    for (unsigned c = 0; ok && c < CLASSES; c++) {
        local[c] = (struct iovec){&pool[c], sizeof pool[c]};
        remote[c] = (struct iovec){(void *)((uintptr_t)a[c] & ~(POOL_BYTES - 1)), sizeof pool[c]};
    }
    ok = ok && mem->readv(local, remote, CLASSES) == CLASSES;
    /* Each pool's prevpool is then its list's header, 2 c pointers past
     * the first class's: the same array for every class. */
    for (unsigned c = 0; ok && c < CLASSES; c++) {
        uintptr_t h = (uintptr_t)pool[c].prevpool, first = h - 2 * c * sizeof(void *);
        ok = pool[c].szidx == c && pool[c].ref.count > 0 && h % POOL_BYTES != 0 &&
             first == (uintptr_t)pool[0].prevpool && pool[c].maxnextoffset == POOL_BYTES - 16 * (c + 1) &&
             pool[c].nextoffset <= POOL_BYTES;
        local[c] = (struct iovec){&head[c], sizeof head[c]};
        remote[c] = (struct iovec){(void *)h, sizeof head[c]};
    }
    ok = ok && mem->readv(local, remote, CLASSES) == CLASSES;
    for (unsigned c = 0; ok && c < CLASSES; c++) /* the header leads to the pool */
        ok = (uintptr_t)head[c].nextpool == ((uintptr_t)a[c] & ~(POOL_BYTES - 1));
    for (unsigned c = 0; c < CLASSES; c++)
        if (b[c]) release(ctx, b[c]);
    return ok ? (mfp_python_pool **)((char *)pool[0].prevpool + offsetof(mfp_python_pool, nextpool)) : NULL;
}

#if MFP_LAYOUT_KNOWN
#define Py_BUILD_CORE 1
#include <internal/pycore_runtime.h>
#undef Py_BUILD_CORE

void *const *mfp_python_interpreters(void) { return (void *const *)&_PyRuntime.interpreters.head; }
#else
void *const *mfp_python_interpreters(void) { return NULL; }
#endif
