/* profile.c — the in-memory profile store.
 *
 * Why it is built this way: the sampler thread interns every frame of every
 * stack it sees, thousands of times a second, while the profiled program
 * runs. So each table is a plain array (the index is the entry's position,
 * which is also what the byte format writes) plus an open-addressing index
 * of (hash, entry) slots; once the tables are warm an intern call is a hash
 * and a probe or two, with no allocation. Stacks are a prefix tree keyed by
 * (parent, frame), so a sample costs one lookup per frame at most and the
 * common case — a stack seen before — is found without copying anything.
 *
 * Memory is bounded for any run length: SAMPLES is capped and decimated
 * (see mfp_profile_sample), TOTALS grows only with distinct (stack, thread,
 * flags) keys. Nothing here calls into Python, takes a lock, prints or
 * aborts; out of memory is a return value and leaves every table as it was.
 */
#include "store.h"

unsigned long mfp_profile_fail_countdown;

/* ---- lifetime ---------------------------------------------------------- */

mfp_profile *mfp_profile_new(size_t max_samples) {
    mfp_profile *p = st_malloc(sizeof *p);
    if (!p)
        return NULL;
    memset(p, 0, sizeof *p);
    p->max_samples = max_samples ? max_samples : MFP_DEFAULT_MAX_SAMPLES;
    p->stride = 1;
    if (mfp_profile_push_string(p, "", 0) != 0) {
        mfp_profile_free(p);
        return NULL;
    }
    return p;
}

void mfp_profile_free(mfp_profile *p) {
    if (!p)
        return;
    free(p->sbuf);
    free(p->strs);
    itab_free(&p->str_ix);
    free(p->funcs);
    itab_free(&p->func_ix);
    free(p->frames);
    itab_free(&p->frame_ix);
    free(p->stacks);
    itab_free(&p->stack_ix);
    free(p->threads);
    free(p->thr);
    itab_free(&p->thread_ix);
    free(p->samples);
    free(p->totals);
    itab_free(&p->total_ix);
    free(p->mems);
    itab_free(&p->mem_ix);
    free(p->hevents);
    free(p->leaks);
    itab_free(&p->leak_ix);
    for (size_t i = 0; i < p->nseries; i++) {
        free(p->series[i].t_ns);
        free(p->series[i].value);
    }
    free(p->series);
    free(p->procs);
    free(p->thread_proc);
    free(p->mem_proc);
    free(p->meta);
    free(p);
}

/* ---- keys -------------------------------------------------------------- */

static uint32_t func_hash(const mfp_func *f) {
    return hash_u32x4(f->name, f->file, f->line, f->kind);
}
static uint32_t frame_hash(const mfp_frame *f) { return hash_u32x2(f->func, f->line); }
static uint32_t stack_hash(uint32_t parent, uint32_t frame) { return hash_u32x2(parent, frame); }
static uint32_t thread_hash(uint64_t tid) { return mix64(tid); }
static uint32_t total_hash(uint32_t stack, uint32_t thread, uint32_t flags) {
    return hash_u32x4(stack, thread, flags, 0x746f74u);
}
static uint32_t mem_hash(uint32_t stack) { return mix64(stack ^ 0x6d656d0000000000ull); }
static uint32_t leak_hash(uint32_t stack) { return mix64(stack ^ 0x6c65616b00000000ull); }

/* ---- appenders (no interning) ------------------------------------------ */

/* Every table stops one short of MFP_NONE, which means "none". */
#define ROOM(n) ((n) < (size_t)MFP_NONE)

uint32_t mfp_profile_push_string(mfp_profile *p, const char *s, size_t len) {
    if (!ROOM(p->nstr) || len >= (size_t)UINT32_MAX || p->sbuf_len > SIZE_MAX - len - 1)
        return MFP_NONE;
    /* s may point into sbuf itself (a caller re-interning string_at()). */
    size_t inside = SIZE_MAX;
    if (len && p->sbuf && s >= p->sbuf && s < p->sbuf + p->sbuf_len)
        inside = (size_t)(s - p->sbuf);
    VEC_RESERVE(p->sbuf, p->sbuf_cap, p->sbuf_len + len + 1, return MFP_NONE);
    VEC_RESERVE(p->strs, p->cap_str, p->nstr + 1, return MFP_NONE);
    if (itab_reserve(&p->str_ix))
        return MFP_NONE;
    if (inside != SIZE_MAX)
        s = p->sbuf + inside;
    uint32_t i = (uint32_t)p->nstr++;
    p->strs[i].off = p->sbuf_len;
    p->strs[i].len = (uint32_t)len;
    if (len)
        memmove(p->sbuf + p->sbuf_len, s, len);
    p->sbuf[p->sbuf_len + len] = '\0';
    p->sbuf_len += len + 1;
    itab_put(&p->str_ix, hash_bytes(p->sbuf + p->strs[i].off, len), i);
    return i;
}

uint32_t mfp_profile_push_func(mfp_profile *p, mfp_func f) {
    if (!ROOM(p->nfuncs))
        return MFP_NONE;
    VEC_RESERVE(p->funcs, p->cap_funcs, p->nfuncs + 1, return MFP_NONE);
    if (itab_reserve(&p->func_ix))
        return MFP_NONE;
    uint32_t i = (uint32_t)p->nfuncs++;
    p->funcs[i] = f;
    itab_put(&p->func_ix, func_hash(&f), i);
    return i;
}

uint32_t mfp_profile_push_frame(mfp_profile *p, mfp_frame f) {
    if (!ROOM(p->nframes))
        return MFP_NONE;
    VEC_RESERVE(p->frames, p->cap_frames, p->nframes + 1, return MFP_NONE);
    if (itab_reserve(&p->frame_ix))
        return MFP_NONE;
    uint32_t i = (uint32_t)p->nframes++;
    p->frames[i] = f;
    itab_put(&p->frame_ix, frame_hash(&f), i);
    return i;
}

uint32_t mfp_profile_push_stack(mfp_profile *p, mfp_stack_node n) {
    if (!ROOM(p->nstacks))
        return MFP_NONE;
    VEC_RESERVE(p->stacks, p->cap_stacks, p->nstacks + 1, return MFP_NONE);
    if (itab_reserve(&p->stack_ix))
        return MFP_NONE;
    uint32_t i = (uint32_t)p->nstacks++;
    p->stacks[i] = n;
    itab_put(&p->stack_ix, stack_hash(n.parent, n.frame), i);
    return i;
}

uint32_t mfp_profile_push_thread(mfp_profile *p, mfp_thread t) {
    if (!ROOM(p->nthreads))
        return MFP_NONE;
    VEC_RESERVE(p->threads, p->cap_threads, p->nthreads + 1, return MFP_NONE);
    VEC_RESERVE(p->thr, p->cap_thr, p->nthreads + 1, return MFP_NONE);
    if (itab_reserve(&p->thread_ix))
        return MFP_NONE;
    uint32_t i = (uint32_t)p->nthreads++;
    p->threads[i] = t;
    p->thr[i].seen = 0;
    p->thr[i].last = MFP_NONE;
    p->thr[i].tmp = 0;
    itab_put(&p->thread_ix, thread_hash(t.tid), i);
    return i;
}

/* Appends a record as is: no cap, no decimation (the decoder restores what
 * an encoder kept). */
uint32_t mfp_profile_push_sample(mfp_profile *p, mfp_sample s) {
    if (!ROOM(p->nsamples) || s.thread >= p->nthreads)
        return MFP_NONE;
    VEC_RESERVE(p->samples, p->cap_samples, p->nsamples + 1, return MFP_NONE);
    uint32_t i = (uint32_t)p->nsamples++;
    p->samples[i] = s;
    p->thr[s.thread].seen++;
    p->thr[s.thread].last = i;
    if (s.t_ns > p->last_t_ns)
        p->last_t_ns = s.t_ns;
    if (p->nsamples > p->max_samples)
        p->max_samples = p->nsamples;
    return i;
}

uint32_t mfp_profile_push_total(mfp_profile *p, mfp_total t) {
    if (!ROOM(p->ntotals))
        return MFP_NONE;
    VEC_RESERVE(p->totals, p->cap_totals, p->ntotals + 1, return MFP_NONE);
    if (itab_reserve(&p->total_ix))
        return MFP_NONE;
    uint32_t i = (uint32_t)p->ntotals++;
    p->totals[i] = t;
    p->samples_seen += t.count;
    itab_put(&p->total_ix, total_hash(t.stack, t.thread, t.flags), i);
    return i;
}

uint32_t mfp_profile_push_memory(mfp_profile *p, mfp_memory m) {
    if (!ROOM(p->nmems))
        return MFP_NONE;
    VEC_RESERVE(p->mems, p->cap_mems, p->nmems + 1, return MFP_NONE);
    if (itab_reserve(&p->mem_ix))
        return MFP_NONE;
    uint32_t i = (uint32_t)p->nmems++;
    p->mems[i] = m;
    itab_put(&p->mem_ix, mem_hash(m.stack), i);
    return i;
}

uint32_t mfp_profile_push_series(mfp_profile *p, uint32_t name, uint32_t unit, uint32_t scale) {
    if (!ROOM(p->nseries))
        return MFP_NONE;
    VEC_RESERVE(p->series, p->cap_series, p->nseries + 1, return MFP_NONE);
    uint32_t i = (uint32_t)p->nseries++;
    series_buf *s = &p->series[i];
    memset(s, 0, sizeof *s);
    s->name = name;
    s->unit = unit;
    s->scale = scale;
    return i;
}

int mfp_profile_push_point(mfp_profile *p, uint32_t series, uint64_t t_ns, int64_t value) {
    series_buf *s = &p->series[series];
    if (s->n == s->cap) {
        /* Two arrays, one capacity: grow both before committing either. */
        size_t cap = s->cap, cap2 = s->cap;
        uint64_t *t = vec_grow(s->t_ns, &cap, s->n + 1, sizeof *t);
        if (!t)
            return -1;
        s->t_ns = t;
        int64_t *v = vec_grow(s->value, &cap2, s->n + 1, sizeof *v);
        if (!v)
            return -1;
        s->value = v;
        s->cap = cap < cap2 ? cap : cap2;
    }
    s->t_ns[s->n] = t_ns;
    s->value[s->n] = value;
    s->n++;
    return 0;
}

/* ---- interning --------------------------------------------------------- */

uint32_t mfp_profile_string(mfp_profile *p, const char *s, size_t len) {
    if (!p || (len && !s))
        return MFP_NONE;
    uint32_t h = hash_bytes(s, len);
    if (p->str_ix.slots) {
        for (uint32_t pos = itab_first(&p->str_ix, h);; pos = itab_next(&p->str_ix, pos)) {
            itab_slot sl = p->str_ix.slots[pos];
            if (sl.idx == MFP_NONE)
                break;
            if (sl.hash == h && p->strs[sl.idx].len == len &&
                (len == 0 || memcmp(p->sbuf + p->strs[sl.idx].off, s, len) == 0))
                return sl.idx;
        }
    }
    return mfp_profile_push_string(p, s, len);
}

uint32_t mfp_profile_func(mfp_profile *p, uint32_t name, uint32_t file, uint32_t line,
                          uint32_t kind) {
    if (!p || name >= p->nstr || file >= p->nstr)
        return MFP_NONE;
    mfp_func f = {name, file, line, kind};
    uint32_t h = func_hash(&f);
    if (p->func_ix.slots) {
        for (uint32_t pos = itab_first(&p->func_ix, h);; pos = itab_next(&p->func_ix, pos)) {
            itab_slot sl = p->func_ix.slots[pos];
            if (sl.idx == MFP_NONE)
                break;
            const mfp_func *g = &p->funcs[sl.idx];
            if (sl.hash == h && g->name == name && g->file == file && g->line == line &&
                g->kind == kind)
                return sl.idx;
        }
    }
    return mfp_profile_push_func(p, f);
}

uint32_t mfp_profile_frame(mfp_profile *p, uint32_t func, uint32_t line) {
    if (!p || func >= p->nfuncs)
        return MFP_NONE;
    mfp_frame f = {func, line};
    uint32_t h = frame_hash(&f);
    if (p->frame_ix.slots) {
        for (uint32_t pos = itab_first(&p->frame_ix, h);; pos = itab_next(&p->frame_ix, pos)) {
            itab_slot sl = p->frame_ix.slots[pos];
            if (sl.idx == MFP_NONE)
                break;
            if (sl.hash == h && p->frames[sl.idx].func == func && p->frames[sl.idx].line == line)
                return sl.idx;
        }
    }
    return mfp_profile_push_frame(p, f);
}

uint32_t mfp_profile_stack(mfp_profile *p, uint32_t parent, uint32_t frame) {
    if (!p || frame >= p->nframes || (parent != MFP_NONE && parent >= p->nstacks))
        return MFP_NONE;
    uint32_t h = stack_hash(parent, frame);
    if (p->stack_ix.slots) {
        for (uint32_t pos = itab_first(&p->stack_ix, h);; pos = itab_next(&p->stack_ix, pos)) {
            itab_slot sl = p->stack_ix.slots[pos];
            if (sl.idx == MFP_NONE)
                break;
            if (sl.hash == h && p->stacks[sl.idx].parent == parent &&
                p->stacks[sl.idx].frame == frame)
                return sl.idx;
        }
    }
    mfp_stack_node n = {parent, frame};
    return mfp_profile_push_stack(p, n);
}

static uint32_t find_thread(const mfp_profile *p, uint64_t tid) {
    if (!p->thread_ix.slots)
        return MFP_NONE;
    uint32_t h = thread_hash(tid);
    for (uint32_t pos = itab_first(&p->thread_ix, h);; pos = itab_next(&p->thread_ix, pos)) {
        itab_slot sl = p->thread_ix.slots[pos];
        if (sl.idx == MFP_NONE)
            return MFP_NONE;
        if (sl.hash == h && p->threads[sl.idx].tid == tid)
            return sl.idx;
    }
}

uint32_t mfp_profile_thread(mfp_profile *p, uint64_t tid, uint32_t name, uint32_t flags) {
    if (!p || name >= p->nstr)
        return MFP_NONE;
    uint32_t i = find_thread(p, tid);
    if (i != MFP_NONE) {
        if (name != 0)
            p->threads[i].name = name;
        p->threads[i].flags |= flags;
        return i;
    }
    mfp_thread t = {tid, name, flags};
    return mfp_profile_push_thread(p, t);
}

/* ---- samples ----------------------------------------------------------- */

static uint32_t find_total(const mfp_profile *p, uint32_t stack, uint32_t thread,
                           uint32_t flags, uint32_t h) {
    if (!p->total_ix.slots)
        return MFP_NONE;
    for (uint32_t pos = itab_first(&p->total_ix, h);; pos = itab_next(&p->total_ix, pos)) {
        itab_slot sl = p->total_ix.slots[pos];
        if (sl.idx == MFP_NONE)
            return MFP_NONE;
        const mfp_total *t = &p->totals[sl.idx];
        if (sl.hash == h && t->stack == stack && t->thread == thread && t->flags == flags)
            return sl.idx;
    }
}

/* Halve SAMPLES in place. Pairing is per thread — each thread keeps its
 * 1st, 3rd, 5th… record and the weight of the record after it — because
 * the sampler visits threads in turn, and keeping every other record of the
 * interleaved array would keep one thread and drop the next. A thread's
 * records start at multiples of the stride in its own sample count, so
 * after pairing they start at multiples of twice the stride, which is what
 * mfp_profile_sample() assumes. Returns whether anything was dropped. */
static int decimate(mfp_profile *p) {
    for (size_t t = 0; t < p->nthreads; t++) {
        p->thr[t].tmp = 0;
        p->thr[t].last = MFP_NONE;
    }
    size_t w = 0;
    for (size_t r = 0; r < p->nsamples; r++) {
        mfp_sample s = p->samples[r];
        thread_state *ts = &p->thr[s.thread];
        if ((ts->tmp++ & 1) && ts->last != MFP_NONE) {
            p->samples[ts->last].weight_ns += s.weight_ns;
        } else {
            p->samples[w] = s;
            ts->last = (uint32_t)w++;
        }
    }
    int dropped = w < p->nsamples;
    p->nsamples = w;
    if (dropped && p->stride < ((uint32_t)1 << 31))
        p->stride *= 2;
    return dropped;
}

int mfp_profile_decimate(mfp_profile *p) { return decimate(p); }

/* Called from the sampler thread (no GIL); touches only this store. */
int mfp_profile_sample(mfp_profile *p, uint64_t t_ns, uint32_t stack, uint32_t thread,
                       uint64_t weight_ns, uint32_t flags) {
    if (!p || stack >= p->nstacks || thread >= p->nthreads)
        return -1;
    if (t_ns < p->last_t_ns)
        t_ns = p->last_t_ns; /* keep SAMPLES in time order whatever the clock did */
    p->last_t_ns = t_ns;

    uint32_t h = total_hash(stack, thread, flags);
    uint32_t ti = find_total(p, stack, thread, flags, h);
    if (ti != MFP_NONE) {
        p->totals[ti].count++;
        p->totals[ti].weight_ns += weight_ns;
        p->samples_seen++;
    } else {
        mfp_total t = {1, weight_ns, stack, thread, flags};
        if (mfp_profile_push_total(p, t) == MFP_NONE)
            return -1;
    }

    /* SAMPLES keeps the 1st of every `stride` samples of each thread and
     * adds the weight of the others to it, so the weights in SAMPLES always
     * add up to those in TOTALS. */
    thread_state *ts = &p->thr[thread];
    uint64_t k = ts->seen++;
    uint64_t mask = (uint64_t)p->stride - 1;
    if ((k & mask) == 0 && p->nsamples >= p->max_samples) {
        decimate(p);
        mask = (uint64_t)p->stride - 1;
    }
    if (((k & mask) != 0 || p->nsamples >= p->max_samples) && ts->last != MFP_NONE) {
        p->samples[ts->last].weight_ns += weight_ns;
        return 0;
    }
    if (p->nsamples >= p->max_samples)
        return 0; /* only with more threads than the cap: counted in TOTALS alone */
    if (p->nsamples == p->cap_samples) {
        /* Grow toward the cap, never past it. */
        size_t ncap = p->cap_samples ? p->cap_samples * 2 : 1024;
        if (ncap > p->max_samples || ncap < p->cap_samples)
            ncap = p->max_samples;
        if (ncap > SIZE_MAX / sizeof(mfp_sample))
            return -1;
        mfp_sample *ns = st_realloc(p->samples, ncap * sizeof *ns);
        if (!ns)
            return -1;
        p->samples = ns;
        p->cap_samples = ncap;
    }
    uint32_t i = (uint32_t)p->nsamples++;
    p->samples[i] = (mfp_sample){t_ns, weight_ns, stack, thread, flags};
    ts->last = i;
    return 0;
}

/* Totals without a SAMPLES record; see profile.h. */
int mfp_profile_total(mfp_profile *p, uint32_t stack, uint32_t thread, uint32_t flags,
                      uint64_t count, uint64_t weight_ns) {
    if (!p || stack >= p->nstacks || thread >= p->nthreads)
        return -1;
    uint32_t h = total_hash(stack, thread, flags);
    uint32_t ti = find_total(p, stack, thread, flags, h);
    if (ti == MFP_NONE) {
        mfp_total t = {count, weight_ns, stack, thread, flags};
        return mfp_profile_push_total(p, t) == MFP_NONE ? -1 : 0;
    }
    p->totals[ti].count += count;
    p->totals[ti].weight_ns += weight_ns;
    p->samples_seen += count;
    return 0;
}

uint32_t mfp_profile_push_heap_event(mfp_profile *p, mfp_heap_event e) {
    if (!ROOM(p->nhevents))
        return MFP_NONE;
    VEC_RESERVE(p->hevents, p->cap_hevents, p->nhevents + 1, return MFP_NONE);
    p->hevents[p->nhevents] = e;
    return (uint32_t)p->nhevents++;
}

uint32_t mfp_profile_push_leak(mfp_profile *p, mfp_leak l) {
    if (!ROOM(p->nleaks))
        return MFP_NONE;
    VEC_RESERVE(p->leaks, p->cap_leaks, p->nleaks + 1, return MFP_NONE);
    if (itab_reserve(&p->leak_ix))
        return MFP_NONE;
    uint32_t i = (uint32_t)p->nleaks++;
    p->leaks[i] = l;
    itab_put(&p->leak_ix, leak_hash(l.stack), i);
    return i;
}

/* ---- timeline, memory, meta -------------------------------------------- */

uint32_t mfp_profile_series(mfp_profile *p, const char *name, const char *unit, uint32_t scale) {
    if (!p)
        return MFP_NONE;
    if (!name)
        name = "";
    if (!unit)
        unit = "";
    uint32_t n = mfp_profile_string(p, name, strlen(name));
    uint32_t u = mfp_profile_string(p, unit, strlen(unit));
    if (n == MFP_NONE || u == MFP_NONE)
        return MFP_NONE;
    for (size_t i = 0; i < p->nseries; i++)
        if (p->series[i].name == n)
            return (uint32_t)i;
    return mfp_profile_push_series(p, n, u, scale);
}

int mfp_profile_point(mfp_profile *p, uint32_t series, uint64_t t_ns, int64_t value) {
    if (!p || series >= p->nseries)
        return -1;
    series_buf *s = &p->series[series];
    if (s->n && t_ns < s->t_ns[s->n - 1])
        t_ns = s->t_ns[s->n - 1];
    return mfp_profile_push_point(p, series, t_ns, value);
}

int mfp_profile_memory(mfp_profile *p, uint32_t stack, uint64_t live_bytes,
                       uint64_t alloc_bytes, uint64_t alloc_count) {
    if (!p || stack >= p->nstacks)
        return -1;
    uint32_t h = mem_hash(stack);
    if (p->mem_ix.slots) {
        for (uint32_t pos = itab_first(&p->mem_ix, h);; pos = itab_next(&p->mem_ix, pos)) {
            itab_slot sl = p->mem_ix.slots[pos];
            if (sl.idx == MFP_NONE)
                break;
            mfp_memory *m = &p->mems[sl.idx];
            if (sl.hash == h && m->stack == stack) {
                m->live_bytes += live_bytes;
                m->alloc_bytes += alloc_bytes;
                m->alloc_count += alloc_count;
                return 0;
            }
        }
    }
    mfp_memory m = {live_bytes, alloc_bytes, alloc_count, stack};
    return mfp_profile_push_memory(p, m) == MFP_NONE ? -1 : 0;
}

int mfp_profile_heap_event(mfp_profile *p, uint32_t stack, uint64_t bytes, uint64_t t_alloc_ns,
                           uint64_t t_free_ns) {
    if (!p || stack >= p->nstacks)
        return -1;
    if (p->nhevents && t_alloc_ns < p->hevents[p->nhevents - 1].t_alloc_ns)
        t_alloc_ns = p->hevents[p->nhevents - 1].t_alloc_ns;
    if (t_free_ns != MFP_STILL_LIVE && t_free_ns < t_alloc_ns)
        t_free_ns = t_alloc_ns;
    mfp_heap_event e = {t_alloc_ns, t_free_ns, bytes, stack};
    return mfp_profile_push_heap_event(p, e) == MFP_NONE ? -1 : 0;
}

int mfp_profile_leak(mfp_profile *p, uint32_t stack, uint64_t live_bytes) {
    if (!p || stack >= p->nstacks)
        return -1;
    uint32_t h = leak_hash(stack);
    if (p->leak_ix.slots) {
        for (uint32_t pos = itab_first(&p->leak_ix, h);; pos = itab_next(&p->leak_ix, pos)) {
            itab_slot sl = p->leak_ix.slots[pos];
            if (sl.idx == MFP_NONE)
                break;
            if (sl.hash == h && p->leaks[sl.idx].stack == stack) {
                p->leaks[sl.idx].live_bytes += live_bytes;
                return 0;
            }
        }
    }
    mfp_leak l = {live_bytes, stack};
    return mfp_profile_push_leak(p, l) == MFP_NONE ? -1 : 0;
}

int mfp_profile_set_meta(mfp_profile *p, const char *json, size_t len) {
    if (!p || (len && !json) || len == SIZE_MAX)
        return -1;
    char *m = st_malloc(len + 1);
    if (!m)
        return -1;
    if (len)
        memcpy(m, json, len);
    m[len] = '\0';
    free(p->meta);
    p->meta = m;
    p->meta_len = len;
    return 0;
}

/* ---- views ------------------------------------------------------------- */

const char *mfp_profile_string_at(const mfp_profile *p, uint32_t i, size_t *len) {
    if (!p || i >= p->nstr) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = p->strs[i].len;
    return p->sbuf + p->strs[i].off;
}

#define VIEW(fn, type, arr, count)                   \
    const type *fn(const mfp_profile *p, size_t *n) { \
        if (n)                                        \
            *n = p ? p->count : 0;                    \
        return p ? p->arr : NULL;                     \
    }
VIEW(mfp_profile_funcs, mfp_func, funcs, nfuncs)
VIEW(mfp_profile_frames, mfp_frame, frames, nframes)
VIEW(mfp_profile_stacks, mfp_stack_node, stacks, nstacks)
VIEW(mfp_profile_threads, mfp_thread, threads, nthreads)
VIEW(mfp_profile_samples, mfp_sample, samples, nsamples)
VIEW(mfp_profile_totals, mfp_total, totals, ntotals)
VIEW(mfp_profile_memories, mfp_memory, mems, nmems)
VIEW(mfp_profile_heap_events, mfp_heap_event, hevents, nhevents)
VIEW(mfp_profile_leaks, mfp_leak, leaks, nleaks)
#undef VIEW

size_t mfp_profile_series_count(const mfp_profile *p) { return p ? p->nseries : 0; }

int mfp_profile_series_at(const mfp_profile *p, uint32_t i, mfp_series_view *out) {
    if (!p || !out || i >= p->nseries)
        return -1;
    const series_buf *s = &p->series[i];
    out->name = s->name;
    out->unit = s->unit;
    out->scale = s->scale;
    out->n = s->n;
    out->t_ns = s->t_ns;
    out->value = s->value;
    return 0;
}

const char *mfp_profile_meta(const mfp_profile *p, size_t *len) {
    if (len)
        *len = (p && p->meta) ? p->meta_len : 0;
    return (p && p->meta) ? p->meta : "";
}

void mfp_profile_get_counts(const mfp_profile *p, mfp_profile_counts *out) {
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    out->strings = p->nstr;
    out->funcs = p->nfuncs;
    out->frames = p->nframes;
    out->stacks = p->nstacks;
    out->threads = p->nthreads;
    out->samples = p->nsamples;
    out->totals = p->ntotals;
    out->series = p->nseries;
    out->memory = p->nmems;
    out->processes = p->nprocs;
    out->decimation = p->stride;
    out->samples_seen = p->samples_seen;
}

/* ---- snapshots --------------------------------------------------------- */

/* A copy of n elements of elem bytes (NULL for none); *ok cleared on OOM. */
static void *dup_arr(const void *src, size_t n, size_t elem, int *ok) {
    if (!src || !n)
        return NULL;
    void *d = st_malloc(n * elem);
    if (!d) {
        *ok = 0;
        return NULL;
    }
    memcpy(d, src, n * elem);
    return d;
}

static void dup_itab(itab *dst, const itab *src, int *ok) {
    *dst = *src;
    dst->slots = src->slots ? dup_arr(src->slots, (size_t)src->mask + 1, sizeof *src->slots, ok)
                            : NULL;
    if (!dst->slots) {
        dst->mask = 0;
        dst->used = 0;
    }
}

/* Every table and index copied block by block: no key is hashed again, so a
 * clone costs a memcpy of the store. */
mfp_profile *mfp_profile_clone(const mfp_profile *p) {
    if (!p)
        return NULL;
    mfp_profile *q = st_malloc(sizeof *q);
    if (!q)
        return NULL;
    int ok = 1;
    *q = *p;
    q->sbuf = dup_arr(p->sbuf, p->sbuf_len, 1, &ok);
    q->sbuf_cap = p->sbuf_len;
    q->strs = dup_arr(p->strs, p->nstr, sizeof *p->strs, &ok);
    q->cap_str = p->nstr;
    dup_itab(&q->str_ix, &p->str_ix, &ok);
    q->funcs = dup_arr(p->funcs, p->nfuncs, sizeof *p->funcs, &ok);
    q->cap_funcs = p->nfuncs;
    dup_itab(&q->func_ix, &p->func_ix, &ok);
    q->frames = dup_arr(p->frames, p->nframes, sizeof *p->frames, &ok);
    q->cap_frames = p->nframes;
    dup_itab(&q->frame_ix, &p->frame_ix, &ok);
    q->stacks = dup_arr(p->stacks, p->nstacks, sizeof *p->stacks, &ok);
    q->cap_stacks = p->nstacks;
    dup_itab(&q->stack_ix, &p->stack_ix, &ok);
    q->threads = dup_arr(p->threads, p->nthreads, sizeof *p->threads, &ok);
    q->thr = dup_arr(p->thr, p->nthreads, sizeof *p->thr, &ok);
    q->cap_threads = q->cap_thr = p->nthreads;
    dup_itab(&q->thread_ix, &p->thread_ix, &ok);
    q->samples = dup_arr(p->samples, p->nsamples, sizeof *p->samples, &ok);
    q->cap_samples = p->nsamples;
    q->totals = dup_arr(p->totals, p->ntotals, sizeof *p->totals, &ok);
    q->cap_totals = p->ntotals;
    dup_itab(&q->total_ix, &p->total_ix, &ok);
    q->mems = dup_arr(p->mems, p->nmems, sizeof *p->mems, &ok);
    q->cap_mems = p->nmems;
    dup_itab(&q->mem_ix, &p->mem_ix, &ok);
    q->hevents = dup_arr(p->hevents, p->nhevents, sizeof *p->hevents, &ok);
    q->cap_hevents = p->nhevents;
    q->leaks = dup_arr(p->leaks, p->nleaks, sizeof *p->leaks, &ok);
    q->cap_leaks = p->nleaks;
    dup_itab(&q->leak_ix, &p->leak_ix, &ok);
    q->procs = dup_arr(p->procs, p->nprocs, sizeof *p->procs, &ok);
    q->cap_procs = p->nprocs;
    q->thread_proc = dup_arr(p->thread_proc, p->nthread_proc, sizeof *p->thread_proc, &ok);
    q->cap_thread_proc = p->nthread_proc;
    q->mem_proc = dup_arr(p->mem_proc, p->nmem_proc, sizeof *p->mem_proc, &ok);
    q->cap_mem_proc = p->nmem_proc;
    q->meta = p->meta ? dup_arr(p->meta, p->meta_len + 1, 1, &ok) : NULL;
    q->series = dup_arr(p->series, p->nseries, sizeof *p->series, &ok);
    q->cap_series = q->series ? p->nseries : 0;
    size_t nseries = q->series ? p->nseries : 0;
    q->nseries = 0; /* counts only the series whose points are copied, for free() */
    for (size_t i = 0; i < nseries; i++) {
        series_buf *s = &q->series[i];
        s->t_ns = dup_arr(p->series[i].t_ns, s->n, sizeof *s->t_ns, &ok);
        s->value = dup_arr(p->series[i].value, s->n, sizeof *s->value, &ok);
        s->cap = s->n;
        q->nseries = i + 1;
        if (!ok)
            break;
    }
    if (!ok) {
        mfp_profile_free(q);
        return NULL;
    }
    return q;
}

/* Entries that the source only appends (strings, functions, frames, stack
 * nodes, new threads, new rows) are appended here as they were; rows the
 * source updates in place (thread names, TOTALS and MEMORY counts) are
 * overwritten. SAMPLES changes in place only at a thread's newest record
 * (the weight of skipped samples goes there) or everywhere when decimation
 * halves it (the stride doubles): so the newest record of every thread at
 * the previous sync is copied again, then the new records — or, after a
 * decimation, everything. */
int mfp_profile_sync(mfp_profile *m, const mfp_profile *src) {
    if (!m || !src)
        return -1;
    for (size_t i = m->nstr; i < src->nstr; i++)
        if (mfp_profile_push_string(m, src->sbuf + src->strs[i].off, src->strs[i].len) != i)
            goto fail;
    for (size_t i = m->nfuncs; i < src->nfuncs; i++)
        if (mfp_profile_push_func(m, src->funcs[i]) != i)
            goto fail;
    for (size_t i = m->nframes; i < src->nframes; i++)
        if (mfp_profile_push_frame(m, src->frames[i]) != i)
            goto fail;
    for (size_t i = m->nstacks; i < src->nstacks; i++)
        if (mfp_profile_push_stack(m, src->stacks[i]) != i)
            goto fail;
    size_t old_threads = m->nthreads;
    for (size_t i = 0; i < old_threads && i < src->nthreads; i++)
        m->threads[i] = src->threads[i];
    for (size_t i = old_threads; i < src->nthreads; i++)
        if (mfp_profile_push_thread(m, src->threads[i]) != i)
            goto fail;

    if (m->stride != src->stride || src->nsamples < m->nsamples) {
        m->nsamples = 0;
    } else {
        for (size_t t = 0; t < old_threads; t++) {
            uint32_t last = m->thr[t].last;
            if (last != MFP_NONE && last < m->nsamples)
                m->samples[last] = src->samples[last];
        }
    }
    VEC_RESERVE(m->samples, m->cap_samples, src->nsamples, goto fail);
    if (src->nsamples > m->nsamples)
        memcpy(m->samples + m->nsamples, src->samples + m->nsamples,
               (src->nsamples - m->nsamples) * sizeof *m->samples);
    m->nsamples = src->nsamples;
    if (src->nthreads)
        memcpy(m->thr, src->thr, src->nthreads * sizeof *m->thr);
    m->stride = src->stride;

    size_t old = m->ntotals < src->ntotals ? m->ntotals : src->ntotals;
    if (old)
        memcpy(m->totals, src->totals, old * sizeof *m->totals);
    for (size_t i = m->ntotals; i < src->ntotals; i++)
        if (mfp_profile_push_total(m, src->totals[i]) != i)
            goto fail;
    old = m->nmems < src->nmems ? m->nmems : src->nmems;
    if (old)
        memcpy(m->mems, src->mems, old * sizeof *m->mems);
    for (size_t i = m->nmems; i < src->nmems; i++)
        if (mfp_profile_push_memory(m, src->mems[i]) != i)
            goto fail;
    for (size_t i = m->nseries; i < src->nseries; i++)
        if (mfp_profile_push_series(m, src->series[i].name, src->series[i].unit,
                                    src->series[i].scale) != i)
            goto fail;
    for (size_t i = 0; i < src->nseries; i++)
        for (size_t k = m->series[i].n; k < src->series[i].n; k++)
            if (mfp_profile_push_point(m, (uint32_t)i, src->series[i].t_ns[k],
                                       src->series[i].value[k]) != 0)
                goto fail;
    m->samples_seen = src->samples_seen;
    m->last_t_ns = src->last_t_ns;
    m->max_samples = src->max_samples;
    return 0;
fail:
    m->stride = 0; /* SAMPLES copied afresh next time */
    return -1;
}
