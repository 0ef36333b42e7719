// constants.js — the flag and kind values of docs/FORMAT.md, once.
//
// native/profile/profile.h defines them for C, src/metaflow_profiler/
// _format.py for Python; tests/browser/test_card_html.py checks all three
// agree. Nothing else in the viewer writes these numbers.

// SAMPLES / TOTALS `flags`
var SAMPLE_ON_CPU = 1;
// THREADS `flags`
var THREAD_MAIN = 1;
// FUNCS `kind`
var FUNC_PYTHON = 0;
var FUNC_NATIVE = 1;
var FUNC_THREAD = 2;
var FUNC_SYNTHETIC = 3;
// PROCESSES `flags`: the profiled process itself; its profile ended early
var PROCESS_ROOT = 1;
var PROCESS_PARTIAL = 2;

export { SAMPLE_ON_CPU, THREAD_MAIN, FUNC_PYTHON, FUNC_NATIVE, FUNC_THREAD, FUNC_SYNTHETIC, PROCESS_ROOT, PROCESS_PARTIAL };
