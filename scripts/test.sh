#!/usr/bin/env bash
# The whole test suite: C unit tests (plain and ASan/UBSan; native/python/
# against each interpreter's headers), the unit tests against a sanitizer
# build (on all five interpreters), the fallback build for unknown interpreters,
# then pytest on CPython 3.11, 3.12 and 3.13, and on 3.14 and 3.15 in a
# Debian sid chroot (scripts/sid.sh, built once per machine at
# /var/cache/mfp/sid); ruff and the browser tests run once, on 3.11, the
# latter in Debian's headless chromium. Installs what it
# needs (apt-get, pip).
source "$(dirname "$0")/env.sh"
cd "$ROOT"

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v make >/dev/null || need+=(make)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Every stage runs even when one before it failed, so one run shows them all.
status=0
make -s -C native test || status=1
make -s -C native test-asan || status=1
for v in 3.11 3.12 3.13; do make -s -C native test-python PYTHON="$(python_for "$v")" || status=1; done
for v in 3.11 3.12 3.13; do bash scripts/asan.sh "$v" || status=1; done
bash scripts/portable.sh 3.13 || status=1

# PyTorch, for the DataLoader test: only from the CPU wheel this machine kind
# keeps on disk for CPython 3.11 (never a download of torch, which would be a
# CUDA build of several GB); its few pure-Python dependencies from PyPI.
TORCH_WHEEL=/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl

for v in 3.11 3.12 3.13; do
    echo "== CPython $v"
    PY="$(venv_for "$v" test,browser)"
    if [ "$v" = 3.11 ] && [ -f "$TORCH_WHEEL" ] && ! "$PY" -m pip show -q torch >/dev/null 2>&1; then
        "$PY" -m pip install -q --disable-pip-version-check "$TORCH_WHEEL" || status=1
    fi
    # Run from tests/ so the installed package, not ./src, is imported.
    (cd tests && "$PY" -m pytest -q -p no:cacheprovider -m "not browser and not packaging" .) || status=1
    if [ "$v" = 3.11 ]; then
        # Once: sdist -> wheel -> fresh venv -> demo (a compile and an install, ~2 min).
        (cd tests && "$PY" -m pytest -q -p no:cacheprovider -m packaging .) || status=1
        "$PY" -m pip install -q --disable-pip-version-check ruff
        "$PY" -m ruff check . || status=1
        # Apart: Playwright keeps an event loop running in the main thread.
        (cd tests && "$PY" -m pytest -q -p no:cacheprovider -m browser browser) || status=1
    fi
done
# CPython 3.14 and 3.15: Debian sid's, in a chroot built once per machine
# (scripts/sid.sh); C tests of native/python/ against their headers, the
# unit tests against a sanitizer build (Debian's gcc and libasan there),
# then the same pytest run but the browser tests (no Playwright in the chroot).
source scripts/sid.sh
if sid_ensure; then
    for v in 3.14 3.15; do
        echo "== CPython $v (sid chroot)"
        sid_run make -s -C native test-python PYTHON="python$v" || status=1
        sid_run bash scripts/asan.sh "$v" || status=1
        sid_run bash -c 'source scripts/env.sh && PY="$(venv_for "$1" test)" && cd tests &&
            "$PY" -m pytest -q -p no:cacheprovider -m "not browser and not packaging" unit integration structural' sid "$v" || status=1
    done
    sid_release
else
    echo "test.sh: no sid chroot for CPython 3.14 and 3.15" >&2
    status=1
fi
exit $status
