"""Overhead of each backend on the same workloads: wall time of the workload
while profiled ÷ its wall time unprofiled. Runs are interleaved (baseline,
then each backend, round after round) so drift on a shared machine hits all
alike; each cell is the median over the rounds. Backends run through the
public API (Profiler(backend=...)), timing only the workload between start()
and stop(); converting the result at stop() is reported apart.

    python bench/bench_backends.py [--rounds 5] [--quick]

Prints a Markdown table (one per Python version it runs on).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import random
import re
import statistics
import time

from metaflow_profiler import Profiler


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def w_fib(scale):
    fib(24 + scale)


_WORDS = re.compile(r"[a-z]+\d*")


def w_mix(scale):
    rng = random.Random(3)
    recs = [{"id": i, "name": "".join(rng.choice("abcxyz") for _ in range(8)) + str(i % 97),
             "vals": [rng.random() for _ in range(5)]} for i in range(1500 * scale)]
    out = []
    for r in recs:
        s = json.dumps(r)
        out.append(len(_WORDS.findall(s)))
        json.loads(s)
    out.sort()
    sorted(recs, key=lambda r: r["name"])


def w_loop(scale):
    n = 0
    for i in range(300_000 * scale):
        n += (i * i) % 7
    return n


WORKLOADS = {"recursive fibonacci": w_fib, "json + regex + sort": w_mix,
             "tight arithmetic loop": w_loop}


def timed(fn, scale):
    t = time.perf_counter()
    fn(scale)
    return time.perf_counter() - t


def run_backend(backend, fn, scale):
    """(workload seconds, stop seconds) under backend; None = baseline."""
    if backend is None:
        return timed(fn, scale), 0.0
    if backend == "cprofile-raw":
        import cProfile

        p = cProfile.Profile()
        p.enable()
        d = timed(fn, scale)
        p.disable()
        return d, 0.0
    interval = 0.001
    p = Profiler(backend=backend, interval=interval, timeline_interval=0)
    p.start()
    d = timed(fn, scale)
    t = time.perf_counter()
    p.stop()
    return d, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--scale", type=int, default=3, help="workload size (fib depth +, records ×)")
    ap.add_argument("--quick", action="store_true", help="1 round, small workloads (smoke test)")
    a = ap.parse_args()
    rounds, scale = (1, 1) if a.quick else (a.rounds, a.scale)
    backends = ["trace", "cprofile", "cprofile-raw", "sample"]
    if importlib.util.find_spec("pyinstrument"):
        backends.insert(3, "pyinstrument")
    labels = {"trace": "trace (ours, C tracer)", "cprofile": "cprofile (cProfile + conversion)",
              "cprofile-raw": "cProfile alone", "pyinstrument": "pyinstrument (1 ms)",
              "sample": "sample (ours, 1 ms)"}
    res = {(w, b): [] for w in WORKLOADS for b in [None, *backends]}
    stops = {(w, b): [] for w in WORKLOADS for b in backends}
    for fn in WORKLOADS.values():
        fn(1)  # warm caches and imports
    for _ in range(rounds):
        for w, fn in WORKLOADS.items():
            for b in [None, *backends]:
                d, s = run_backend(b, fn, scale)
                res[(w, b)].append(d)
                if b:
                    stops[(w, b)].append(s)
    base = {w: statistics.median(res[(w, None)]) for w in WORKLOADS}
    print(f"\n### Python {platform.python_version()} — overhead (× unprofiled wall time), "
          f"median of {rounds}\n")
    print("| backend | " + " | ".join(WORKLOADS) + " | stop + convert (ms, fib / mix / loop) |")
    print("|---|" + "---:|" * len(WORKLOADS) + "---:|")
    print("| unprofiled (s) | " + " | ".join(f"{base[w]:.3f}" for w in WORKLOADS) + " | |")
    for b in backends:
        cells = [f"{statistics.median(res[(w, b)]) / base[w]:.2f}×" for w in WORKLOADS]
        st = " / ".join(f"{statistics.median(stops[(w, b)]) * 1e3:.0f}" for w in WORKLOADS)
        print(f"| {labels[b]} | " + " | ".join(cells) + f" | {st} |")


if __name__ == "__main__":
    main()
