"""python -m metaflow_profiler: profile a script, or read a saved profile.

    python -m metaflow_profiler run [-i 0.001] [-o prof.mfprof] [--html card.html] script.py [args]
    python -m metaflow_profiler top prof.mfprof [-n 20]
    python -m metaflow_profiler html prof.mfprof -o card.html
    python -m metaflow_profiler export prof.mfprof -o out.json [--format speedscope|collapsed]
    python -m metaflow_profiler diff base.mfprof new.mfprof [--html card.html] [-n 15]
    python -m metaflow_profiler merge Flow/run/step [more profiles ...] [-o out.mfprof] [--html card.html]

diff and merge also take Metaflow pathspecs (Flow/run/step/task, or Flow/run/step
for every task of a step) and read the @profile_card artifact.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from typing import TextIO

from . import BACKENDS, Profile, Profiler

ARTIFACT = "profile_card_data"


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


def _print_top(prof: Profile, n: int, file: TextIO = sys.stderr) -> None:
    s = prof.stats()
    count = "calls" if "calls" in s else "samples"
    print(f"\n{s[count]} {count} over {s['duration_s']:.3f} s ({s['backend']})", file=file)
    print(f"{'total s':>9} {'self s':>9}  function", file=file)
    for r in prof.functions()[:n]:
        print(f"{r.total_s:9.3f} {r.self_s:9.3f}  {r.name} ({r.filename}:{r.line})", file=file)


def _inputs(args: list[str], artifact: str) -> list[tuple[str, Profile]]:
    """(label, profile) of files and pathspecs; Metaflow is imported for pathspecs only."""
    import os

    out = []
    for arg in args:
        if os.path.exists(arg) or "/" not in arg or arg.endswith(".mfprof"):
            out.append((os.path.basename(arg), Profile.load(arg)))
            continue
        from .pathspec import is_pathspec, load

        if not is_pathspec(arg):
            raise ValueError(f"{arg}: no such file, and not a pathspec (Flow/run/step[/task])")
        out.extend(load(arg, artifact))
    return out


def _one(arg: str, artifact: str) -> tuple[str, Profile]:
    found = _inputs([arg], artifact)
    if len(found) != 1:
        raise ValueError(f"{arg} names {len(found)} tasks; name one (Flow/run/step/task)")
    return found[0]


def _pct(before: float, after: float) -> str:
    return f"{(after - before) / before * 100:+.0f} %" if before > 0 else "new"


def _diff(a: argparse.Namespace) -> int:
    (bl, base), (_, new) = _one(a.base, a.artifact), _one(a.new, a.artifact)
    b_s, n_s = base.stats()["duration_s"], new.stats()["duration_s"]
    print(f"{bl}: {b_s:.3f} s -> {n_s:.3f} s ({_pct(b_s, n_s)})")
    print(f"{'before s':>9} {'after s':>9} {'delta s':>9} {'before':>7} {'after':>7}  function")
    for r in new.diff(base, on_cpu=a.on_cpu)[:a.top]:
        print(f"{r.before_s:9.3f} {r.after_s:9.3f} {r.delta_s:+9.3f} {r.before_share:7.1%} "
              f"{r.after_share:7.1%}  {r.name} ({r.filename})")
    if a.html:
        new.with_baseline(base, {"baseline": bl}).to_html(a.html, title=f"{a.new} vs {a.base}")
    return 0


def _merge(a: argparse.Namespace) -> int:
    found = _inputs(a.inputs, a.artifact)
    merged = Profile.merge([p for _, p in found], [label for label, _ in found])
    rows = merged.meta["merged"]
    print(f"{'task':>12} {'duration s':>10} {'peak RSS MB':>11}  top function")
    for r in sorted(rows, key=lambda r: -r["duration_ns"]):
        rss = f"{r['peak_rss_bytes'] / 2**20:11.1f}" if "peak_rss_bytes" in r else f"{'-':>11}"
        top = r.get("top", {}).get("name", "-")
        print(f"{r['label']:>12} {r['duration_ns'] / 1e9:10.3f} {rss}  {top}")
    slowest = max(rows, key=lambda r: r["duration_ns"])
    print(f"slowest: {slowest['label']} ({slowest['duration_ns'] / 1e9:.3f} s)")
    with_rss = [r for r in rows if "peak_rss_bytes" in r]
    if with_rss:
        largest = max(with_rss, key=lambda r: r["peak_rss_bytes"])
        print(f"largest: {largest['label']} ({largest['peak_rss_bytes'] / 2**20:.1f} MB peak RSS)")
    if a.output:
        merged.save(a.output)
    if a.html:
        merged.to_html(a.html, title=" ".join(a.inputs))
    _print_top(merged, a.top, file=sys.stdout)
    return 0


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
    d = sub.add_parser("diff", help="how a profile's time changed from a baseline")
    d.add_argument("base", help="baseline: .mfprof file or Flow/run/step/task")
    d.add_argument("new", help="profile to compare: .mfprof file or Flow/run/step/task")
    d.add_argument("--html", help="write the card of NEW compared with BASE")
    d.add_argument("-n", "--top", type=int, default=15)
    d.add_argument("--on-cpu", action="store_true", help="compare on-CPU time only")
    d.add_argument("--artifact", default=ARTIFACT, help="artifact name for pathspecs")
    m = sub.add_parser("merge", help="one profile of several (e.g. the tasks of a foreach)")
    m.add_argument("inputs", nargs="+", help=".mfprof files, Flow/run/step or Flow/run/step/task")
    m.add_argument("-o", "--output", help="save the merged profile (.mfprof)")
    m.add_argument("--html", help="write the merged card")
    m.add_argument("-n", "--top", type=int, default=15)
    m.add_argument("--artifact", default=ARTIFACT, help="artifact name for pathspecs")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "run":
            return _run(a)
        if a.cmd == "diff":
            return _diff(a)
        if a.cmd == "merge":
            return _merge(a)
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
