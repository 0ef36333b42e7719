/* module.c — metaflow_profiler._native: the only file that maps Python
 * objects onto the engine's subsystems.
 *
 *   Session(interval_ns, timeline_interval_ns=0, max_samples=0, memory_rate=0)
 *       .start() / .stop() / .name_thread(tid, name, is_main)
 *       .encode(meta_json) -> bytes / .stats() -> dict
 *       .snapshot(names) / .encode_snapshot(meta_json) -> bytes
 *     A native sampling run: the sampler thread and the timeline poller
 *     writing into one profile store; with memory_rate > 0 also the heap
 *     tracker (native/heap), whose MEMORY rows join the store at stop.
 *     snapshot() takes the profile so far while the run goes on (the live
 *     card) and encode_snapshot() encodes it; stats() works while running
 *     too (heap numbers as of the last snapshot), for its META.
 *   Tracer(max_nodes=0, timeline_interval_ns=0)
 *       .start() / .stop() / .name_thread(...) / .encode(meta_json) / .stats()
 *     The deterministic tracer (sys.monitoring on 3.12+, a profile function
 *     on 3.11) and, optionally, the timeline poller.
 *   Builder()
 *       .string/.func/.frame/.stack/.thread/.sample/.total/.series/.point/.memory/.heap_event/.leak
 *       .encode(meta_json) -> bytes
 *     Fills a store from Python, for the adapters of foreign profilers
 *     (cProfile, pyinstrument) and for tests.
 *   decode(bytes) -> dict of tables (docs/FORMAT.md), ValueError if corrupt.
 *
 * All methods run with the GIL held. While a Session runs, its store
 * belongs to the sampler thread; every method that reads the store checks
 * that the session is stopped, except snapshot(), which copies it through
 * the sampler's lock (sampler.h) without the GIL. A snapshot in progress
 * and stop() exclude each other through the session's snap_lock, which is
 * never held while waiting for the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "profile/profile.h"
#include "python/python.h"
#include "sampler/memread.h"
#include "sampler/sampler.h"
#include "heap/heap.h"
#include "timeline/timeline.h"
#include "tracer/tracer.h"

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static PyObject *encode_store(mfp_profile *p, PyObject *meta) {
    if (!PyUnicode_Check(meta)) {
        PyErr_SetString(PyExc_TypeError, "meta must be a JSON string");
        return NULL;
    }
    Py_ssize_t mlen;
    const char *m = PyUnicode_AsUTF8AndSize(meta, &mlen);
    if (!m) return NULL;
    if (mfp_profile_set_meta(p, m, (size_t)mlen) != 0) return PyErr_NoMemory();
    size_t n;
    uint8_t *buf = mfp_profile_encode(p, &n);
    if (!buf) return PyErr_NoMemory();
    PyObject *out = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)n);
    free(buf);
    return out;
}

/* The poller's info JSON as a str ("" without a poller), sized by asking
 * first: many GPUs make it long. A running poller may change it between
 * the two calls: what was written is kept only when it fit, at its own
 * length, else asked again. */
static PyObject *timeline_info(const mfp_timeline *t) {
    if (!t) return PyUnicode_FromString("");
    size_t n = mfp_timeline_info_json(t, NULL, 0);
    for (;;) {
        char *buf = malloc(n + 1);
        if (!buf) return PyErr_NoMemory();
        size_t len = mfp_timeline_info_json(t, buf, n + 1);
        if (len <= n) {
            PyObject *out = PyUnicode_FromStringAndSize(buf, (Py_ssize_t)len);
            free(buf);
            return out;
        }
        free(buf);
        n = len;
    }
}

/* name_thread(tid, name, is_main) on a stopped run's store. */
static PyObject *name_thread_in(mfp_profile *p, PyObject *args) {
    unsigned long long tid;
    const char *name;
    Py_ssize_t len;
    int is_main;
    if (!PyArg_ParseTuple(args, "Ks#p", &tid, &name, &len, &is_main)) return NULL;
    uint32_t s = mfp_profile_string(p, name, (size_t)len);
    if (s == MFP_NONE || mfp_profile_thread(p, tid, s, is_main ? MFP_THREAD_MAIN : 0) == MFP_NONE)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* ---- thread names ------------------------------------------------------- */

/* Names live on Python's Thread objects, which only code holding the GIL may
 * read, and a thread may end before the profile is stopped. So when the
 * sampler meets a new thread it wakes the "namer", a native thread that
 * takes the GIL and records the names of all live threads. (A pending call
 * would be simpler, but on 3.11 and 3.12 one added from a non-Python thread
 * does not run until something else interrupts the eval loop.) */
static PyObject *thread_names; /* dict: native tid -> name; GIL-protected */

static void record_thread_names(void) {
    /* Copies of threading._active and _limbo, what enumerate() returns,
     * without its lock: the main thread may hold that lock where a SIGTERM
     * handler interrupted it, and the handler waits for a child's last flush,
     * which names its threads (children.py). Only where the program
     * imported threading: one that did not has only its main thread, and
     * importing it for us cost a child's start-up ~2.5 ms. */
    PyObject *key = PyUnicode_FromString("threading");
    PyObject *threading = key ? PyImport_GetModule(key) : NULL;
    Py_XDECREF(key);
    PyObject *threads = NULL;
    if (threading) {
        PyObject *active = PyObject_GetAttrString(threading, "_active");
        PyObject *limbo = PyObject_GetAttrString(threading, "_limbo");
        if (active && limbo && PyDict_Check(active) && PyDict_Check(limbo)) {
            threads = PyDict_Values(active);
            PyObject *more = PyDict_Values(limbo);
            if (threads && (!more || PyList_SetSlice(threads, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, more)))
                Py_CLEAR(threads);
            Py_XDECREF(more);
        }
        Py_XDECREF(active);
        Py_XDECREF(limbo);
        if (!threads) {
            PyErr_Clear();
            threads = PyObject_CallMethod(threading, "enumerate", NULL);
        }
    }
    PyObject *it = threads ? PyObject_GetIter(threads) : NULL, *t;
    while (it && (t = PyIter_Next(it))) {
        PyObject *tid = PyObject_GetAttrString(t, "native_id");
        PyObject *name = PyObject_GetAttrString(t, "name");
        if (tid && name && tid != Py_None && PyUnicode_Check(name))
            PyDict_SetItem(thread_names, tid, name);
        Py_XDECREF(tid);
        Py_XDECREF(name);
        Py_DECREF(t);
    }
    Py_XDECREF(it);
    Py_XDECREF(threads);
    Py_XDECREF(threading);
    PyErr_Clear(); /* best effort: a missing name is not worth an exception */
}

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    int users, pending, quit;
    pid_t pid;
} namer = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void *namer_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "mfp-namer"); /* an engine thread (program_threads) */
    pthread_mutex_lock(&namer.lock);
    for (;;) {
        while (!namer.pending && !namer.quit) pthread_cond_wait(&namer.wake, &namer.lock);
        if (namer.quit) break;
        namer.pending = 0;
        pthread_mutex_unlock(&namer.lock);
        PyGILState_STATE g = PyGILState_Ensure();
        struct timespec c0, c1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        record_thread_names();
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        PyGILState_Release(g);
        pthread_mutex_lock(&namer.lock);
        /* Thousands of threads starting would have the namer enumerate them
         * all, with the GIL, for each new one: it rests nine times the CPU
         * time a round took (at most 20 ms), so names cost the program about
         * a tenth of its time; a thread that lives shorter than the rest may
         * have no name. */
        uint64_t took = (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000000000 + (c1.tv_nsec - c0.tv_nsec));
        uint64_t rest = 9 * took < 20000000u ? 9 * took : 20000000u;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t end = (uint64_t)until.tv_sec * 1000000000u + (uint64_t)until.tv_nsec + rest;
        until = (struct timespec){(time_t)(end / 1000000000u), (long)(end % 1000000000u)};
        while (!namer.quit && pthread_cond_timedwait(&namer.wake, &namer.lock, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&namer.lock);
    return NULL;
}

/* Sampler thread, no GIL: only signals. */
static void on_new_thread(void) {
    pthread_mutex_lock(&namer.lock);
    namer.pending = 1;
    pthread_cond_signal(&namer.wake);
    pthread_mutex_unlock(&namer.lock);
}

/* GIL held. */
static void namer_acquire(void) {
    if (namer.pid && namer.pid != getpid()) {
        /* A forked child: the namer thread is not here, and the lock and
         * condition variable may carry the parent's waiters; start over. */
        namer.users = 0;
        pthread_mutex_init(&namer.lock, NULL);
        pthread_cond_init(&namer.wake, NULL);
    }
    if (namer.users++ > 0) return;
    namer.quit = namer.pending = 0;
    namer.pid = getpid();
    sigset_t all, old; /* no signal for the namer: they belong to the program's threads */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&namer.thread, NULL, namer_main, NULL) != 0) namer.users = 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* The last user asks the namer to end: 1 if it must then be joined
 * (namer_join, without the GIL: the namer may be waiting for it). */
static int namer_ask_quit(void) {
    if (namer.users == 0 || --namer.users > 0 || namer.pid != getpid()) return 0;
    pthread_mutex_lock(&namer.lock);
    namer.quit = 1;
    pthread_cond_signal(&namer.wake);
    pthread_mutex_unlock(&namer.lock);
    return 1;
}

static void namer_join(void) { pthread_join(namer.thread, NULL); }

/* GIL held. */
static void namer_release(void) {
    if (!namer_ask_quit()) return;
    Py_BEGIN_ALLOW_THREADS
    namer_join();
    Py_END_ALLOW_THREADS
}

static PyObject *native_thread_names(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(arg)) {
    record_thread_names();
    return PyDict_Copy(thread_names);
}

/* ---- Session ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    mfp_profile *profile;
    mfp_sampler *sampler;
    mfp_timeline *timeline;
    uint64_t interval_ns, timeline_ns, t0_ns, t1_ns;
    size_t max_samples;
    int state; /* 0 new, 1 running, 2 stopped */
    char timeline_error[256];
    mfp_heap *heap;       /* sampled allocations; NULL when memory_rate is 0 */
    uint64_t memory_rate; /* mean bytes between allocation samples, 0 = off */
    char heap_error[256];
    mfp_profile *mirror;  /* what snapshot() copied of the store so far */
    mfp_profile *snap;    /* the last snapshot, until encode_snapshot() */
    pthread_mutex_t snap_lock;
    int snap_lock_ready;
    pid_t pid;            /* where it started: a forked child has only a copy */
    int paused;           /* threads joined by pause() (around a fork) */
} Session;

/* The options arrive checked (src/metaflow_profiler/options.py holds their
 * bounds); only what would break the engine itself is refused here. */
static int Session_init(Session *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"interval_ns", "timeline_interval_ns", "max_samples", "memory_rate",
                             NULL};
    unsigned long long interval_ns, timeline_ns = 0, memory_rate = 0;
    Py_ssize_t max_samples = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "K|KnK", kwlist, &interval_ns, &timeline_ns,
                                     &max_samples, &memory_rate))
        return -1;
    if (interval_ns == 0 || max_samples < 0) {
        PyErr_SetString(PyExc_ValueError, "interval_ns must be > 0 and max_samples >= 0");
        return -1;
    }
    if (memory_rate > (1ull << 40)) { /* the heap's sampling arithmetic needs the headroom */
        PyErr_SetString(PyExc_ValueError, "memory_rate must be 0 (off) or 1..2**40 bytes");
        return -1;
    }
    self->memory_rate = memory_rate;
    self->interval_ns = interval_ns;
    self->timeline_ns = timeline_ns;
    self->max_samples = (size_t)max_samples;
    if (!self->snap_lock_ready) {
        pthread_mutex_init(&self->snap_lock, NULL);
        self->snap_lock_ready = 1;
    }
    return 0;
}

static void Session_dealloc(Session *self) {
    Py_BEGIN_ALLOW_THREADS /* a GIL-taking sampler may be waiting for it */
    mfp_sampler_free(self->sampler); /* stops and joins first */
    Py_END_ALLOW_THREADS
    mfp_heap_free(self->heap);       /* removes its hooks first */
    if (self->state == 1 && !self->paused) namer_release();
    if (self->timeline) {
        mfp_timeline_stop(self->timeline);
        mfp_timeline_free(self->timeline);
    }
    mfp_profile_free(self->profile);
    mfp_profile_free(self->mirror);
    mfp_profile_free(self->snap);
    if (self->snap_lock_ready) pthread_mutex_destroy(&self->snap_lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Session_start(Session *self, PyObject *Py_UNUSED(ignored)) {
    if (self->state != 0) {
        PyErr_SetString(PyExc_RuntimeError, "a Session can be started once");
        return NULL;
    }
    self->profile = mfp_profile_new(self->max_samples);
    if (!self->profile) return PyErr_NoMemory();
    char err[256] = "";
    self->t0_ns = mono_ns();
    self->pid = getpid();
    PyDict_Clear(thread_names);
    namer_acquire();
    self->sampler = mfp_sampler_start(self->profile, self->interval_ns, self->t0_ns, on_new_thread,
                                      err, sizeof err);
    if (!self->sampler) {
        namer_release();
        PyErr_SetString(PyExc_RuntimeError, err);
        return NULL;
    }
    if (self->timeline_ns) {
        self->timeline = mfp_timeline_start(self->timeline_ns, self->timeline_error,
                                            sizeof self->timeline_error);
    }
    /* A heap that cannot start leaves the CPU profile running; stats() says
     * why. It reads through the copies the sampler's start set up. */
    static const mfp_python_mem checked = {mfp_mem_read, mfp_mem_readv, 0};
    if (self->memory_rate)
        self->heap = mfp_heap_start(self->memory_rate, &checked, self->heap_error, sizeof self->heap_error);
    self->state = 1;
    Py_RETURN_NONE;
}

static int require_own(Session *self) {
    if (self->pid == getpid()) return 0;
    PyErr_Format(PyExc_RuntimeError,
                 "this profile was started in process %d; a forked child holds only a copy of "
                 "it (the child's own work is profiled by a profiler of its own)", (int)self->pid);
    return -1;
}

static PyObject *Session_stop(Session *self, PyObject *Py_UNUSED(ignored)) {
    if (self->state != 1) Py_RETURN_NONE;
    if (require_own(self)) return NULL;
    mfp_sampler_request_stop(self->sampler);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->snap_lock); /* let a snapshot in progress finish */
    mfp_sampler_stop(self->sampler);
    if (self->timeline) mfp_timeline_stop(self->timeline);
    Py_END_ALLOW_THREADS
    mfp_heap_stop(self->heap); /* needs the GIL: it restores the PyMem allocators */
    if (!self->paused) namer_release();
    self->paused = 0;
    self->t1_ns = mono_ns();
    self->state = 2;
    pthread_mutex_unlock(&self->snap_lock);
    if (self->timeline && mfp_timeline_export(self->timeline, self->profile, self->t0_ns) != 0)
        return PyErr_NoMemory();
    if (self->heap && mfp_heap_export(self->heap, self->profile, self->t0_ns) != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static int require_running(Session *self) {
    if (self->state != 1 || self->paused) {
        PyErr_SetString(PyExc_RuntimeError, "the session is not running");
        return -1;
    }
    return require_own(self);
}

/* The process's thread count where CPython's fork warning reads it (the
 * 20th field of /proc/self/stat, the first after the command's ")" being
 * the 3rd); -1 where unreadable. */
static long stat_threads(void) {
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 20; field++) p = strchr(p + 1, ' ');
    return p ? strtol(p + 1, NULL, 10) : -1;
}

/* pause()/resume(): no thread of ours exists in between, so a fork() there
 * sees a process with only the program's threads (CPython 3.12+ warns on a
 * fork with more than one). All three are asked to end before any is
 * joined: they end side by side, not one wake-up after another (at each
 * fork of the program). A joined thread still counts for a while:
 * pthread_join returns once the kernel clears the thread's tid, before it
 * leaves the count (a fork in between warned in about 1 of 8 test runs on
 * 3.14 and 3.15), so the pause waits for the count too, 2 ms at most. */
static PyObject *Session_pause(Session *self, PyObject *Py_UNUSED(ignored)) {
    if (require_running(self)) return NULL;
    long before = stat_threads();
    mfp_sampler_request_stop(self->sampler);
    mfp_timeline_ask_pause(self->timeline);
    int join_namer = namer_ask_quit();
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->snap_lock); /* a snapshot in progress finishes first */
    mfp_sampler_stop(self->sampler);
    pthread_mutex_unlock(&self->snap_lock);
    long joined = 1 + (mfp_timeline_pause(self->timeline) == 0);
    if (join_namer) {
        namer_join();
        joined++;
    }
    for (uint64_t t0 = mono_ns(); before > 0 && stat_threads() > before - joined &&
                                  mono_ns() - t0 < 2000000;)
        sched_yield();
    Py_END_ALLOW_THREADS
    self->paused = 1;
    Py_RETURN_NONE;
}

static PyObject *Session_resume(Session *self, PyObject *Py_UNUSED(ignored)) {
    if (self->state != 1 || !self->paused || self->pid != getpid()) Py_RETURN_NONE;
    self->paused = 0;
    namer_acquire();
    int rc = mfp_sampler_resume(self->sampler);
    if (self->timeline) mfp_timeline_resume(self->timeline);
    if (rc != 0) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler could not be resumed");
        return NULL;
    }
    Py_RETURN_NONE;
}

static int require_stopped(Session *self) {
    if (self->state == 2) return 0;
    PyErr_SetString(PyExc_RuntimeError, "the session must be started and stopped first");
    return -1;
}

static PyObject *Session_name_thread(Session *self, PyObject *args) {
    return require_stopped(self) ? NULL : name_thread_in(self->profile, args);
}

static PyObject *Session_encode(Session *self, PyObject *meta) {
    return require_stopped(self) ? NULL : encode_store(self->profile, meta);
}

/* ---- snapshot (the live card) --------------------------------------------- */

typedef struct {
    unsigned long long tid;
    char *name; /* malloc'd UTF-8 */
    size_t len;
    int is_main;
} thread_name;

static void free_names(thread_name *n, size_t k) {
    for (size_t i = 0; i < k; i++) free(n[i].name);
    free(n);
}

/* names: a sequence of (tid, name, is_main), copied so the encode can run
 * without the GIL. */
static thread_name *copy_names(PyObject *names, size_t *count) {
    PyObject *seq = PySequence_Fast(names, "names must be a sequence of (tid, name, is_main)");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    thread_name *out = calloc((size_t)n + 1, sizeof *out);
    size_t k = 0;
    if (!out) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name;
        Py_ssize_t len;
        int is_main;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "Ks#p", &out[k].tid, &name, &len,
                              &is_main))
            goto fail;
        out[k].name = malloc((size_t)len + 1);
        if (!out[k].name) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(out[k].name, name, (size_t)len);
        out[k].len = (size_t)len;
        out[k].is_main = is_main;
        k++;
    }
    Py_DECREF(seq);
    *count = k;
    return out;
fail:
    Py_DECREF(seq);
    if (out) free_names(out, k);
    return NULL;
}

/* Without the GIL, under snap_lock: sync the mirror, then make a clone of
 * it with the names, the memory rows and the timeline so far added. The
 * sampler waits only for the sync; the rest is this thread's work. */
static const char *snapshot_take(Session *self, const thread_name *names, size_t nnames) {
    if (self->state != 1) return "the session is not running";
    mfp_profile_free(self->snap);
    self->snap = NULL;
    if (!self->mirror && !(self->mirror = mfp_profile_new(0))) return "out of memory";
    if (mfp_sampler_snapshot(self->sampler, self->mirror, NULL) != 0) return "out of memory";
    mfp_profile *e = mfp_profile_clone(self->mirror);
    if (!e) return "out of memory";
    for (size_t i = 0; i < nnames; i++) {
        uint32_t sidx = mfp_profile_string(e, names[i].name, names[i].len);
        if (sidx == MFP_NONE) goto oom;
        /* Only threads that were sampled: a name alone is not a thread of the profile. */
        size_t nth;
        const mfp_thread *th = mfp_profile_threads(e, &nth);
        for (size_t j = 0; j < nth; j++)
            if (th[j].tid == names[i].tid) {
                mfp_profile_thread(e, names[i].tid, sidx, names[i].is_main ? MFP_THREAD_MAIN : 0);
                break;
            }
    }
    if (self->timeline && mfp_timeline_export(self->timeline, e, self->t0_ns) != 0) goto oom;
    if (self->heap) mfp_heap_snapshot(self->heap, e, self->t0_ns); /* a memory-less card beats none */
    self->snap = e;
    return NULL;
oom:
    mfp_profile_free(e);
    return "out of memory";
}

static PyObject *Session_snapshot(Session *self, PyObject *names) {
    if (self->state != 1) {
        PyErr_SetString(PyExc_RuntimeError, "snapshot() needs a running session");
        return NULL;
    }
    size_t nnames = 0;
    thread_name *tn = copy_names(names, &nnames);
    if (!tn) return NULL;
    const char *err;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->snap_lock);
    err = snapshot_take(self, tn, nnames);
    pthread_mutex_unlock(&self->snap_lock);
    Py_END_ALLOW_THREADS
    free_names(tn, nnames);
    if (err) {
        PyErr_Format(PyExc_RuntimeError, "snapshot failed: %s", err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Encodes without the GIL too: a long run's profile takes milliseconds. */
static PyObject *Session_encode_snapshot(Session *self, PyObject *meta) {
    if (!PyUnicode_Check(meta)) {
        PyErr_SetString(PyExc_TypeError, "meta must be a JSON string");
        return NULL;
    }
    Py_ssize_t mlen;
    const char *m = PyUnicode_AsUTF8AndSize(meta, &mlen);
    if (!m) return NULL;
    char *mcopy = malloc((size_t)mlen + 1);
    if (!mcopy) return PyErr_NoMemory();
    memcpy(mcopy, m, (size_t)mlen + 1);
    uint8_t *buf = NULL;
    size_t n = 0;
    int had = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->snap_lock);
    if (self->snap) {
        had = 1;
        if (mfp_profile_set_meta(self->snap, mcopy, (size_t)mlen) == 0)
            buf = mfp_profile_encode(self->snap, &n);
        mfp_profile_free(self->snap);
        self->snap = NULL;
    }
    pthread_mutex_unlock(&self->snap_lock);
    Py_END_ALLOW_THREADS
    free(mcopy);
    if (!had) {
        PyErr_SetString(PyExc_RuntimeError, "encode_snapshot() needs a snapshot() first");
        return NULL;
    }
    if (!buf) return PyErr_NoMemory();
    PyObject *out = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)n);
    free(buf);
    return out;
}

static PyObject *Session_stats(Session *self, PyObject *Py_UNUSED(ignored)) {
    if (self->state == 0) {
        require_stopped(self);
        return NULL;
    }
    int running = self->state == 1;
    mfp_sampler_stats st;
    mfp_sampler_get_stats(self->sampler, &st);
    PyObject *dropped = PyDict_New();
    if (!dropped) return NULL;
    for (int i = 0; i < MFP_DROP_REASONS; i++) {
        if (!st.dropped[i]) continue;
        PyObject *v = PyLong_FromUnsignedLongLong(st.dropped[i]);
        if (!v || PyDict_SetItemString(dropped, mfp_drop_reason_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(dropped);
            return NULL;
        }
        Py_DECREF(v);
    }
    char heap_info[4096] = "";
    /* While running, the heap's numbers are those of the last snapshot. */
    if (self->heap) mfp_heap_info_json(self->heap, heap_info, sizeof heap_info);
    PyObject *info = timeline_info(self->timeline);
    if (!info) {
        Py_DECREF(dropped);
        return NULL;
    }
    mfp_profile_counts c = {.decimation = 1};
    if (!running) mfp_profile_get_counts(self->profile, &c); /* the sampler's while running */
    uint64_t t1 = running ? mono_ns() : self->t1_ns;
    return Py_BuildValue("{sKsKsKsNsKsKsssNsssIsKssss}", "passes", st.passes, "samples", st.samples,
                         "elided", st.elided, "dropped", dropped, "busy_ns", st.busy_ns, "duration_ns",
                         t1 - self->t0_ns, "mechanism", mfp_sampler_mode(self->sampler),
                         "timeline_info", info, "timeline_error", self->timeline_error,
                         "decimation", c.decimation, "start_ns", self->t0_ns, "heap_info",
                         heap_info, "heap_error", self->heap_error);
}

static PyMethodDef Session_methods[] = {
    {"start", (PyCFunction)Session_start, METH_NOARGS, "Start sampling (once)."},
    {"stop", (PyCFunction)Session_stop, METH_NOARGS, "Stop sampling; idempotent."},
    {"name_thread", (PyCFunction)Session_name_thread, METH_VARARGS,
     "name_thread(tid, name, is_main): name a thread seen while sampling."},
    {"encode", (PyCFunction)Session_encode, METH_O, "encode(meta_json) -> profile bytes"},
    {"stats", (PyCFunction)Session_stats, METH_NOARGS, "Counters of the run (so far, while running)."},
    {"snapshot", (PyCFunction)Session_snapshot, METH_O,
     "snapshot([(tid, name, is_main)]): take the profile so far, without stopping"},
    {"encode_snapshot", (PyCFunction)Session_encode_snapshot, METH_O,
     "encode_snapshot(meta_json) -> bytes of the last snapshot"},
    {"pause", (PyCFunction)Session_pause, METH_NOARGS, "Join the engine's threads (before a fork)."},
    {"resume", (PyCFunction)Session_resume, METH_NOARGS, "Start them again after pause()."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "metaflow_profiler._native.Session",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Session_init,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
    .tp_doc = "A native sampling run (sampler thread + timeline poller).",
};

/* ---- Builder ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    mfp_profile *profile;
} Builder;

static int Builder_init(Builder *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"max_samples", NULL};
    Py_ssize_t max_samples = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|n", kwlist, &max_samples)) return -1;
    if (max_samples < 0) {
        PyErr_SetString(PyExc_ValueError, "max_samples must be >= 0");
        return -1;
    }
    mfp_profile_free(self->profile);
    self->profile = mfp_profile_new((size_t)max_samples);
    if (!self->profile) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Builder_dealloc(Builder *self) {
    mfp_profile_free(self->profile);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *index_or_error(uint32_t i, size_t limit_check) {
    if (i == MFP_NONE) {
        if (limit_check) PyErr_SetString(PyExc_IndexError, "index out of range");
        else PyErr_NoMemory();
        return NULL;
    }
    return PyLong_FromUnsignedLong(i);
}

/* Indices passed in from Python must name existing rows. */
static int check_index(unsigned long v, size_t n, const char *what) {
    if (v < n) return 0;
    PyErr_Format(PyExc_IndexError, "%s index %lu out of range", what, v);
    return -1;
}

static PyObject *Builder_string(Builder *self, PyObject *arg) {
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!s) return NULL;
    return index_or_error(mfp_profile_string(self->profile, s, (size_t)len), 0);
}

static PyObject *Builder_func(Builder *self, PyObject *args) {
    unsigned long name, file, line, kind;
    if (!PyArg_ParseTuple(args, "kkkk", &name, &file, &line, &kind)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(name, c.strings, "string") || check_index(file, c.strings, "string") ||
        check_index(kind, 4, "kind"))
        return NULL;
    return index_or_error(mfp_profile_func(self->profile, (uint32_t)name, (uint32_t)file,
                                           (uint32_t)line, (uint32_t)kind), 0);
}

static PyObject *Builder_frame(Builder *self, PyObject *args) {
    unsigned long func, line;
    if (!PyArg_ParseTuple(args, "kk", &func, &line)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(func, c.funcs, "func")) return NULL;
    return index_or_error(mfp_profile_frame(self->profile, (uint32_t)func, (uint32_t)line), 0);
}

static PyObject *Builder_stack(Builder *self, PyObject *args) {
    long parent;
    unsigned long frame;
    if (!PyArg_ParseTuple(args, "lk", &parent, &frame)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if ((parent != -1 && (parent < 0 || check_index((unsigned long)parent, c.stacks, "stack"))) ||
        check_index(frame, c.frames, "frame")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "parent must be -1 or a stack index");
        return NULL;
    }
    return index_or_error(mfp_profile_stack(self->profile, parent == -1 ? MFP_NONE : (uint32_t)parent,
                                            (uint32_t)frame), 0);
}

static PyObject *Builder_thread(Builder *self, PyObject *args) {
    unsigned long long tid;
    unsigned long name, flags;
    if (!PyArg_ParseTuple(args, "Kkk", &tid, &name, &flags)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(name, c.strings, "string")) return NULL;
    return index_or_error(mfp_profile_thread(self->profile, tid, (uint32_t)name, (uint32_t)flags), 0);
}

static PyObject *Builder_sample(Builder *self, PyObject *args) {
    unsigned long long t, weight;
    unsigned long stack, thread, flags;
    if (!PyArg_ParseTuple(args, "KkkKk", &t, &stack, &thread, &weight, &flags)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(stack, c.stacks, "stack") || check_index(thread, c.threads, "thread")) return NULL;
    if (mfp_profile_sample(self->profile, t, (uint32_t)stack, (uint32_t)thread, weight,
                           (uint32_t)flags) != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Builder_series(Builder *self, PyObject *args) {
    const char *name, *unit;
    unsigned long scale;
    if (!PyArg_ParseTuple(args, "ssk", &name, &unit, &scale)) return NULL;
    return index_or_error(mfp_profile_series(self->profile, name, unit, (uint32_t)scale), 0);
}

static PyObject *Builder_point(Builder *self, PyObject *args) {
    unsigned long series;
    unsigned long long t;
    long long value;
    if (!PyArg_ParseTuple(args, "kKL", &series, &t, &value)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(series, c.series, "series")) return NULL;
    if (mfp_profile_point(self->profile, (uint32_t)series, t, value) != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* heap_event(stack, bytes, t_alloc_ns, t_free_ns or None = still live) */
static PyObject *Builder_heap_event(Builder *self, PyObject *args) {
    unsigned long stack;
    unsigned long long bytes, t_alloc;
    PyObject *t_free;
    if (!PyArg_ParseTuple(args, "kKKO", &stack, &bytes, &t_alloc, &t_free)) return NULL;
    uint64_t tf = MFP_STILL_LIVE;
    if (t_free != Py_None) {
        tf = PyLong_AsUnsignedLongLong(t_free);
        if (PyErr_Occurred()) return NULL;
        if (tf == MFP_STILL_LIVE) {
            PyErr_SetString(PyExc_ValueError, "t_free_ns out of range");
            return NULL;
        }
    }
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(stack, c.stacks, "stack")) return NULL;
    if (mfp_profile_heap_event(self->profile, (uint32_t)stack, bytes, t_alloc, tf) != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Builder_leak(Builder *self, PyObject *args) {
    unsigned long stack;
    unsigned long long live;
    if (!PyArg_ParseTuple(args, "kK", &stack, &live)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(stack, c.stacks, "stack")) return NULL;
    if (mfp_profile_leak(self->profile, (uint32_t)stack, live) != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Builder_memory(Builder *self, PyObject *args) {
    unsigned long stack;
    unsigned long long live, alloc, count;
    if (!PyArg_ParseTuple(args, "kKKK", &stack, &live, &alloc, &count)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(stack, c.stacks, "stack")) return NULL;
    if (mfp_profile_memory(self->profile, (uint32_t)stack, live, alloc, count) != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Builder_total(Builder *self, PyObject *args) {
    unsigned long stack, thread, flags;
    unsigned long long count, weight;
    if (!PyArg_ParseTuple(args, "kkkKK", &stack, &thread, &flags, &count, &weight)) return NULL;
    mfp_profile_counts c;
    mfp_profile_get_counts(self->profile, &c);
    if (check_index(stack, c.stacks, "stack") || check_index(thread, c.threads, "thread")) return NULL;
    if (mfp_profile_total(self->profile, (uint32_t)stack, (uint32_t)thread, (uint32_t)flags, count,
                          weight) != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Builder_encode(Builder *self, PyObject *meta) {
    return encode_store(self->profile, meta);
}

static PyMethodDef Builder_methods[] = {
    {"string", (PyCFunction)Builder_string, METH_O, "string(s) -> index"},
    {"func", (PyCFunction)Builder_func, METH_VARARGS, "func(name, file, line, kind) -> index"},
    {"frame", (PyCFunction)Builder_frame, METH_VARARGS, "frame(func, line) -> index"},
    {"stack", (PyCFunction)Builder_stack, METH_VARARGS, "stack(parent or -1, frame) -> index"},
    {"thread", (PyCFunction)Builder_thread, METH_VARARGS, "thread(tid, name, flags) -> index"},
    {"sample", (PyCFunction)Builder_sample, METH_VARARGS,
     "sample(t_ns, stack, thread, weight_ns, flags)"},
    {"series", (PyCFunction)Builder_series, METH_VARARGS, "series(name, unit, scale) -> index"},
    {"point", (PyCFunction)Builder_point, METH_VARARGS, "point(series, t_ns, value)"},
    {"memory", (PyCFunction)Builder_memory, METH_VARARGS,
     "memory(stack, live_bytes, alloc_bytes, alloc_count)"},
    {"heap_event", (PyCFunction)Builder_heap_event, METH_VARARGS,
     "heap_event(stack, bytes, t_alloc_ns, t_free_ns or None): a sampled allocation over time"},
    {"leak", (PyCFunction)Builder_leak, METH_VARARGS,
     "leak(stack, live_bytes): allocated while profiling, live at the end"},
    {"total", (PyCFunction)Builder_total, METH_VARARGS,
     "total(stack, thread, flags, count, weight_ns): add to TOTALS without a sample"},
    {"encode", (PyCFunction)Builder_encode, METH_O, "encode(meta_json) -> profile bytes"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "metaflow_profiler._native.Builder",
    .tp_basicsize = sizeof(Builder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Builder_init,
    .tp_dealloc = (destructor)Builder_dealloc,
    .tp_methods = Builder_methods,
    .tp_doc = "Builds a profile from Python (adapters, tests).",
};

/* ---- Tracer ------------------------------------------------------------- */

/* Tracer(max_nodes=0, timeline_interval_ns=0): .start() / .stop()
 *   .name_thread(tid, name, is_main) / .encode(meta_json) -> bytes / .stats() -> dict
 * The deterministic tracer (native/tracer): an exact call tree of every
 * thread, written as TOTALS rows (count = calls, weight = self time), and,
 * when timeline_interval > 0, the resource timeline beside it. */
typedef struct {
    PyObject_HEAD
    mfp_tracer *tracer;
    mfp_profile *profile; /* made by stop() */
    mfp_timeline *timeline;
    uint64_t timeline_ns, t0_ns;
    int started;
    char timeline_error[256];
} Tracer;

static int Tracer_init(Tracer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"max_nodes", "timeline_interval_ns", NULL};
    Py_ssize_t max_nodes = 0;
    unsigned long long timeline_ns = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|nK", kwlist, &max_nodes, &timeline_ns)) return -1;
    if (max_nodes < 0) {
        PyErr_SetString(PyExc_ValueError, "max_nodes must be >= 0");
        return -1;
    }
    self->timeline_ns = timeline_ns;
    if (self->tracer) {
        PyErr_SetString(PyExc_RuntimeError, "a Tracer is initialised once");
        return -1;
    }
    self->tracer = mfp_tracer_new((size_t)max_nodes);
    if (!self->tracer) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Tracer_dealloc(Tracer *self) {
    mfp_tracer_free(self->tracer); /* stops first */
    if (self->timeline) {
        mfp_timeline_stop(self->timeline);
        mfp_timeline_free(self->timeline);
    }
    mfp_profile_free(self->profile);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int tracer_ready(Tracer *self) {
    if (self->tracer) return 0;
    PyErr_SetString(PyExc_RuntimeError, "Tracer.__init__ was not called");
    return -1;
}

static PyObject *Tracer_start(Tracer *self, PyObject *Py_UNUSED(ignored)) {
    if (tracer_ready(self)) return NULL;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "a Tracer can be started once");
        return NULL;
    }
    self->t0_ns = mono_ns();
    /* The poller first, so starting it is not in the trace. */
    if (self->timeline_ns)
        self->timeline = mfp_timeline_start(self->timeline_ns, self->timeline_error,
                                            sizeof self->timeline_error);
    if (mfp_tracer_start(self->tracer) != 0) {
        if (self->timeline) {
            mfp_timeline_stop(self->timeline);
            mfp_timeline_free(self->timeline);
            self->timeline = NULL;
        }
        return NULL;
    }
    self->started = 1;
    Py_RETURN_NONE;
}

static PyObject *Tracer_stop(Tracer *self, PyObject *Py_UNUSED(ignored)) {
    if (tracer_ready(self)) return NULL;
    if (!self->started || self->profile) Py_RETURN_NONE;
    int rc = mfp_tracer_stop(self->tracer); /* the hooks are off even when it fails */
    if (self->timeline) {
        Py_BEGIN_ALLOW_THREADS
        mfp_timeline_stop(self->timeline);
        Py_END_ALLOW_THREADS
    }
    self->profile = mfp_profile_new(0);
    if (!self->profile) return PyErr_NoMemory();
    if (self->timeline && mfp_timeline_export(self->timeline, self->profile, self->t0_ns) != 0)
        return PyErr_NoMemory();
    if (mfp_tracer_export(self->tracer, self->profile) != 0 || rc != 0) return NULL;
    Py_RETURN_NONE;
}

static int tracer_stopped(Tracer *self) {
    if (self->profile) return 0;
    PyErr_SetString(PyExc_RuntimeError, "the tracer must be started and stopped first");
    return -1;
}

static PyObject *Tracer_name_thread(Tracer *self, PyObject *args) {
    return tracer_stopped(self) ? NULL : name_thread_in(self->profile, args);
}

static PyObject *Tracer_encode(Tracer *self, PyObject *meta) {
    return tracer_stopped(self) ? NULL : encode_store(self->profile, meta);
}

static PyObject *Tracer_stats(Tracer *self, PyObject *Py_UNUSED(ignored)) {
    if (tracer_ready(self)) return NULL;
    mfp_tracer_stats st;
    mfp_tracer_get_stats(self->tracer, &st);
    PyObject *info = timeline_info(self->timeline);
    if (!info) return NULL;
    return Py_BuildValue("{sKsKsKsKsKsKsssisNss}", "calls", st.calls, "nodes", st.nodes,
                         "threads", st.threads, "dropped_nodes", st.dropped_nodes,
                         "lost_threads", st.lost_threads, "duration_ns", st.duration_ns,
                         "mechanism", st.mechanism, "tool_id", st.tool_id, "timeline_info", info,
                         "timeline_error", self->timeline_error);
}

static PyMethodDef Tracer_methods[] = {
    {"start", (PyCFunction)Tracer_start, METH_NOARGS, "Start tracing every thread (once)."},
    {"stop", (PyCFunction)Tracer_stop, METH_NOARGS, "Stop tracing and build the profile; idempotent."},
    {"name_thread", (PyCFunction)Tracer_name_thread, METH_VARARGS,
     "name_thread(tid, name, is_main): name a traced thread."},
    {"encode", (PyCFunction)Tracer_encode, METH_O, "encode(meta_json) -> profile bytes"},
    {"stats", (PyCFunction)Tracer_stats, METH_NOARGS, "Counters of the run."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject TracerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "metaflow_profiler._native.Tracer",
    .tp_basicsize = sizeof(Tracer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tracer_init,
    .tp_dealloc = (destructor)Tracer_dealloc,
    .tp_methods = Tracer_methods,
    .tp_doc = "The deterministic tracer: exact call tree, call counts, self time.",
};

/* ---- decode ------------------------------------------------------------- */

/* Lists of unsigned columns: build(i) gives the value of row i. */
#define COLUMN(list, n, expr)                                               \
    do {                                                                    \
        list = PyList_New((Py_ssize_t)(n));                                 \
        if (!list) goto fail;                                               \
        for (size_t i = 0; i < (n); i++) {                                  \
            PyObject *v_ = PyLong_FromUnsignedLongLong((unsigned long long)(expr)); \
            if (!v_) goto fail;                                             \
            PyList_SET_ITEM(list, (Py_ssize_t)i, v_);                       \
        }                                                                   \
    } while (0)

static PyObject *stack_parent(uint32_t parent) {
    return parent == MFP_NONE ? PyLong_FromLong(-1) : PyLong_FromUnsignedLong(parent);
}

static PyObject *decode_tables(const mfp_profile *p) {
    PyObject *out = PyDict_New(), *o = NULL;
    PyObject *c0 = NULL, *c1 = NULL, *c2 = NULL, *c3 = NULL, *c4 = NULL;
    if (!out) return NULL;
    size_t n;
    const char *meta = mfp_profile_meta(p, &n);
    o = PyUnicode_DecodeUTF8(meta, (Py_ssize_t)n, "replace");
    if (!o || PyDict_SetItemString(out, "meta", o) < 0) goto fail;
    Py_CLEAR(o);

    mfp_profile_counts c;
    mfp_profile_get_counts(p, &c);
    o = PyList_New((Py_ssize_t)c.strings);
    if (!o) goto fail;
    for (size_t i = 0; i < c.strings; i++) {
        size_t len;
        const char *s = mfp_profile_string_at(p, (uint32_t)i, &len);
        PyObject *v = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "replace");
        if (!v) goto fail;
        PyList_SET_ITEM(o, (Py_ssize_t)i, v);
    }
    if (PyDict_SetItemString(out, "strings", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_func *f = mfp_profile_funcs(p, &n);
    COLUMN(c0, n, f[i].name); COLUMN(c1, n, f[i].file); COLUMN(c2, n, f[i].line); COLUMN(c3, n, f[i].kind);
    o = Py_BuildValue("{sNsNsNsN}", "name", c0, "file", c1, "line", c2, "kind", c3);
    c0 = c1 = c2 = c3 = NULL;
    if (!o || PyDict_SetItemString(out, "funcs", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_frame *fr = mfp_profile_frames(p, &n);
    COLUMN(c0, n, fr[i].func); COLUMN(c1, n, fr[i].line);
    o = Py_BuildValue("{sNsN}", "func", c0, "line", c1);
    c0 = c1 = NULL;
    if (!o || PyDict_SetItemString(out, "frames", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_stack_node *st = mfp_profile_stacks(p, &n);
    c0 = PyList_New((Py_ssize_t)n);
    if (!c0) goto fail;
    for (size_t i = 0; i < n; i++) {
        PyObject *v = stack_parent(st[i].parent);
        if (!v) goto fail;
        PyList_SET_ITEM(c0, (Py_ssize_t)i, v);
    }
    COLUMN(c1, n, st[i].frame);
    o = Py_BuildValue("{sNsN}", "parent", c0, "frame", c1);
    c0 = c1 = NULL;
    if (!o || PyDict_SetItemString(out, "stacks", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_thread *th = mfp_profile_threads(p, &n);
    COLUMN(c0, n, th[i].tid); COLUMN(c1, n, th[i].name); COLUMN(c2, n, th[i].flags);
    o = Py_BuildValue("{sNsNsN}", "tid", c0, "name", c1, "flags", c2);
    c0 = c1 = c2 = NULL;
    if (!o || PyDict_SetItemString(out, "threads", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_sample *sa = mfp_profile_samples(p, &n);
    COLUMN(c0, n, sa[i].t_ns); COLUMN(c1, n, sa[i].stack); COLUMN(c2, n, sa[i].thread);
    COLUMN(c3, n, sa[i].weight_ns); COLUMN(c4, n, sa[i].flags);
    o = Py_BuildValue("{sNsNsNsNsN}", "t_ns", c0, "stack", c1, "thread", c2, "weight_ns", c3,
                      "flags", c4);
    c0 = c1 = c2 = c3 = c4 = NULL;
    if (!o || PyDict_SetItemString(out, "samples", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_total *to = mfp_profile_totals(p, &n);
    COLUMN(c0, n, to[i].stack); COLUMN(c1, n, to[i].thread); COLUMN(c2, n, to[i].flags);
    COLUMN(c3, n, to[i].count); COLUMN(c4, n, to[i].weight_ns);
    o = Py_BuildValue("{sNsNsNsNsN}", "stack", c0, "thread", c1, "flags", c2, "count", c3,
                      "weight_ns", c4);
    c0 = c1 = c2 = c3 = c4 = NULL;
    if (!o || PyDict_SetItemString(out, "totals", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_memory *me = mfp_profile_memories(p, &n);
    COLUMN(c0, n, me[i].stack); COLUMN(c1, n, me[i].live_bytes); COLUMN(c2, n, me[i].alloc_bytes);
    COLUMN(c3, n, me[i].alloc_count);
    o = Py_BuildValue("{sNsNsNsN}", "stack", c0, "live_bytes", c1, "alloc_bytes", c2,
                      "alloc_count", c3);
    c0 = c1 = c2 = c3 = NULL;
    if (!o || PyDict_SetItemString(out, "memory", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_heap_event *he = mfp_profile_heap_events(p, &n);
    COLUMN(c0, n, he[i].stack); COLUMN(c1, n, he[i].bytes); COLUMN(c2, n, he[i].t_alloc_ns);
    c3 = PyList_New((Py_ssize_t)n); /* None: still live at the end */
    if (!c3) goto fail;
    for (size_t i = 0; i < n; i++) {
        PyObject *v = he[i].t_free_ns == MFP_STILL_LIVE ? Py_NewRef(Py_None)
                                                        : PyLong_FromUnsignedLongLong(he[i].t_free_ns);
        if (!v) goto fail;
        PyList_SET_ITEM(c3, (Py_ssize_t)i, v);
    }
    o = Py_BuildValue("{sNsNsNsN}", "stack", c0, "bytes", c1, "t_alloc_ns", c2, "t_free_ns", c3);
    c0 = c1 = c2 = c3 = NULL;
    if (!o || PyDict_SetItemString(out, "heap_events", o) < 0) goto fail;
    Py_CLEAR(o);

    const mfp_leak *lk = mfp_profile_leaks(p, &n);
    COLUMN(c0, n, lk[i].stack); COLUMN(c1, n, lk[i].live_bytes);
    o = Py_BuildValue("{sNsN}", "stack", c0, "live_bytes", c1);
    c0 = c1 = NULL;
    if (!o || PyDict_SetItemString(out, "leaks", o) < 0) goto fail;
    Py_CLEAR(o);

    n = mfp_profile_series_count(p);
    o = PyList_New((Py_ssize_t)n);
    if (!o) goto fail;
    for (size_t s = 0; s < n; s++) {
        mfp_series_view v;
        if (mfp_profile_series_at(p, (uint32_t)s, &v) != 0) goto fail;
        COLUMN(c0, v.n, v.t_ns[i]);
        c1 = PyList_New((Py_ssize_t)v.n);
        if (!c1) goto fail;
        for (size_t i = 0; i < v.n; i++) {
            PyObject *x = PyLong_FromLongLong(v.value[i]);
            if (!x) goto fail;
            PyList_SET_ITEM(c1, (Py_ssize_t)i, x);
        }
        PyObject *row = Py_BuildValue("{sIsIsIsNsN}", "name", v.name, "unit", v.unit, "scale",
                                      v.scale, "t_ns", c0, "value", c1);
        c0 = c1 = NULL;
        if (!row) goto fail;
        PyList_SET_ITEM(o, (Py_ssize_t)s, row);
    }
    if (PyDict_SetItemString(out, "series", o) < 0) goto fail;
    Py_CLEAR(o);
    const mfp_process *pr = mfp_profile_processes(p, &n);
    c0 = PyList_New((Py_ssize_t)n);
    if (!c0) goto fail;
    for (size_t i = 0; i < n; i++) {
        PyObject *row = Py_BuildValue("{sKsKsIsIsLsKsKsKsK}", "pid", (unsigned long long)pr[i].pid,
                                      "ppid", (unsigned long long)pr[i].ppid, "name", pr[i].name,
                                      "flags", pr[i].flags, "start_ns", (long long)pr[i].start_ns,
                                      "duration_ns", (unsigned long long)pr[i].duration_ns,
                                      "cpu_ns", (unsigned long long)pr[i].cpu_ns, "rss_peak_bytes",
                                      (unsigned long long)pr[i].rss_peak_bytes, "heap_peak_bytes",
                                      (unsigned long long)pr[i].heap_peak_bytes);
        if (!row) goto fail;
        PyList_SET_ITEM(c0, (Py_ssize_t)i, row);
    }
    COLUMN(c1, c.threads, mfp_profile_thread_process(p, (uint32_t)i));
    COLUMN(c2, c.memory, mfp_profile_memory_process(p, (uint32_t)i));
    if (PyDict_SetItemString(out, "processes", c0) < 0 ||
        PyDict_SetItemString(out, "thread_process", c1) < 0 ||
        PyDict_SetItemString(out, "memory_process", c2) < 0)
        goto fail;
    Py_CLEAR(c0);
    Py_CLEAR(c1);
    Py_CLEAR(c2);
    o = PyLong_FromUnsignedLong(c.decimation);
    if (!o || PyDict_SetItemString(out, "decimation", o) < 0) goto fail;
    Py_DECREF(o);
    return out;
fail:
    Py_XDECREF(o);
    Py_XDECREF(c0); Py_XDECREF(c1); Py_XDECREF(c2); Py_XDECREF(c3); Py_XDECREF(c4);
    Py_DECREF(out);
    return NULL;
}

static PyObject *native_decode(PyObject *Py_UNUSED(mod), PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    const char *err = "corrupt profile";
    mfp_profile *p;
    Py_BEGIN_ALLOW_THREADS
    p = mfp_profile_decode(b.buf, (size_t)b.len, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    if (!p) {
        PyErr_Format(PyExc_ValueError, "not a valid profile: %s", err ? err : "corrupt");
        return NULL;
    }
    PyObject *out = decode_tables(p);
    mfp_profile_free(p);
    return out;
}

/* ---- SIGTERM caught (children.py) ---------------------------------------
 * A profiled child dies of SIGTERM as it would unprofiled, but writes its
 * last profile first. Not with a Python handler: CPython runs one only on
 * the main thread, when it next checks for signals (one blocked for good,
 * as a Pool worker entering sem_wait just as the pool terminates it, never
 * ran it and the child hung), signal.signal() works only there (the child's
 * profiler starts on its own thread), and signal.getsignal() would show it
 * to the program. Where SIGTERM has its default disposition, this C handler
 * notes the signal and wakes the child's flusher thread (sigterm_wait),
 * which writes the profile, then lets the process die of it
 * (sigterm_release). In any process but the one that caught it (a forked
 * child before its own profiler starts) and once released, the handler
 * does what the default would: the process dies at once. A watchdog thread
 * bounds the write: the process dies bound_s after the flusher saw the
 * signal whatever it is doing. The flusher blocks SIGTERM, so the signal
 * reaches one of the program's threads, as it would unprofiled. */
static volatile sig_atomic_t sigterm_flag, sigterm_armed;
static volatile pid_t sigterm_owner;
static int sigterm_pipe[2] = {-1, -1};
static double sigterm_bound_s;

/* Async-signal-safe. From a thread that blocks SIGTERM the signal goes to
 * another thread: this one unblocks it first, so it dies even where every
 * other thread blocks it. */
static void sigterm_die_now(void) {
    struct sigaction dfl;
    sigset_t set;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGTERM, &dfl, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), SIGTERM);
}

/* Signal handler: async-signal-safe only. SIGTERM is blocked while it runs,
 * so the one sigterm_die_now raises here lands when it returns. */
static void on_sigterm(int sig) {
    (void)sig;
    int saved = errno;
    if (!sigterm_armed || getpid() != sigterm_owner) {
        sigterm_die_now();
    } else {
        sigterm_flag = 1;
        char c = 1;
        if (write(sigterm_pipe[1], &c, 1) < 0) { /* full: the flusher is awake already */ }
    }
    errno = saved;
}

static int sigterm_ours(const struct sigaction *sa) {
    return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == on_sigterm;
}

/* Any thread. True when caught: SIGTERM had its default disposition (or
 * this handler, inherited through a fork). */
static PyObject *native_sigterm_catch(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(arg)) {
    struct sigaction cur, sa;
    pid_t me = getpid();
    if (sigaction(SIGTERM, NULL, &cur) != 0) Py_RETURN_FALSE;
    if (!sigterm_ours(&cur) && ((cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_DFL))
        Py_RETURN_FALSE; /* the program's own */
    if (sigterm_owner != me) { /* a fork's copies belong to the process that made them */
        if (sigterm_pipe[0] >= 0) {
            close(sigterm_pipe[0]);
            close(sigterm_pipe[1]);
            sigterm_pipe[0] = sigterm_pipe[1] = -1;
        }
        if (pipe2(sigterm_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
            sigterm_pipe[0] = sigterm_pipe[1] = -1;
            Py_RETURN_FALSE;
        }
        sigterm_flag = 0;
        sigterm_owner = me;
    }
    sigterm_armed = 1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* the program's calls go on as if nothing happened */
    if (sigaction(SIGTERM, &sa, NULL) != 0) {
        sigterm_armed = 0;
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* A detached thread that takes no signal (they belong to the program's
 * threads). 0 or an errno. */
static int start_detached(void *(*fn)(void *), void *arg) {
    pthread_t t;
    pthread_attr_t attr;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void *sigterm_watchdog(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "mfp-watchdog");
    struct timespec ts = {(time_t)sigterm_bound_s,
                          (long)((sigterm_bound_s - (double)(time_t)sigterm_bound_s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    sigterm_die_now();
    return NULL;
}

/* The flusher thread, without the GIL: waits up to timeout_s for a SIGTERM.
 * True once one came (and from then on); the watchdog is then running. */
static PyObject *native_sigterm_wait(PyObject *Py_UNUSED(mod), PyObject *args) {
    double timeout_s, bound_s;
    if (!PyArg_ParseTuple(args, "dd", &timeout_s, &bound_s)) return NULL;
    int seen, fd = sigterm_pipe[0];
    Py_BEGIN_ALLOW_THREADS
    if (!sigterm_flag && fd >= 0) {
        struct pollfd pfd = {fd, POLLIN, 0};
        poll(&pfd, 1, (int)(timeout_s * 1000));
        char buf[64];
        while (read(fd, buf, sizeof buf) > 0) {}
    }
    seen = sigterm_flag != 0;
    if (seen) {
        static int watching;
        if (!watching) {
            sigterm_bound_s = bound_s;
            watching = start_detached(sigterm_watchdog, NULL) == 0;
        }
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(seen);
}

/* Any thread, once the last profile is written: SIGTERM gets its default
 * disposition back (unless the program set its own meanwhile), and where
 * one came the process dies of it now. */
static PyObject *native_sigterm_release(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(arg)) {
    struct sigaction cur, dfl;
    if (sigterm_owner != getpid()) Py_RETURN_NONE;
    sigterm_armed = 0;
    if (sigaction(SIGTERM, NULL, &cur) == 0 && sigterm_ours(&cur)) {
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGTERM, &dfl, NULL);
    }
    if (sigterm_flag) sigterm_die_now();
    Py_RETURN_NONE;
}

/* ---- a forked child's start (children.py) --------------------------------
 * The after-fork hook in a child, in C: it counts the child (a byte appended
 * to the parent's "started" file) and starts a thread that sleeps defer_ns,
 * then takes the GIL and calls the start (children._forked_start(main_tid)).
 * A child that ends sooner touches next to none of the memory it shares
 * with its parent: each page a child first writes is copied, ~10 µs a page
 * on these machines, and the Python hook this replaces wrote about 25 of
 * them (0.26 ms a fork; bench/RESULTS.md). Set by the parent (follow_forks),
 * copied into every child by the fork itself. */
static struct {
    char *started; /* NULL: forks are not followed */
    uint64_t defer_ns;
    PyObject *start;
} forks;

static void *fork_sleeper(void *arg) {
    pthread_setname_np(pthread_self(), "mfp-child");
    struct timespec ts = {(time_t)(forks.defer_ns / 1000000000u), (long)(forks.defer_ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    /* A child that is exiting: past finalization PyGILState_Ensure would
     * touch what is freed (during it, CPython ends this thread itself). */
    if (!Py_IsInitialized()) return NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = forks.start ? PyObject_CallFunction(forks.start, "l", (long)(intptr_t)arg) : NULL;
    if (r) Py_DECREF(r);
    else PyErr_Clear(); /* the start swallows its own errors; nothing may reach the program */
    PyGILState_Release(g);
    return NULL;
}

/* follow_forks(started_path, defer_s, start) or follow_forks(None): what a
 * forked child's hook does from now on. */
static PyObject *native_follow_forks(PyObject *Py_UNUSED(mod), PyObject *args) {
    PyObject *path, *start = Py_None;
    double defer_s = 0;
    if (!PyArg_ParseTuple(args, "O|dO", &path, &defer_s, &start)) return NULL;
    char *copy = NULL;
    if (path != Py_None) {
        if (!PyCallable_Check(start)) {
            PyErr_SetString(PyExc_TypeError, "start must be callable");
            return NULL;
        }
        PyObject *b = PyUnicode_EncodeFSDefault(path);
        if (!b) return NULL;
        copy = strdup(PyBytes_AS_STRING(b));
        Py_DECREF(b);
        if (!copy) return PyErr_NoMemory();
    }
    free(forks.started);
    forks.started = copy;
    forks.defer_ns = copy ? (uint64_t)(defer_s * 1e9) : 0;
    Py_XSETREF(forks.start, copy ? Py_NewRef(start) : NULL);
    Py_RETURN_NONE;
}

/* The after_in_child hook (os.register_at_fork). Never raises. */
static PyObject *native_fork_child(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(arg)) {
    if (!forks.started) Py_RETURN_NONE;
    int fd = open(forks.started, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) Py_RETURN_NONE; /* the parent stopped */
    if (write(fd, ".", 1) < 0) { /* counted or not, the child goes on */ }
    close(fd);
    (void)start_detached(fork_sleeper, (void *)(intptr_t)syscall(SYS_gettid));
    Py_RETURN_NONE;
}

/* program_threads(limit): this process's threads but the engine's (whose
 * names begin "mfp-": each names itself first thing, and one not named yet
 * counts as the program's), counted up to limit; -1 where /proc cannot be
 * read. What CPython 3.12+ counts for its multi-threaded fork warning is
 * all of them (children.py). */
static PyObject *native_program_threads(PyObject *Py_UNUSED(mod), PyObject *arg) {
    long limit = PyLong_AsLong(arg);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    DIR *d = opendir("/proc/self/task");
    if (!d) return PyLong_FromLong(-1);
    long n = 0;
    for (struct dirent *e; n < limit && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[64], name[16];
        snprintf(path, sizeof path, "/proc/self/task/%.20s/comm", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue; /* it ended meanwhile */
        ssize_t got = read(fd, name, sizeof name);
        close(fd);
        if (!(got >= 4 && memcmp(name, "mfp-", 4) == 0)) n++;
    }
    closedir(d);
    return PyLong_FromLong(n);
}

/* For the profiler's own Python threads: neither sampled nor counted in
 * the memory profile. */
static PyObject *native_ignore_this_thread(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(arg)) {
    mfp_sampler_ignore_thread((uint64_t)syscall(SYS_gettid));
    mfp_heap_ignore_this_thread();
    Py_RETURN_NONE;
}

/* A process identity from Python: (pid, ppid, name, flags, duration_ns,
 * cpu_ns, rss_peak_bytes, heap_peak_bytes). The name stays owned by the
 * tuple, which the caller keeps alive. */
static int parse_process(PyObject *t, mfp_process_info *out) {
    unsigned long long pid, ppid, dur, cpu, rss, heap;
    unsigned int flags;
    if (!PyArg_ParseTuple(t, "KKsIKKKK;a process is (pid, ppid, name, flags, duration_ns, cpu_ns, "
                             "rss_peak_bytes, heap_peak_bytes)", &pid, &ppid, &out->name, &flags,
                          &dur, &cpu, &rss, &heap))
        return -1;
    out->pid = pid;
    out->ppid = ppid;
    out->flags = flags;
    out->duration_ns = dur;
    out->cpu_ns = cpu;
    out->rss_peak_bytes = rss;
    out->heap_peak_bytes = heap;
    return 0;
}

static mfp_profile *decode_buffer(PyObject *obj, const char **err) {
    Py_buffer b;
    if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) return NULL;
    mfp_profile *p;
    Py_BEGIN_ALLOW_THREADS
    p = mfp_profile_decode(b.buf, (size_t)b.len, err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    return p;
}

/* merge(base, inputs, base_process=None, meta=None) -> (bytes, bad)
 * inputs: [(profile bytes, offset_ns, process tuple or None), ...]. An input
 * that does not decode is skipped and its index listed in bad. */
static PyObject *native_merge(PyObject *Py_UNUSED(mod), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"base", "inputs", "base_process", "meta", NULL};
    PyObject *base, *inputs, *base_proc = Py_None, *meta = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OO", kwlist, &base, &inputs, &base_proc, &meta))
        return NULL;
    PyObject *seq = PySequence_Fast(inputs, "inputs must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const char *err = NULL;
    mfp_profile *dst = decode_buffer(base, &err);
    mfp_merge_input *in = calloc((size_t)n + 1, sizeof *in);
    mfp_process_info *ids = calloc((size_t)n + 1, sizeof *ids);
    PyObject *bad = PyList_New(0), *out = NULL;
    Py_ssize_t k = 0;
    if (!dst) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "base: not a valid profile: %s", err ? err : "corrupt");
        goto done;
    }
    if (!in || !ids || !bad) {
        PyErr_NoMemory();
        goto done;
    }
    if (base_proc != Py_None) {
        mfp_process_info self;
        if (parse_process(base_proc, &self)) goto done;
        uint32_t name = mfp_profile_string(dst, self.name, strlen(self.name));
        mfp_process row = {self.pid, self.ppid, name, self.flags, 0, self.duration_ns,
                           self.cpu_ns, self.rss_peak_bytes, self.heap_peak_bytes};
        size_t np;
        mfp_profile_processes(dst, &np);
        if (np == 0 && (name == MFP_NONE || mfp_profile_process(dst, &row) == MFP_NONE)) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *data, *proc;
        long long offset;
        in[k] = (mfp_merge_input){0};
        if (!PyArg_ParseTuple(item, "OLO;an input is (profile bytes, offset_ns, process or None)",
                              &data, &offset, &proc))
            goto done;
        if (proc != Py_None) {
            if (parse_process(proc, &ids[k])) goto done;
            in[k].as = &ids[k];
        }
        in[k].offset_ns = offset;
        in[k].src = decode_buffer(data, &err);
        if (!in[k].src) {
            if (PyErr_Occurred()) goto done;
            PyObject *ix = PyLong_FromSsize_t(i);
            if (!ix || PyList_Append(bad, ix) < 0) {
                Py_XDECREF(ix);
                goto done;
            }
            Py_DECREF(ix);
            continue;
        }
        k++;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = mfp_profile_merge(dst, in, (size_t)k);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (meta == Py_None) {
        size_t ml;
        const char *m = mfp_profile_meta(dst, &ml);
        meta = PyUnicode_DecodeUTF8(m, (Py_ssize_t)ml, "replace");
        if (!meta) goto done;
        out = encode_store(dst, meta);
        Py_DECREF(meta);
    } else {
        out = encode_store(dst, meta);
    }
    if (out) {
        PyObject *pair = PyTuple_Pack(2, out, bad);
        Py_DECREF(out);
        out = pair;
    }
done:
    for (Py_ssize_t i = 0; i < k; i++) mfp_profile_free((mfp_profile *)in[i].src);
    free(in);
    free(ids);
    Py_XDECREF(bad);
    mfp_profile_free(dst);
    Py_DECREF(seq);
    return out;
}

static PyMethodDef module_methods[] = {
    {"ignore_this_thread", native_ignore_this_thread, METH_NOARGS,
     "ignore_this_thread(): the calling thread is not profiled (CPU or memory) from now on"},
    {"decode", native_decode, METH_O, "decode(bytes) -> dict of the profile's tables"},
    {"merge", (PyCFunction)(void (*)(void))native_merge, METH_VARARGS | METH_KEYWORDS,
     "merge(base, [(bytes, offset_ns, (pid, ppid, name, flags, duration_ns, cpu_ns, rss_peak, "
     "heap_peak) or None), ...], base_process=None, meta=None) -> (bytes, [indices not decoded]):"
     " several profiles into one, each input as process(es) of its own (native/profile/merge.c)"},
    {"sigterm_catch", native_sigterm_catch, METH_NOARGS,
     "sigterm_catch() -> bool: note SIGTERM (where it has its default disposition) for sigterm_wait"},
    {"sigterm_wait", native_sigterm_wait, METH_VARARGS,
     "sigterm_wait(timeout_s, bound_s) -> bool: a SIGTERM came (then dies bound_s later at most)"},
    {"sigterm_release", native_sigterm_release, METH_NOARGS,
     "sigterm_release(): the default disposition back; dies of a SIGTERM that came"},
    {"follow_forks", native_follow_forks, METH_VARARGS,
     "follow_forks(started_path, defer_s, start) / follow_forks(None): what fork_child does"},
    {"program_threads", native_program_threads, METH_O,
     "program_threads(limit): this process's threads but the engine's, counted up to limit"},
    {"fork_child", native_fork_child, METH_NOARGS,
     "fork_child(): the after-fork hook in a child: count it, call start(main_tid) defer_s later"},
    {"thread_names", native_thread_names, METH_NOARGS,
     "thread_names() -> {native tid: name} of threads seen since the last Session started"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_native",
                                       "The C engine of metaflow-profiler.", -1, module_methods,
                                       NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    mfp_heap_fork_register(); /* before any engine thread's (heap.h) */
    if (PyType_Ready(&SessionType) < 0 || PyType_Ready(&BuilderType) < 0) return NULL;
    if (PyType_Ready(&TracerType) < 0) return NULL;
    if (!thread_names && !(thread_names = PyDict_New())) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Session", (PyObject *)&SessionType) < 0 ||
        PyModule_AddObjectRef(m, "Builder", (PyObject *)&BuilderType) < 0 ||
        PyModule_AddObjectRef(m, "Tracer", (PyObject *)&TracerType) < 0 ||
        PyModule_AddIntConstant(m, "FORMAT_VERSION", 1) < 0 ||
        PyModule_AddIntConstant(m, "KNOWS_FRAME_LAYOUT", mfp_sampler_knows_layout()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
