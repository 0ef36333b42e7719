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
 * took it last, locked whether it is held now.
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

const void *mfp_python_gil_holder(const void *gil, const mfp_python_mem *mem) {
    struct _gil_runtime_state g;
    const size_t n = offsetof(struct _gil_runtime_state, locked) + sizeof g.locked;
    if (!gil || mem->read(&g, gil, n) != 0) return NULL;
#if PY_VERSION_HEX >= 0x030D0000
    return g.locked ? (const void *)g.last_holder : NULL;
#else
    return g.locked._value ? (const void *)g.last_holder._value : NULL;
#endif
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
