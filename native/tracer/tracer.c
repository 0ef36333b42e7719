/* tracer.c — the deterministic tracer (see tracer.h for what it records).
 *
 * Why it is built this way: a tracer pays on every call, so the hook does
 * as little as it can. One clock read per event; the child for a call is
 * found through a one-entry cache on the parent (recursion and loops call
 * the same child again and again) and otherwise through one open-addressing
 * table keyed by (parent node, function pointer); no Python object is
 * created or looked up per event — a function is identified by its code
 * object or PyMethodDef pointer, and names are made only at export. On
 * 3.12+ sys.monitoring hands us the code object without a frame object,
 * which is what makes it cheaper than the profile-function protocol; on
 * 3.11 the profile function is the only hook there is.
 *
 * The thread of an event is found through a thread-local record stamped
 * with the tracer's generation, so a thread costs one lookup when it is
 * first seen. Pops check the function they expect: an event we never saw
 * the start of (a frame that began before tracing) cannot unbalance the
 * stack, and a frame left by an exception through several levels is closed
 * with everything above it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tracer.h"

#define DEFAULT_MAX_NODES ((size_t)1 << 20)
#define NONE32 UINT32_MAX
#define POP_SEARCH 16 /* how far below the top a return looks for its frame */

enum { NODE_ROOT = 0, NODE_PY = 1, NODE_C = 2 };

typedef struct {
    const void *key; /* PyCodeObject* or PyMethodDef*; NULL for a thread root */
    PyObject *owner; /* NODE_PY: the code object; NODE_C: type or module name (owned) */
    uint32_t parent, thread, last_child;
    uint32_t kind;
    uint64_t calls, self_ns;
} node;

typedef struct {
    const void *key;
    uint32_t node;
    uint64_t t0, child_ns;
} entry;

typedef struct {
    uint64_t tid;
    uint32_t root;
    int lost; /* the stack could not grow: events of this thread are ignored */
    PyObject *name; /* its threading.Thread name when known (owned), else NULL */
    entry *stack;
    size_t depth, cap;
} tthread;

struct mfp_tracer {
    size_t max_nodes;
    node *nodes;
    size_t nnodes, cap_nodes;
    uint32_t *table; /* node indices, NONE32 = empty; capacity a power of two */
    size_t table_mask;

    tthread *threads;
    size_t nthreads, cap_threads;

    uint64_t gen, t0_ns, t1_ns, calls, dropped_nodes;
    int state; /* 0 new, 1 running, 2 stopped */
    int tool_id, used_tool_id;
#if PY_VERSION_HEX < 0x030C0000
    PyObject *thread_hook;
#endif
};

/* The running tracer; callbacks that find none ignore the event. */
static mfp_tracer *g_active;
static uint64_t g_gen;

/* initial-exec: read like a global, not through __tls_get_addr, which a
 * shared object otherwise pays on every event. */
#define TLS _Thread_local __attribute__((tls_model("initial-exec")))
static TLS uint64_t tls_gen;
static TLS uint32_t tls_thread;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the tree ------------------------------------------------------------ */

static size_t key_hash(uint32_t parent, const void *key) {
    uint64_t x = ((uint64_t)(uintptr_t)key >> 4) ^ ((uint64_t)parent * 0x9e3779b97f4a7c15ull);
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    return (size_t)x;
}

static int table_grow(mfp_tracer *t) {
    size_t ncap = t->table ? (t->table_mask + 1) * 2 : 1024;
    uint32_t *nt = malloc(ncap * sizeof *nt);
    if (!nt)
        return -1;
    memset(nt, 0xff, ncap * sizeof *nt);
    for (size_t i = 0; i < t->nnodes; i++) {
        if (t->nodes[i].kind == NODE_ROOT)
            continue;
        size_t pos = key_hash(t->nodes[i].parent, t->nodes[i].key) & (ncap - 1);
        while (nt[pos] != NONE32)
            pos = (pos + 1) & (ncap - 1);
        nt[pos] = (uint32_t)i;
    }
    free(t->table);
    t->table = nt;
    t->table_mask = ncap - 1;
    return 0;
}

static uint32_t new_node(mfp_tracer *t, uint32_t parent, uint32_t thread, const void *key,
                         uint32_t kind, PyObject *owner) {
    if (t->nnodes >= t->max_nodes)
        return NONE32;
    if (t->nnodes == t->cap_nodes) {
        size_t ncap = t->cap_nodes ? t->cap_nodes * 2 : 256;
        node *nn = realloc(t->nodes, ncap * sizeof *nn);
        if (!nn)
            return NONE32;
        t->nodes = nn;
        t->cap_nodes = ncap;
    }
    if (kind != NODE_ROOT && (!t->table || (t->nnodes + 1) * 2 > t->table_mask + 1) &&
        table_grow(t) != 0)
        return NONE32;
    uint32_t i = (uint32_t)t->nnodes++;
    Py_XINCREF(owner);
    t->nodes[i] = (node){key, owner, parent, thread, NONE32, kind, 0, 0};
    if (kind != NODE_ROOT) {
        size_t pos = key_hash(parent, key) & t->table_mask;
        while (t->table[pos] != NONE32)
            pos = (pos + 1) & t->table_mask;
        t->table[pos] = i;
    }
    return i;
}

/* The child of `parent` for `key`, made when new; NONE32 past the cap. */
static uint32_t child_of(mfp_tracer *t, uint32_t parent, const void *key, uint32_t kind,
                         PyObject *owner) {
    uint32_t c = t->nodes[parent].last_child;
    if (c != NONE32 && t->nodes[c].key == key)
        return c;
    if (t->table) {
        for (size_t pos = key_hash(parent, key) & t->table_mask;;
             pos = (pos + 1) & t->table_mask) {
            uint32_t i = t->table[pos];
            if (i == NONE32)
                break;
            if (t->nodes[i].key == key && t->nodes[i].parent == parent) {
                t->nodes[parent].last_child = i;
                return i;
            }
        }
    }
    c = new_node(t, parent, t->nodes[parent].thread, key, kind, owner);
    if (c != NONE32)
        t->nodes[parent].last_child = c;
    return c;
}

/* ---- per-thread stacks ----------------------------------------------------- */

static int stack_reserve(tthread *th) {
    if (th->depth < th->cap)
        return 0;
    size_t ncap = th->cap ? th->cap * 2 : 64;
    entry *ns = realloc(th->stack, ncap * sizeof *ns);
    if (!ns)
        return -1;
    th->stack = ns;
    th->cap = ncap;
    return 0;
}

/* Enter `key` on th at time now. counted: a call (not a resume). */
static void push(mfp_tracer *t, tthread *th, const void *key, uint32_t kind, PyObject *owner,
                 int counted, uint64_t now) {
    if (th->lost)
        return;
    if (stack_reserve(th) != 0) {
        th->lost = 1;
        return;
    }
    uint32_t parent = th->depth ? th->stack[th->depth - 1].node : th->root;
    uint32_t n = child_of(t, parent, key, kind, owner);
    if (n == NONE32) {
        /* Past the cap: the frame stays on the stack (its return must find
         * it) but its time and calls go to the caller's node. */
        n = parent;
        t->dropped_nodes++;
    } else if (counted) {
        t->nodes[n].calls++;
    }
    if (counted)
        t->calls++;
    th->stack[th->depth++] = (entry){key, n, now, 0};
}

static void pop_top(mfp_tracer *t, tthread *th, uint64_t now) {
    entry *e = &th->stack[--th->depth];
    uint64_t dt = now > e->t0 ? now - e->t0 : 0;
    uint64_t self = dt > e->child_ns ? dt - e->child_ns : 0;
    t->nodes[e->node].self_ns += self;
    if (th->depth)
        th->stack[th->depth - 1].child_ns += dt;
}

/* Leave `key`: close it and whatever is above it. `deep` lets a Python
 * frame be found below C frames left open; a C return only matches the
 * top. Unknown keys (frames begun before tracing) are ignored. */
static void pop(mfp_tracer *t, tthread *th, const void *key, int deep, uint64_t now) {
    if (th->lost || !th->depth)
        return;
    size_t lim = deep ? (th->depth < POP_SEARCH ? th->depth : POP_SEARCH) : 1;
    for (size_t k = 1; k <= lim; k++) {
        if (th->stack[th->depth - k].key == key) {
            while (k--)
                pop_top(t, th, now);
            return;
        }
    }
}

/* The name of a threading.Thread whose outermost frame is `outer`
 * (Thread._bootstrap(self)), read once when the thread is first seen, since
 * a thread that ends before stop() is no longer listed by threading. Reads
 * the frame's locals and the instance dict only, so no Python code runs.
 * New reference or NULL; any exception in flight is kept as it was. */
static PyObject *bootstrap_thread_name(PyFrameObject *outer) {
    PyCodeObject *co = PyFrame_GetCode(outer);
    int boot = PyUnicode_Check(co->co_name) &&
               PyUnicode_CompareWithASCIIString(co->co_name, "_bootstrap") == 0;
    Py_DECREF(co);
    if (!boot)
        return NULL;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *locals = PyFrame_GetLocals(outer);
    PyObject *self = locals ? PyMapping_GetItemString(locals, "self") : NULL;
    PyObject *dict = self ? PyObject_GenericGetDict(self, NULL) : NULL;
    PyObject *name = dict && PyDict_Check(dict) ? PyDict_GetItemString(dict, "_name") : NULL;
    if (name && PyUnicode_Check(name))
        Py_INCREF(name);
    else
        name = NULL;
    Py_XDECREF(dict);
    Py_XDECREF(self);
    Py_XDECREF(locals);
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
    return name;
}

#define MAX_SEED 512

/* This thread's record, made when first seen and seeded with the frames
 * running now, outermost first, less the innermost `skip` (the frame an
 * entry event is about to push); seeded frames start at the tracer's start
 * with 0 calls. NULL when out of memory or when the tracer stopped meanwhile.
 *
 * Everything that may allocate Python objects (and so run a collection, a
 * finalizer, and let another thread take the GIL) happens first; the
 * tracer's arrays are touched only afterwards, so no pointer into them is
 * held across a call that could let another thread's callback grow them. */
static tthread *this_thread(mfp_tracer *t, PyFrameObject *frame, int skip) {
    if (tls_gen == t->gen)
        return &t->threads[tls_thread];
    PyObject *codes[MAX_SEED]; /* innermost first, owned */
    PyFrameObject *outer = NULL;
    int n = 0;
    PyFrameObject *f = frame;
    Py_XINCREF(f);
    while (f && n < MAX_SEED) {
        codes[n++] = (PyObject *)PyFrame_GetCode(f);
        Py_XDECREF(outer);
        outer = f;
        f = PyFrame_GetBack(f);
    }
    PyObject *name = !f && outer ? bootstrap_thread_name(outer) : NULL;
    Py_XDECREF(f);
    Py_XDECREF(outer);

    tthread *th = NULL;
    if (g_active != t || t->state != 1)
        goto done;
    if (t->nthreads == t->cap_threads) {
        size_t ncap = t->cap_threads ? t->cap_threads * 2 : 8;
        tthread *nt = realloc(t->threads, ncap * sizeof *nt);
        if (!nt)
            goto done;
        t->threads = nt;
        t->cap_threads = ncap;
    }
    uint32_t idx = (uint32_t)t->nthreads;
    uint32_t root = new_node(t, NONE32, idx, NULL, NODE_ROOT, NULL);
    if (root == NONE32)
        goto done;
    t->nthreads++;
    th = &t->threads[idx];
    *th = (tthread){(uint64_t)syscall(SYS_gettid), root, 0, name, NULL, 0, 0};
    name = NULL; /* the record owns it */
    tls_gen = t->gen;
    tls_thread = idx;
    for (int i = n - 1; i >= skip; i--)
        push(t, th, codes[i], NODE_PY, codes[i], 0, t->t0_ns);
done:
    for (int i = 0; i < n; i++)
        Py_DECREF(codes[i]);
    Py_XDECREF(name);
    return th;
}

/* The identity of a C callable as a node key (its PyMethodDef) and the
 * object its name comes from; 0 when it is not a function we time. */
static int c_callable(PyObject *callable, PyObject *self_arg, const void **key, PyObject **owner) {
    if (PyCFunction_Check(callable)) {
        PyCFunctionObject *cf = (PyCFunctionObject *)callable;
        *key = cf->m_ml;
        if (cf->m_self && !PyModule_Check(cf->m_self))
            *owner = (PyObject *)Py_TYPE(cf->m_self);
        else
            *owner = cf->m_module; /* the module's name, or NULL */
        return 1;
    }
    if (Py_IS_TYPE(callable, &PyMethodDescr_Type) && self_arg) {
        PyMethodDescrObject *d = (PyMethodDescrObject *)callable;
        *key = d->d_method;
        *owner = (PyObject *)PyDescr_TYPE(d);
        return 1;
    }
    return 0;
}

/* ---- the hooks ----------------------------------------------------------------- */

#if PY_VERSION_HEX >= 0x030C0000

/* sys.monitoring callbacks, called in the traced thread with the GIL held
 * (METH_FASTCALL: args[0] is the code object). They touch only g_active
 * and this thread's record, and never raise: a failure loses an event. */

/* sys.monitoring.MISSING: the arg0 of a CALL without one (owned). */
static PyObject *g_missing, *g_disable;

/* This thread's record; entry events pass skip 1, since the frame that
 * starts is already the current one when the callback runs. */
static tthread *cb_thread(int skip) {
    mfp_tracer *t = g_active;
    if (!t || t->state != 1)
        return NULL;
    if (tls_gen == t->gen)
        return &t->threads[tls_thread];
    return this_thread(t, PyEval_GetFrame(), skip);
}

static PyObject *cb_start(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    uint64_t now = now_ns();
    tthread *th = cb_thread(1);
    if (th && n >= 1)
        push(g_active, th, args[0], NODE_PY, args[0], 1, now);
    Py_RETURN_NONE;
}

static PyObject *cb_resume(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    uint64_t now = now_ns();
    tthread *th = cb_thread(1);
    if (th && n >= 1)
        push(g_active, th, args[0], NODE_PY, args[0], 0, now);
    Py_RETURN_NONE;
}

static PyObject *cb_leave(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    uint64_t now = now_ns();
    tthread *th = cb_thread(0);
    if (th && n >= 1)
        pop(g_active, th, args[0], 1, now);
    Py_RETURN_NONE;
}

static PyObject *cb_call(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n < 4)
        Py_RETURN_NONE;
    const void *key;
    PyObject *owner = NULL;
    if (!c_callable(args[2], args[3] == g_missing ? NULL : args[3], &key, &owner)) {
        /* Python callees report their own PY_START, and other callables
         * (classes, slot wrappers) are not timed: stop CALL here, which
         * also stops this site's C_RETURN/C_RAISE, so pairs stay matched. */
        return Py_NewRef(g_disable);
    }
    uint64_t now = now_ns();
    tthread *th = cb_thread(0);
    if (th)
        push(g_active, th, key, NODE_C, owner, 1, now);
    Py_RETURN_NONE;
}

static PyObject *cb_c_leave(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n < 4)
        Py_RETURN_NONE;
    const void *key;
    PyObject *owner = NULL;
    if (!c_callable(args[2], args[3] == g_missing ? NULL : args[3], &key, &owner))
        Py_RETURN_NONE;
    uint64_t now = now_ns();
    tthread *th = cb_thread(0);
    if (th)
        pop(g_active, th, key, 0, now);
    Py_RETURN_NONE;
}

static PyMethodDef cb_defs[] = {
    {"mfp_py_start", (PyCFunction)(void (*)(void))cb_start, METH_FASTCALL, NULL},
    {"mfp_py_resume", (PyCFunction)(void (*)(void))cb_resume, METH_FASTCALL, NULL},
    {"mfp_py_leave", (PyCFunction)(void (*)(void))cb_leave, METH_FASTCALL, NULL},
    {"mfp_call", (PyCFunction)(void (*)(void))cb_call, METH_FASTCALL, NULL},
    {"mfp_c_leave", (PyCFunction)(void (*)(void))cb_c_leave, METH_FASTCALL, NULL},
};

/* Event name → callback (index into cb_defs). */
static const struct {
    const char *event;
    int cb;
} cb_events[] = {
    {"PY_START", 0}, {"PY_THROW", 1}, {"PY_RESUME", 1}, {"PY_RETURN", 2}, {"PY_YIELD", 2},
    {"PY_UNWIND", 2}, {"CALL", 3}, {"C_RETURN", 4}, {"C_RAISE", 4},
};
#define N_EVENTS (sizeof cb_events / sizeof cb_events[0])

/* Tool ids we may take, most preferred first: 2 (PROFILER_ID) is left for
 * cProfile so both can run; 0 and 1 are the debugger's and coverage's. */
static const int tool_ids[] = {4, 3, 5, 2};

static int hooks_install(mfp_tracer *t) {
    PyObject *mon = PySys_GetObject("monitoring"); /* borrowed */
    if (!mon) {
        PyErr_SetString(PyExc_RuntimeError, "sys.monitoring is not available");
        return -1;
    }
    int tool = -1;
    for (size_t i = 0; i < sizeof tool_ids / sizeof tool_ids[0]; i++) {
        PyObject *r = PyObject_CallMethod(mon, "use_tool_id", "is", tool_ids[i], "metaflow-profiler");
        if (r) {
            Py_DECREF(r);
            tool = tool_ids[i];
            break;
        }
        PyErr_Clear();
    }
    if (tool < 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the trace backend found no free sys.monitoring tool id (other tools hold them)");
        return -1;
    }
    t->tool_id = t->used_tool_id = tool;
    if (!g_missing)
        g_missing = PyObject_GetAttrString(mon, "MISSING");
    if (!g_disable)
        g_disable = PyObject_GetAttrString(mon, "DISABLE");
    PyObject *events = g_missing && g_disable ? PyObject_GetAttrString(mon, "events") : NULL;
    long mask = 0;
    if (!events)
        goto fail;
    for (size_t i = 0; i < N_EVENTS; i++) {
        PyObject *ev = PyObject_GetAttrString(events, cb_events[i].event);
        long bit = ev ? PyLong_AsLong(ev) : -1;
        Py_XDECREF(ev);
        if (bit == -1 && PyErr_Occurred())
            goto fail;
        PyObject *cb = PyCFunction_New(&cb_defs[cb_events[i].cb], NULL);
        PyObject *r = cb ? PyObject_CallMethod(mon, "register_callback", "ilO", tool, bit, cb) : NULL;
        Py_XDECREF(cb);
        if (!r)
            goto fail;
        Py_DECREF(r);
        mask |= bit;
    }
    PyObject *r = PyObject_CallMethod(mon, "set_events", "il", tool, mask);
    if (!r)
        goto fail;
    Py_DECREF(r);
    Py_DECREF(events);
    return 0;
fail:
    Py_XDECREF(events);
    {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *r = PyObject_CallMethod(mon, "free_tool_id", "i", tool);
        Py_XDECREF(r);
        PyErr_Clear();
        PyErr_Restore(et, ev, tb);
    }
    t->tool_id = -1;
    return -1;
}

static int hooks_remove(mfp_tracer *t) {
    if (t->tool_id < 0)
        return 0;
    PyObject *mon = PySys_GetObject("monitoring");
    if (!mon)
        return 0;
    /* free_tool_id also unregisters the callbacks and clears the events
     * (3.12: set_events first, to be sure; 3.13 does it all). */
    PyObject *r = PyObject_CallMethod(mon, "set_events", "ii", t->tool_id, 0);
    Py_XDECREF(r);
    int ok = r != NULL;
    PyObject *events = PyObject_GetAttrString(mon, "events");
    for (size_t i = 0; events && i < N_EVENTS; i++) {
        PyObject *ev = PyObject_GetAttrString(events, cb_events[i].event);
        if (!ev) {
            ok = 0;
            break;
        }
        r = PyObject_CallMethod(mon, "register_callback", "iOO", t->tool_id, ev, Py_None);
        Py_DECREF(ev);
        Py_XDECREF(r);
        ok &= r != NULL;
    }
    Py_XDECREF(events);
    /* Call sites we disabled can stay disabled for the next tool that
     * takes this id; re-enable them (other tools merely see events they
     * had disabled once more, which the protocol allows). */
    r = PyObject_CallMethod(mon, "restart_events", NULL);
    Py_XDECREF(r);
    ok &= r != NULL;
    r = PyObject_CallMethod(mon, "free_tool_id", "i", t->tool_id);
    Py_XDECREF(r);
    ok &= r != NULL;
    t->tool_id = -1;
    return ok ? 0 : -1;
}

static const char *mechanism_name = "sys.monitoring";

#else /* 3.11: the profile-function protocol */

/* The profile function, called in the traced thread with the GIL held. It
 * touches only g_active and this thread's record, and never fails. */
static int prof_func(PyObject *Py_UNUSED(obj), PyFrameObject *frame, int what, PyObject *arg) {
    mfp_tracer *t = g_active;
    if (!t || t->state != 1)
        return 0;
    uint64_t now = now_ns();
    const void *key;
    PyObject *owner = NULL;
    tthread *th;
    switch (what) {
    case PyTrace_CALL: {
        th = this_thread(t, frame, 1);
        if (!th)
            return 0;
        PyCodeObject *co = PyFrame_GetCode(frame);
        int counted = 1;
        if (co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) {
            /* A generator's frame enters at its first RESUME (oparg 0) when
             * it starts, and at a later one (oparg 1..3) when resumed. */
            int lasti = PyFrame_GetLasti(frame);
            if (lasti >= 0 && _Py_OPARG(_PyCode_CODE(co)[lasti / 2]) != 0)
                counted = 0;
        }
        push(t, th, co, NODE_PY, (PyObject *)co, counted, now);
        Py_DECREF(co);
        break;
    }
    case PyTrace_RETURN: {
        th = this_thread(t, frame, 0);
        if (!th)
            return 0;
        PyCodeObject *co = PyFrame_GetCode(frame);
        pop(t, th, co, 1, now);
        Py_DECREF(co);
        break;
    }
    case PyTrace_C_CALL:
        if (!c_callable(arg, NULL, &key, &owner))
            return 0;
        th = this_thread(t, frame, 0);
        if (th)
            push(t, th, key, NODE_C, owner, 1, now);
        break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        if (!c_callable(arg, NULL, &key, &owner))
            return 0;
        th = this_thread(t, frame, 0);
        if (th)
            pop(t, th, key, 0, now);
        break;
    default:
        break;
    }
    return 0;
}

/* threading.setprofile() hook: the first event of a new thread installs
 * the C profile function there and is handed on to it. */
static PyObject *thread_hook(PyObject *Py_UNUSED(m), PyObject *args) {
    PyObject *frame, *arg;
    const char *event;
    if (!PyArg_ParseTuple(args, "OsO", &frame, &event, &arg))
        return NULL;
    if (!g_active)
        Py_RETURN_NONE;
    PyEval_SetProfile(prof_func, NULL);
    static const struct {
        const char *name;
        int what;
    } map[] = {{"call", PyTrace_CALL}, {"return", PyTrace_RETURN}, {"c_call", PyTrace_C_CALL},
               {"c_return", PyTrace_C_RETURN}, {"c_exception", PyTrace_C_EXCEPTION}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(event, map[i].name) == 0 && PyFrame_Check(frame))
            prof_func(NULL, (PyFrameObject *)frame, map[i].what, arg);
    Py_RETURN_NONE;
}

static PyMethodDef thread_hook_def = {"mfp_thread_hook", thread_hook, METH_VARARGS, NULL};

static int set_threading_hook(PyObject *hook) {
    PyObject *threading = PyImport_ImportModule("threading");
    if (!threading)
        return -1;
    PyObject *r = PyObject_CallMethod(threading, "setprofile", "O", hook);
    Py_DECREF(threading);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

static int hooks_remove(mfp_tracer *t);

static int hooks_install(mfp_tracer *t) {
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts; ts = PyThreadState_Next(ts)) {
        if (ts->c_profilefunc) {
            PyErr_SetString(PyExc_RuntimeError,
                            "another profiler is active (sys.setprofile is set); the trace "
                            "backend cannot run beside it");
            return -1;
        }
    }
    t->thread_hook = PyCFunction_New(&thread_hook_def, NULL);
    if (!t->thread_hook || set_threading_hook(t->thread_hook) != 0) {
        Py_CLEAR(t->thread_hook);
        return -1;
    }
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts; ts = PyThreadState_Next(ts)) {
        if (_PyEval_SetProfile(ts, prof_func, NULL) != 0) {
            /* An audit hook refused: take back what was installed. */
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            hooks_remove(t);
            PyErr_Restore(et, ev, tb);
            return -1;
        }
    }
    return 0;
}

static int hooks_remove(mfp_tracer *t) {
    int rc = 0;
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts; ts = PyThreadState_Next(ts)) {
        if (ts->c_profilefunc == prof_func ||
            (t->thread_hook && ts->c_profileobj == t->thread_hook)) {
            if (_PyEval_SetProfile(ts, NULL, NULL) != 0) {
                PyErr_Clear();
                rc = -1;
            }
        }
    }
    if (t->thread_hook) {
        if (set_threading_hook(Py_None) != 0)
            rc = -1;
        Py_CLEAR(t->thread_hook);
    }
    return rc;
}

static const char *mechanism_name = "setprofile";

#endif

/* ---- lifecycle ------------------------------------------------------------------ */

mfp_tracer *mfp_tracer_new(size_t max_nodes) {
    mfp_tracer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->max_nodes = max_nodes ? max_nodes : DEFAULT_MAX_NODES;
    if (t->max_nodes >= NONE32)
        t->max_nodes = NONE32 - 1;
    t->tool_id = t->used_tool_id = -1;
    return t;
}

int mfp_tracer_start(mfp_tracer *t) {
    if (t->state != 0) {
        PyErr_SetString(PyExc_RuntimeError, "a Tracer can be started once");
        return -1;
    }
    if (g_active) {
        PyErr_SetString(PyExc_RuntimeError, "another trace profiler is already running");
        return -1;
    }
#ifdef Py_GIL_DISABLED
    /* The tree and the stacks rely on the GIL to serialise the callbacks. */
    PyErr_SetString(PyExc_RuntimeError, "the trace backend needs a CPython build with the GIL");
    return -1;
#endif
    t->gen = ++g_gen;
    t->t0_ns = now_ns();
    t->state = 1;
    g_active = t;
    if (hooks_install(t) != 0) {
        g_active = NULL;
        t->state = 2;
        t->t1_ns = t->t0_ns;
        return -1;
    }
    /* Seed the caller's thread now, so its stack reads from the start. */
    this_thread(t, PyEval_GetFrame(), 0);
    return 0;
}

int mfp_tracer_stop(mfp_tracer *t) {
    if (t->state != 1)
        return 0;
    uint64_t now = now_ns();
    t->state = 2;
    t->t1_ns = now;
    int rc = hooks_remove(t);
    if (g_active == t)
        g_active = NULL;
    for (size_t i = 0; i < t->nthreads; i++) {
        tthread *th = &t->threads[i];
        while (th->depth)
            pop_top(t, th, now);
    }
    return rc;
}

void mfp_tracer_free(mfp_tracer *t) {
    if (!t)
        return;
    if (mfp_tracer_stop(t) != 0)
        PyErr_Clear();
    for (size_t i = 0; i < t->nnodes; i++)
        Py_XDECREF(t->nodes[i].owner);
    for (size_t i = 0; i < t->nthreads; i++) {
        free(t->threads[i].stack);
        Py_XDECREF(t->threads[i].name);
    }
    free(t->threads);
    free(t->nodes);
    free(t->table);
    free(t);
}

void mfp_tracer_get_stats(const mfp_tracer *t, mfp_tracer_stats *out) {
    memset(out, 0, sizeof *out);
    out->calls = t->calls;
    out->nodes = t->nnodes;
    out->threads = t->nthreads;
    out->dropped_nodes = t->dropped_nodes;
    for (size_t i = 0; i < t->nthreads; i++)
        out->lost_threads += t->threads[i].lost != 0;
    out->duration_ns = t->state == 2 ? t->t1_ns - t->t0_ns : 0;
    out->mechanism = mechanism_name;
    out->tool_id = t->used_tool_id;
}

/* ---- export ------------------------------------------------------------------------ */

static uint32_t intern_obj(mfp_profile *p, PyObject *s) {
    Py_ssize_t len = 0;
    const char *c = s && PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &len) : "";
    if (!c) {
        PyErr_Clear();
        c = "?";
        len = 1;
    }
    return mfp_profile_string(p, c, (size_t)len);
}

static uint32_t node_func(mfp_profile *p, const node *n) {
    if (n->kind == NODE_PY) {
        PyCodeObject *co = (PyCodeObject *)n->owner;
        uint32_t name = intern_obj(p, co->co_qualname);
        uint32_t file = intern_obj(p, co->co_filename);
        if (name == MFP_NONE || file == MFP_NONE)
            return MFP_NONE;
        return mfp_profile_func(p, name, file, (uint32_t)co->co_firstlineno, MFP_FUNC_PYTHON);
    }
    const PyMethodDef *ml = n->key;
    const char *prefix = "";
    if (n->owner && PyType_Check(n->owner))
        prefix = ((PyTypeObject *)n->owner)->tp_name;
    else if (n->owner && PyUnicode_Check(n->owner))
        prefix = PyUnicode_AsUTF8(n->owner);
    if (!prefix) {
        PyErr_Clear();
        prefix = "";
    }
    char buf[512];
    int len = snprintf(buf, sizeof buf, "%s%s%s", prefix, *prefix ? "." : "",
                       ml->ml_name ? ml->ml_name : "?");
    if (len < 0)
        return MFP_NONE;
    if ((size_t)len >= sizeof buf)
        len = (int)sizeof buf - 1;
    uint32_t name = mfp_profile_string(p, buf, (size_t)len);
    uint32_t file = mfp_profile_string(p, "", 0);
    if (name == MFP_NONE || file == MFP_NONE)
        return MFP_NONE;
    return mfp_profile_func(p, name, file, 0, MFP_FUNC_NATIVE);
}

int mfp_tracer_export(mfp_tracer *t, mfp_profile *p) {
    if (t->state != 2) {
        PyErr_SetString(PyExc_RuntimeError, "the tracer must be started and stopped first");
        return -1;
    }
    uint32_t *stack_of = malloc((t->nnodes ? t->nnodes : 1) * sizeof *stack_of);
    uint32_t *thread_of = malloc((t->nthreads ? t->nthreads : 1) * sizeof *thread_of);
    if (!stack_of || !thread_of)
        goto oom;
    for (size_t i = 0; i < t->nthreads; i++) {
        uint32_t name = t->threads[i].name ? intern_obj(p, t->threads[i].name) : 0;
        if (name == MFP_NONE)
            goto oom;
        thread_of[i] = mfp_profile_thread(p, t->threads[i].tid, name, 0);
        if (thread_of[i] == MFP_NONE)
            goto oom;
    }
    /* A node's parent was made before it, so one pass in order works. */
    for (size_t i = 0; i < t->nnodes; i++) {
        const node *n = &t->nodes[i];
        if (n->kind == NODE_ROOT) {
            stack_of[i] = MFP_NONE;
            continue;
        }
        uint32_t func = node_func(p, n);
        uint32_t frame = func == MFP_NONE ? MFP_NONE : mfp_profile_frame(p, func, 0);
        stack_of[i] = frame == MFP_NONE ? MFP_NONE : mfp_profile_stack(p, stack_of[n->parent], frame);
        if (stack_of[i] == MFP_NONE)
            goto oom;
        if ((n->calls || n->self_ns) &&
            mfp_profile_total(p, stack_of[i], thread_of[n->thread], 0, n->calls, n->self_ns) != 0)
            goto oom;
    }
    free(stack_of);
    free(thread_of);
    return 0;
oom:
    free(stack_of);
    free(thread_of);
    PyErr_NoMemory();
    return -1;
}
