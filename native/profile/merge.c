/* merge.c — processes, and merging several profiles into one.
 *
 * Why it is built this way: every child process of a profiled step writes
 * a profile of its own (src/metaflow_profiler/children.py) and the card
 * shows them as one tree of processes; comparing or combining runs needs
 * the same operation. A source is mapped into the destination one table at
 * a time, each in one linear pass (strings, then functions, frames, and
 * stacks, which are stored parents first, so a node's parent is always
 * mapped before the node). SAMPLES and HEAP_EVENTS of every input are
 * appended and put in time order by one stable merge sort each at the end,
 * so merging a thousand children costs one sort, not a thousand.
 */
#include <stddef.h>

#include "store.h"

#define ROOM(n) ((n) < (size_t)MFP_NONE)

/* ---- processes ----------------------------------------------------------- */

uint32_t mfp_profile_process(mfp_profile *p, const mfp_process *proc) {
    if (!p || !proc || proc->name >= p->nstr || !ROOM(p->nprocs))
        return MFP_NONE;
    VEC_RESERVE(p->procs, p->cap_procs, p->nprocs + 1, return MFP_NONE);
    p->procs[p->nprocs] = *proc;
    return (uint32_t)p->nprocs++;
}

/* arr[i] = v, growing arr (of *n used, *cap allocated) with zeros. */
static int set_at(uint32_t **arr, size_t *n, size_t *cap, uint32_t i, uint32_t v) {
    if (i >= *n) {
        VEC_RESERVE(*arr, *cap, (size_t)i + 1, return -1);
        memset(*arr + *n, 0, ((size_t)i + 1 - *n) * sizeof **arr);
        *n = (size_t)i + 1;
    }
    (*arr)[i] = v;
    return 0;
}

int mfp_profile_set_thread_process(mfp_profile *p, uint32_t thread, uint32_t proc) {
    if (!p || thread >= p->nthreads || proc >= p->nprocs)
        return -1;
    return set_at(&p->thread_proc, &p->nthread_proc, &p->cap_thread_proc, thread, proc);
}

int mfp_profile_set_memory_process(mfp_profile *p, uint32_t row, uint32_t proc) {
    if (!p || row >= p->nmems || proc >= p->nprocs)
        return -1;
    return set_at(&p->mem_proc, &p->nmem_proc, &p->cap_mem_proc, row, proc);
}

uint32_t mfp_profile_thread_process(const mfp_profile *p, uint32_t thread) {
    return p && thread < p->nthread_proc ? p->thread_proc[thread] : 0;
}

uint32_t mfp_profile_memory_process(const mfp_profile *p, uint32_t row) {
    return p && row < p->nmem_proc ? p->mem_proc[row] : 0;
}

const mfp_process *mfp_profile_processes(const mfp_profile *p, size_t *n) {
    if (n)
        *n = p ? p->nprocs : 0;
    return p ? p->procs : NULL;
}

/* ---- merging ------------------------------------------------------------- */

typedef struct {
    uint32_t *str, *func, *frame, *stack, *proc;
} maps;

static void maps_free(maps *m) {
    free(m->str);
    free(m->func);
    free(m->frame);
    free(m->stack);
    free(m->proc);
}

static uint32_t *new_map(size_t n) { return st_malloc((n ? n : 1) * sizeof(uint32_t)); }

static int64_t shifted(uint64_t t, int64_t offset) {
    int64_t v = (int64_t)(t > (uint64_t)INT64_MAX ? INT64_MAX : t);
    if (offset > 0 && v > INT64_MAX - offset)
        return INT64_MAX;
    v += offset;
    return v < 0 ? 0 : v;
}

/* Strings, functions, frames and stacks of src, interned into dst. */
static int map_code(mfp_profile *dst, const mfp_profile *src, maps *m) {
    for (size_t i = 0; i < src->nstr; i++) {
        m->str[i] = mfp_profile_string(dst, src->sbuf + src->strs[i].off, src->strs[i].len);
        if (m->str[i] == MFP_NONE)
            return -1;
    }
    for (size_t i = 0; i < src->nfuncs; i++) {
        const mfp_func *f = &src->funcs[i];
        m->func[i] = mfp_profile_func(dst, m->str[f->name], m->str[f->file], f->line, f->kind);
        if (m->func[i] == MFP_NONE)
            return -1;
    }
    for (size_t i = 0; i < src->nframes; i++) {
        m->frame[i] = mfp_profile_frame(dst, m->func[src->frames[i].func], src->frames[i].line);
        if (m->frame[i] == MFP_NONE)
            return -1;
    }
    for (size_t i = 0; i < src->nstacks; i++) {
        const mfp_stack_node *s = &src->stacks[i];
        uint32_t parent = s->parent == MFP_NONE ? MFP_NONE : m->stack[s->parent];
        m->stack[i] = mfp_profile_stack(dst, parent, m->frame[s->frame]);
        if (m->stack[i] == MFP_NONE)
            return -1;
    }
    return 0;
}

/* children: dst has a process of its own, so src's are its descendants:
 * none stays a root (a child that followed children of its own was the root
 * of its tree, not of dst's), and `as` says whether src's own ended early. */
static int map_processes(mfp_profile *dst, const mfp_merge_input *in, maps *m, int children) {
    const mfp_profile *src = in->src;
    for (size_t i = 0; i < src->nprocs; i++) {
        mfp_process pr = src->procs[i];
        pr.name = m->str[pr.name];
        pr.start_ns = shifted((uint64_t)(pr.start_ns < 0 ? 0 : pr.start_ns), in->offset_ns);
        if (children) {
            pr.flags &= ~MFP_PROCESS_ROOT;
            if (i == 0 && in->as)
                pr.flags |= in->as->flags & MFP_PROCESS_PARTIAL;
        }
        if ((m->proc[i] = mfp_profile_process(dst, &pr)) == MFP_NONE)
            return -1;
    }
    if (src->nprocs) {
        /* A merge of whole runs (Profile.merge) names each run's process 0,
         * the profiled one, by the label `as` gives it. */
        if (in->as && in->as->name) {
            uint32_t name = mfp_profile_string(dst, in->as->name, strlen(in->as->name));
            if (name == MFP_NONE)
                return -1;
            dst->procs[m->proc[0]].name = name;
        }
        return 0;
    }
    mfp_process_info none = {0};
    const mfp_process_info *as = in->as ? in->as : &none;
    const char *name = as->name ? as->name : "";
    mfp_process pr = {as->pid, as->ppid, mfp_profile_string(dst, name, strlen(name)),
                      children ? as->flags & ~MFP_PROCESS_ROOT : as->flags,
                      shifted(0, in->offset_ns), as->duration_ns, as->cpu_ns, as->rss_peak_bytes,
                      as->heap_peak_bytes};
    if (pr.name == MFP_NONE)
        return -1;
    m->proc[0] = mfp_profile_process(dst, &pr);
    return m->proc[0] == MFP_NONE ? -1 : 0;
}

/* Memory over time and what was still live at the end; events unsorted. */
static int map_heap(mfp_profile *dst, const mfp_merge_input *in, const maps *m) {
    const mfp_profile *src = in->src;
    for (size_t i = 0; i < src->nhevents; i++) {
        mfp_heap_event e = src->hevents[i];
        e.stack = m->stack[e.stack];
        e.t_alloc_ns = (uint64_t)shifted(e.t_alloc_ns, in->offset_ns);
        if (e.t_free_ns != MFP_STILL_LIVE)
            e.t_free_ns = (uint64_t)shifted(e.t_free_ns, in->offset_ns);
        if (mfp_profile_push_heap_event(dst, e) == MFP_NONE)
            return -1;
    }
    for (size_t i = 0; i < src->nleaks; i++)
        if (mfp_profile_leak(dst, m->stack[src->leaks[i].stack], src->leaks[i].live_bytes))
            return -1;
    return 0;
}

/* Threads, totals, memory rows, and samples appended unsorted. */
static int map_rows(mfp_profile *dst, const mfp_merge_input *in, maps *m) {
    const mfp_profile *src = in->src;
    size_t thread0 = dst->nthreads;
    for (size_t i = 0; i < src->nthreads; i++) {
        mfp_thread t = src->threads[i];
        t.name = m->str[t.name];
        uint32_t ti = mfp_profile_push_thread(dst, t);
        if (ti == MFP_NONE ||
            mfp_profile_set_thread_process(dst, ti,
                                           m->proc[mfp_profile_thread_process(src, (uint32_t)i)]))
            return -1;
    }
    for (size_t i = 0; i < src->ntotals; i++) {
        const mfp_total *t = &src->totals[i];
        if (mfp_profile_total(dst, m->stack[t->stack], (uint32_t)(thread0 + t->thread), t->flags,
                              t->count, t->weight_ns))
            return -1;
    }
    for (size_t i = 0; i < src->nmems; i++) {
        mfp_memory r = src->mems[i];
        r.stack = m->stack[r.stack];
        uint32_t ri = mfp_profile_push_memory(dst, r);
        if (ri == MFP_NONE ||
            mfp_profile_set_memory_process(dst, ri,
                                           m->proc[mfp_profile_memory_process(src, (uint32_t)i)]))
            return -1;
    }
    if (!src->nsamples)
        return 0;
    if (src->nsamples > SIZE_MAX - dst->nsamples || !ROOM(dst->nsamples + src->nsamples))
        return -1;
    VEC_RESERVE(dst->samples, dst->cap_samples, dst->nsamples + src->nsamples, return -1);
    for (size_t i = 0; i < src->nsamples; i++) {
        mfp_sample s = src->samples[i];
        s.t_ns = (uint64_t)shifted(s.t_ns, in->offset_ns);
        s.stack = m->stack[s.stack];
        s.thread = (uint32_t)(thread0 + s.thread);
        dst->samples[dst->nsamples++] = s;
    }
    return 0;
}

static int merge_one(mfp_profile *dst, const mfp_merge_input *in, int children) {
    const mfp_profile *src = in->src;
    if (!src || src == dst)
        return -1;
    maps m = {new_map(src->nstr), new_map(src->nfuncs), new_map(src->nframes),
              new_map(src->nstacks), new_map(src->nprocs)};
    int rc = -1;
    if (m.str && m.func && m.frame && m.stack && m.proc && map_code(dst, src, &m) == 0 &&
        map_processes(dst, in, &m, children) == 0 && map_rows(dst, in, &m) == 0)
        rc = map_heap(dst, in, &m);
    maps_free(&m);
    return rc;
}

static uint64_t time_at(const unsigned char *row, size_t key) {
    uint64_t t;
    memcpy(&t, row + key, sizeof t);
    return t;
}

/* Stable merge sort of n rows of `size` bytes by the uint64_t time at byte
 * `key` of each, in place with one buffer (SAMPLES by t_ns, HEAP_EVENTS by
 * t_alloc_ns: readers rely on both being in time order). */
static int sort_by_time(void *rows, size_t n, size_t size, size_t key) {
    if (n < 2)
        return 0;
    unsigned char *a = rows, *tmp = st_malloc(n * size);
    if (!tmp)
        return -1;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int right = time_at(a + j * size, key) < time_at(a + i * size, key);
                memcpy(tmp + k++ * size, a + (right ? j++ : i++) * size, size);
            }
            memcpy(tmp + k * size, a + i * size, (mid - i) * size);
            k += mid - i;
            memcpy(tmp + k * size, a + j * size, (hi - j) * size);
        }
        memcpy(a, tmp, n * size);
        if (width > SIZE_MAX / 4)
            break;
    }
    free(tmp);
    return 0;
}

/* After SAMPLES changed wholesale: each thread's newest record and count. */
static void reindex_samples(mfp_profile *p) {
    for (size_t t = 0; t < p->nthreads; t++) {
        p->thr[t].last = MFP_NONE;
        p->thr[t].seen = 0;
    }
    p->last_t_ns = 0;
    for (size_t i = 0; i < p->nsamples; i++) {
        thread_state *ts = &p->thr[p->samples[i].thread];
        ts->last = (uint32_t)i;
        ts->seen += p->stride;
        if (p->samples[i].t_ns > p->last_t_ns)
            p->last_t_ns = p->samples[i].t_ns;
    }
}

int mfp_profile_merge(mfp_profile *dst, const mfp_merge_input *in, size_t n) {
    if (!dst || (n && !in))
        return -1;
    /* An empty dst (a merge of whole runs) gets no process of its own. */
    if (dst->nprocs == 0 && (dst->nthreads || dst->nmems || dst->nhevents)) {
        mfp_process self = {0};
        self.flags = MFP_PROCESS_ROOT;
        if (mfp_profile_process(dst, &self) == MFP_NONE)
            return -1;
    }
    size_t before = dst->nsamples, events_before = dst->nhevents;
    int rc = 0, children = dst->nprocs > 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = merge_one(dst, &in[i], children);
    /* unsorted rows would break the store: drop what was added */
    if (dst->nsamples != before && sort_by_time(dst->samples, dst->nsamples, sizeof *dst->samples,
                                                offsetof(mfp_sample, t_ns)) != 0) {
        dst->nsamples = before;
        rc = -1;
    }
    if (dst->nhevents != events_before &&
        sort_by_time(dst->hevents, dst->nhevents, sizeof *dst->hevents,
                     offsetof(mfp_heap_event, t_alloc_ns)) != 0) {
        dst->nhevents = events_before;
        rc = -1;
    }
    reindex_samples(dst);
    while (dst->nsamples > dst->max_samples && mfp_profile_decimate(dst))
        ;
    return rc;
}
