"""Overhead and accuracy of the native sampler, side by side with cProfile,
pyinstrument and py-spy, on the same workloads, in one run.

    python bench/bench_overhead.py [--repeat 5] [--only overhead|cost|accuracy]
        [--tools none,ours,ours+memory] [--alt LABEL=PYTHON ...]

--alt runs "ours+memory" under another interpreter (a venv with another
build of the package) as one more column, in the same interleaved runs: a
change and what it replaces, side by side. The `numpy` workload (bench/
memory_workloads.py) runs where numpy is installed.

Overhead = wall time of the workload with a profiler ÷ without, each run in a
fresh process, runs interleaved (none, ours, cProfile, ... none, ours, ...),
median of --repeat. "ours" is the CPU sampler with the resource timeline;
"ours+memory" adds the heap profiler (the default of @profile_card).
Prints Markdown tables for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- workloads (each ~0.5-1 s unprofiled) ----

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def w_recursion():
    return fib(32)


def w_mixed():
    import json as j
    import re

    rx = re.compile(r"(\w+)@(\w+)\.com")
    out = 0
    for i in range(40000):
        doc = {"id": i, "mail": f"user{i}@host{i % 7}.com", "tags": [str(k) for k in range(20)]}
        s = j.dumps(doc)
        out += len(rx.findall(s)) + len(sorted(j.loads(s)["tags"], reverse=True))
    return out


def w_loop():
    n = 0
    for i in range(12_000_000):
        n += i & 7
    return n


def w_alloc():
    keep = []
    for i in range(1_200_000):
        keep.append({"i": i, "s": str(i), "l": [i, i + 1]})
        if len(keep) > 10000:
            keep.clear()
    return len(keep)


def w_threads():
    import threading

    def work():
        w_mixed_small()

    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def w_mixed_small():
    import json as j

    out = 0
    for i in range(8000):
        s = j.dumps({"i": i, "v": list(range(30))})
        out += len(sorted(j.loads(s)["v"], reverse=True))
    return out


def w_numpy():
    sys.path.insert(0, HERE)
    import memory_workloads

    return memory_workloads.numpy_work(60)


WORKLOADS = {
    "recursion": w_recursion,
    "json+regex+sort": w_mixed,
    "tight loop": w_loop,
    "allocations": w_alloc,
    "8 threads": w_threads,
}
try:
    import numpy  # noqa: F401

    WORKLOADS["numpy"] = w_numpy
except ImportError:
    pass


# ---- one measurement, in a child process ----

def child(workload: str, profiler: str) -> None:
    fn = WORKLOADS[workload]
    stop = None
    # Every run imports every profiler, used or not: imports add objects the
    # garbage collector walks, and the allocation workload would otherwise
    # be slower just because a profiler was imported.
    import cProfile

    import metaflow_profiler  # noqa: F401

    try:
        import pyinstrument
    except ImportError:
        pass
    if workload == "numpy":
        sys.path.insert(0, HERE)
        import memory_workloads  # noqa: F401  (numpy imported before the clock starts)
    if profiler in ("ours", "ours+memory", "ours 10k"):
        from metaflow_profiler import Profiler

        p = Profiler(interval=0.0001 if profiler == "ours 10k" else 0.001, timeline_interval=0.5,
                     memory=profiler == "ours+memory")
        p.start()
        stop = p.stop
    elif profiler == "cProfile":
        import cProfile

        p = cProfile.Profile()
        p.enable()
        stop = p.disable
    elif profiler == "pyinstrument":
        import pyinstrument

        p = pyinstrument.Profiler(interval=0.001)
        p.start()
        stop = p.stop
    elif profiler == "py-spy":
        time.sleep(0.3)  # let py-spy attach before the clock starts
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = None
    if stop:
        stop()
    if profiler.startswith("ours"):
        m = p.profile.meta
        rate = m["sampler_passes"] / (m["duration_ns"] / 1e9)  # passes a second achieved
    print(json.dumps({"elapsed": elapsed, "cpu": cpu, "rate": rate}))


RATES: dict[tuple[str, str], list[float]] = {}  # achieved sampling rates, where known
CPU: dict[tuple[str, str], list[float]] = {}  # process CPU time of the workload (all threads)


ALTS: dict[str, str] = {}  # --alt label -> interpreter running "ours+memory"


def measure(workload: str, profiler: str) -> float:
    cmd = [sys.executable, __file__, "--child", workload, profiler]
    if profiler in ALTS:
        cmd = [ALTS[profiler], __file__, "--child", workload, "ours+memory"]
    if profiler == "py-spy":
        cmd = ["py-spy", "record", "--rate", "1000", "--nonblocking", "--output", os.devnull,
               "--format", "raw", "--", *cmd]
    if profiler.startswith("tachyon"):
        # CPython 3.15's own sampler (remote reads, another process), all threads.
        rate = "10khz" if profiler.endswith("10k") else "1khz"
        cmd = [sys.executable, "-m", "profiling.sampling", "run", "-r", rate, "-a",
               "--collapsed", "-o", os.devnull, __file__, "--child", workload, "none"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    out = done.stdout
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    got = json.loads(line)
    if profiler != "py-spy" and not profiler.startswith("tachyon"):
        CPU.setdefault((workload, profiler), []).append(got["cpu"])
    if got.get("rate") and profiler not in ALTS:
        RATES.setdefault((workload, profiler), []).append(got["rate"])
    if profiler.startswith("tachyon"):
        import re
        m = re.search(r"([\d,.]+)\s*(?:samples/s|samples/sec|Hz)", done.stdout + done.stderr)
        if m:
            RATES.setdefault((workload, profiler), []).append(float(m.group(1).replace(",", "")))
    return got["elapsed"]


def available() -> list[str]:
    names = ["none", "ours", "ours+memory", "cProfile"]
    try:
        import pyinstrument  # noqa: F401

        names.append("pyinstrument")
    except ImportError:
        pass
    if sys.version_info >= (3, 15):
        names += ["ours 10k", "tachyon", "tachyon 10k"]
    if shutil.which("py-spy"):
        try:
            measure("tight loop", "py-spy")
            names.append("py-spy")
        except subprocess.CalledProcessError:
            pass  # no ptrace rights here
    return names


def overhead_table(repeat: int, tools: list[str] | None) -> str:
    profs = (tools or available()) + list(ALTS)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for w in WORKLOADS:
            for p in profs:
                times.setdefault((w, p), []).append(measure(w, p))
    rows = ["| workload | none (s) | " + " | ".join(p for p in profs if p != "none") + " |",
            "|---|---:|" + "---:|" * (len(profs) - 1)]
    for w in WORKLOADS:
        base = statistics.median(times[(w, "none")])
        cells = [f"{statistics.median(times[(w, p)]) / base:.3f}×" for p in profs if p != "none"]
        rows.append(f"| {w} | {base:.3f} | " + " | ".join(cells) + " |")
    inproc = [p for p in profs if p != "none" and all((w, p) in CPU for w in WORKLOADS)]
    if inproc:
        # Less moved by other work on the machine than wall time; counts the
        # profiler's own threads too.
        rows += ["", "Process CPU time of the workload (all threads) ÷ unprofiled, median:", "",
                 "| workload | none (s) | " + " | ".join(inproc) + " |",
                 "|---|---:|" + "---:|" * len(inproc)]
        for w in WORKLOADS:
            base = statistics.median(CPU[(w, "none")])
            cells = [f"{statistics.median(CPU[(w, p)]) / base:.3f}×" for p in inproc]
            rows.append(f"| {w} | {base:.3f} | " + " | ".join(cells) + " |")
    if RATES:
        rows += ["", "Achieved sampling rate (median, per second):", "",
                 "| workload | " + " | ".join(p for p in profs if any(k[1] == p for k in RATES)) + " |",
                 "|---|" + "---:|" * len({k[1] for k in RATES})]
        for w in WORKLOADS:
            cells = [f"{statistics.median(RATES[(w, p)]):.0f}" if (w, p) in RATES else "–"
                     for p in profs if any(k[1] == p for k in RATES)]
            rows.append(f"| {w} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# ---- the sampler's own cost per sample, by stack depth ----

def cost_table() -> str:
    import threading

    from metaflow_profiler import Profiler

    rows = ["| stack depth | µs per sample (sampler thread) | samples |", "|---:|---:|---:|"]
    for depth in (10, 50, 200):
        stop = threading.Event()

        def dive(n, stop=stop):
            if n:
                return dive(n - 1, stop)
            while not stop.is_set():
                sum(range(100))

        t = threading.Thread(target=dive, args=(depth - 3,))
        t.start()
        p = Profiler(interval=0.001, timeline_interval=0, memory=False)
        p.start()
        time.sleep(2)
        prof = p.stop()
        stop.set()
        t.join()
        m = prof.meta
        per = m["sampler_busy_ns"] / max(1, m["sampler_passes"]) / 1000
        # the main thread (in sleep, shallow) is sampled too: report per pass
        rows.append(f"| {depth} | {per:.1f} | {m['samples_taken']} |")
    return "\n".join(rows)


# ---- accuracy against known ground truth ----

def accuracy_table() -> str:
    import threading

    from metaflow_profiler import Profiler

    def work(units):
        n = 0
        for i in range(units * 20000):
            n += i % 7
        return n

    def part_a():
        work(7)

    def part_b():
        work(3)

    rows = ["| case | truth | measured | error (pp) |", "|---|---:|---:|---:|"]
    with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
        spent = [0.0, 0.0]
        for _ in range(150):
            t0 = time.perf_counter()
            part_a()
            t1 = time.perf_counter()
            part_b()
            spent[0] += t1 - t0
            spent[1] += time.perf_counter() - t1
    f = {r.name.rsplit(".", 1)[-1]: r for r in p.profile.functions()}
    truth = spent[0] / sum(spent)
    got = f["part_a"].total_s / (f["part_a"].total_s + f["part_b"].total_s)
    rows.append(f"| A 70% / B 30% of the work, alternating | {truth:.1%} | {got:.1%} | "
                f"{abs(got - truth) * 100:.1f} |")

    def busy_idle(busy, idle, rounds):
        for _ in range(rounds):
            end = time.perf_counter() + busy
            while time.perf_counter() < end:
                pass
            time.sleep(idle)

    t = threading.Thread(target=busy_idle, args=(0.006, 0.004, 100), name="busy-idle")
    with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
        t.start()
        t.join()
    cpu = {r.name.rsplit(".", 1)[-1]: r.total_s for r in p.profile.functions(on_cpu=True)}
    wall = {r.name.rsplit(".", 1)[-1]: r.total_s for r in p.profile.functions()}
    got = cpu.get("busy_idle", 0) / wall["busy_idle"]
    rows.append(f"| thread busy 60% / sleeping 40% (on-CPU share) | 60.0% | {got:.1%} | "
                f"{abs(got - 0.6) * 100:.1f} |")

    # On-CPU time against the CPU time a thread really used, where every
    # 1 ms sample finds it running for only part of its time.
    def cpu_share(target, *args):
        used = []

        def run():
            c0 = time.thread_time()
            target(*args)
            used.append(time.thread_time() - c0)

        t = threading.Thread(target=run)
        with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
            t.start()
            t.join()
        cpu = {r.name.rsplit(".", 1)[-1]: r.total_s for r in p.profile.functions(on_cpu=True)}
        wall = {r.name.rsplit(".", 1)[-1]: r.total_s for r in p.profile.functions()}
        return used[0] / wall["run"], cpu.get("run", 0) / wall["run"]

    truth, got = cpu_share(busy_idle, 0.0002, 0.0004, 1500)
    rows.append(f"| thread computing 0.2 ms / sleeping 0.4 ms (on-CPU share vs its CPU time) | "
                f"{truth:.1%} | {got:.1%} | {abs(got - truth) * 100:.1f} |")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        truth, got = cpu_share(busy_idle, 1.0, 0, 1)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    rows.append(f"| busy thread on a machine saturated by {len(hogs)} other processes (same) | "
                f"{truth:.1%} | {got:.1%} | {abs(got - truth) * 100:.1f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=["overhead", "cost", "accuracy"])
    ap.add_argument("--tools", help="comma-separated, from: none, ours, ours+memory, cProfile, "
                    "pyinstrument, py-spy, ... (default: all available)")
    ap.add_argument("--alt", action="append", default=[], metavar="LABEL=PYTHON",
                    help="one more column: ours+memory under another interpreter")
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    for alt in a.alt:
        label, _, py = alt.partition("=")
        ALTS[label] = py
    tools = a.tools.split(",") if a.tools else None
    if tools and "none" not in tools:
        tools.insert(0, "none")
    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d')}\n")
    if a.only in (None, "overhead"):
        print("Overhead at 1 kHz (wall time ÷ unprofiled, median of "
              f"{a.repeat} interleaved runs):\n\n{overhead_table(a.repeat, tools)}\n")
    if a.only in (None, "cost"):
        print(f"Sampler cost per pass:\n\n{cost_table()}\n")
    if a.only in (None, "accuracy"):
        print(f"Accuracy:\n\n{accuracy_table()}\n")


if __name__ == "__main__":
    main()
