"""What the resource-timeline poller (native/timeline) costs the profiled process.

Each configuration runs in a fresh child process that starts a native session
with the sampler effectively idle (interval 60 s) and the timeline at the given
interval, sleeps for --seconds, and reports its own CPU time (all threads,
time.process_time) while the session runs, and apart from that what start()
plus stop() cost. The cost of the poller is the CPU while running minus the
same with the timeline off. A process with child processes costs more per
poll (one small /proc file per thread is read to find them, then two per
child), so that case is measured too.

    python bench/bench_timeline.py [--seconds 10] [--repeat 3]

Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys

CHILD = r"""
import json, subprocess, sys, threading, time
from metaflow_profiler import _native
interval, seconds = float(sys.argv[1]), float(sys.argv[2])
nthreads, nchildren = int(sys.argv[3]), int(sys.argv[4])
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(nthreads)]
for t in threads:
    t.start()
kids = [subprocess.Popen(["sleep", "3600"]) for _ in range(nchildren)]
s = _native.Session(60_000_000_000, round(interval * 1e9))
c0 = time.process_time()
s.start()
c1, w1 = time.process_time(), time.perf_counter()
time.sleep(seconds)
c2, w2 = time.process_time(), time.perf_counter()
s.stop()
c3 = time.process_time()
stop.set()
for t in threads:
    t.join()
for k in kids:
    k.kill()
    k.wait()
print(json.dumps({"steady": (c2 - c1) / (w2 - w1), "start_stop_s": (c1 - c0) + (c3 - c2)}))
"""


def run(interval: float, seconds: float, nthreads: int, nchildren: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(interval), str(seconds), str(nthreads), str(nchildren)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    # (timeline interval, idle threads, idle child processes); 0 = timeline off
    shapes = [(0, 0), (50, 0), (50, 4)]
    cases = [(iv, th, ch) for th, ch in shapes for iv in (0.0, 0.5, 0.01)]
    steady: dict[tuple[float, int, int], float] = {}
    start_stop: dict[tuple[float, int, int], float] = {}
    for case in cases:
        runs = [run(case[0], args.seconds, case[1], case[2]) for _ in range(args.repeat)]
        steady[case] = statistics.median(r["steady"] for r in runs)
        start_stop[case] = statistics.median(r["start_stop_s"] for r in runs)

    print(
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{args.seconds:g} s idle per run, median of {args.repeat} runs\n"
    )
    print(
        "| timeline interval | idle threads | child processes | process CPU while running "
        "(% of a core) | poller cost (% of a core) | per poll | start + stop |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for interval, nthreads, nchildren in cases:
        key = (interval, nthreads, nchildren)
        pct = 100 * steady[key]
        ss = f"{1e3 * start_stop[key]:.2f} ms"
        if interval == 0:
            print(f"| off | {nthreads} | {nchildren} | {pct:.3f} | — | — | {ss} |")
            continue
        extra = max(0.0, steady[key] - steady[(0.0, nthreads, nchildren)])
        print(
            f"| {interval:g} s | {nthreads} | {nchildren} | {pct:.3f} | {100 * extra:.3f} | "
            f"{extra * interval * 1e6:.0f} µs | {ss} |"
        )


if __name__ == "__main__":
    main()
