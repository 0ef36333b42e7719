"""python -m metaflow_profiler: profile a script, or read a saved profile.

    python -m metaflow_profiler run [-i 0.001] [-o prof.mfprof] [--html card.html] script.py [args]
    python -m metaflow_profiler top prof.mfprof [-n 20]
    python -m metaflow_profiler html prof.mfprof -o card.html
    python -m metaflow_profiler export prof.mfprof -o out.json [--format speedscope|collapsed]
"""

from __future__ import annotations

import argparse
import runpy
import sys

from . import BACKENDS, Profile, Profiler


def _run(a: argparse.Namespace) -> int:
    sys.argv = [a.script, *a.args]
    code = 0
    with Profiler(backend=a.backend, interval=a.interval,
                  timeline_interval=a.timeline_interval) as p:
        try:
            runpy.run_path(a.script, run_name="__main__")
        except SystemExit as exc:  # the script's own exit status, after its profile
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    prof = p.profile
    if a.output:
        prof.save(a.output)
    if a.html:
        prof.to_html(a.html, title=a.script)
    _print_top(prof, a.top)
    return code


def _print_top(prof: Profile, n: int) -> None:
    s = prof.stats()
    print(f"\n{s['samples']} samples over {s['duration_s']:.3f} s ({s['backend']})", file=sys.stderr)
    print(f"{'total s':>9} {'self s':>9}  function", file=sys.stderr)
    for r in prof.functions()[:n]:
        print(f"{r.total_s:9.3f} {r.self_s:9.3f}  {r.name} ({r.filename}:{r.line})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m metaflow_profiler", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="profile a Python script")
    r.add_argument("-b", "--backend", default="sample", choices=BACKENDS)
    r.add_argument("-i", "--interval", type=float, default=0.001)
    r.add_argument("-t", "--timeline-interval", type=float, default=0.5)
    r.add_argument("-o", "--output", help="save the profile (.mfprof)")
    r.add_argument("--html", help="write the card")
    r.add_argument("-n", "--top", type=int, default=15)
    r.add_argument("script")
    r.add_argument("args", nargs=argparse.REMAINDER)
    t = sub.add_parser("top", help="the hottest functions of a saved profile")
    t.add_argument("profile")
    t.add_argument("-n", "--top", type=int, default=20)
    h = sub.add_parser("html", help="the card of a saved profile")
    h.add_argument("profile")
    h.add_argument("-o", "--output", required=True)
    e = sub.add_parser("export", help="a saved profile for other tools")
    e.add_argument("profile")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--format", default="speedscope", choices=["speedscope", "collapsed"])
    a = ap.parse_args(argv)
    try:
        if a.cmd == "run":
            return _run(a)
        prof = Profile.load(a.profile)
    except (OSError, ValueError) as exc:
        print(f"metaflow_profiler: {exc}", file=sys.stderr)
        return 2
    if a.cmd == "top":
        _print_top(prof, a.top)
    elif a.cmd == "html":
        prof.to_html(a.output)
    else:
        prof.export(a.output, format=a.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
