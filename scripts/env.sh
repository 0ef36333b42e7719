# Shared by demo.sh and test.sh: find the interpreters and build one
# virtualenv per interpreter under .venv/ with this package installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# python_for 3.12 -> path of a CPython 3.12 interpreter, or nothing.
python_for() {
    local v="$1" p
    for p in "$HOME"/.pyenv/versions/"$v".*/bin/python"$v" "$(command -v "python$v" || true)"; do
        if [ -x "$p" ] && "$p" -c 'import sys' 2>/dev/null; then echo "$p"; return; fi
    done
}

# venv_for 3.12 [extras] -> prints the venv's python, with the package installed.
venv_for() {
    local v="$1" extras="${2:-}" py venv
    py="$(python_for "$v")"
    [ -n "$py" ] || { echo "no Python $v found (looked in ~/.pyenv/versions and PATH)" >&2; return 1; }
    venv="$ROOT/.venv/${MFP_VENV_PREFIX:-}py$v" # sid- inside scripts/sid.sh's chroot
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip setuptools >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$ROOT${extras:+[$extras]}" >&2
    echo "$venv/bin/python"
}

# install_from_copy VENV [VAR=value ...] -> builds this tree into VENV with
# the given build variables (MFP_SANITIZE=1, MFP_PORTABLE=1). From a copy:
# setuptools reuses object files in build/ whatever the flags.
install_from_copy() {
    local venv="$1" src
    shift
    src="$(mktemp -d)"
    tar -C "$ROOT" --exclude=./build --exclude=./.venv --exclude=./.demo --exclude=./native/build \
        --exclude=.git -cf - . | tar -C "$src" -xf -
    env "$@" "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall \
        --no-deps "$src" >&2 || { rm -rf "$src"; return 1; }
    rm -rf "$src"
}
