/* codec.c — the profile byte format (docs/FORMAT.md, version 1).
 *
 * Why it is built this way: the bytes travel inside an HTML card through
 * deflate, so the encoder writes each table column by column (similar
 * numbers next to each other) with times as deltas and signed series
 * values as zigzag deltas; small numbers become one-byte varints and
 * deflate finds the repeats.
 *
 * The decoder reads bytes that may come from anywhere (a saved file, an
 * artifact), so it trusts nothing: every read is bounds-checked against the
 * section it is in, every index is checked against the table it names,
 * and every count is checked against the bytes left before anything is
 * allocated for it (a varint is at least one byte, so a table of n rows and
 * k columns needs at least n*k bytes). Sections are first located, then
 * decoded in dependency order, so a writer may put them in any order.
 * Columns of one table are read side by side: one pass skips over each
 * column to find where the next starts, then one cursor per column walks
 * the rows, so no row is staged in temporary memory.
 */
#include "store.h"

enum {
    TAG_META = 1,
    TAG_STRINGS = 2,
    TAG_FUNCS = 3,
    TAG_FRAMES = 4,
    TAG_STACKS = 5,
    TAG_THREADS = 6,
    TAG_SAMPLES = 7,
    TAG_TOTALS = 8,
    TAG_TIMELINE = 9,
    TAG_MEMORY = 10,
    TAG_PROCESSES = 11,
    TAG_PROCESS_MAP = 12,
    TAG_HEAP_EVENTS = 13,
    TAG_LEAKS = 14,
    TAG_LAST = TAG_LEAKS, /* tags between known ones are skipped like unknown ones */
};

static const uint8_t MAGIC[6] = {'M', 'F', 'P', 'R', 'O', 'F'};
#define FORMAT_VERSION 1

/* ---- writing ----------------------------------------------------------- */

typedef struct {
    uint8_t *b;
    size_t n, cap;
    int oom;
} wbuf;

static int wb_room(wbuf *w, size_t k) {
    if (w->oom)
        return -1;
    if (w->n + k <= w->cap)
        return 0;
    if (k > SIZE_MAX - w->n) {
        w->oom = 1;
        return -1;
    }
    void *g = vec_grow(w->b, &w->cap, w->n + k, 1);
    if (!g) {
        w->oom = 1;
        return -1;
    }
    w->b = g;
    return 0;
}

static void put_uv(wbuf *w, uint64_t v) {
    if (wb_room(w, 10))
        return;
    uint8_t *o = w->b + w->n;
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    w->n = (size_t)(o - w->b);
}

static uint64_t zigzag(int64_t v) {
    uint64_t u = (uint64_t)v;
    return (u << 1) ^ (0 - (u >> 63));
}

static void put_sv(wbuf *w, int64_t v) { put_uv(w, zigzag(v)); }

static void put_bytes(wbuf *w, const void *s, size_t len) {
    if (wb_room(w, len))
        return;
    if (len)
        memcpy(w->b + w->n, s, len);
    w->n += len;
}

static void put_str(wbuf *w, const char *s, size_t len) {
    put_uv(w, len);
    put_bytes(w, s, len);
}

/* Times in SAMPLES are whole µs of the absolute time (so rounding never
 * drifts); weights round to the nearest µs. Both survive a round trip. */
static uint64_t ns_to_us(uint64_t ns) { return ns / 1000; }
static uint64_t ns_to_us_round(uint64_t ns) { return ns / 1000 + (ns % 1000 >= 500); }
static uint64_t ns_to_ms(uint64_t ns) { return ns / 1000000; }

static void enc_meta(const mfp_profile *p, wbuf *s) {
    put_str(s, p->meta ? p->meta : "", p->meta ? p->meta_len : 0);
}

static void enc_strings(const mfp_profile *p, wbuf *s) {
    put_uv(s, p->nstr);
    for (size_t i = 0; i < p->nstr; i++)
        put_str(s, p->sbuf + p->strs[i].off, p->strs[i].len);
}

static void enc_funcs(const mfp_profile *p, wbuf *s) {
    size_t n = p->nfuncs;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->funcs[i].name);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->funcs[i].file);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->funcs[i].line);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->funcs[i].kind);
}

static void enc_frames(const mfp_profile *p, wbuf *s) {
    size_t n = p->nframes;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->frames[i].func);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->frames[i].line);
}

static void enc_stacks(const mfp_profile *p, wbuf *s) {
    size_t n = p->nstacks;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t par = p->stacks[i].parent;
        put_uv(s, par == MFP_NONE ? 0 : i - par);
    }
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->stacks[i].frame);
}

static void enc_threads(const mfp_profile *p, wbuf *s) {
    size_t n = p->nthreads;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->threads[i].tid);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->threads[i].name);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->threads[i].flags);
}

static void enc_samples(const mfp_profile *p, wbuf *s) {
    size_t n = p->nsamples;
    const mfp_sample *r = p->samples;
    put_uv(s, n);
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t t = ns_to_us(r[i].t_ns);
        put_uv(s, t - prev); /* the store keeps samples in time order */
        prev = t;
    }
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].stack);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].thread);
    for (size_t i = 0; i < n; i++)
        put_uv(s, ns_to_us_round(r[i].weight_ns));
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].flags);
}

static void enc_totals(const mfp_profile *p, wbuf *s) {
    size_t n = p->ntotals;
    const mfp_total *r = p->totals;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].stack);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].thread);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].flags);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].count);
    for (size_t i = 0; i < n; i++)
        put_uv(s, ns_to_us_round(r[i].weight_ns));
}

static void enc_timeline(const mfp_profile *p, wbuf *s) {
    put_uv(s, p->nseries);
    for (size_t k = 0; k < p->nseries; k++) {
        const series_buf *sr = &p->series[k];
        put_uv(s, sr->name);
        put_uv(s, sr->unit);
        put_uv(s, sr->scale);
        put_uv(s, sr->n);
        uint64_t prev = 0;
        for (size_t i = 0; i < sr->n; i++) {
            uint64_t t = ns_to_ms(sr->t_ns[i]);
            put_uv(s, t >= prev ? t - prev : 0);
            prev = t;
        }
        uint64_t pv = 0;
        for (size_t i = 0; i < sr->n; i++) {
            uint64_t v = (uint64_t)sr->value[i];
            put_sv(s, (int64_t)(v - pv)); /* wraps like the reader's sum */
            pv = v;
        }
    }
}

static void enc_memory(const mfp_profile *p, wbuf *s) {
    size_t n = p->nmems;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->mems[i].stack);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->mems[i].live_bytes);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->mems[i].alloc_bytes);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->mems[i].alloc_count);
}

static void enc_heap_events(const mfp_profile *p, wbuf *s) {
    size_t n = p->nhevents;
    const mfp_heap_event *e = p->hevents;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, e[i].stack);
    for (size_t i = 0; i < n; i++)
        put_uv(s, e[i].bytes);
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t t = ns_to_us(e[i].t_alloc_ns);
        put_uv(s, t - prev); /* the store keeps events in t_alloc order */
        prev = t;
    }
    for (size_t i = 0; i < n; i++) /* 0 = still live; else 1 + µs lived */
        put_uv(s, e[i].t_free_ns == MFP_STILL_LIVE
                      ? 0
                      : 1 + ns_to_us(e[i].t_free_ns) - ns_to_us(e[i].t_alloc_ns));
}

static void enc_leaks(const mfp_profile *p, wbuf *s) {
    size_t n = p->nleaks;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->leaks[i].stack);
    for (size_t i = 0; i < n; i++)
        put_uv(s, p->leaks[i].live_bytes);
}

static void put_map(wbuf *s, const uint32_t *m, size_t n) {
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, m[i]);
}

static void enc_processes(const mfp_profile *p, wbuf *s) {
    size_t n = p->nprocs;
    const mfp_process *r = p->procs;
    put_uv(s, n);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].pid);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].ppid);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].name);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].flags);
    for (size_t i = 0; i < n; i++) /* µs, truncated toward zero like SAMPLES times */
        put_sv(s, r[i].start_ns / 1000);
    for (size_t i = 0; i < n; i++)
        put_uv(s, ns_to_us_round(r[i].duration_ns));
    for (size_t i = 0; i < n; i++)
        put_uv(s, ns_to_us_round(r[i].cpu_ns));
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].rss_peak_bytes);
    for (size_t i = 0; i < n; i++)
        put_uv(s, r[i].heap_peak_bytes);
}

static void enc_process_map(const mfp_profile *p, wbuf *s) {
    put_map(s, p->thread_proc, p->nthread_proc);
    put_map(s, p->mem_proc, p->nmem_proc);
}

uint8_t *mfp_profile_encode(const mfp_profile *p, size_t *out_len) {
    static void (*const enc[TAG_LAST + 1])(const mfp_profile *, wbuf *) = {
        [TAG_META] = enc_meta,         [TAG_STRINGS] = enc_strings, [TAG_FUNCS] = enc_funcs,
        [TAG_FRAMES] = enc_frames,     [TAG_STACKS] = enc_stacks,   [TAG_THREADS] = enc_threads,
        [TAG_SAMPLES] = enc_samples,   [TAG_TOTALS] = enc_totals,   [TAG_TIMELINE] = enc_timeline,
        [TAG_MEMORY] = enc_memory,     [TAG_HEAP_EVENTS] = enc_heap_events,
        [TAG_LEAKS] = enc_leaks,
        [TAG_PROCESSES] = enc_processes,
        [TAG_PROCESS_MAP] = enc_process_map,
    };
    if (out_len)
        *out_len = 0;
    if (!p)
        return NULL;
    wbuf out = {0}, sec = {0};
    put_bytes(&out, MAGIC, sizeof MAGIC);
    put_uv(&out, FORMAT_VERSION);
    for (int tag = 1; tag <= TAG_LAST; tag++) {
        /* Sections added after version 1's first ten are left out when
         * empty, so a profile without them reads as it did before (a
         * one-process profile says nothing of processes). */
        if (!enc[tag] || (tag == TAG_HEAP_EVENTS && !p->nhevents) || (tag == TAG_LEAKS && !p->nleaks) ||
            ((tag == TAG_PROCESSES || tag == TAG_PROCESS_MAP) && !p->nprocs))
            continue;
        sec.n = 0;
        enc[tag](p, &sec);
        if (sec.oom)
            break;
        put_uv(&out, (uint64_t)tag);
        put_uv(&out, sec.n);
        put_bytes(&out, sec.b, sec.n);
    }
    free(sec.b);
    if (sec.oom || out.oom) {
        free(out.b);
        return NULL;
    }
    if (out_len)
        *out_len = out.n;
    return out.b;
}

/* ---- reading ----------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    const char *err; /* first failure; once set, reads keep failing */
} rbuf;

static int fail(rbuf *r, const char *msg) {
    if (!r->err)
        r->err = msg;
    return -1;
}

static int get_uv(rbuf *r, uint64_t *out) {
    if (r->err)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end)
            return fail(r, "truncated varint");
        uint8_t b = *r->p++;
        if (i == 9 && (b & 0x80))
            return fail(r, "varint longer than 10 bytes");
        if (i == 9 && b > 1)
            return fail(r, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return fail(r, "varint longer than 10 bytes"); /* not reached */
}

static int get_u32(rbuf *r, uint32_t *out) {
    uint64_t v;
    if (get_uv(r, &v))
        return -1;
    if (v > UINT32_MAX)
        return fail(r, "value does not fit 32 bits");
    *out = (uint32_t)v;
    return 0;
}

/* An index into a table of `n` entries. */
static int get_index(rbuf *r, size_t n, uint32_t *out, const char *what) {
    uint64_t v;
    if (get_uv(r, &v))
        return -1;
    if (v >= n)
        return fail(r, what);
    *out = (uint32_t)v;
    return 0;
}

/* A row count for a table of `cols` columns: each value takes a byte at
 * least, so more rows than bytes left means a corrupt (or hostile) count,
 * and refusing it here keeps allocation proportional to the input. */
static int get_count(rbuf *r, unsigned cols, size_t *out) {
    uint64_t n;
    if (get_uv(r, &n))
        return -1;
    if (n > (uint64_t)(r->end - r->p) / cols || n >= MFP_NONE)
        return fail(r, "row count larger than the section can hold");
    *out = (size_t)n;
    return 0;
}

static int skip_uvs(rbuf *r, size_t n) {
    uint64_t v;
    for (size_t i = 0; i < n; i++)
        if (get_uv(r, &v))
            return -1;
    return 0;
}

/* Cursors for the `k` columns of `n` rows starting at r; r moves past the
 * table once the rows are read (see end_columns). */
static int split_columns(rbuf *r, size_t n, unsigned k, rbuf *col) {
    col[0] = *r;
    for (unsigned j = 1; j < k; j++) {
        col[j] = col[j - 1];
        if (skip_uvs(&col[j], n))
            return fail(r, col[j].err);
    }
    return 0;
}

static int end_columns(rbuf *r, unsigned k, rbuf *col) {
    for (unsigned j = 0; j < k; j++)
        if (col[j].err)
            return fail(r, col[j].err);
    r->p = col[k - 1].p;
    return 0;
}

static int end_section(rbuf *r) {
    if (r->err)
        return -1;
    if (r->p != r->end)
        return fail(r, "section has bytes after its content");
    return 0;
}

#define OOM "out of memory"

static int dec_meta(mfp_profile *p, rbuf *r) {
    uint64_t len;
    if (get_uv(r, &len))
        return -1;
    if (len > (uint64_t)(r->end - r->p))
        return fail(r, "META string runs past its section");
    if (mfp_profile_set_meta(p, (const char *)r->p, (size_t)len))
        return fail(r, OOM);
    r->p += len;
    return end_section(r);
}

static int dec_strings(mfp_profile *p, rbuf *r) {
    size_t n;
    if (get_count(r, 1, &n))
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t len;
        if (get_uv(r, &len))
            return -1;
        if (len > (uint64_t)(r->end - r->p))
            return fail(r, "string runs past its section");
        if (i == 0) {
            if (len != 0)
                return fail(r, "string 0 is not empty");
            continue; /* the new store already holds "" */
        }
        if (mfp_profile_push_string(p, (const char *)r->p, (size_t)len) == MFP_NONE)
            return fail(r, OOM);
        r->p += len;
    }
    return end_section(r);
}

static int dec_funcs(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[4];
    if (get_count(r, 4, &n) || split_columns(r, n, 4, c))
        return -1;
    for (size_t i = 0; i < n; i++) {
        mfp_func f;
        if (get_index(&c[0], p->nstr, &f.name, "function name: string index out of range") ||
            get_index(&c[1], p->nstr, &f.file, "function file: string index out of range") ||
            get_u32(&c[2], &f.line) || get_u32(&c[3], &f.kind))
            break;
        if (mfp_profile_push_func(p, f) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 4, c))
        return -1;
    return end_section(r);
}

static int dec_frames(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[2];
    if (get_count(r, 2, &n) || split_columns(r, n, 2, c))
        return -1;
    for (size_t i = 0; i < n; i++) {
        mfp_frame f;
        if (get_index(&c[0], p->nfuncs, &f.func, "frame: function index out of range") ||
            get_u32(&c[1], &f.line))
            break;
        if (mfp_profile_push_frame(p, f) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 2, c))
        return -1;
    return end_section(r);
}

static int dec_stacks(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[2];
    if (get_count(r, 2, &n) || split_columns(r, n, 2, c))
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t delta;
        mfp_stack_node s;
        if (get_uv(&c[0], &delta))
            break;
        if (delta > i) {
            fail(&c[0], "stack node's parent does not precede it");
            break;
        }
        s.parent = delta ? (uint32_t)(i - delta) : MFP_NONE;
        if (get_index(&c[1], p->nframes, &s.frame, "stack node: frame index out of range"))
            break;
        if (mfp_profile_push_stack(p, s) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 2, c))
        return -1;
    return end_section(r);
}

static int dec_threads(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[3];
    if (get_count(r, 3, &n) || split_columns(r, n, 3, c))
        return -1;
    for (size_t i = 0; i < n; i++) {
        mfp_thread t;
        if (get_uv(&c[0], &t.tid) ||
            get_index(&c[1], p->nstr, &t.name, "thread name: string index out of range") ||
            get_u32(&c[2], &t.flags))
            break;
        if (mfp_profile_push_thread(p, t) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 3, c))
        return -1;
    return end_section(r);
}

/* µs (or ms) from the file back to ns, refusing what would overflow. */
static int scale_up(rbuf *r, uint64_t v, uint64_t by, uint64_t *out) {
    if (v > UINT64_MAX / by)
        return fail(r, "time or weight overflows 64 bits of ns");
    *out = v * by;
    return 0;
}

static int dec_samples(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[5];
    if (get_count(r, 5, &n) || split_columns(r, n, 5, c))
        return -1;
    uint64_t t_us = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t dt, w;
        mfp_sample s;
        if (get_uv(&c[0], &dt))
            break;
        if (dt > UINT64_MAX - t_us) {
            fail(&c[0], "sample time overflows");
            break;
        }
        t_us += dt;
        if (scale_up(&c[0], t_us, 1000, &s.t_ns) ||
            get_index(&c[1], p->nstacks, &s.stack, "sample: stack index out of range") ||
            get_index(&c[2], p->nthreads, &s.thread, "sample: thread index out of range") ||
            get_uv(&c[3], &w) || scale_up(&c[3], w, 1000, &s.weight_ns) ||
            get_u32(&c[4], &s.flags))
            break;
        if (mfp_profile_push_sample(p, s) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 5, c))
        return -1;
    return end_section(r);
}

static int dec_totals(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[5];
    if (get_count(r, 5, &n) || split_columns(r, n, 5, c))
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t w;
        mfp_total t;
        if (get_index(&c[0], p->nstacks, &t.stack, "total: stack index out of range") ||
            get_index(&c[1], p->nthreads, &t.thread, "total: thread index out of range") ||
            get_u32(&c[2], &t.flags) || get_uv(&c[3], &t.count) || get_uv(&c[4], &w) ||
            scale_up(&c[4], w, 1000, &t.weight_ns))
            break;
        if (mfp_profile_push_total(p, t) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 5, c))
        return -1;
    return end_section(r);
}

static int dec_timeline(mfp_profile *p, rbuf *r) {
    size_t ns;
    if (get_count(r, 4, &ns)) /* a series header is 4 varints */
        return -1;
    for (size_t k = 0; k < ns; k++) {
        uint32_t name, unit, scale;
        size_t n;
        rbuf c[2];
        if (get_index(r, p->nstr, &name, "series name: string index out of range") ||
            get_index(r, p->nstr, &unit, "series unit: string index out of range") ||
            get_u32(r, &scale) || get_count(r, 2, &n) || split_columns(r, n, 2, c))
            return -1;
        uint32_t si = mfp_profile_push_series(p, name, unit, scale);
        if (si == MFP_NONE)
            return fail(r, OOM);
        uint64_t t_ms = 0, v = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t dt, z, t_ns;
            if (get_uv(&c[0], &dt) || get_uv(&c[1], &z))
                break;
            if (dt > UINT64_MAX - t_ms) {
                fail(&c[0], "timeline time overflows");
                break;
            }
            t_ms += dt;
            if (scale_up(&c[0], t_ms, 1000000, &t_ns))
                break;
            v += (z >> 1) ^ (0 - (z & 1)); /* zigzag back, wrapping like the writer */
            if (mfp_profile_push_point(p, si, t_ns, (int64_t)v))
                return fail(r, OOM);
        }
        if (end_columns(r, 2, c))
            return -1;
    }
    return end_section(r);
}

static int dec_memory(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[4];
    if (get_count(r, 4, &n) || split_columns(r, n, 4, c))
        return -1;
    for (size_t i = 0; i < n; i++) {
        mfp_memory m;
        if (get_index(&c[0], p->nstacks, &m.stack, "memory: stack index out of range") ||
            get_uv(&c[1], &m.live_bytes) || get_uv(&c[2], &m.alloc_bytes) ||
            get_uv(&c[3], &m.alloc_count))
            break;
        if (mfp_profile_push_memory(p, m) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 4, c))
        return -1;
    return end_section(r);
}

static int dec_heap_events(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[4];
    if (get_count(r, 4, &n) || split_columns(r, n, 4, c))
        return -1;
    uint64_t t_us = 0;
    for (size_t i = 0; i < n; i++) {
        mfp_heap_event e;
        uint64_t dt, life;
        if (get_index(&c[0], p->nstacks, &e.stack, "heap event: stack index out of range") ||
            get_uv(&c[1], &e.bytes) || get_uv(&c[2], &dt) || get_uv(&c[3], &life))
            break;
        if (dt > UINT64_MAX - t_us || (life && life - 1 > UINT64_MAX - (t_us + dt))) {
            fail(&c[2], "heap event time overflows");
            break;
        }
        t_us += dt;
        if (scale_up(&c[2], t_us, 1000, &e.t_alloc_ns))
            break;
        if (!life)
            e.t_free_ns = MFP_STILL_LIVE;
        else if (scale_up(&c[3], t_us + life - 1, 1000, &e.t_free_ns))
            break;
        if (mfp_profile_push_heap_event(p, e) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 4, c))
        return -1;
    return end_section(r);
}

static int dec_processes(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[9];
    if (get_count(r, 9, &n) || split_columns(r, n, 9, c))
        return -1;
    for (size_t i = 0; i < n; i++) {
        mfp_process x;
        uint64_t start, dur, cpu;
        if (get_uv(&c[0], &x.pid) || get_uv(&c[1], &x.ppid) ||
            get_index(&c[2], p->nstr, &x.name, "process name: string index out of range") ||
            get_u32(&c[3], &x.flags) || get_uv(&c[4], &start) || get_uv(&c[5], &dur) ||
            scale_up(&c[5], dur, 1000, &x.duration_ns) || get_uv(&c[6], &cpu) ||
            scale_up(&c[6], cpu, 1000, &x.cpu_ns) || get_uv(&c[7], &x.rss_peak_bytes) ||
            get_uv(&c[8], &x.heap_peak_bytes))
            break;
        int64_t us = (int64_t)((start >> 1) ^ (0 - (start & 1)));
        if (us > INT64_MAX / 1000 || us < INT64_MIN / 1000) {
            fail(&c[4], "process start overflows 64 bits of ns");
            break;
        }
        x.start_ns = us * 1000;
        if (mfp_profile_process(p, &x) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 9, c))
        return -1;
    return end_section(r);
}

static int dec_leaks(mfp_profile *p, rbuf *r) {
    size_t n;
    rbuf c[2];
    if (get_count(r, 2, &n) || split_columns(r, n, 2, c))
        return -1;
    for (size_t i = 0; i < n; i++) {
        mfp_leak l;
        if (get_index(&c[0], p->nstacks, &l.stack, "leak: stack index out of range") ||
            get_uv(&c[1], &l.live_bytes))
            break;
        if (mfp_profile_push_leak(p, l) == MFP_NONE)
            return fail(r, OOM);
    }
    if (end_columns(r, 2, c))
        return -1;
    return end_section(r);
}

/* One column of process indices for the first n rows of a table of `rows`. */
static int dec_map(mfp_profile *p, rbuf *r, size_t rows, int memory) {
    size_t n;
    if (get_count(r, 1, &n))
        return -1;
    if (n > rows)
        return fail(r, "process map longer than its table");
    for (size_t i = 0; i < n; i++) {
        uint32_t proc;
        if (get_index(r, p->nprocs, &proc, "process map: process index out of range"))
            return -1;
        int rc = memory ? mfp_profile_set_memory_process(p, (uint32_t)i, proc)
                        : mfp_profile_set_thread_process(p, (uint32_t)i, proc);
        if (rc)
            return fail(r, OOM);
    }
    return 0;
}

static int dec_process_map(mfp_profile *p, rbuf *r) {
    if (dec_map(p, r, p->nthreads, 0) || dec_map(p, r, p->nmems, 1))
        return -1;
    return end_section(r);
}

mfp_profile *mfp_profile_decode(const uint8_t *buf, size_t len, const char **err) {
    static int (*const dec[TAG_LAST + 1])(mfp_profile *, rbuf *) = {
        [TAG_META] = dec_meta,         [TAG_STRINGS] = dec_strings, [TAG_FUNCS] = dec_funcs,
        [TAG_FRAMES] = dec_frames,     [TAG_STACKS] = dec_stacks,   [TAG_THREADS] = dec_threads,
        [TAG_SAMPLES] = dec_samples,   [TAG_TOTALS] = dec_totals,   [TAG_TIMELINE] = dec_timeline,
        [TAG_MEMORY] = dec_memory,     [TAG_HEAP_EVENTS] = dec_heap_events,
        [TAG_LEAKS] = dec_leaks,
        [TAG_PROCESSES] = dec_processes,
        [TAG_PROCESS_MAP] = dec_process_map,
    };
    const char *dummy;
    if (!err)
        err = &dummy;
    *err = NULL;
    if (!buf && len) {
        *err = "no input";
        return NULL;
    }
    if (len < sizeof MAGIC || memcmp(buf, MAGIC, sizeof MAGIC) != 0) {
        *err = "not a profile (bad magic)";
        return NULL;
    }
    rbuf r = {buf + sizeof MAGIC, buf + len, NULL};
    uint64_t version;
    if (get_uv(&r, &version)) {
        *err = r.err;
        return NULL;
    }
    if (version != FORMAT_VERSION) {
        *err = "unsupported format version";
        return NULL;
    }

    /* Locate the known sections first: tables refer to earlier ones. */
    rbuf sec[TAG_LAST + 1];
    int seen[TAG_LAST + 1] = {0};
    while (r.p < r.end) {
        uint64_t tag, slen;
        if (get_uv(&r, &tag) || get_uv(&r, &slen)) {
            *err = r.err;
            return NULL;
        }
        if (slen > (uint64_t)(r.end - r.p)) {
            *err = "section runs past the end of the bytes";
            return NULL;
        }
        if (tag >= 1 && tag <= TAG_LAST && dec[tag]) {
            if (seen[tag]) {
                *err = "section appears twice";
                return NULL;
            }
            seen[tag] = 1;
            sec[tag] = (rbuf){r.p, r.p + slen, NULL};
        }
        r.p += slen;
    }

    mfp_profile *p = mfp_profile_new(0);
    if (!p) {
        *err = OOM;
        return NULL;
    }
    for (int tag = 1; tag <= TAG_LAST; tag++) {
        if (!seen[tag])
            continue;
        if (dec[tag](p, &sec[tag])) {
            *err = sec[tag].err ? sec[tag].err : "corrupt section";
            mfp_profile_free(p);
            return NULL;
        }
    }
    return p;
}
