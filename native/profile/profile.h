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

/* Counts, for module.c and tests. */
typedef struct {
    size_t strings, funcs, frames, stacks, threads, samples, totals, series, memory;
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
