/* store.h — private to native/profile/: the layout of mfp_profile, the
 * growable arrays and the open-addressing index both profile.c (the store)
 * and codec.c (encoder/decoder) use. Not for other subsystems: they see
 * the store only through profile.h.
 *
 * The index (struct itab) maps a 32-bit hash to an entry number of some
 * table that lives elsewhere; it never owns keys. Each slot keeps the full
 * hash beside the entry number, so probing rejects most non-matches without
 * touching the table, and growing never has to rehash a key.
 */
#ifndef MFP_PROFILE_STORE_H
#define MFP_PROFILE_STORE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"

/* ---- hashing ---------------------------------------------------------- */

static inline uint32_t mix64(uint64_t x) {
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static inline uint32_t hash_u32x2(uint32_t a, uint32_t b) {
    return mix64(((uint64_t)a << 32) | b);
}

static inline uint32_t hash_u32x4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    return mix64((((uint64_t)a << 32) | b) ^ mix64(((uint64_t)c << 32) | d) * 0x9e3779b97f4a7c15ull);
}

static inline uint32_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0x243f6a8885a308d3ull ^ len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    if (len)
        memcpy(&w, s, len);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return mix64(h);
}

/* ---- allocation --------------------------------------------------------- */

/* Fault injection for tests, in the manner of SQLite's: when nonzero, every
 * allocation of this subsystem counts it down and the one that brings it
 * to zero fails. Tests only, and not thread-safe: set it while no other
 * thread uses a store. 0 (the default) costs one untaken branch per
 * allocation, and allocations are off the hot path once tables are warm. */
extern unsigned long mfp_profile_fail_countdown;

static inline int alloc_should_fail(void) {
    return mfp_profile_fail_countdown && --mfp_profile_fail_countdown == 0;
}
static inline void *st_malloc(size_t n) { return alloc_should_fail() ? NULL : malloc(n); }
static inline void *st_realloc(void *p, size_t n) {
    return alloc_should_fail() ? NULL : realloc(p, n);
}

/* ---- growable arrays -------------------------------------------------- */

/* A bigger copy of ptr with room for at least `need` elements of `elem`
 * bytes; capacities double, so appends are amortised O(1). Returns the new
 * block (and updates *cap), or NULL with ptr and *cap untouched. */
static inline void *vec_grow(void *ptr, size_t *cap, size_t need, size_t elem) {
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return NULL;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / elem)
        return NULL;
    void *n = st_realloc(ptr, ncap * elem);
    if (n)
        *cap = ncap;
    return n;
}

/* Make room for `need` elements in the array `ptr` of capacity `cap` (both
 * lvalues), or run `on_fail`. */
#define VEC_RESERVE(ptr, cap, need, on_fail)                                  \
    do {                                                                      \
        if ((need) > (cap)) {                                                 \
            void *grown_ = vec_grow((ptr), &(cap), (need), sizeof *(ptr));    \
            if (!grown_) {                                                    \
                on_fail;                                                      \
            }                                                                 \
            (ptr) = grown_;                                                   \
        }                                                                     \
    } while (0)

/* ---- the index -------------------------------------------------------- */

typedef struct {
    uint32_t hash, idx; /* idx MFP_NONE = empty */
} itab_slot;

typedef struct {
    itab_slot *slots;
    uint32_t mask; /* capacity - 1; capacity is a power of two or 0 */
    uint32_t used;
} itab;

/* Where probing for hash h starts; walk with itab_next() until a slot with
 * idx MFP_NONE (absent) or a match. Callers compare keys themselves, which
 * keeps the comparison inline on the sampler's hot path. */
static inline uint32_t itab_first(const itab *t, uint32_t h) { return h & t->mask; }
static inline uint32_t itab_next(const itab *t, uint32_t pos) { return (pos + 1) & t->mask; }

/* Room for one more entry at a load of at most 3/4. 0 or -1 (OOM, the
 * index unchanged). */
static inline int itab_reserve(itab *t) {
    uint64_t cap = t->slots ? (uint64_t)t->mask + 1 : 0;
    if ((uint64_t)(t->used + 1) * 4 <= cap * 3)
        return 0;
    uint64_t ncap = cap ? cap * 2 : 16;
    if (ncap > ((uint64_t)1 << 32) || ncap > SIZE_MAX / sizeof(itab_slot))
        return -1;
    itab_slot *ns = st_malloc((size_t)ncap * sizeof *ns);
    if (!ns)
        return -1;
    for (uint64_t i = 0; i < ncap; i++)
        ns[i].idx = MFP_NONE;
    uint32_t nmask = (uint32_t)(ncap - 1);
    for (uint64_t i = 0; i < cap; i++) {
        if (t->slots[i].idx == MFP_NONE)
            continue;
        uint32_t pos = t->slots[i].hash & nmask;
        while (ns[pos].idx != MFP_NONE)
            pos = (pos + 1) & nmask;
        ns[pos] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->mask = nmask;
    return 0;
}

/* Insert an entry known to be absent; itab_reserve() must have succeeded. */
static inline void itab_put(itab *t, uint32_t h, uint32_t idx) {
    uint32_t pos = h & t->mask;
    while (t->slots[pos].idx != MFP_NONE)
        pos = (pos + 1) & t->mask;
    t->slots[pos].hash = h;
    t->slots[pos].idx = idx;
    t->used++;
}

static inline void itab_free(itab *t) {
    free(t->slots);
    t->slots = NULL;
    t->mask = 0;
    t->used = 0;
}

/* ---- the store -------------------------------------------------------- */

typedef struct {
    size_t off;
    uint32_t len;
} str_ent;

typedef struct {
    uint64_t seen;  /* samples of this thread so far */
    uint32_t last;  /* its newest SAMPLES record, MFP_NONE = none */
    uint32_t tmp;   /* scratch for decimation */
} thread_state;

typedef struct {
    uint32_t name, unit, scale;
    size_t n, cap;
    uint64_t *t_ns;
    int64_t *value;
} series_buf;

struct mfp_profile {
    size_t max_samples;

    /* Strings live back to back in sbuf, each NUL-terminated for callers
     * that want C strings; strs[i] locates string i. */
    char *sbuf;
    size_t sbuf_len, sbuf_cap;
    str_ent *strs;
    size_t nstr, cap_str;
    itab str_ix;

    mfp_func *funcs;
    size_t nfuncs, cap_funcs;
    itab func_ix;

    mfp_frame *frames;
    size_t nframes, cap_frames;
    itab frame_ix;

    mfp_stack_node *stacks;
    size_t nstacks, cap_stacks;
    itab stack_ix;

    /* Per thread, beside the public record: samples seen of that thread
     * (its decimation phase), its newest SAMPLES record (where the weight
     * of skipped samples goes) and scratch space for decimation. */
    mfp_thread *threads;
    thread_state *thr;
    size_t nthreads, cap_threads, cap_thr;
    itab thread_ix;

    mfp_sample *samples;
    size_t nsamples, cap_samples;
    uint32_t stride; /* power of two */
    uint64_t samples_seen;
    uint64_t last_t_ns;

    mfp_total *totals;
    size_t ntotals, cap_totals;
    itab total_ix;

    mfp_memory *mems;
    size_t nmems, cap_mems;
    itab mem_ix;

    mfp_heap_event *hevents; /* in t_alloc_ns order */
    size_t nhevents, cap_hevents;
    mfp_leak *leaks;
    size_t nleaks, cap_leaks;
    itab leak_ix;

    series_buf *series;
    size_t nseries, cap_series;

    mfp_process *procs;
    size_t nprocs, cap_procs;
    /* Process of thread i / MEMORY row i for i < n*_proc; the rest are 0. */
    uint32_t *thread_proc, *mem_proc;
    size_t nthread_proc, cap_thread_proc, nmem_proc, cap_mem_proc;

    char *meta; /* NUL-terminated; NULL = unset */
    size_t meta_len;
};

#define MFP_DEFAULT_MAX_SAMPLES ((size_t)1 << 20)

/* Appenders that do not intern, for the decoder: a profile may legally
 * hold two equal entries (the index then finds the first). Indices are not
 * checked here; the decoder checks them. Each returns the new index or
 * MFP_NONE when memory ran out. */
uint32_t mfp_profile_push_string(mfp_profile *p, const char *s, size_t len);
uint32_t mfp_profile_push_func(mfp_profile *p, mfp_func f);
uint32_t mfp_profile_push_frame(mfp_profile *p, mfp_frame f);
uint32_t mfp_profile_push_stack(mfp_profile *p, mfp_stack_node n);
uint32_t mfp_profile_push_thread(mfp_profile *p, mfp_thread t);
uint32_t mfp_profile_push_sample(mfp_profile *p, mfp_sample s);
uint32_t mfp_profile_push_total(mfp_profile *p, mfp_total t);
uint32_t mfp_profile_push_memory(mfp_profile *p, mfp_memory m);
uint32_t mfp_profile_push_heap_event(mfp_profile *p, mfp_heap_event e);
uint32_t mfp_profile_push_leak(mfp_profile *p, mfp_leak l);
uint32_t mfp_profile_push_series(mfp_profile *p, uint32_t name, uint32_t unit, uint32_t scale);
int mfp_profile_push_point(mfp_profile *p, uint32_t series, uint64_t t_ns, int64_t value);

/* Halve SAMPLES per thread (profile.c); 1 when something was dropped. */
int mfp_profile_decimate(mfp_profile *p);

#endif
