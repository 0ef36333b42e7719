"""The sampler's cost with many threads that mostly do not run.

    python bench/bench_threads.py [--threads 5000] [--repeat 3]

Each run, in a fresh process: start N threads that each block on one
event, wait until all have started, release them and join them. The time
is wall time from the first start to the last join, without the profiler
and under the default sampler (1 ms, memory off, no timeline), runs
interleaved; of --repeat runs, the one with the median total time. Also
the sampler's own time per pass and its passes, from the profile's META. Prints a Markdown table for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
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


def run(n: int, prof: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(n), "1" if prof else "0"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"Python {platform.python_version()}, {platform.machine()}")
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
