"""Cost of the live card (issue #18) on a CPU-bound Metaflow step.

One step does a fixed amount of pure-Python work (calibrated to --seconds
of CPU unprofiled) under @profile_card with live_interval=0 (off), 10 (the
default) and 5. Runs are interleaved round by round so a shared machine's
drift hits all alike. Measured inside the step: the work's wall time
(ratio vs live off, median over rounds), the task process's CPU over the
same span (all its threads: the step, the sampler, the live thread; less
moved by the machine's load than wall time), the processes the step started
and waited for (RUSAGE_CHILDREN CPU: the live card starts none); from the
final card's META: the number of live updates and the CPU seconds the live
thread spent on them (`live_cpu_s`, its own thread CPU clock: the cost that
does not depend on the machine's load). The load average is sampled every
5 s during each run: on a shared machine the wall ratio means little when
it moves.

    python bench/bench_live.py [--seconds 300] [--rounds 1]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

FLOW = """
import resource, time
from metaflow import FlowSpec, profile_card, step


def work(n):
    x = 0
    for i in range(n):
        x += i % 7
    return x


class LiveBench(FlowSpec):
    @profile_card(live_interval=LIVE)
    @step
    def start(self):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0, p0 = time.perf_counter(), time.process_time()
        work(WORK_N)
        self.wall = time.perf_counter() - t0
        self.process_cpu = time.process_time() - p0
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children_cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    LiveBench()
"""


def calibrate(seconds: float) -> int:
    # By CPU time: on a loaded machine a wall-clock calibration would shrink the work.
    n = 2_000_000
    while True:
        t0 = time.process_time()
        x = 0
        for i in range(n):
            x += i % 7
        dt = time.process_time() - t0
        if dt > 1:
            return int(n * seconds / dt)
        n *= 2


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_once(root: str, live: float, n: int) -> dict:
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5):
            loads.append(loadavg())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = _run_once(root, live, n)
    finally:
        done.set()
        sampler.join()
    r["load"] = loads or [loadavg()]
    return r


def _run_once(root: str, live: float, n: int) -> dict:
    d = tempfile.mkdtemp(dir=root)
    flow = os.path.join(d, "flow.py")
    with open(flow, "w") as f:
        f.write(textwrap.dedent(FLOW).replace("LIVE", repr(live)).replace("WORK_N", str(n)))
    subprocess.run([sys.executable, flow, "run", "--run-id-file", os.path.join(d, "rid")],
                   cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import json
            from metaflow import Run, namespace
            from metaflow_profiler import Profile
            namespace(None)
            t = Run("LiveBench/" + open({os.path.join(d, 'rid')!r}).read())["start"].task
            meta = Profile.from_bytes(t["profile_card_data"].data["profile"]).meta
            print(json.dumps({{"wall": t["wall"].data, "children_cpu": t["children_cpu"].data,
                               "process_cpu": t["process_cpu"].data,
                               "updates": meta.get("live_updates", 0),
                               "live_cpu": meta.get("live_cpu_s", 0.0)}}))
        """)], cwd=d, check=True, capture_output=True, text=True)
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-live-")
    os.makedirs(os.path.join(root, ".metaflow"))
    os.environ.update(METAFLOW_DEFAULT_DATASTORE="local", METAFLOW_DEFAULT_METADATA="local",
                      USERNAME=os.environ.get("USERNAME", "bench"))
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    n = calibrate(args.seconds)
    configs = [("off (0)", 0), ("default (10 s)", 10), ("5 s", 5)]
    results: dict[str, list[dict]] = {name: [] for name, _ in configs}
    for _ in range(args.rounds):
        for name, live in configs:
            results[name].append(run_once(root, live, n))
    base = statistics.median(r["wall"] for r in results["off (0)"])
    base_cpu = statistics.median(r["process_cpu"] for r in results["off (0)"])
    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{started} – {time.strftime('%H:%M UTC', time.gmtime())}, work ≈ {base:.0f} s, "
          f"{args.rounds} round(s)\n")
    print("| live_interval | work wall (median) | ratio vs off | task process CPU | ratio vs off | "
          "updates | live thread CPU | its share of the step | CPU of processes started in "
          "the step | load avg (min–max) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, _ in configs:
        rs = results[name]
        wall = statistics.median(r["wall"] for r in rs)
        pcpu = statistics.median(r["process_cpu"] for r in rs)
        cpu = statistics.median(r["live_cpu"] for r in rs)
        upd = statistics.median(r["updates"] for r in rs)
        kids = max(r["children_cpu"] for r in rs)
        loads = [x for r in rs for x in r["load"]]
        print(f"| {name} | {wall:.2f} s | {wall / base:.3f} | {pcpu:.2f} s | "
              f"{pcpu / base_cpu:.3f} | {upd:.0f} | {cpu:.3f} s | "
              f"{100 * cpu / wall:.2f} % | {kids:.2f} s | {min(loads):.1f}–{max(loads):.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
