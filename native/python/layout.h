/* layout.h — where CPython 3.11 to 3.15 keep what native/python/ reads.
 * Private to native/python/: no other folder includes CPython's internal
 * headers (tests/structural/test_layers.py checks it).
 *
 * The extension is compiled against the interpreter that loads it, so the
 * struct layouts come from that interpreter's own internal headers; this
 * file only names, per version, the few fields that moved between
 * releases. Nothing else in native/ knows a Python version.
 */
#ifndef MFP_PYTHON_LAYOUT_H
#define MFP_PYTHON_LAYOUT_H

#include <patchlevel.h>
#include <pyconfig.h>

/* A release newer than this file, or a free-threaded build, has layouts
 * nobody checked: such builds get only the public C API (the sampler's
 * GIL-taking fallback; no memory profile). MFP_PORTABLE=1 at build time
 * makes that build on a known interpreter, which is how tests check it. */
#if defined(MFP_PORTABLE) || PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x03100000 || \
    defined(Py_GIL_DISABLED)
#define MFP_LAYOUT_KNOWN 0
#include <Python.h>
#else
#define MFP_LAYOUT_KNOWN 1

#define Py_BUILD_CORE 1
/* 3.14's internal headers hold inline functions with unused parameters. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <Python.h>
#include <frameobject.h>
#include <internal/pycore_frame.h>
#include <internal/pycore_interp.h>
#if PY_VERSION_HEX >= 0x030E0000
#include <internal/pycore_interpframe.h>
#endif
#if PY_VERSION_HEX >= 0x030D0000
/* _PyRuntime.debug_offsets: where the running interpreter says its fields
 * are (checked against this build's at start, frames.c). */
#include <internal/pycore_runtime.h>
#define MFP_HAS_DEBUG_OFFSETS 1
#else
#define MFP_HAS_DEBUG_OFFSETS 0
#endif
#pragma GCC diagnostic pop
#undef Py_BUILD_CORE

typedef _PyInterpreterFrame mfp_py_frame;

#if PY_VERSION_HEX >= 0x030E0000 /* 3.14, 3.15 */
/* f_executable is a _PyStackRef: the code object's address with how the
 * reference is counted in its low bits (Py_TAG_BITS). Entry frames belong
 * to the interpreter (3.14 also has C-stack frames above those). */
#define MFP_TSTATE_HAS_CFRAME 0
#define MFP_FRAME_CODE(f) ((const void *)((f)->f_executable.bits & ~(uintptr_t)Py_TAG_BITS))
#define MFP_FRAME_INSTR(f) ((const void *)(f)->instr_ptr)
#define MFP_FRAME_IS_SHIM(f) ((f)->owner >= FRAME_OWNED_BY_INTERPRETER)
/* A returning frame's code reference is cleared (PyStackRef_CLEAR) right
 * after tstate->current_frame moves to its caller and before the frame is
 * popped: a state copied just before that move names a frame without code
 * (2.4 % of first reads of a call-heavy thread on 3.15, all of them that
 * still failed once state and chunk were copied together). */
#define MFP_POP_CLEARS_CODE 1
#elif PY_VERSION_HEX >= 0x030D0000 /* 3.13 */
/* The current frame hangs off the thread state; the instruction pointer
 * names the instruction being executed. */
#define MFP_TSTATE_HAS_CFRAME 0
#define MFP_FRAME_CODE(f) ((const void *)(f)->f_executable)
#define MFP_FRAME_INSTR(f) ((const void *)(f)->instr_ptr)
#define MFP_FRAME_IS_SHIM(f) ((f)->owner == FRAME_OWNED_BY_CSTACK)
#define MFP_POP_CLEARS_CODE 0 /* the pointer stays (no leaf without code in the same runs) */
#elif PY_VERSION_HEX >= 0x030C0000 /* 3.12 */
/* Reached through tstate->cframe; prev_instr is the code unit before the
 * next instruction; entry frames pushed by C code are owned by the C stack. */
#define MFP_TSTATE_HAS_CFRAME 1
#define MFP_FRAME_CODE(f) ((const void *)(f)->f_code)
#define MFP_FRAME_INSTR(f) ((const void *)(f)->prev_instr)
#define MFP_FRAME_IS_SHIM(f) ((f)->owner == FRAME_OWNED_BY_CSTACK)
#define MFP_POP_CLEARS_CODE 0
#else /* 3.11: like 3.12 but no shim frames: a frame C code ran is marked. */
#define MFP_TSTATE_HAS_CFRAME 1
#define MFP_FRAME_CODE(f) ((const void *)(f)->f_code)
#define MFP_FRAME_INSTR(f) ((const void *)(f)->prev_instr)
#define MFP_FRAME_IS_SHIM(f) 0
/* is_entry read as a byte: a torn copy holds any value, no valid bool. */
#define MFP_FRAME_ENDS_STACK(f) \
    (*(const unsigned char *)&(f)->is_entry && (f)->owner != FRAME_OWNED_BY_GENERATOR)
#define MFP_POP_CLEARS_CODE 0
#endif

#ifndef MFP_FRAME_ENDS_STACK /* 3.12+ */
#define MFP_FRAME_ENDS_STACK(f) MFP_FRAME_IS_SHIM(f)
#endif
/* MFP_FRAME_ENDS_STACK: whether a frame can be a thread's root-most. Every
 * stack is entered from C, which on 3.12+ pushes an entry frame of its own
 * under the first Python frame and on 3.11 marks that frame. A frame being
 * pushed says neither until it is linked to its caller, and its caller
 * link is then whatever the memory held: NULL where the stack never
 * reached before. On 3.11 a generator frame is marked too, every time it
 * is resumed, and loses its caller at each yield. */

/* Bytes of a code object that are copied: everything before the
 * bytecode, which holds the names, first line and line table. */
#define MFP_CODE_HEADER_SIZE offsetof(PyCodeObject, co_code_adaptive)
#endif /* MFP_LAYOUT_KNOWN */

#endif
