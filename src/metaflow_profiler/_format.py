"""The flag and kind values of docs/FORMAT.md, once for Python.

native/profile/profile.h defines them for C and viewer/constants.js for the
card; tests/browser/test_card_html.py checks that the three agree.
"""

from __future__ import annotations

# SAMPLES / TOTALS `flags`
SAMPLE_ON_CPU = 1
# THREADS `flags`
THREAD_MAIN = 1
# FUNCS `kind`
FUNC_PYTHON = 0
FUNC_NATIVE = 1
FUNC_THREAD = 2
FUNC_SYNTHETIC = 3
# PROCESSES `flags`
PROCESS_ROOT = 1  # the profiled process itself
PROCESS_PARTIAL = 2  # its profile ended early (crashed, killed, still running)
