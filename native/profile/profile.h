/* profile.h — the in-memory profile store and its codec.
 *
 * What it is: interned strings, a function table, a frame table (function +
 * current line), the stack prefix tree, time-ordered samples, exact totals
 * per (stack, thread, flags), timeline series and the memory-at-peak tree.
 * mfp_profile_encode() writes the byte format of docs/FORMAT.md and
 * mfp_profile_decode() reads it back into a store. Knows nothing of CPython.
 *
 * Memory: the store owns everything it holds; strings passed in are copied.
 * Adders return an index, or MFP_NONE when memory ran out (callers treat
 * that as a dropped sample; the store stays consistent). Encoded buffers
 * are malloc'd and owned by the caller.
 *
 * Threads: not thread-safe. One thread writes at a time; the engine hands
 * the store from the sampler thread to Python only after joining it, and a
 * snapshot of a running store is taken with mfp_profile_sync while its
 * writer is held off (the sampler's lock, see sampler.h). No function here
 * takes the GIL or calls into Python, so the sampler thread may use all of
 * it.
 */
#ifndef MFP_PROFILE_H
#define MFP_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#define MFP_NONE UINT32_MAX

enum mfp_func_kind {
    MFP_FUNC_PYTHON = 0,
    MFP_FUNC_NATIVE = 1,
    MFP_FUNC_THREAD = 2,
    MFP_FUNC_SYNTHETIC = 3,
};

#define MFP_SAMPLE_ON_CPU 1u
#define MFP_THREAD_MAIN 1u

typedef struct mfp_profile mfp_profile;

/* Create an empty store. max_samples caps the SAMPLES records kept in
 * memory (0 = default, 1<<20); past it time resolution halves, totals stay
 * exact. Returns NULL when out of memory. */
mfp_profile *mfp_profile_new(size_t max_samples);
void mfp_profile_free(mfp_profile *p);

/* Interning: the same input returns the same index. Indices passed in must
 * name existing entries (name/file < strings, func < funcs, frame < frames,
 * parent < stacks); otherwise MFP_NONE. Once the tables are warm a call
 * that finds its entry costs a hash and a probe, and allocates nothing. */
uint32_t mfp_profile_string(mfp_profile *p, const char *s, size_t len);
uint32_t mfp_profile_func(mfp_profile *p, uint32_t name, uint32_t file, uint32_t line,
                          uint32_t kind);
uint32_t mfp_profile_frame(mfp_profile *p, uint32_t func, uint32_t line);
/* The node for `frame` under `parent` (MFP_NONE = a root). */
uint32_t mfp_profile_stack(mfp_profile *p, uint32_t parent, uint32_t frame);
/* Threads are keyed by OS tid; a later call with a non-empty name renames,
 * and its flags are OR-ed into the thread's. */
uint32_t mfp_profile_thread(mfp_profile *p, uint64_t tid, uint32_t name, uint32_t flags);

/* One sample. t_ns counts from the profile start and must not decrease (a
 * smaller one is taken as the previous time). Returns 0, or -1 when memory
 * ran out (the sample still counts in totals when possible) or when stack
 * or thread is not an existing index (then nothing is recorded). How
 * SAMPLES is decimated past the cap: docs/FORMAT.md, "Why both SAMPLES and
 * TOTALS". */
int mfp_profile_sample(mfp_profile *p, uint64_t t_ns, uint32_t stack, uint32_t thread,
                       uint64_t weight_ns, uint32_t flags);

/* Aggregate without a time: adds count and weight_ns to the TOTALS row of
 * (stack, thread, flags), creating it, and records nothing in SAMPLES. For
 * profiles that have no time order, e.g. a deterministic tracer's call tree
 * (count = calls, weight = self time) or a foreign profiler's totals; such
 * a profile says what count and weight mean in META ("counts", "weights").
 * Returns 0, or -1 when memory ran out or stack or thread is not an
 * existing index (then nothing is recorded). */
int mfp_profile_total(mfp_profile *p, uint32_t stack, uint32_t thread, uint32_t flags,
                      uint64_t count, uint64_t weight_ns);

/* Timeline: a series is created once, then points appended in time order
 * (a time before the previous point's is taken as that time). value is an
 * integer in units of 10^-scale of `unit`. Asking again for a series name
 * that exists returns the existing series. NULL name/unit mean "". */
uint32_t mfp_profile_series(mfp_profile *p, const char *name, const char *unit, uint32_t scale);
int mfp_profile_point(mfp_profile *p, uint32_t series, uint64_t t_ns, int64_t value);

/* Memory at peak: bytes attributed to a stack (added up per stack).
 * 0, or -1 when out of memory or stack is not an existing index. */
int mfp_profile_memory(mfp_profile *p, uint32_t stack, uint64_t live_bytes,
                       uint64_t alloc_bytes, uint64_t alloc_count);

/* Memory over time: one sampled allocation, its estimated bytes, when it
 * was made and when it was freed (MFP_STILL_LIVE: live at the end), times
 * from the profile start. Events must come in t_alloc_ns order (a smaller
 * one is taken as the previous time). 0, or -1 when out of memory or stack
 * is not an existing index. */
#define MFP_STILL_LIVE UINT64_MAX
int mfp_profile_heap_event(mfp_profile *p, uint32_t stack, uint64_t bytes, uint64_t t_alloc_ns,
                           uint64_t t_free_ns);

/* Live at the end: estimated bytes allocated while profiling by a stack and
 * still live when the profile ended (added up per stack). 0, or -1 when
 * out of memory or stack is not an existing index. */
int mfp_profile_leak(mfp_profile *p, uint32_t stack, uint64_t live_bytes);

/* Processes: a profile of a process tree (children followed by
 * native/../metaflow_profiler, merged with mfp_profile_merge) says which
 * process each thread and each memory row belongs to. A profile with no
 * process rows is one process (the one META describes). Thread and memory
 * rows not mapped belong to process 0. */
#define MFP_PROCESS_ROOT 1u    /* the profiled process itself */
#define MFP_PROCESS_PARTIAL 2u /* its profile ended early (crashed, killed, still running) */

typedef struct {
    uint64_t pid, ppid;
    uint32_t name;           /* string idx: e.g. "ForkPoolWorker-1" or a command line */
    uint32_t flags;          /* MFP_PROCESS_* */
    int64_t start_ns;        /* its profile's start, from this profile's start */
    uint64_t duration_ns;    /* how long it was profiled */
    uint64_t cpu_ns;         /* CPU time it used while profiled, 0 = unknown */
    uint64_t rss_peak_bytes; /* its peak RSS, 0 = unknown */
    uint64_t heap_peak_bytes; /* its estimated live heap at peak (native/heap), 0 = none */
} mfp_process;

/* Append a process row (not interned: a pid may come back). Its name is an
 * existing string index. Returns its index or MFP_NONE. */
uint32_t mfp_profile_process(mfp_profile *p, const mfp_process *proc);
/* Which process a thread / a MEMORY row belongs to. 0, or -1 on a bad
 * index or out of memory. */
int mfp_profile_set_thread_process(mfp_profile *p, uint32_t thread, uint32_t proc);
int mfp_profile_set_memory_process(mfp_profile *p, uint32_t row, uint32_t proc);
/* The process of a thread / memory row: 0 when not mapped. */
uint32_t mfp_profile_thread_process(const mfp_profile *p, uint32_t thread);
uint32_t mfp_profile_memory_process(const mfp_profile *p, uint32_t row);

/* Merge: several profiles into one (merge.c). Each input is appended to
 * dst as one or more processes of its own:
 *  - strings, functions, frames and stacks are interned into dst's;
 *  - every thread of src becomes a new thread of dst (tids may repeat
 *    across processes and runs), in the process it belonged to in src;
 *  - src's processes become new processes of dst, their start moved by
 *    offset_ns (`as->name`, when given, renames src's process 0: a merge
 *    of whole runs names each by its label); a src without processes
 *    becomes one process described by `as` (NULL: pid 0, no name),
 *    starting at offset_ns;
 *  - into a dst with a process of its own (the parent of a process tree),
 *    every input is its descendant: none of its processes keeps
 *    MFP_PROCESS_ROOT (a child that followed children of its own was the
 *    root of that tree), and src's process 0 takes `as`'s
 *    MFP_PROCESS_PARTIAL; into an empty dst (a merge of whole runs) the
 *    flags stay as they were;
 *  - SAMPLES of all inputs are shifted by offset_ns (clamped at 0) and
 *    merged into dst's in time order, then halved per thread (as the cap
 *    does) until they fit dst's cap; TOTALS and MEMORY rows are appended
 *    (a MEMORY row keeps its process);
 *  - HEAP_EVENTS are shifted the same way and merged into dst's in
 *    allocation order (they carry no process); LEAKS are added up per
 *    stack;
 *  - src's META and TIMELINE are not merged: dst's stay (the caller knows
 *    what a merged META should say; a parent's timeline already covers its
 *    children).
 * When dst has no process yet but holds threads or memory, its own data
 * becomes process 0 first (pid 0, no name: call mfp_profile_process on dst
 * before merging to name it); an empty dst gets no process of its own.
 * Returns 0, or -1 when out of memory or an input is NULL; then dst holds
 * part of the inputs and stays consistent (samples and heap events in time
 * order). */
typedef struct {
    uint64_t pid, ppid;
    const char *name; /* NULL = "" */
    uint32_t flags;
    uint64_t duration_ns, cpu_ns, rss_peak_bytes, heap_peak_bytes;
} mfp_process_info;

typedef struct {
    const mfp_profile *src;
    int64_t offset_ns;          /* where src's time 0 falls on dst's clock */
    const mfp_process_info *as; /* identity of a src without processes */
} mfp_merge_input;

int mfp_profile_merge(mfp_profile *dst, const mfp_merge_input *in, size_t n);

/* META is an opaque JSON string for the store; it is copied. */
int mfp_profile_set_meta(mfp_profile *p, const char *json, size_t len);

/* Read-only views of the tables, for module.c and tests. Pointers stay
 * valid until the next call that adds to the store. */
typedef struct { uint32_t name, file, line, kind; } mfp_func;
typedef struct { uint32_t func, line; } mfp_frame;
typedef struct { uint32_t parent, frame; } mfp_stack_node; /* parent MFP_NONE = root */
typedef struct { uint64_t tid; uint32_t name, flags; } mfp_thread;
typedef struct { uint64_t t_ns, weight_ns; uint32_t stack, thread, flags; } mfp_sample;
typedef struct { uint64_t count, weight_ns; uint32_t stack, thread, flags; } mfp_total;
typedef struct { uint64_t live_bytes, alloc_bytes, alloc_count; uint32_t stack; } mfp_memory;
typedef struct { uint64_t t_alloc_ns, t_free_ns, bytes; uint32_t stack; } mfp_heap_event;
typedef struct { uint64_t live_bytes; uint32_t stack; } mfp_leak;
typedef struct {
    uint32_t name, unit, scale; /* name and unit are string indices */
    size_t n;
    const uint64_t *t_ns;
    const int64_t *value;
} mfp_series_view;

/* String i (NUL-terminated; len, when not NULL, gets its byte length, which
 * counts any NUL inside), or NULL with *len 0 when i is out of range. */
const char *mfp_profile_string_at(const mfp_profile *p, uint32_t i, size_t *len);
const mfp_func *mfp_profile_funcs(const mfp_profile *p, size_t *n);
const mfp_frame *mfp_profile_frames(const mfp_profile *p, size_t *n);
const mfp_stack_node *mfp_profile_stacks(const mfp_profile *p, size_t *n);
const mfp_thread *mfp_profile_threads(const mfp_profile *p, size_t *n);
const mfp_sample *mfp_profile_samples(const mfp_profile *p, size_t *n);
const mfp_total *mfp_profile_totals(const mfp_profile *p, size_t *n);
const mfp_memory *mfp_profile_memories(const mfp_profile *p, size_t *n);
const mfp_heap_event *mfp_profile_heap_events(const mfp_profile *p, size_t *n);
const mfp_leak *mfp_profile_leaks(const mfp_profile *p, size_t *n);
size_t mfp_profile_series_count(const mfp_profile *p);
int mfp_profile_series_at(const mfp_profile *p, uint32_t i, mfp_series_view *out);
const char *mfp_profile_meta(const mfp_profile *p, size_t *len); /* "" when unset */
const mfp_process *mfp_profile_processes(const mfp_profile *p, size_t *n);

/* Counts, for module.c and tests. */
typedef struct {
    size_t strings, funcs, frames, stacks, threads, samples, totals, series, memory, processes;
    uint32_t decimation;   /* 1 = every sample kept */
    uint64_t samples_seen; /* every mfp_profile_sample() call that counted */
} mfp_profile_counts;
void mfp_profile_get_counts(const mfp_profile *p, mfp_profile_counts *out);

/* Encode into a new malloc'd buffer; *out_len gets its size. NULL on OOM.
 * Times are written in whole µs (ms for the timeline), so a round trip
 * keeps them to that precision. */
uint8_t *mfp_profile_encode(const mfp_profile *p, size_t *out_len);

/* Decode bytes into a new store. On failure returns NULL and, when err is
 * not NULL, points *err at a static message saying what is wrong (on
 * success *err is NULL). Any input is safe: every read is bounds-checked,
 * every index checked, and allocation stays proportional to len. Unknown
 * section tags are skipped. The new store holds SAMPLES as written (its
 * cap is raised to fit them; decimation starts again at 1) and is a
 * working store: interning finds the entries it holds. */
mfp_profile *mfp_profile_decode(const uint8_t *buf, size_t len, const char **err);

/* Snapshots of a store that another thread keeps writing (the live card).
 *
 * mfp_profile_sync brings `mirror` up to date with `src`, copying only what
 * changed since the last sync: the new strings, functions, frames, stack
 * nodes, threads and SAMPLES records, the newest SAMPLES record of each
 * thread, and the TOTALS and MEMORY rows (updated in place; one row per
 * distinct key); all of SAMPLES only after a decimation. So the writer is
 * held off for a copy of about what it wrote since, not of the store.
 * `mirror` starts as mfp_profile_new(0) and must receive nothing but syncs
 * from the one `src` (its tables are src's prefix); its META is not
 * touched. Nothing else may use src during the call. 0, or -1 when out of
 * memory (the mirror stays a consistent prefix and the next sync copies
 * SAMPLES afresh).
 *
 * mfp_profile_clone returns a deep copy of p (tables and indices copied as
 * blocks, nothing re-hashed), a working store: extras for one encoding
 * (thread names, memory rows, the timeline) go into a clone of the mirror,
 * never into the mirror. NULL when out of memory. */
int mfp_profile_sync(mfp_profile *mirror, const mfp_profile *src);
mfp_profile *mfp_profile_clone(const mfp_profile *p);

#endif
