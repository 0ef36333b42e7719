/* timeline.h — the resource poller: what the machine did during the step.
 *
 * A native thread (never takes the GIL, never calls Python) wakes every
 * interval and records, for this process and its children: CPU %, RSS and
 * the kernel's peak RSS, thread count, disk read/write bytes/s, network
 * receive/send bytes/s (loopback excluded), the cgroup limits the process
 * runs under (memory limit/usage/OOM kills, CPU quota/throttling, CPUs
 * available) and per-GPU utilisation and memory through NVML loaded with
 * dlopen at run time. Anything it cannot read becomes a missing series and
 * a note, never an error.
 *
 * What "the process and its children" means (docs/FORMAT.md lists the
 * series):
 *   - cpu_pct: this process (all threads, CLOCK_PROCESS_CPUTIME_ID) plus
 *     children it has waited for (getrusage RUSAGE_CHILDREN) plus the live
 *     descendants found through /proc/<pid>/task/<tid>/children (at most 256
 *     processes, 8 levels deep). Not counted: descendants that were
 *     reparented away (double-fork daemons) and children reaped without a
 *     wait (SIGCHLD ignored). 100 % = one core busy.
 *   - rss_bytes / rss_peak_bytes / threads: this process only (statm-style
 *     RSS, the kernel's VmHWM); children_rss_bytes and children: the live
 *     descendants found as above.
 *   - disk_*_Bps: /proc/<pid>/io read_bytes/write_bytes (storage-level I/O,
 *     page cache hits excluded) of this process, its waited-for children
 *     (the kernel folds them in) and the live descendants.
 *   - net_*_Bps: every interface of the network namespace except "lo"
 *     (unless loopback is asked for): traffic of other processes in the
 *     same namespace counts too.
 *   - sock_*_Bps: this process's own TCP sockets (sockets.c: tcp_info byte
 *     counters of the descriptors in /proc/self/fd), loopback peers left out
 *     likewise: the step's traffic, without UDP, children, or sockets opened
 *     and closed between two polls.
 *   - cgroup_*: the cgroup of this process (v2, else v1), limits taken as
 *     the smallest along the path up to the mount root.
 *
 * Memory: the poller owns its buffers. Each series keeps at most
 * max_points points; when full, neighbouring points are merged in pairs
 * (rates by time-weighted mean, byte gauges by max, so peaks survive).
 * mfp_timeline_export copies them into a profile store.
 *
 * Threads: start/stop/export/info_json/free are called by one controlling
 * thread (with or without the GIL); the poller thread touches only the
 * timeline's own state, under its mutex when it is shared. export and
 * info_json may be called while the poller runs.
 *
 * fork(): a child process has no poller thread. In the child, stop is a
 * no-op, export returns -1 and free releases memory without touching the
 * mutex or NVML, so a forked child of the profiled program never hangs.
 */
#ifndef MFP_TIMELINE_H
#define MFP_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

#include "../profile/profile.h"

typedef struct mfp_timeline mfp_timeline;

/* Options of mfp_timeline_start_opts. Zero-initialise, then set what you
 * need; every NULL/0 field takes its default. Strings are copied. */
typedef struct {
    uint64_t interval_ns;     /* >= 1 ms */
    int include_loopback;     /* 1: count "lo" too. Default 0, or 1 when the
                                 environment has MFP_TIMELINE_LOOPBACK=1. */
    const char *proc_root;    /* default $MFP_PROC_ROOT, else "/proc" */
    const char *cgroup_root;  /* default $MFP_CGROUP_ROOT, else "/sys/fs/cgroup" */
    const char *nvml_library; /* default $MFP_NVML_LIBRARY, else
                                 "libnvidia-ml.so.1"; "" = no GPU polling */
    size_t max_points;        /* per series; default 65536, minimum 16 */
} mfp_timeline_options;

/* Start polling every interval_ns (>= 1 ms). Times are CLOCK_MONOTONIC.
 * Reads everything once before returning (so limits and notes are known
 * at once), then the thread takes over. Returns NULL on failure with a
 * message in err (err may be NULL). Missing files are not failures. */
mfp_timeline *mfp_timeline_start(uint64_t interval_ns, char *err, size_t errlen);
mfp_timeline *mfp_timeline_start_opts(const mfp_timeline_options *o, char *err,
                                      size_t errlen);

/* Take a last point, stop the thread and join it. Idempotent. Returns
 * within a few ms (the thread sleeps on a condition variable). A last
 * point closer than half an interval to the previous one is merged into
 * it, so rates do not spike from a tiny time step. */
void mfp_timeline_stop(mfp_timeline *t);

/* Join the poller thread and start it again, keeping every series: how
 * the profiler keeps its threads out of a fork() (CPython 3.12+ warns
 * when a process with threads forks). No points are taken while paused.
 * Only in the process that started it; not after stop. 0, or -1 (resume:
 * the poller stays paused, stop still works). */
int mfp_timeline_pause(mfp_timeline *t);
int mfp_timeline_resume(mfp_timeline *t);
/* The first half of pause, without the join: the poller ends while the
 * caller asks other threads to (pause still joins it). */
void mfp_timeline_ask_pause(mfp_timeline *t);

/* Add every series that has points to p (names and units of
 * docs/FORMAT.md), with times relative to t0_ns (CLOCK_MONOTONIC of the
 * profile start; earlier points are clamped to 0). 0 or -1 (out of
 * memory, or called in a forked child). */
int mfp_timeline_export(const mfp_timeline *t, mfp_profile *p, uint64_t t0_ns);

/* A JSON object describing what was found:
 *   {"limits": {...}, "peaks": {...}, "averages": {...}, "totals": {...},
 *    "network": {...}, "rss": {...}, "gpus": [...], "notes": [...],
 *    "interval_s": s, "polls": n}
 * limits (each only when known): memory_limit_bytes (cgroup, smallest up
 *   the path), memory_total_bytes (MemTotal of the machine),
 *   cgroup_memory_peak_bytes (the cgroup's own high-water mark, since the
 *   cgroup was created), oom_kills (during the run), cpu_quota_cores,
 *   cpu_throttled_s (during the run), cpus (CPUs this process may run
 *   on), cgroup ("v1"/"v2"), cgroup_scope ("step" when no process other
 *   than this one and its descendants was in the memory cgroup at start or
 *   stop, else "container") and cgroup_other_processes.
 * peaks, averages: the largest value and the time-weighted mean of each
 *   series, in its unit (scale undone), exact even after points were
 *   merged.
 * totals: cpu_s, disk_read_bytes, disk_write_bytes, net_recv_bytes,
 *   net_sent_bytes, sock_recv_bytes, sock_sent_bytes over the run.
 * network: net_scope "namespace", sock_scope "process_tcp" (when the
 *   sock series exist), loopback.
 * rss: the profiled span's peak RSS, bracketed by VmHWM read at the first
 *   and last poll (never reset): peak_bytes with peak_source "kernel" (VmHWM
 *   rose during the run: exact) or "polled" (it did not: the largest RSS
 *   polled, a lower bound), hwm_at_start_bytes, hwm_at_stop_bytes,
 *   polled_peak_bytes, children_peak_bytes and children_peak_source
 *   (docs/FORMAT.md, META rss).
 * gpus: [{"index", "name", "memory_total_bytes"}].
 * notes: what could not be read, one sentence each.
 * polls: readings taken so far (the one at start included).
 * Writes at most cap bytes (NUL-terminated when cap > 0); returns the
 * length it needed (without the NUL). */
size_t mfp_timeline_info_json(const mfp_timeline *t, char *buf, size_t cap);

/* Stops if needed, then releases everything. NULL is fine. */
void mfp_timeline_free(mfp_timeline *t);

#endif
