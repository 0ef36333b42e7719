#!/usr/bin/env bash
# The extension built as for an interpreter whose frame layout it does not
# know (MFP_PORTABLE=1: public C API only, see native/sampler/layout.h), and
# the tests of that path run against it. Called by test.sh; runnable alone.
source "$(dirname "$0")/env.sh"
v="${1:-3.13}"
py="$(python_for "$v")"
venv="$ROOT/.venv/portable$v"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip setuptools pytest metaflow >&2

# Build from a copy: setuptools reuses object files in build/ whatever the flags.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
tar -C "$ROOT" --exclude=./build --exclude=./.venv --exclude=./.demo --exclude=./native/build \
    --exclude=.git -cf - . | tar -C "$src" -xf -
MFP_PORTABLE=1 "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall \
    --no-deps "$src" >&2
"$venv/bin/python" -c 'from metaflow_profiler import _native as n; assert not n.KNOWS_FRAME_LAYOUT' \
    || { echo "portable.sh: the build still knows the frame layout" >&2; exit 1; }

cd "$ROOT/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider integration/test_unknown_interpreter.py
