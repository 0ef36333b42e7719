"""python -m metaflow_profiler: profile a script, or read a saved profile.

    python -m metaflow_profiler run [-i 0.001] [-o prof.mfprof] [--html card.html] script.py [args]
    python -m metaflow_profiler top prof.mfprof [-n 20] [--lines] [--on-cpu]
    python -m metaflow_profiler html prof.mfprof -o card.html
    python -m metaflow_profiler export prof.mfprof -o out.json [--format speedscope|collapsed]
    python -m metaflow_profiler diff base.mfprof new.mfprof [--html card.html] [-n 15]
    python -m metaflow_profiler merge Flow/run/step [more profiles ...] [-o out.mfprof] [--html card.html]

diff and merge also take Metaflow pathspecs (Flow/run/step/task, or Flow/run/step
for every task of a step) and read the @profile_card artifact.

`run` behaves like `python script.py`: the script's own exception prints its
traceback and exits 1, sys.exit(...) exits as Python would; the profile up to
that point is written either way. Our own failures (a file we cannot read or
write) are one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
from types import TracebackType
from typing import TextIO

from . import BACKENDS, Profile, Profiler
from .options import ENGINE, OptionError, Options

ARTIFACT = "profile_card_data"


class _Usage(Exception):
    """A problem with what we were asked to do: one line, exit 2."""


def _writable(path: str | None, what: str) -> None:
    """Fail before a long run rather than after it."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise _Usage(f"cannot write {what} to {path!r}: "
                     f"{'it is a directory' if os.path.isdir(path) else 'no writable folder'}")


def _user_tb(tb: TracebackType | None, script: str) -> TracebackType | None:
    """The traceback from the script's first frame on, as `python script.py` shows it."""
    t = tb
    while t is not None and t.tb_frame.f_code.co_filename != script:
        t = t.tb_next
    return t or tb


def _exit_code(exc: SystemExit) -> int:
    """What Python does with SystemExit: None is 0, an int is itself,
    anything else is printed and exits 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run(a: argparse.Namespace) -> int:
    _writable(a.output, "the profile")
    _writable(a.html, "the card")
    if not os.path.isfile(a.script):
        raise _Usage(f"cannot run {a.script!r}: no such file")
    sys.argv = [a.script, *a.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(a.script)))
    code = 0
    # Readers start the script's stacks at its own <module>, not at ours and runpy's.
    entry = {"name": "<module>", "file": a.script}
    p = Profiler(options=a.options)
    p.start()
    try:
        runpy.run_path(a.script, run_name="__main__")
    except SystemExit as exc:
        prof = p.stop({"entry": entry})
        code = _exit_code(exc)
    except BaseException as exc:  # the script's own: Python's traceback, Python's exit status
        prof = p.stop({"entry": entry, "step_failed": True,
                       "step_error": {"type": type(exc).__name__, "message": str(exc)}})
        tb = _user_tb(exc.__traceback__, a.script)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
    else:
        prof = p.stop({"entry": entry})
    sys.stdout.flush()
    _write(prof, a.output, a.html, a.script)
    _print_top(prof, a.top, lines=False, on_cpu=False)
    return code


def _write(prof: Profile, output: str | None, html: str | None, title: str) -> None:
    try:
        if output:
            prof.save(output)
        if html:
            prof.to_html(html, title=title)
    except OSError as exc:
        raise _Usage(f"cannot write {exc.filename or output}: {exc.strerror or exc}") from None


def _print_top(prof: Profile, n: int, lines: bool = False, on_cpu: bool = False,
               file: TextIO = sys.stderr) -> None:
    s = prof.stats()
    count = "calls" if "calls" in s else "samples"
    print(f"\n{s[count]} {count} over {s['duration_s']:.3f} s ({s['backend']})"
          f"{', on CPU only' if on_cpu else ''}", file=file)
    print(f"{'total s':>9} {'self s':>9}  {'line' if lines else 'function'}", file=file)
    rows = prof.lines(on_cpu=on_cpu) if lines else prof.functions(on_cpu=on_cpu)
    if lines:  # the hot lines are the ones doing the work themselves
        rows = sorted(rows, key=lambda r: (-r.self_s, -r.total_s, r.name, r.line))
    for r in rows[:n]:
        where = f"{r.filename}:{r.line}" if r.filename else "native"
        print(f"{r.total_s:9.3f} {r.self_s:9.3f}  {r.name} ({where})", file=file)


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
    print(f"{a.base} -> {a.new}: {b_s:.3f} s -> {n_s:.3f} s ({_pct(b_s, n_s)})")
    # times are inclusive; "self" is the change of the function's own time
    print(f"{'before s':>9} {'after s':>9} {'delta s':>9} {'self':>9} {'before':>7} {'after':>7}"
          "  function")
    for r in new.diff(base, on_cpu=a.on_cpu, by=a.by)[:a.top]:
        print(f"{r.before_s:9.3f} {r.after_s:9.3f} {r.delta_s:+9.3f} "
              f"{r.after_self_s - r.before_self_s:+9.3f} {r.before_share:7.1%} "
              f"{r.after_share:7.1%}  {r.name} ({r.filename})")
    if a.html:
        from .pathspec import is_pathspec

        info = ({"baseline": a.base.split("/")[1], "pathspec": a.base, "how": "chosen"}
                if is_pathspec(a.base) else {"baseline": bl})
        new.with_baseline(base, info).to_html(a.html, title=f"{a.new} vs {a.base}")
    return 0


def _merge(a: argparse.Namespace) -> int:
    found = _inputs(a.inputs, a.artifact)
    merged = Profile.merge([p for _, p in found], [label for label, _ in found])
    rows = merged.meta["merged"]
    print(f"{'task':>12} {'duration s':>10} {'peak RSS MB':>11}  top function")
    for r in sorted(rows, key=lambda r: -r["duration_ns"]):
        rss = f"{r['peak_rss_bytes'] / 1e6:11.1f}" if "peak_rss_bytes" in r else f"{'-':>11}"
        top = r.get("top", {}).get("name", "-")
        print(f"{r['label']:>12} {r['duration_ns'] / 1e9:10.3f} {rss}  {top}")
    slowest = max(rows, key=lambda r: r["duration_ns"])
    print(f"slowest: {slowest['label']} ({slowest['duration_ns'] / 1e9:.3f} s)")
    with_rss = [r for r in rows if "peak_rss_bytes" in r]
    if with_rss:
        largest = max(with_rss, key=lambda r: r["peak_rss_bytes"])
        print(f"largest: {largest['label']} ({largest['peak_rss_bytes'] / 1e6:.1f} MB peak RSS)")
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
    r.add_argument("-i", "--interval", default=ENGINE["sample_interval"].default,
                   help="seconds between samples")
    r.add_argument("-t", "--timeline-interval", default=ENGINE["timeline_interval"].default,
                   help="seconds between resource-timeline points, 0 = off")
    r.add_argument("--no-subprocesses", dest="subprocesses", action="store_false",
                   help="do not profile the script's Python child processes")
    r.add_argument("-o", "--output", help="save the profile (.mfprof)")
    r.add_argument("--html", help="write the card")
    r.add_argument("-n", "--top", type=int, default=15)
    r.add_argument("script")
    r.add_argument("args", nargs=argparse.REMAINDER)
    t = sub.add_parser("top", help="the hottest functions of a saved profile")
    t.add_argument("profile")
    t.add_argument("-n", "--top", type=int, default=20)
    t.add_argument("--lines", action="store_true", help="by source line, by self time")
    t.add_argument("--on-cpu", action="store_true", help="only time the threads spent on a CPU")
    t.add_argument("--no-fold-imports", action="store_true",
                   help="show import machinery frame by frame, not as one 'import <module>'")
    h = sub.add_parser("html", help="the card of a saved profile")
    h.add_argument("profile")
    h.add_argument("-o", "--output", required=True)
    e = sub.add_parser("export", help="a saved profile for other tools")
    e.add_argument("profile")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--format", default="speedscope", choices=["speedscope", "collapsed"])
    e.add_argument("--no-fold-imports", action="store_true",
                   help="keep import machinery frame by frame")
    d = sub.add_parser("diff", help="how a profile's time changed from a baseline")
    d.add_argument("base", help="baseline: .mfprof file or Flow/run/step/task")
    d.add_argument("new", help="profile to compare: .mfprof file or Flow/run/step/task")
    d.add_argument("--html", help="write the card of NEW compared with BASE")
    d.add_argument("-n", "--top", type=int, default=15)
    d.add_argument("--on-cpu", action="store_true", help="compare on-CPU time only")
    d.add_argument("--by", default="self", choices=["self", "total"],
                   help="order by the change of self time (default: where time was added) "
                        "or of inclusive time")
    d.add_argument("--artifact", default=ARTIFACT, help="artifact name for pathspecs")
    m = sub.add_parser("merge", help="one profile of several (e.g. the tasks of a foreach)")
    m.add_argument("inputs", nargs="+", help=".mfprof files, Flow/run/step or Flow/run/step/task")
    m.add_argument("-o", "--output", help="save the merged profile (.mfprof)")
    m.add_argument("--html", help="write the merged card")
    m.add_argument("-n", "--top", type=int, default=15)
    m.add_argument("--artifact", default=ARTIFACT, help="artifact name for pathspecs")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        try:
            a.options = Options.check({"sample_interval": "--interval",
                                       "timeline_interval": "--timeline-interval"},
                                      profiler=a.backend, sample_interval=a.interval,
                                      timeline_interval=a.timeline_interval,
                                      subprocesses=a.subprocesses)
        except OptionError as exc:
            print(f"metaflow_profiler: {exc}", file=sys.stderr)
            return 2
    try:
        if a.cmd == "run":
            return _run(a)
        if a.cmd == "diff":
            return _diff(a)
        if a.cmd == "merge":
            return _merge(a)
        if a.cmd != "top":
            _writable(a.output, "the output")
        prof = Profile.load(a.profile)
        prof.fold_imports = not getattr(a, "no_fold_imports", False)
        if a.cmd == "top":
            _print_top(prof, a.top, lines=a.lines, on_cpu=a.on_cpu)
        elif a.cmd == "html":
            _write(prof, None, a.output, prof.meta.get("title", ""))
        else:
            try:
                prof.export(a.output, format=a.format)
            except OSError as exc:
                raise _Usage(f"cannot write {a.output!r}: {exc.strerror or exc}") from None
    except _Usage as exc:
        print(f"metaflow_profiler: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        detail = f"{exc.strerror}: {exc.filename!r}" if isinstance(exc, OSError) and exc.strerror \
            else str(exc)
        print(f"metaflow_profiler: {detail}", file=sys.stderr)
        return 2
    except Exception:  # ours, not the user's: say so in one block, not a bare crash
        print("metaflow_profiler: internal error, please report:\n" + traceback.format_exc(),
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
