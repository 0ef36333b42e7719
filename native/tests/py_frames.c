/* py_frames.c — native/python/ on synthetic frame chains, built against one
 * interpreter's headers and libpython (make -C native test-python
 * PYTHON=python3.X). Real code objects come from an embedded interpreter;
 * the thread state, data-stack chunk and frames are built by hand, so each
 * hostile shape (a loop, a torn chunk, an unreadable address, a reused code
 * address, a stack too deep) is exact and repeatable. */
#include "../python/layout.h"
#include "../python/python.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

#if MFP_LAYOUT_KNOWN

/* A checked reader that refuses one range, as memread refuses an unmapped
 * page. */
static const char *bad_lo, *bad_hi;
static int reads; /* calls made, as the sampler's syscalls */
static int copy(void *dst, const void *src, size_t n) {
    const char *s = src;
    if (s < bad_hi && s + n > bad_lo) return -1;
    memcpy(dst, src, n);
    return 0;
}
static int test_read(void *dst, const void *src, size_t n) {
    reads++;
    return copy(dst, src, n);
}
static size_t test_readv(const struct iovec *l, const struct iovec *r, size_t cnt) {
    reads++;
    for (size_t i = 0; i < cnt; i++)
        if (copy(l[i].iov_base, r[i].iov_base, l[i].iov_len) != 0) return i;
    return cnt;
}
static const mfp_python_mem checked = {test_read, test_readv, 0};

static void set_code(mfp_py_frame *f, PyObject *code) {
#if PY_VERSION_HEX >= 0x030E0000
    /* A tagged reference, as the interpreter stores a deferred one. */
    f->f_executable.bits = code ? (uintptr_t)code | 1 : 0;
#elif PY_VERSION_HEX >= 0x030D0000
    f->f_executable = code;
#else
    f->f_code = (PyCodeObject *)code;
#endif
}

static void set_instr(mfp_py_frame *f, PyObject *code, int lasti) {
    _Py_CODEUNIT *at = (_Py_CODEUNIT *)((char *)code + MFP_CODE_HEADER_SIZE) + lasti;
#if PY_VERSION_HEX >= 0x030D0000
    f->instr_ptr = at;
#else
    f->prev_instr = at;
#endif
}

/* Room for a chunk with N frames, the thread state pointing at it. */
#define N 6
static union { _PyStackChunk c; char bytes[sizeof(_PyStackChunk) + (N + 1) * sizeof(mfp_py_frame) + 64]; } chunk;
static PyThreadState ts;
#if MFP_TSTATE_HAS_CFRAME
static _PyCFrame cframe;
#endif
static mfp_py_frame *frames; /* inside chunk, frames[0] the root */
/* Where C code entered the stack (layout.h, MFP_FRAME_ENDS_STACK): on
 * 3.12+ a frame of its own under the root, on 3.11 the root marked. */
#if PY_VERSION_HEX >= 0x030C0000
static mfp_py_frame entry;

static void enter_at(mfp_py_frame *f) {
    memset(&entry, 0, sizeof entry);
#if PY_VERSION_HEX >= 0x030E0000
    entry.owner = FRAME_OWNED_BY_INTERPRETER;
#else
    entry.owner = FRAME_OWNED_BY_CSTACK;
#endif
    f->previous = &entry;
}
#else
static void enter_at(mfp_py_frame *f) { f->is_entry = 1; }
#endif

static void build(PyObject *const *codes, int n) {
    memset(&chunk, 0, sizeof chunk);
    memset(&ts, 0, sizeof ts);
    chunk.c.size = sizeof chunk;
    frames = (mfp_py_frame *)((char *)&chunk + offsetof(_PyStackChunk, data));
    for (int i = 0; i < n; i++) {
        set_code(&frames[i], codes[i]);
        set_instr(&frames[i], codes[i], 2 * i + 1);
        frames[i].previous = i ? &frames[i - 1] : NULL;
        frames[i].owner = FRAME_OWNED_BY_THREAD;
    }
    enter_at(&frames[0]);
    ts.interp = PyInterpreterState_Get();
    ts.native_thread_id = 4242;
    ts.datastack_chunk = &chunk.c;
    ts.datastack_top = (PyObject **)&frames[n];
    ts.datastack_limit = (PyObject **)(chunk.bytes + sizeof chunk);
#if MFP_TSTATE_HAS_CFRAME
    memset(&cframe, 0, sizeof cframe);
    cframe.current_frame = &frames[n - 1];
    ts.cframe = &cframe;
#else
    ts.current_frame = &frames[n - 1];
#endif
}

static void set_top(mfp_py_frame *f) {
#if MFP_TSTATE_HAS_CFRAME
    cframe.current_frame = f;
#else
    ts.current_frame = f;
#endif
}

static int walk(const mfp_python_mem *mem, mfp_python_frame *out, int max, size_t *elided,
                int *err) {
    mfp_python_walker *w = mfp_python_walker_new(mem);
    mfp_python_thread t;
    mfp_python_thread_decode(&ts, &t);
    int d = mfp_python_walk(w, &ts, &t, out, max, elided, err);
    mfp_python_walker_free(w);
    return d;
}

static const char *frame_name(mfp_profile *p, uint32_t id, uint32_t *firstline, uint32_t *line,
                              const char **file) {
    size_t n, len;
    const mfp_frame *fr = mfp_profile_frames(p, &n);
    const mfp_func *fn = mfp_profile_funcs(p, &n);
    const mfp_func *f = &fn[fr[id].func];
    *firstline = f->line;
    *line = fr[id].line;
    *file = mfp_profile_string_at(p, f->file, &len);
    return mfp_profile_string_at(p, f->name, &len);
}

static PyObject *code_of(PyObject *ns, const char *name) {
    PyObject *fn = PyDict_GetItemString(ns, name);
    return PyObject_GetAttrString(fn, "__code__");
}

int main(void) {
    Py_Initialize();
    PyObject *ns = PyDict_New();
    PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
    const char *src =
        "def outer():\n    return 1\n\nclass K:\n    def m\xc3\xa9thode_\xce\xbb(self):\n        x = 1\n"
        "        y = 2\n        return x + y\n\ndef leaf():\n    a = 1\n    b = 2\n    c = 3\n    return a\n";
    PyObject *mod = Py_CompileString(src, "/synthetic/m\xc3\xa9.py", Py_file_input);
    PyObject *r = mod ? PyEval_EvalCode(mod, ns, ns) : NULL;
    CHECK(r != NULL);
    if (!r) { PyErr_Print(); return check_done("py_frames"); }
    PyObject *outer = code_of(ns, "outer"), *leaf = code_of(ns, "leaf");
    PyObject *k = PyDict_GetItemString(ns, "K");
    PyObject *meth = PyObject_GetAttrString(PyObject_GetAttrString(k, "m\xc3\xa9thode_\xce\xbb"), "__code__");
    CHECK(outer && leaf && meth);

    mfp_python_frame out[16];
    uint32_t ids[16];
    int err = -1;
    size_t elided = 0;
    PyObject *codes[3] = {outer, meth, leaf};

    /* A whole chain, both readers: leaf first, instruction indices kept. */
    for (int direct = 0; direct < 2; direct++) {
        build(codes, 3);
        int d = walk(direct ? &mfp_python_direct : &checked, out, 16, &elided, &err);
        CHECK(d == 3);
        CHECK(out[0].code == leaf && out[1].code == meth && out[2].code == outer);
        CHECK(out[0].lasti == 5 && out[1].lasti == 3 && out[2].lasti == 1);
    }

    /* A walker copies, with a thread's state, what its last walk of that
     * thread read outside the chunk (3.11/3.12's C frame record, 3.12+'s
     * entry frame): fewer reads, the same stack; what changed there since
     * is seen; an address no longer readable is not taken from a guess. */
    {
        build(codes, 3);
        mfp_python_walker *w = mfp_python_walker_new(&checked);
        mfp_python_thread t;
        int calls[3];
        for (int i = 0; i < 3; i++) {
            reads = 0;
            mfp_python_thread_decode(&ts, &t);
            int d = mfp_python_walk(w, &ts, &t, out, 16, &elided, &err);
            calls[i] = reads;
            CHECK(d == 3 && out[0].code == leaf && out[1].code == meth && out[2].code == outer);
        }
        CHECK(calls[0] > 1 && calls[1] == 1 && calls[2] == 1);
        set_top(&frames[1]); /* the leaf returned: in the guessed C frame record on 3.11/3.12 */
        mfp_python_thread_decode(&ts, &t);
        CHECK(mfp_python_walk(w, &ts, &t, out, 16, &elided, &err) == 2 && out[0].code == meth);
#if MFP_TSTATE_HAS_CFRAME
        bad_lo = (const char *)&cframe;
#else
        bad_lo = (const char *)&entry;
#endif
        bad_hi = bad_lo + 1;
        mfp_python_thread_decode(&ts, &t);
        CHECK(mfp_python_walk(w, &ts, &t, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_READ_FAULT);
        bad_lo = bad_hi = NULL;
        mfp_python_walker_free(w);
    }

    /* Decoding: qualname, file (UTF-8), first line, current line. */
    mfp_profile *p = mfp_profile_new(0);
    mfp_python_decoder *dec = mfp_python_decoder_new(p, &checked, 16, 4);
    build(codes, 3);
    int d = walk(&checked, out, 16, &elided, &err);
    CHECK(mfp_python_decode(dec, out, d, ids, &err) == 0);
    for (int i = 0; i < 3; i++) {
        uint32_t first, line;
        const char *file;
        const char *name = frame_name(p, ids[i], &first, &line, &file);
        PyCodeObject *co = (PyCodeObject *)out[i].code;
        CHECK(first == (uint32_t)co->co_firstlineno);
        CHECK((int)line == PyCode_Addr2Line(co, out[i].lasti * (int)sizeof(_Py_CODEUNIT)));
        CHECK(strcmp(file, "/synthetic/m\xc3\xa9.py") == 0);
        if (i == 1) CHECK(strcmp(name, "K.m\xc3\xa9thode_\xce\xbb") == 0);
        if (i == 0) CHECK(strcmp(name, "leaf") == 0 && line > first); /* in the body */
    }
    /* Cached: the same frames again give the same ids without new entries. */
    size_t nframes;
    mfp_profile_frames(p, &nframes);
    uint32_t again[16];
    CHECK(mfp_python_decode(dec, out, d, again, &err) == 0);
    CHECK(memcmp(again, ids, 3 * sizeof *ids) == 0);
    size_t nframes2;
    mfp_profile_frames(p, &nframes2);
    CHECK(nframes2 == nframes);

    /* A code address reused by another code object: the cache must see the
     * header changed (here: a copy of leaf's header whose names move). */
    char *fake = aligned_alloc(64, (MFP_CODE_HEADER_SIZE + 63) / 64 * 64 + 64);
    memcpy(fake, leaf, MFP_CODE_HEADER_SIZE);
    mfp_python_frame one = {NULL, fake, 0, 0};
    uint32_t first, line, id;
    const char *file;
    CHECK(mfp_python_decode(dec, &one, 1, &id, &err) == 0);
    CHECK(strcmp(frame_name(p, id, &first, &line, &file), "leaf") == 0);
    ((PyCodeObject *)fake)->co_qualname = ((PyCodeObject *)outer)->co_qualname;
    CHECK(mfp_python_decode(dec, &one, 1, &id, &err) == 0);
    CHECK(strcmp(frame_name(p, id, &first, &line, &file), "outer") == 0);
    /* ... and something that is no code object at all does not validate. */
    ((PyObject *)fake)->ob_type = &PyBytes_Type;
    err = -1;
    CHECK(mfp_python_decode(dec, &one, 1, &id, &err) == -1 && err == MFP_PYTHON_INVALID);
    /* An unreadable code object is a read fault. */
    one.code = leaf;
    bad_lo = (const char *)leaf;
    bad_hi = bad_lo + 1;
    err = -1;
    CHECK(mfp_python_decode(dec, &one, 1, &id, &err) == -1 && err == MFP_PYTHON_READ_FAULT);
    bad_lo = bad_hi = NULL;
    free(fake);

    /* Too deep: the leaf-most and root-most halves are kept, in order,
     * and the middle counted. */
    PyObject *six[N] = {outer, meth, leaf, outer, meth, leaf}; /* six[0] the root */
    elided = 99;
    build(six, N);
    CHECK(walk(&checked, out, 16, &elided, &err) == N && elided == 0);
    for (int max = 2; max <= 5; max++) {
        build(six, N);
        for (int i = 0; i < N; i++) set_instr(&frames[i], six[i], i); /* lasti = depth from the root */
        CHECK(walk(&checked, out, max, &elided, &err) == max && elided == (size_t)(N - max));
        int lo = max / 2, ok = 1;
        for (int i = 0; i < lo; i++) ok &= out[i].lasti == N - 1 - i;       /* leaf side */
        for (int i = lo; i < max; i++) ok &= out[i].lasti == max - 1 - i;   /* root side */
        CHECK(ok);
    }

    /* Torn: inside a chunk a caller above its callee. */
    build(six, N);
    frames[2].previous = &frames[4];
    err = -1;
    CHECK(walk(&checked, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_INVALID);

    /* Torn: a link between words inside a chunk is not followed (a
     * UBSan build fails here on a misaligned read otherwise). */
    build(six, N);
    frames[4].previous = (void *)((char *)&frames[1] + 3);
    err = -1;
    CHECK(walk(&checked, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_INVALID);

    /* A loop outside any chunk (generator frames are copied one by one). */
    static mfp_py_frame loose[5];
    for (int i = 0; i < 5; i++) {
        memset(&loose[i], 0, sizeof loose[i]);
        set_code(&loose[i], leaf);
        set_instr(&loose[i], leaf, 0);
        loose[i].previous = &loose[(i + 1) % 5];
    }
    build(codes, 3);
    ts.datastack_chunk = NULL;
    set_top(&loose[0]);
    err = -1;
    CHECK(walk(&checked, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_INVALID);

    /* An unreadable frame address. */
    build(codes, 3);
    ts.datastack_chunk = NULL;
    bad_lo = (const char *)&frames[1];
    bad_hi = bad_lo + 1;
    err = -1;
    CHECK(walk(&checked, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_READ_FAULT);
    bad_lo = bad_hi = NULL;

    /* A frame without code: torn for a checked copy, skipped directly. */
    build(codes, 3);
    set_code(&frames[1], NULL);
    err = -1;
    CHECK(walk(&checked, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_INVALID);
    CHECK(walk(&mfp_python_direct, out, 16, &elided, &err) == 2 && out[1].code == outer);
    /* ... but a leaf without code, where the interpreter clears a returning
     * frame's code after the thread state names its caller, is that frame
     * being popped. */
    build(codes, 3);
    set_code(&frames[2], NULL);
    err = -1;
    d = walk(&checked, out, 16, &elided, &err);
    CHECK(MFP_POP_CLEARS_CODE ? d == 2 && out[0].code == meth : d == -1 && err == MFP_PYTHON_INVALID);

    /* A chain that ends where no stack can end was read torn: at a frame
     * being pushed, not yet linked to its caller; at a generator's frame
     * copied across a yield. Torn for a checked copy; whole for the thread
     * reading its own stack. A generator frame with a caller is just a
     * frame. */
    build(codes, 3);
    frames[1].previous = NULL;
    err = -1;
    CHECK(walk(&checked, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_INVALID);
    CHECK(walk(&mfp_python_direct, out, 16, &elided, &err) == 2);
    build(codes, 3);
    frames[0].owner = FRAME_OWNED_BY_GENERATOR;
    frames[0].previous = NULL;
#if PY_VERSION_HEX < 0x030C0000
    frames[0].is_entry = 1; /* 3.11 marks it at every resume */
#endif
    err = -1;
    CHECK(walk(&checked, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_INVALID);
    CHECK(walk(&mfp_python_direct, out, 16, &elided, &err) == 3);
    build(codes, 3);
    frames[1].owner = FRAME_OWNED_BY_GENERATOR;
    CHECK(walk(&checked, out, 16, &elided, &err) == 3 && out[2].code == outer);

#if PY_VERSION_HEX >= 0x030E0000
    /* Entry frames belong to the interpreter, not to Python code. */
    build(codes, 3);
    frames[1].owner = FRAME_OWNED_BY_INTERPRETER;
    CHECK(walk(&checked, out, 16, &elided, &err) == 2 && out[0].code == leaf && out[1].code == outer);
#elif PY_VERSION_HEX >= 0x030C0000
    /* Entry frames pushed by C code are not Python frames. */
    build(codes, 3);
    frames[1].owner = FRAME_OWNED_BY_CSTACK;
    CHECK(walk(&checked, out, 16, &elided, &err) == 2 && out[0].code == leaf && out[1].code == outer);
#endif

    /* The running interpreter's account of its layout agrees with the
     * build's; a doctored one is caught and said in words. */
    char why[200] = "";
    CHECK(mfp_python_check_layout(why, sizeof why) == 0);
#if MFP_HAS_DEBUG_OFFSETS
    _Py_DebugOffsets off = _PyRuntime.debug_offsets;
    CHECK(mfp_python_check_offsets(&off, why, sizeof why) == 0);
    off.thread_state.next += 8;
    CHECK(mfp_python_check_offsets(&off, why, sizeof why) == -1);
    CHECK(strstr(why, "thread_state.next is at") != NULL);
    off = _PyRuntime.debug_offsets;
    off.code_object.co_code_adaptive -= 8;
    CHECK(mfp_python_check_offsets(&off, why, sizeof why) == -1 && strstr(why, "co_code_adaptive"));
    off = _PyRuntime.debug_offsets;
    off.version += 1 << 16; /* the next minor release */
    CHECK(mfp_python_check_offsets(&off, why, sizeof why) == -1 && strstr(why, "this build is for Python"));
    off = _PyRuntime.debug_offsets;
    off.free_threaded = 1;
    CHECK(mfp_python_check_offsets(&off, why, sizeof why) == -1 && strstr(why, "free-threaded"));
    off = _PyRuntime.debug_offsets;
    off.cookie[0] ^= 1;
    CHECK(mfp_python_check_offsets(&off, why, sizeof why) == -1 && strstr(why, "no debug offsets"));
#endif

    /* No Python code running. */
    build(codes, 3);
    set_top(NULL);
    CHECK(walk(&checked, out, 16, &elided, &err) == 0);

    /* Thread states: decoded fields; a checked walk follows the state as it
     * is now, not the older copy it is given, and says when the address no
     * longer holds a thread state of that interpreter. */
    build(codes, 3);
    mfp_python_thread t;
    mfp_python_thread_decode(&ts, &t);
    CHECK(t.tid == 4242 && t.interp == ts.interp && t.chunk == &chunk.c && t.chunk_limit == ts.datastack_limit);
    mfp_python_walker *w = mfp_python_walker_new(&checked);
    set_top(&frames[1]); /* returned from leaf since t was copied */
    ts.datastack_top = (PyObject **)&frames[2];
    CHECK(mfp_python_walk(w, &ts, &t, out, 16, &elided, &err) == 2 && out[0].code == meth);
    CHECK(t.chunk_top == ts.datastack_top);
    build(codes, 3); /* called leaf since a copy made before its chunk existed */
    mfp_python_thread_decode(&ts, &t);
    t.chunk = t.chunk_top = t.chunk_limit = NULL;
    CHECK(mfp_python_walk(w, &ts, &t, out, 16, &elided, &err) == 3 && out[0].code == leaf);
    build(codes, 3); /* a new chunk since: the copy from the old one is not used */
    mfp_python_thread_decode(&ts, &t);
    static union { _PyStackChunk c; char bytes[sizeof(_PyStackChunk) + 64]; } old;
    memset(&old, 0, sizeof old);
    t.chunk = &old.c;
    t.chunk_top = old.bytes + offsetof(_PyStackChunk, data);
    t.chunk_limit = old.bytes + sizeof old;
    CHECK(mfp_python_walk(w, &ts, &t, out, 16, &elided, &err) == 3 && out[0].code == leaf);
    ts.interp = (PyInterpreterState *)&chunk; /* reused by something else */
    mfp_python_thread_decode(&ts, &t);
    t.interp = PyInterpreterState_Get();
    err = -1;
    CHECK(mfp_python_walk(w, &ts, &t, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_INVALID &&
          t.interp != PyInterpreterState_Get());
    build(codes, 3); /* unreadable */
    mfp_python_thread_decode(&ts, &t);
    bad_lo = (const char *)&ts;
    bad_hi = bad_lo + 1;
    err = -1;
    CHECK(mfp_python_walk(w, &ts, &t, out, 16, &elided, &err) == -1 && err == MFP_PYTHON_READ_FAULT &&
          t.interp == NULL);
    bad_lo = bad_hi = NULL;
    mfp_python_walker_free(w);
    /* The interpreter's own list holds this (main) thread. */
    const PyThreadState *head;
    memcpy(&head, mfp_python_threads_head(PyInterpreterState_Get()), sizeof head);
    int found = 0;
    for (const PyThreadState *x = head; x; x = x->next) found |= x == PyThreadState_Get();
    CHECK(found);
    CHECK(mfp_python_tstate_size() == sizeof(PyThreadState));

    mfp_python_decoder_free(dec);
    mfp_profile_free(p);
    return check_done("py_frames");
}

#else
int main(void) {
    /* An interpreter the layout does not know: every reader refuses. */
    CHECK(!mfp_python_layout_known());
    CHECK(mfp_python_walker_new(&mfp_python_direct) == NULL);
    char why[200];
    CHECK(mfp_python_check_layout(why, sizeof why) == -1 && strstr(why, "does not know"));
    return check_done("py_frames (unknown layout)");
}
#endif
