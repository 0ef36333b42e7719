#!/usr/bin/env bash
# The extension built with AddressSanitizer + UBSan (MFP_SANITIZE=1), and the
# unit tests (sampler stress, heap stress, API) run against it with libasan
# preloaded into a normal CPython. Called by test.sh; runnable alone, also in
# scripts/sid.sh's chroot for CPython 3.14 and 3.15 (bash scripts/sid.sh run
# bash scripts/asan.sh 3.15: Debian's interpreter, gcc and libasan there).
source "$(dirname "$0")/env.sh"
v="${1:-3.12}"
py="$(python_for "$v")"
[ -n "$py" ] || { echo "asan.sh: no Python $v found" >&2; exit 1; }
venv="$ROOT/.venv/${MFP_VENV_PREFIX:-}asan$v" # sid- inside scripts/sid.sh's chroot
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip setuptools pytest psutil \
    numpy metaflow pyinstrument joblib >&2

install_from_copy "$venv" MFP_SANITIZE=1
so="$(ls "$venv"/lib/python*/site-packages/metaflow_profiler/_native*.so)"
# grep without -q reads all of nm's output: quitting early would SIGPIPE nm
# and fail this pipeline under pipefail.
nm -D "$so" | grep __asan >/dev/null || { echo "asan.sh: $so is not a sanitizer build" >&2; exit 1; }

cd "$ROOT/tests"
LD_PRELOAD="$(cc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider unit
