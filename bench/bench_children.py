"""The cost of following child processes (issue 14), side by side with
py-spy --subprocesses.

    python bench/bench_children.py [--repeat 3] [--only python]
    python bench/bench_children.py --snapshot 1000

--fork-hooks: what our fork hooks cost a profiled single-threaded program
whose fork's multi-threaded warning would be seen (3.12+: a fork from
__main__ under the default filters): the before- and after-fork hooks
called directly, then os.fork() of a child that exits at once, timed in
the parent; medians of 200 each. Run it with --before's two interpreters
in turn.

--snapshot N: what a live-card update costs the parent with N children that
ended (each forked, 2 ms of CPU): the time of Profiler.snapshot() (which
merges the children's profiles) and the calling thread's CPU time (an
upper bound on the time it held the GIL: the merge itself runs without),
best of 5, beside the parent's own snapshot alone.

Workloads, each run in a fresh interpreter per measurement:
  pool      multiprocessing.Pool(2) ("fork"), 24 tasks of 50 ms of CPU:
            wall time of the map, the pool's start and shutdown included
  fork      100 sequential os.fork() children, each 2 ms of CPU, waited for:
            wall time per child
  forkt     the same while a Python thread of the program's waits (a
            Metaflow step's live card is one): the fork warns anyway, and
            our threads are not paused around it
  mpfork    100 sequential multiprocessing Process ("fork") children,
            each 2 ms of CPU: the fork is multiprocessing's, whose warning
            the default filters ignore, so our threads are not paused
  python    30 sequential subprocess.run([sys.executable, "-c", "pass"]):
            wall time per child (interpreter start-up included)
  fork0, forkt0, mpfork0, python0   the same with no child: the fixed costs, for the
            CPU column
Profilers: none; ours, subprocesses=False (the parent's own profiler
only: what following the children adds is the difference to "ours"); ours
(Profiler(), subprocesses on: the time of the work, then the parent's stop
with the merge of the children's profiles shown apart); with --before
PYTHON also "ours (before)", the same with another venv's interpreter (an
earlier build), in the same rounds; py-spy record
--subprocesses --rate 1000 (the clock starts after it attached). Prints a
Markdown table: median of --repeat runs. The CPU column is for a loaded
machine, where wall times say little: the CPU time of the whole run (every
process of it, py-spy's own included, from RUSAGE_CHILDREN); for fork and
python per child (minus the same run without any children) and, in
brackets, beside the unprofiled runs'.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time


def hot(seconds: float) -> float:
    t = time.process_time()
    x = 0
    while time.process_time() - t < seconds:
        x += 1
    return time.process_time() - t


def pool() -> int:
    import multiprocessing as mp

    with mp.get_context("fork").Pool(2) as p:
        p.map(hot, [0.05] * 24)
    return 1


def fork(n: int = 100) -> int:
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            hot(0.002)
            os._exit(0)
        os.waitpid(pid, 0)
    return n


def fork_beside_a_thread(n: int = 100) -> int:
    """fork, while the program has a Python thread of its own that waits (as
    a Metaflow step has its live card's): the fork warns whatever we do, so
    our threads are not paused around it."""
    import threading

    done = threading.Event()
    t = threading.Thread(target=done.wait)
    t.start()
    try:
        return fork(n)
    finally:
        done.set()
        t.join()


def forkt0() -> int:
    fork_beside_a_thread(0)
    return 1


def mpfork(n: int = 100) -> int:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for _ in range(n):
        p = ctx.Process(target=hot, args=(0.002,))
        p.start()
        p.join()
    return n


def mpfork0() -> int:
    mpfork(0)
    return 1


def python(n: int = 30) -> int:
    for _ in range(n):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    return n


def python0() -> int:
    python(0)
    return 1


def fork0() -> int:
    fork(0)
    return 1


WORKLOADS = {"pool": pool, "fork": fork, "forkt": fork_beside_a_thread, "mpfork": mpfork,
             "python": python, "python0": python0, "fork0": fork0, "forkt0": forkt0,
             "mpfork0": mpfork0}
# the same run without children
BASELINES = {"python": "python0", "fork": "fork0", "forkt": "forkt0", "mpfork": "mpfork0"}


def child(workload: str, profiler: str) -> None:
    fn = WORKLOADS[workload]
    p = None
    if profiler in ("ours", "ours, subprocesses=False"):
        from metaflow_profiler import Profiler

        p = Profiler(subprocesses=profiler == "ours")
        p.start()
    elif profiler == "py-spy":
        time.sleep(0.5)  # let py-spy attach before the clock starts
    t0 = time.perf_counter()
    n = fn()
    elapsed = time.perf_counter() - t0
    stop_s = 0.0
    procs = 0
    if p is not None:
        t1 = time.perf_counter()
        prof = p.stop()
        stop_s = time.perf_counter() - t1
        procs = len(prof.processes())
    print(json.dumps({"elapsed": elapsed, "n": n, "stop_s": stop_s, "processes": procs}))


def fork_hooks_cost(n: int = 200) -> None:
    from metaflow_profiler import Profiler, children

    def hooks() -> tuple[float, float]:
        t0 = time.perf_counter()
        children._before_fork()
        t1 = time.perf_counter()
        children._after_fork_parent()
        return t1 - t0, time.perf_counter() - t1

    def fork() -> float:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        t1 = time.perf_counter()
        os.waitpid(pid, 0)
        return t1 - t0

    with Profiler():
        time.sleep(0.05)  # its threads are running
        h = [hooks() for _ in range(n)]
        f = [fork() for _ in range(n)]
    us = lambda xs: f"{statistics.median(xs) * 1e6:.0f} µs"  # noqa: E731
    print(f"Python {platform.python_version()}: before-fork hook {us([b for b, _ in h])}, "
          f"after-fork hook {us([a for _, a in h])}, os.fork() in the parent {us(f)}")


def snapshot_cost(n: int) -> None:
    from metaflow_profiler import Profiler

    def best(take) -> tuple[float, float]:
        runs = []
        for _ in range(5):
            w0, c0 = time.perf_counter(), time.thread_time()
            take()
            runs.append((time.perf_counter() - w0, time.thread_time() - c0))
        return min(runs)

    p = Profiler()
    p.start()
    alone = best(lambda: p._runner.snapshot(p._meta(None)))
    fork(n)
    merged = best(p.snapshot)
    size = len(p.snapshot())
    p.stop()
    print(f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}: "
          f"snapshot alone {alone[0] * 1000:.1f} ms (thread CPU {alone[1] * 1000:.1f} ms); "
          f"with {n} ended children {merged[0] * 1000:.1f} ms (thread CPU "
          f"{merged[1] * 1000:.1f} ms), {size / 1e6:.2f} MB, best of 5")


def measure(workload: str, profiler: str, before: str | None) -> dict:
    py = before if profiler == "ours (before)" else sys.executable
    cmd = [py, __file__, "--child", workload, "ours" if profiler == "ours (before)" else profiler]
    if profiler == "py-spy":
        cmd = ["py-spy", "record", "--subprocesses", "--rate", "1000", "--nonblocking",
               "--output", os.devnull, "--format", "raw", "--", *cmd]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
    res["cpu"] = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="+", choices=[w for w in WORKLOADS if w not in BASELINES.values()],
                    help="these workloads only (each brings its baseline along)")
    ap.add_argument("--snapshot", type=int, metavar="N")
    ap.add_argument("--fork-hooks", action="store_true")
    ap.add_argument("--before", metavar="PYTHON",
                    help="also 'ours (before)': the same runs with another venv's interpreter "
                         "(an earlier build of the package), in the same rounds")
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    if a.snapshot:
        snapshot_cost(a.snapshot)
        return
    if a.fork_hooks:
        fork_hooks_cost()
        return
    profs = ["none", "ours, subprocesses=False"] + (["ours (before)"] if a.before else []) + \
        ["ours"] + (["py-spy"] if shutil.which("py-spy") else [])
    chosen = [w for w in WORKLOADS if not a.only or w in a.only or
              any(BASELINES.get(o) == w for o in a.only)]
    res: dict[tuple[str, str], list[dict]] = {}
    for _ in range(a.repeat):
        for w in chosen:
            for p in profs:
                res.setdefault((w, p), []).append(measure(w, p, a.before))
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end, median of {a.repeat}\n")

    def med(w: str, p: str, key: str) -> float:
        return statistics.median(r[key] for r in res[(w, p)])

    print("| workload | profiler | wall | per child | × none | CPU per child | CPU × none |"
          " parent's stop (merge) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for w in [w for w in chosen if w not in BASELINES.values()]:
        base = med(w, "none", "elapsed")
        n = res[(w, "none")][0]["n"]
        zero = BASELINES.get(w)

        def cpu(p: str, w: str = w, n: int = n, zero: str | None = zero) -> float:
            c = med(w, p, "cpu")  # per child where there is a run without any
            return (c - med(zero, p, "cpu")) / n if zero else c

        for p in profs:
            e = med(w, p, "elapsed")
            per = f"{e / n * 1000:.2f} ms (+{(e - base) / n * 1000:.2f})" if n > 1 else "—"
            c, c0 = cpu(p), cpu("none")
            cper = f"{c * 1000:.2f} ms ({(c - c0) * 1000:+.2f})" if zero else f"{c:.3f} s"
            stop = f"{med(w, p, 'stop_s') * 1000:.0f} ms" if p.startswith("ours") else "—"
            print(f"| {w} | {p} | {e:.3f} s | {per} | {e / base:.3f} | {cper} | {c / c0:.3f} |"
                  f" {stop} |")


if __name__ == "__main__":
    main()
