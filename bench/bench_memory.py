"""What the memory profiler (native/heap) costs, and how close its numbers are.

Overhead: each (workload, tool) pair runs in a fresh child process, --repeat
times, alternating tools; the time of the workload alone (start and stop
excluded) is compared with the same workload unprofiled. Time is the CPU
time of the whole process (time.process_time: all threads, so the CPU
sampler and memray's writer count too), which unlike wall time does not move
when other work shares the machine; OpenBLAS runs one thread. Tools:
  none         no profiler
  cpu          Profiler(memory=False): the CPU sampler alone
  cpu+memory   Profiler(memory=True) at the default rate (or --rate)
  memory-only  the memory profiler alone (a native Session whose CPU sampler
               idles at a 60 s interval): like for like with the two below
  tracemalloc  tracemalloc.start() (1 frame)
  memray       memray.Tracker to a file (Python stacks, as installed from PyPI)
Workloads (bench/memory_workloads.py): `pyalloc`, an allocation-heavy pure
Python loop, and `numpy`, a loop of numpy temporaries.

Accuracy: the `accuracy` workload (400 MB numpy held, 100 MB of lists held,
1 GB churned) under our profiler, tracemalloc and memray: per-function live
at peak and total allocated against the truth, and each tool's overall peak.

Hook cost: in one process, rounds of bench_overhead.py's tight loop and
allocation loop alternate unprofiled and under the memory profiler alone;
the fastest round of each (the least disturbed on a shared machine) gives
the cost per iteration, and the tight loop's 2 allocations per iteration
(its ints; their frees are not hooked) the cost per allocation.

The default in process: for each of bench_overhead.py's workloads, a
child process runs 5 rounds, each unprofiled, under the default
(`Profiler()`: the CPU sampler at 1 kHz, the timeline and the memory
profiler) and under the CPU sampler alone, in an order rotated each round;
its figure is the median of the rounds' ratios (wall and process CPU
time), the table's the median of --repeat such processes. The same
children run with MFP_HEAP_TAKE=0
(the hooks call pymalloc for every block instead of taking its ready ones:
what the default cost before), interleaved, so both columns come from one
run. A fresh process's speed moves by ±10 % with where its heap lands
(RESULTS, "The default on a quiet machine"), and rounds within one process
share that.

    python bench/bench_memory.py [--repeat 5] [--rate 524288]
        [--only overhead|accuracy|hookcost|default]

Prints Markdown tables for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[4])
import memory_workloads as w
tool, work, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
fn = {"pyalloc": w.pyalloc, "numpy": w.numpy_work, "accuracy": w.accuracy}[work]
if work == "numpy":
    import numpy  # imported before timing for every tool
out = {}
if tool in ("cpu", "cpu+memory"):
    from metaflow_profiler import Profiler
    p = Profiler(memory=tool == "cpu+memory", memory_rate=rate, timeline_interval=0)
    p.start()
    t = time.process_time(); res = fn(); t = time.process_time() - t
    prof = p.stop()
    out["meta_memory"] = prof.meta.get("memory")
    if work == "accuracy":
        live = {r.name: r.total_bytes for r in prof.memory_functions()}
        mem = prof._t["memory"]
        _, alloc = prof._by_function(mem["stack"], mem["alloc_bytes"])
        alloc = {prof._func_key(f)[0]: v for f, v in alloc.items()}
        out["funcs"] = {k: {"live": live.get(k, 0), "alloc": alloc.get(k, 0)}
                        for k in ("hold_numpy", "hold_lists", "churn")}
        out["peak"] = prof.meta["memory"]["peak_bytes"]
elif tool == "memory-only":
    from metaflow_profiler import _native
    sess = _native.Session(60_000_000_000, 0, 0, memory_rate=rate)  # the CPU sampler idles
    sess.start()
    t = time.process_time(); res = fn(); t = time.process_time() - t
    sess.stop()
elif tool == "tracemalloc":
    import tracemalloc
    tracemalloc.start()
    t = time.process_time(); res = fn(); t = time.process_time() - t
    out["peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
elif tool == "memray":
    import memray
    path = os.path.join(sys.argv[5], "m.bin")
    with memray.Tracker(path):
        t = time.process_time(); res = fn(); t = time.process_time() - t
    if work == "accuracy":
        r = memray.FileReader(path)
        out["peak"] = r.metadata.peak_memory
        funcs = {}
        for rec in r.get_high_watermark_allocation_records(merge_threads=True):
            for name in {f[0] for f in rec.stack_trace()}:
                funcs[name] = funcs.get(name, 0) + rec.size
        out["funcs"] = {k: {"live": funcs.get(k, 0)} for k in ("hold_numpy", "hold_lists", "churn")}
    os.unlink(path)
else:
    t = time.process_time(); res = fn(); t = time.process_time() - t
out["seconds"] = t
if work == "accuracy":
    out["truth"] = res
print(json.dumps(out))
"""

TOOLS = ("none", "cpu", "cpu+memory", "memory-only", "tracemalloc", "memray")


def run(tool: str, work: str, rate: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        r = subprocess.run([sys.executable, "-c", CHILD, tool, work, str(rate), HERE, tmp],
                           capture_output=True, text=True, check=False, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{tool}/{work} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def overhead(repeat: int, rate: int, tools: tuple[str, ...]) -> None:
    print(f"\n### Overhead (process CPU time, median of {repeat}, Python "
          f"{platform.python_version()}, rate {rate // 1024} KiB)\n")
    extra = ["memory alone (cpu+memory ÷ cpu)"] if "cpu" in tools and "cpu+memory" in tools else []
    print("| workload | " + " | ".join(list(tools) + extra) + " |")
    print("|---|" + "---:|" * (len(tools) + len(extra)))
    for work in ("pyalloc", "numpy"):
        times: dict[str, list[float]] = {t: [] for t in tools}
        for _ in range(repeat):
            for t in tools:
                times[t].append(run(t, work, rate)["seconds"])
        base = statistics.median(times["none"])
        cells = [f"{base:.2f} s" if t == "none" else f"{statistics.median(times[t]) / base:.2f}×"
                 for t in tools]
        if "cpu" in tools and "cpu+memory" in tools:
            cells.append(f"{statistics.median(times['cpu+memory']) / statistics.median(times['cpu']):.2f}×")
        print(f"| {work} | " + " | ".join(cells) + " |")


def accuracy(rate: int, runs: int) -> None:
    print(f"\n### Accuracy (Python {platform.python_version()}, rate {rate // 1024} KiB, "
          f"ours: {runs} runs, worst error shown)\n")
    ours = [run("cpu+memory", "accuracy", rate) for _ in range(runs)]
    tm = run("tracemalloc", "accuracy", rate)
    try:
        mr = run("memray", "accuracy", rate)
    except RuntimeError:  # memray is not installed in every venv
        mr = {"peak": 0, "funcs": {k: {"live": 0} for k in ("hold_numpy", "hold_lists", "churn")}}
    truth = ours[0]["truth"]
    mb = 1e6
    print("| function | truth live | ours live (worst err) | memray live at HWM | "
          "truth alloc | ours alloc (worst err) |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in ("hold_numpy", "hold_lists", "churn"):
        t = truth[k]
        lives = [o["funcs"][k]["live"] for o in ours]
        worst = max(lives, key=lambda v: abs(v - t["live"]))
        cell_alloc = "–"
        if "alloc" in t:
            allocs = [o["funcs"][k]["alloc"] for o in ours]
            wa = max(allocs, key=lambda v: abs(v - t["alloc"]))
            cell_alloc = f"{wa / mb:.0f} MB ({(wa / t['alloc'] - 1) * 100:+.1f}%)"
        print(f"| {k} | {t['live'] / mb:.0f} MB | {worst / mb:.0f} MB "
              f"({(worst / t['live'] - 1) * 100:+.1f}%) | {mr['funcs'][k]['live'] / mb:.0f} MB | "
              f"{t['alloc'] / mb:.0f} MB | {cell_alloc} |" if "alloc" in t else
              f"| {k} | {t['live'] / mb:.0f} MB | {worst / mb:.0f} MB "
              f"({(worst / t['live'] - 1) * 100:+.1f}%) | {mr['funcs'][k]['live'] / mb:.0f} MB | "
              f"– | – |")
    peaks = [o["peak"] for o in ours]
    print(f"\nOverall peak: ours {min(peaks) / mb:.0f}–{max(peaks) / mb:.0f} MB, "
          f"tracemalloc {tm['peak'] / mb:.0f} MB, memray high-water mark {mr['peak'] / mb:.0f} MB; "
          f"RSS at our peak {ours[0]['meta_memory']['rss_at_peak_bytes'] / mb:.0f} MB.")


def hookcost(rate: int, rounds: int) -> None:
    import time

    from metaflow_profiler import _native

    def loop(n):
        s = 0
        for i in range(n):
            s += i & 7
        return s

    def alloc(n):
        keep = []
        for i in range(n):
            keep.append({"i": i, "s": str(i), "l": [i, i + 1]})
            if len(keep) > 10000:
                keep.clear()

    print(f"\n### Hook cost (Python {platform.python_version()}, rate {rate // 1024} KiB, "
          f"fastest of {rounds} rounds each)\n")
    print("| workload | unprofiled ns/iter | memory profiler ns/iter | overhead | "
          "ns per allocation |")
    print("|---|---:|---:|---:|---:|")
    for name, fn, n, calls in (("tight loop", loop, 3_000_000, 2), ("allocations", alloc, 600_000, None)):
        base, hooked = [], []
        for _ in range(rounds):
            t = time.process_time()
            fn(n)
            base.append(time.process_time() - t)
            s = _native.Session(60_000_000_000, 0, 0, memory_rate=rate)  # sampler idle
            s.start()
            t = time.process_time()
            fn(n)
            hooked.append(time.process_time() - t)
            s.stop()
        b, h = min(base) / n * 1e9, min(hooked) / n * 1e9
        per = f"{(h - b) / calls:.2f}" if calls else "–"
        print(f"| {name} | {b:.1f} | {h:.1f} | {h / b:.3f}× | {per} |")


def default_child(workload: str, rounds: int) -> None:
    """Rounds of the workload unprofiled, under the default and under the
    CPU sampler alone, in an order rotated each round; per round each
    profiled time ÷ the unprofiled one, wall and process CPU."""
    import time

    sys.path.insert(0, HERE)
    import bench_overhead

    from metaflow_profiler import Profiler

    fn = bench_overhead.WORKLOADS[workload]
    fn()  # warm: imports, numpy's buffers
    modes = ("none", "default", "cpu")
    ratios: dict[str, list[list[float]]] = {"default": [], "cpu": []}
    for r in range(rounds):
        took = {}
        for mode in modes[r % 3:] + modes[: r % 3]:
            p = None if mode == "none" else Profiler(memory=mode == "default")
            if p:
                p.start()
            t, c = time.perf_counter(), time.process_time()
            fn()
            took[mode] = (time.perf_counter() - t, time.process_time() - c)
            if p:
                p.stop()
        for mode in ratios:
            ratios[mode].append([took[mode][i] / took["none"][i] for i in (0, 1)])
    print(json.dumps({"none": took["none"][0], **{
        m: [statistics.median(x[i] for x in v) for i in (0, 1)] for m, v in ratios.items()}}))


def default_cost(rounds: int, processes: int) -> None:
    sys.path.insert(0, HERE)
    import bench_overhead

    print(f"\n### The default in process (Python {platform.python_version()}: per process the "
          f"median of {rounds} rounds' ratios, then the median of {processes} processes)\n")
    print("| workload | none (s) | default, wall | default, CPU | before (MFP_HEAP_TAKE=0), wall "
          "| before, CPU | CPU sampler alone, wall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("tight loop", "allocations", "json+regex+sort", "numpy", "recursion", "8 threads"):
        if name not in bench_overhead.WORKLOADS:
            continue
        got: dict[str, list[dict]] = {"1": [], "0": []}
        for _ in range(processes):
            for take in ("1", "0"):
                env = dict(os.environ, MFP_HEAP_TAKE=take)
                r = subprocess.run([sys.executable, __file__, "--default-child", name, str(rounds)],
                                   capture_output=True, text=True, env=env, check=True)
                got[take].append(json.loads(r.stdout.strip().splitlines()[-1]))

        def med(take, mode, i=None, got=got):
            return statistics.median(g[mode] if i is None else g[mode][i] for g in got[take])

        print(f"| {name} | {med('1', 'none'):.3f} | {med('1', 'default', 0):.3f}× | "
              f"{med('1', 'default', 1):.3f}× | {med('0', 'default', 0):.3f}× | "
              f"{med('0', 'default', 1):.3f}× | {med('1', 'cpu', 0):.3f}× |")


def main() -> None:
    if sys.argv[1:2] == ["--default-child"]:
        default_child(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rate", type=int, default=None)
    ap.add_argument("--runs", type=int, default=5, help="accuracy runs of ours")
    ap.add_argument("--only", choices=("overhead", "accuracy", "hookcost", "default"))
    ap.add_argument("--tools", default=",".join(TOOLS))
    a = ap.parse_args()
    if a.rate is None:
        from metaflow_profiler.profiler import DEFAULT_MEMORY_RATE

        a.rate = DEFAULT_MEMORY_RATE
    if a.only in (None, "overhead"):
        overhead(a.repeat, a.rate, tuple(a.tools.split(",")))
    if a.only in (None, "accuracy"):
        accuracy(a.rate, a.runs)
    if a.only in (None, "hookcost"):
        hookcost(a.rate, max(a.repeat, 5) * 2)
    if a.only in (None, "default"):
        default_cost(5, a.repeat)


if __name__ == "__main__":
    main()
