"""The sampler's cost with many threads that mostly do not run.

    python bench/bench_threads.py [--threads 5000] [--repeat 3]
    python bench/bench_threads.py --asleep 3 [--repeat 3] [--before PYTHON]

Each run, in a fresh process: start N threads that each block on one
event, wait until all have started, release them and join them. The time
is wall time from the first start to the last join, without the profiler
and under the default sampler (1 ms, memory off, no timeline), runs
interleaved; of --repeat runs, the one with the median total time. Also
the sampler's own time per pass and its passes, from the profile's META. Prints a Markdown table for
bench/RESULTS.md.

--asleep S: a process whose only thread sleeps S seconds under the default
sampler (1 ms, memory off, no timeline): the engine's threads' CPU (their
schedstat, threads named mfp-*) per second, and the sampler's passes per
second, median of --repeat fresh processes; with --before, the same from
another venv's interpreter (an earlier build), interleaved.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, threading, time
n, prof = int(sys.argv[1]), sys.argv[2] == "1"
go = threading.Event()
started = threading.Semaphore(0)
def idle():
    started.release()
    go.wait()
if prof:
    from metaflow_profiler import Profiler
    p = Profiler(interval=0.001, timeline_interval=0, memory=False)
    p.start()
t0 = time.perf_counter()
ts = [threading.Thread(target=idle) for _ in range(n)]
for t in ts:
    t.start()
for _ in range(n):
    started.acquire()
t_started = time.perf_counter() - t0
time.sleep(0.5)  # all of them waiting: the idle passes
go.set()
for t in ts:
    t.join()
wall = time.perf_counter() - t0 - 0.5
out = {"wall": wall, "started": t_started}
if prof:
    m = p.stop().meta
    out.update(passes=m["sampler_passes"], busy=m["sampler_busy_ns"] / 1e9,
               samples=m["samples_taken"], duration=m["duration_ns"] / 1e9)
print(json.dumps(out))
"""


ASLEEP = r"""
import json, os, sys, time
from metaflow_profiler import Profiler

def engine_cpu_ns():
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if not f.read().startswith("mfp-"):
                    continue
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total

p = Profiler(interval=0.001, timeline_interval=0, memory=False, subprocesses=False)
p.start()
time.sleep(0.1)  # the engine's threads started
c0, t0 = engine_cpu_ns(), time.perf_counter()
time.sleep(float(sys.argv[1]))
c1, t1 = engine_cpu_ns(), time.perf_counter()
m = p.stop().meta
print(json.dumps({"cpu_us_per_s": (c1 - c0) / 1e3 / (t1 - t0),
                  "passes_per_s": m["sampler_passes"] / (m["duration_ns"] / 1e9)}))
"""


def asleep(python: str, seconds: float) -> dict:
    r = subprocess.run([python, "-c", ASLEEP, str(seconds)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(n: int, prof: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(n), "1" if prof else "0"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--asleep", type=float, metavar="S")
    ap.add_argument("--before", metavar="PYTHON")
    a = ap.parse_args()
    print(f"Python {platform.python_version()}, {platform.machine()}")
    if a.asleep:
        pythons = {"ours": sys.executable, **({"before": a.before} if a.before else {})}
        got = {k: [] for k in pythons}
        for _ in range(a.repeat):
            for k, py in pythons.items():
                got[k].append(asleep(py, a.asleep))
        print("| build | engine threads' CPU, µs a second | passes a second |")
        print("|---|---:|---:|")
        for k, rs in got.items():
            cpu = statistics.median(r["cpu_us_per_s"] for r in rs)
            print(f"| {k} | {cpu:.0f} | {statistics.median(r['passes_per_s'] for r in rs):.0f} |")
        return
    print("| threads | start, unprofiled s | start, profiled s | all, unprofiled s | all, profiled s "
          "| sampler busy s (of run) | passes | µs per pass |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in a.threads:
        base, ours = [], []
        for _ in range(a.repeat):
            base.append(run(n, False))
            ours.append(run(n, True))
        b = sorted(base, key=lambda r: r["wall"])[len(base) // 2]
        o = sorted(ours, key=lambda r: r["wall"])[len(ours) // 2]
        print(f"| {n} | {b['started']:.2f} | {o['started']:.2f} | {b['wall']:.2f} | {o['wall']:.2f} "
              f"| {o['busy']:.2f} "
              f"({o['duration']:.2f}) | {o['passes']} | {o['busy'] / max(1, o['passes']) * 1e6:.0f} |")


if __name__ == "__main__":
    main()
