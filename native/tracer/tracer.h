/* tracer.h — the deterministic tracer: every Python function call, and every
 * call of a built-in C function, in every thread, recorded as an exact call
 * tree with call counts and self time.
 *
 * How: on CPython 3.12+ through sys.monitoring (PY_START, PY_RESUME,
 * PY_RETURN, PY_YIELD, PY_UNWIND, PY_THROW, CALL, C_RETURN, C_RAISE), with
 * C callbacks registered under a free tool id; on 3.11 through a C profile
 * function (PyEval_SetProfile) installed on every thread that exists at
 * start, and on threads started later through threading.setprofile().
 * Threads started on 3.11 without the threading module are not traced.
 *
 * What is recorded:
 *   - a node per distinct call path (thread, caller path, function); a
 *     function is its code object, a C function its PyMethodDef;
 *   - calls = the times the function started at that path (a generator or
 *     coroutine resumed is not a new call: its time goes to the node under
 *     whoever resumed it);
 *   - self time = wall time at the node minus the time of its children;
 *     a frame left by an exception ends like a return;
 *   - the frames already running when a thread is first seen (the caller of
 *     start(), threads that were running) seed its stack, with 0 calls, so
 *     the tree has its context and returns past the start point balance.
 * Only C functions called as builtin functions or method descriptors are
 * nodes (as in cProfile); other callables (classes, slot wrappers) count
 * to their caller.
 * On 3.12+ a call site whose callee is not a timed C function (a Python
 * function reports PY_START itself) stops reporting CALL, and with it
 * C_RETURN/C_RAISE (sys.monitoring.DISABLE), which saves a third of the
 * callbacks on Python-heavy code; if that same site later calls a C
 * function in the same run, that C call counts to the caller. Stop
 * re-enables the sites (sys.monitoring.restart_events).
 *
 * Memory: the tracer owns its tree; it holds a reference to every code
 * object and C-function owner it has seen until mfp_tracer_free(). The
 * tree is bounded by max_nodes (calls at new paths past it count to the
 * caller, see dropped_nodes); each thread's stack grows with its depth.
 *
 * Threads: every function here must be called with the GIL held. Only one
 * tracer can run at a time in a process. The callbacks run in the traced
 * threads, under the GIL, and touch only the tracer and the state of the
 * thread they run in.
 */
#ifndef MFP_TRACER_H
#define MFP_TRACER_H

#include <stddef.h>
#include <stdint.h>

#include "../profile/profile.h"

typedef struct mfp_tracer mfp_tracer;

typedef struct {
    uint64_t calls;         /* function starts recorded */
    uint64_t nodes;         /* call-tree nodes, thread roots included */
    uint64_t threads;       /* threads seen */
    uint64_t dropped_nodes; /* calls at a new path past max_nodes (counted to the caller) */
    uint64_t lost_threads;  /* threads whose stack could not grow (tracing stopped there) */
    uint64_t duration_ns;   /* start to stop */
    const char *mechanism;  /* "sys.monitoring" or "setprofile" */
    int tool_id;            /* sys.monitoring tool id, -1 on 3.11 */
} mfp_tracer_stats;

/* A new, stopped tracer. max_nodes 0 = default (1<<20). NULL on OOM. */
mfp_tracer *mfp_tracer_new(size_t max_nodes);

/* Start tracing every thread; times count from now. Once only.
 * 0, or -1 with a Python exception set (another tracer of ours is
 * running, sys.monitoring has no free tool id, another profile function is
 * set, ...); then nothing was installed. */
int mfp_tracer_start(mfp_tracer *t);

/* Remove the hooks and close every open frame at the stop time.
 * Idempotent. 0, or -1 with a Python exception set (hooks that could not
 * be removed are disabled anyway: the callbacks ignore events then). */
int mfp_tracer_stop(mfp_tracer *t);

/* After stop: write the call tree into p — functions, frames (line 0),
 * stacks, threads (tid; and the threading name of a thread seen from its
 * start, since one that ended is no longer listed by threading; name the
 * others afterwards) and one TOTALS row per
 * node with count = calls and weight = self time, flags 0 (on-CPU state
 * is not known). 0, or -1 with a Python exception set. */
int mfp_tracer_export(mfp_tracer *t, mfp_profile *p);

void mfp_tracer_get_stats(const mfp_tracer *t, mfp_tracer_stats *out);

/* Stops if running, then frees; NULL is fine. */
void mfp_tracer_free(mfp_tracer *t);

#endif
