/* sampler.h — the native sampling profiler.
 *
 * A pthread (not a Python thread: it never takes the GIL and never stops
 * the profiled threads) wakes every interval, walks the thread states of
 * the interpreter it was started in, copies each thread's Python frame
 * stack through checked reads (memread.h), and records one sample per
 * thread with Python frames: its stack (qualname, file, first line and
 * current line per frame), the thread, the wall time since the previous
 * pass, and an on-CPU mark set so that, per thread, the marked samples'
 * weights add up to the CPU time the thread used. A read that faults
 * or does not validate drops that sample and counts the reason. Where
 * memory cannot be copied (or MFP_SAMPLER=gil, or the build does not know
 * the interpreter's frame layout), it falls back to walking frames through
 * the public C API while holding the GIL.
 *
 * Cost: a pass makes a bounded number of reads however many threads wait:
 * it checks the thread list a window at a time and reads the CPU clocks of
 * the threads that ran at their last sample, of new ones, of the GIL's
 * holder and of a window that moves each pass (all of them up to 256
 * threads); the others repeat their last stack as threads that did not
 * run. So with more than 256 threads one that starts running C code
 * without the GIL is found within threads / 128 passes (its CPU time then
 * counted in full), and one that ended is sampled for as long.
 *
 * Memory: the sampler owns its caches; it writes samples into the profile
 * store passed to mfp_sampler_start, which the caller owns and must not
 * touch until mfp_sampler_stop returns.
 *
 * Scheduling: the sampler thread asks the kernel for a 0.1 ms time slice
 * (sched_setattr, SCHED_OTHER at its own nice; only where it runs under
 * SCHED_OTHER), so on a core shared with a profiled thread a pass runs when
 * due instead of when that thread blocks. Kernels without custom slices
 * (before Linux 6.12) ignore or refuse it.
 *
 * Threads: start and stop are called with the GIL held, by one thread.
 * Between them, only the sampler thread writes the store, each pass under
 * the sampler's store lock; mfp_sampler_snapshot and mfp_sampler_get_stats
 * (any thread, with or without the GIL) read under that lock. A GIL-taking
 * pass takes the lock only once it holds the GIL and never waits for the
 * GIL while holding it, so the lock and the GIL cannot deadlock.
 */
#ifndef MFP_SAMPLER_H
#define MFP_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "../profile/profile.h"

typedef struct mfp_sampler mfp_sampler;

enum mfp_drop_reason {
    MFP_DROP_READ_FAULT, /* an address could not be copied */
    MFP_DROP_INVALID,    /* what was copied did not validate */
    MFP_DROP_TOO_DEEP,   /* stack deeper than MFP_PYTHON_WALK_MAX (4 Mi frames) */
    MFP_DROP_NO_MEMORY,  /* the store could not grow */
    MFP_DROP_REASONS
};
extern const char *const mfp_drop_reason_names[MFP_DROP_REASONS];

/* A deeper stack keeps its leaf-most and root-most 8,192 frames with a
 * "[deep stack: frames elided]" frame between them (stats: elided). */
#define MFP_SAMPLER_MAX_DEPTH 16384

typedef struct {
    uint64_t passes;             /* times the sampler woke up */
    uint64_t samples;            /* thread stacks recorded */
    uint64_t dropped[MFP_DROP_REASONS];
    uint64_t busy_ns;            /* time the sampler spent sampling */
    uint64_t elided;             /* samples whose middle frames were left out */
} mfp_sampler_stats;

/* Called on the sampler thread (no GIL; it must not block) the first time
 * a thread is seen, so the caller can learn its name while it lives. */
typedef void (*mfp_new_thread_hook)(void);

/* Start sampling the calling thread's interpreter into p every
 * interval_ns, with times relative to t0_ns (CLOCK_MONOTONIC). Must hold
 * the GIL. on_new_thread may be NULL. NULL on failure with a message in
 * err. */
mfp_sampler *mfp_sampler_start(mfp_profile *p, uint64_t interval_ns, uint64_t t0_ns,
                               mfp_new_thread_hook on_new_thread, char *err, size_t errlen);

/* Take no more samples; call it with the GIL before letting go of it to
 * stop, so a GIL-taking pass waiting for the GIL records nothing when it
 * gets it (that wait would be billed to the stopping thread's stack).
 * It wakes the thread, so that it ends while others are asked to;
 * mfp_sampler_stop still has to join. */
void mfp_sampler_request_stop(mfp_sampler *s);

/* Stop and join the thread. Call it WITHOUT the GIL when
 * mfp_sampler_takes_gil() (the thread may be waiting for it); the usual
 * GIL-free sampler never waits for the GIL. In a forked child, where the
 * thread does not exist, it only marks the sampler stopped. Idempotent;
 * mfp_sampler_free stops too, under the same rule. */
void mfp_sampler_stop(mfp_sampler *s);

/* Start sampling again after mfp_sampler_stop, into the same store with
 * the same caches and times (the paused time is not given to any sample):
 * how a caller reads its store while profiling (stop, read, resume) and
 * keeps its thread out of a fork. Same rules as start (GIL held); only in
 * the process that started it. 0, or -1 (the sampler stays stopped). */
int mfp_sampler_resume(mfp_sampler *s);

/* Any thread; waits for the pass in progress. */
void mfp_sampler_get_stats(const mfp_sampler *s, mfp_sampler_stats *out);

/* The profile so far, without stopping: between two passes, bring mirror up
 * to date with the store (mfp_profile_sync: a copy of about what the
 * sampler wrote since the last call) and copy the counters into stats (may
 * be NULL). Holds the sampler off for that copy only; any thread (best
 * without the GIL: the copy needs none), while the sampler runs or after
 * it stopped.
 * mfp_profile_sync's result. */
int mfp_sampler_snapshot(mfp_sampler *s, mfp_profile *mirror, mfp_sampler_stats *stats);

/* Never sample the thread with this OS tid: the profiler's own Python
 * threads (the live card's, the children's flusher). Process-wide, up to
 * four at once (a fifth replaces the oldest); any thread. */
void mfp_sampler_ignore_thread(uint64_t tid);

/* How stacks are read, in words for the card, e.g. "without the GIL,
 * through process_vm_readv", or the GIL-taking fallback and why. */
const char *mfp_sampler_mode(const mfp_sampler *s);
int mfp_sampler_takes_gil(const mfp_sampler *s);
void mfp_sampler_free(mfp_sampler *s);

/* 1 when this build reads stacks without the GIL; 0 when it was built for
 * an interpreter whose frame layout it does not know (python/layout.h), so every
 * sampler takes the GIL and there is no memory profile. */
int mfp_sampler_knows_layout(void);

#endif
