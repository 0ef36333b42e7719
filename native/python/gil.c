/* gil.c — who holds the GIL; see python.h.
 *
 * Why: a thread's stack says where it is, not whether it is computing
 * there. A thread executing Python code holds the GIL (or has just been
 * pushed off its core while holding it); one in time.sleep, a lock wait or
 * I/O has released it, also in the moment after it was woken and before it
 * has run again. The sampler uses this to decide which samples may carry
 * the CPU time a thread used (sampler.c, add_sample).
 *
 * The GIL's state lives in _PyRuntime.ceval.gil on 3.11 and behind
 * interp->ceval.gil from 3.12; last_holder names the thread state that
 * took it last, locked whether it is held now. The main interpreter's is
 * inside _PyRuntime (3.12+: its _main_interpreter), static memory that
 * outlives any reader, so its two words are loaded in place: the sampler
 * asks three times a pass, and a checked copy is a system call each time.
 * Another interpreter's GIL is freed with it, so it is copied.
 */
#include "python.h"

#include "layout.h"

#if MFP_LAYOUT_KNOWN
#define Py_BUILD_CORE 1
#include <internal/pycore_runtime.h>
#undef Py_BUILD_CORE

const void *mfp_python_gil(const void *interp) {
#if PY_VERSION_HEX >= 0x030C0000
    return ((const PyInterpreterState *)interp)->ceval.gil;
#else
    (void)interp;
    return &_PyRuntime.ceval.gil;
#endif
}

static int in_runtime(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p, r = (uintptr_t)&_PyRuntime;
    return a >= r && a - r <= sizeof _PyRuntime - n;
}

#if PY_VERSION_HEX >= 0x030D0000
#define GIL_WORD(w) (w)
#else
#define GIL_WORD(w) (w)._value
#endif

const void *mfp_python_gil_holder(const void *gil, const mfp_python_mem *mem) {
    struct _gil_runtime_state g;
    const size_t n = offsetof(struct _gil_runtime_state, locked) + sizeof g.locked;
    if (!gil) return NULL;
    if (mem->direct || in_runtime(gil, n)) {
        const struct _gil_runtime_state *live = gil;
        if (!__atomic_load_n(&GIL_WORD(live->locked), __ATOMIC_RELAXED)) return NULL;
        return (const void *)__atomic_load_n(&GIL_WORD(live->last_holder), __ATOMIC_RELAXED);
    }
    if (mem->read(&g, gil, n) != 0) return NULL;
    return GIL_WORD(g.locked) ? (const void *)GIL_WORD(g.last_holder) : NULL;
}

#else

const void *mfp_python_gil(const void *interp) {
    (void)interp;
    return NULL;
}

const void *mfp_python_gil_holder(const void *gil, const mfp_python_mem *mem) {
    (void)gil;
    (void)mem;
    return NULL;
}

#endif
