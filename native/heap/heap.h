/* heap.h — sampled allocation profiling: where the memory went.
 *
 * Hooks the Python allocator domains (PyMem_SetAllocator: raw, mem, object)
 * and the native allocation functions that C extensions call (malloc,
 * calloc, realloc, free, posix_memalign, aligned_alloc, memalign, valloc,
 * mmap/munmap of anonymous memory) by rewriting the GOT slots of every
 * loaded object except the C library, the loader and this extension
 * (got.h); dlopen is hooked the same way so libraries loaded later are
 * patched too. Allocations are sampled by bytes with exponentially
 * distributed intervals of mean `rate` bytes, so the estimates are
 * unbiased (docs/FORMAT.md, "Memory rows"). Each sampled allocation keeps
 * the allocating thread's Python stack (a thread without Python frames gets
 * a "thread <name> (<tid>)" root; native allocations get a "[native malloc]"
 * or "[native mmap]" leaf). The tracker keeps the live sampled set and the
 * live bytes of every stack at the peak of the estimated live heap, the
 * total allocated per stack, what is still live at the stop (LEAKS), and
 * when each sampled allocation was made and freed (HEAP_EVENTS, bounded:
 * at most 2^19, the shortest-lived freed ones dropped first; META
 * memory.events_min_life_us says below what lifetime).
 *
 * One tracker runs per process at a time (the hooks are process-wide).
 * Cost: in the PyMem/PyObject domains, when they are pymalloc (the usual
 * case; META memory.fast_hooks), an allocation of 1..512 bytes that is not
 * sampled costs a range check and a decrement of one countdown shared
 * under the GIL before a tail call to pymalloc, and a free nothing: free
 * is left to pymalloc. A sampled small allocation is placed outside
 * pymalloc's arenas, so its free and realloc reach the raw domain's hook
 * (pymalloc hands such pointers there); a realloc also screens the old
 * block and sets the busy flag. Elsewhere (raw domain, native
 * hooks, PYTHONMALLOC=malloc) a thread-local countdown and a busy flag,
 * and frees screened by a 64 KiB filter. bench/bench_memory.py,
 * bench/RESULTS.md.
 *
 * Memory: the tracker owns its bookkeeping (a private profile store, the
 * per-stack counters, bounded by the distinct stacks seen). The live table
 * is mapped once per process and reused (at most 2^18 live samples; more
 * are counted as dropped). mfp_heap_export copies the result into a
 * profile; the caller keeps owning that profile.
 *
 * Threads: start/stop/export/info/free are called by one controlling
 * thread with the GIL held; mfp_heap_snapshot by one thread at a time while
 * running, with or without the GIL (module.c serialises it with stop). The hooks run on any thread, with or without
 * the GIL, and are reentrancy-safe, thread-safe and fork-safe: in a forked
 * child they pass through (nothing is recorded there; stop in the child
 * only removes the hooks). After stop the hooks are removed; memory
 * allocated while profiling may be freed at any time, before or after, and
 * a thread still inside a hook when stop runs is harmless.
 */
#ifndef MFP_HEAP_H
#define MFP_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "../profile/profile.h"
#include "../python/python.h"

typedef struct mfp_heap mfp_heap;

/* Install the hooks; mean sampling interval rate_bytes (1 .. 2^40, e.g.
 * 128 KiB). checked: checked copies (a fault fails the copy), through which
 * pymalloc's free lists are looked for; NULL leaves every block to
 * pymalloc. NULL on failure with a message in err (e.g. another tracker
 * is running, unknown Python version). Must hold the GIL. */
mfp_heap *mfp_heap_start(uint64_t rate_bytes, const mfp_python_mem *checked, char *err, size_t errlen);

/* Remove the hooks and freeze the results (GIL held: it restores the PyMem
 * allocators). Idempotent; NULL is ignored. */
void mfp_heap_stop(mfp_heap *h);

/* Add MEMORY rows (estimated live bytes at peak, total allocated, count per
 * stack), LEAKS rows (live at stop per stack) and HEAP_EVENTS (times from
 * t0_ns, the profile start on CLOCK_MONOTONIC) to p, importing the stacks,
 * frames, functions and strings they need. Only after stop. 0, or -1 when
 * out of memory or still running. */
int mfp_heap_export(const mfp_heap *h, mfp_profile *p, uint64_t t0_ns);

/* While running, from any one thread (the live card's; GIL not needed):
 * add the MEMORY rows so far (live bytes at the peak so far, allocated so
 * far), LEAKS (live now) and HEAP_EVENTS so far (those not yet freed as
 * still live) to p, as mfp_heap_export does at stop, and take the counters
 * that mfp_heap_info_json reports. The live set, the per-stack counters and
 * the event record are only changed under the hooks' slow-path lock, which
 * this holds for a copy proportional to the distinct allocation stacks and
 * the events; allocations that are not sampled never wait, sampled ones
 * wait for the copy. 0, or -1 when out of memory or not running. */
int mfp_heap_snapshot(mfp_heap *h, mfp_profile *p, uint64_t t0_ns);

/* A JSON object for META["memory"] (keys in docs/FORMAT.md, META), with a
 * "notes" list of strings for the card. After stop, or while running as of
 * the last mfp_heap_snapshot (the controlling thread and the snapshot's
 * must not call them at once). Writes at most cap bytes (NUL-terminated);
 * returns the length it needed. */
size_t mfp_heap_info_json(const mfp_heap *h, char *buf, size_t cap);

/* From now on the calling thread's allocations and frees pass through the
 * hooks unrecorded: for the profiler's own Python threads (the live card),
 * whose memory is not the step's. Any thread, any time; for good. */
void mfp_heap_ignore_this_thread(void);

/* The fork handlers (the hooks' locks taken around a fork), once per
 * process; mfp_heap_start registers them too. Call it before any other
 * engine thread starts: glibc runs the prepare handlers in reverse order,
 * so the heap's locks are then taken last at a fork. The sampler's and the
 * timeline's threads free memory (through these hooks, which may take the
 * heap's lock) while they hold the lock their own handler takes: taken
 * first, the heap's lock waited on a timeline poll that waited on it. */
void mfp_heap_fork_register(void);

/* Stop if running, then free. NULL is ignored. */
void mfp_heap_free(mfp_heap *h);

#endif
