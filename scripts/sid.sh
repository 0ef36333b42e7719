#!/usr/bin/env bash
# CPython 3.14 and 3.15 (with the -dev internal headers) for the tests, from
# a Debian sid chroot: pyenv here has neither. Built once per machine at
# $MFP_SID (default /var/cache/mfp/sid, about 1 minute) and reused after;
# needs root (debootstrap, chroot, mount). This tree is bind-mounted at the
# same path inside, so venvs and paths read the same in and out.
#   bash scripts/sid.sh ensure          build the chroot if missing, mount /proc
#   bash scripts/sid.sh run CMD ARG...  run CMD inside, in this tree
# Sourced (by test.sh): sid_ensure, sid_run, sid_release.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
SID="${MFP_SID:-/var/cache/mfp/sid}"
SID_PACKAGES=python3.14,python3.14-dev,python3.14-venv,python3.15,python3.15-dev,python3.15-venv,gcc,libc6-dev,make

sid_ensure() {
    if [ ! -x "$SID/usr/bin/python3.15" ] || [ ! -x "$SID/usr/bin/python3.14" ]; then
        command -v debootstrap >/dev/null || {
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        }
        # Built aside and renamed: a run that dies half way leaves no
        # half chroot at $SID for the next one to trust.
        local new="$SID.new.$$"
        mkdir -p "$(dirname "$SID")"
        debootstrap --variant=minbase --include="$SID_PACKAGES" sid "$new" http://deb.debian.org/debian >&2 \
            || { rm -rf "$new"; echo "sid.sh: debootstrap failed" >&2; return 1; }
        rm -rf "$SID"
        mv "$new" "$SID"
    fi
    local f
    for f in /etc/resolv.conf /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do
        [ -f "$f" ] || continue
        mkdir -p "$SID$(dirname "$f")"
        cp -L "$f" "$SID$f"
    done
    mountpoint -q "$SID/proc" || mount -t proc proc "$SID/proc"
    # A bind mount left by an earlier run whose tree was deleted and cloned
    # again at the same path still names the old, empty directory (CI clones
    # to one path each time): keep a mount only if it is this tree.
    mkdir -p "$SID$ROOT"
    while mountpoint -q "$SID$ROOT" && [ "$(stat -c %d:%i "$SID$ROOT")" != "$(stat -c %d:%i "$ROOT")" ]; do
        umount -l "$SID$ROOT"
    done
    mountpoint -q "$SID$ROOT" || mount --bind "$ROOT" "$SID$ROOT"
}

# sid_release: drop this tree's bind mount (it would keep a deleted tree's
# files on disk); the next sid_ensure mounts it again.
sid_release() {
    ! mountpoint -q "$SID$ROOT" || umount -l "$SID$ROOT"
}

# sid_run CMD ARG... -> CMD in the chroot, from this tree, with a clean
# environment (venvs made inside are named .venv/sid-py3.X).
sid_run() {
    chroot "$SID" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin MFP_VENV_PREFIX=sid- \
        /bin/bash -c 'cd "$1" && shift && exec "$@"' sid "$ROOT" "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "${1:-}" in
        ensure) sid_ensure ;;
        run) shift; sid_ensure && sid_run "$@" ;;
        *) echo "usage: $0 ensure | run CMD [ARG...]" >&2; exit 2 ;;
    esac
fi
