#!/usr/bin/env bash
# The extension built as for an interpreter whose frame layout it does not
# know (MFP_PORTABLE=1: public C API only, see native/python/layout.h), and
# the tests of that path run against it. Called by test.sh; runnable alone.
source "$(dirname "$0")/env.sh"
v="${1:-3.13}"
py="$(python_for "$v")"
venv="$ROOT/.venv/portable$v"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip setuptools pytest metaflow >&2

install_from_copy "$venv" MFP_PORTABLE=1
"$venv/bin/python" -c 'from metaflow_profiler import _native as n; assert not n.KNOWS_FRAME_LAYOUT' \
    || { echo "portable.sh: the build still knows the frame layout" >&2; exit 1; }

cd "$ROOT/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider integration/test_unknown_interpreter.py
