"""Accuracy of the numbers the card shows first, against the truth or a peer.

    python bench/bench_accuracy.py [--repeat 3] [--skip-pyspy] [--only-on-cpu]
    python bench/bench_accuracy.py --ab OLD/bin/python,NEW/bin/python [--seconds 20]

1. On-CPU share of compute() in a `compute(); time.sleep(s)` loop against
   time.thread_time() (truth: compute's CPU read inside compute, the loop's
   around the loop), 1 and 10 ms sleeps, 1 and 8 threads, idle and saturated
   (one busy process per CPU beside it), 2 s profiled (6 s for one thread
   sleeping 10 ms), with each run's error and 3 binomial standard errors
   over the effective count of on-CPU samples; and the on-CPU time of a thread
   hashing 1 MiB blocks (C code without the GIL) against its CPU time.
2. Peak RSS of the run (META rss) against the kernel's VmHWM, for a short
   spike between two 0.5 s polls, and the poll alone.
3. Live heap at its peak against the RSS read at that moment.
4. Per-function wall share against py-spy recording the same process.
Each case runs in a fresh process; the median of --repeat runs is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

ON_CPU = textwrap.dedent("""
    import json, subprocess, sys, threading, time
    from metaflow_profiler import Profiler
    threads, sleep_s, saturate = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
    seconds = float(sys.argv[4])
    def compute(spent):
        c0 = time.thread_time()
        x = 0
        for i in range(15000):
            x += i * i
        spent[0] += time.thread_time() - c0
        return x
    def loop(stop, go, out):
        go.wait()
        t0, spent = time.thread_time(), [0.0]
        while not stop.is_set():
            compute(spent); time.sleep(sleep_s)
        out.append((spent[0], time.thread_time() - t0))
    stop, go, out = threading.Event(), threading.Event(), []
    ws = [threading.Thread(target=loop, args=(stop, go, out)) for _ in range(threads)]
    for w in ws: w.start()
    import os
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() if saturate else 0)]
    time.sleep(0.2)
    with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
        go.set(); time.sleep(seconds); stop.set()
        for w in ws: w.join()
    for h in hogs: h.kill()
    cpu = {r.name: r for r in p.profile.functions(on_cpu=True)}
    tab = p.profile._t["samples"]
    w = [x for x, f in zip(tab["weight_ns"], tab["flags"]) if f & 1]
    print(json.dumps({"truth": sum(c for c, _ in out) / sum(t for _, t in out),
                      "got": cpu["compute"].total_s / cpu["loop"].total_s,
                      "n": cpu["loop"].samples, "n_eff": sum(w) ** 2 / sum(x * x for x in w)}))
""")

HASH = textwrap.dedent("""
    import hashlib, json, threading, time
    from metaflow_profiler import Profiler
    def hashing(stop, out):
        block, t0 = b"x" * (1 << 20), time.thread_time()
        while not stop.is_set():
            hashlib.sha256(block).digest()
        out.append(time.thread_time() - t0)
    stop, out = threading.Event(), []
    t = threading.Thread(target=hashing, args=(stop, out))
    with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
        t.start(); time.sleep(2.0); stop.set(); t.join()
    cpu = {r.name: r for r in p.profile.functions(on_cpu=True)}
    print(json.dumps({"used": out[0], "got": cpu["hashing"].total_s if "hashing" in cpu else 0.0}))
""")

RSS = textwrap.dedent("""
    import json, time
    from metaflow_profiler import Profiler
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    with Profiler(timeline_interval=0.5) as p:
        time.sleep(0.6)
        spike = b"\\x01" * (600 * 2**20)   # 600 MiB for a moment, between polls
        del spike
        held = bytearray(300 * 2**20)      # then 300 MiB held, written
        for i in range(0, len(held), 4096):
            held[i] = 1
        time.sleep(0.6)
    m = p.profile.meta
    print(json.dumps({"hwm": hwm(), "rss": m["rss"], "memory": m.get("memory", {})}))
""")

PYSPY_WORK = textwrap.dedent("""
    import sys, time
    from metaflow_profiler import Profiler
    def work(n):
        s = 0
        for i in range(n):
            s += i % 7
        return s
    def part_a(): return work(140000)
    def part_b(): return work(60000)
    def parse(): return sorted(str(i) for i in range(20000))
    def main():
        end = time.perf_counter() + 3.0
        while time.perf_counter() < end:
            part_a(); part_b(); parse()
    with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
        main()
    p.profile.save(sys.argv[1])
""")


def run(code: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       timeout=300, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def on_cpu(repeat: int) -> None:
    print("\n| case | truth (thread_time) | ours | ours − truth (each run) | on-CPU samples "
          "(effective) | 3σ |")
    print("|---|---:|---:|---:|---:|---:|")
    for threads, sleep_s, sat in [(1, 0.001, 0), (1, 0.01, 0), (8, 0.001, 0), (8, 0.01, 0),
                                  (1, 0.001, 1), (1, 0.01, 1), (8, 0.001, 1)]:
        # a lone thread sleeping 10 ms is on CPU a few % of the time: 6 s
        # for a few hundred on-CPU samples, where 2 s gave ~100 (3σ ≈ 4 pt)
        seconds = 6.0 if threads == 1 and sleep_s > 0.005 else 2.0
        rs = [run(ON_CPU, str(threads), str(sleep_s), str(sat), str(seconds))
              for _ in range(repeat)]
        truth = statistics.median(r["truth"] for r in rs)
        got = statistics.median(r["got"] for r in rs)
        n = statistics.median(r["n"] for r in rs)
        n_eff = statistics.median(r["n_eff"] for r in rs)
        each = ", ".join(f"{(r['got'] - r['truth']) * 100:+.1f}" for r in rs)
        sigma3 = 3 * (max(truth * (1 - truth), 0.01) / n_eff) ** 0.5
        case = f"{threads} thread{'s' if threads > 1 else ''}, {sleep_s * 1e3:.0f} ms sleep" + (
            ", saturated" if sat else "")
        print(f"| {case} | {truth:.1%} | {got:.1%} | {(got - truth) * 100:+.1f} pt ({each}) "
              f"| {n:.0f} ({n_eff:.0f}) | {sigma3 * 100:.1f} pt |")
    rs = [run(HASH) for _ in range(repeat)]
    used = statistics.median(r["used"] for r in rs)
    got = statistics.median(r["got"] for r in rs)
    print(f"\n| hashing 1 MiB blocks (no GIL), 2 s | CPU used {used:.3f} s | on CPU {got:.3f} s "
          f"| {got / used if used else 0:.0%} |")


def on_cpu_ab(repeat: int, pythons: list[str], seconds: float) -> None:
    """A lone thread between 10 ms sleeps (the case a sampler's own timing
    moves most), each interpreter in turn per round, so a drifting machine
    moves them alike."""
    runs = {py: [] for py in pythons}
    for _ in range(repeat):
        for py in pythons:
            r = subprocess.run([py, "-c", ON_CPU, "1", "0.01", "0", str(seconds)], capture_output=True,
                               text=True, timeout=600, check=True)
            runs[py].append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"\n| 1 thread, 10 ms sleep, {seconds:.0f} s | truth | ours | ours − truth (each run) |")
    print("|---|---:|---:|---:|")
    for py, rs in runs.items():
        truth = statistics.median(r["truth"] for r in rs)
        got = statistics.median(r["got"] for r in rs)
        each = ", ".join(f"{(r['got'] - r['truth']) * 100:+.1f}" for r in rs)
        print(f"| {py} | {truth:.1%} | {got:.1%} | {(got - truth) * 100:+.1f} pt ({each}) |")


def rss(repeat: int) -> None:
    rs = [run(RSS) for _ in range(repeat)]
    mib = 2**20
    med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
    print("\n| figure | MiB |")
    print("|---|---:|")
    print(f"| VmHWM at stop (kernel) | {med(lambda r: r['hwm']) / mib:.1f} |")
    print(f"| ours: META rss.peak_bytes ({rs[0]['rss']['peak_source']}) | "
          f"{med(lambda r: r['rss']['peak_bytes']) / mib:.1f} |")
    print(f"| the 0.5 s poll alone (before) | {med(lambda r: r['rss']['polled_peak_bytes']) / mib:.1f} |")
    heap = med(lambda r: r['memory'].get('peak_bytes', 0))
    print(f"| live heap at its peak (sampled) | {heap / mib:.1f} |")
    print(f"| RSS read when the heap peaked | "
          f"{med(lambda r: r['memory'].get('rss_at_peak_bytes', 0)) / mib:.1f} |")


def pyspy(repeat: int) -> None:
    exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    from metaflow_profiler import Profile

    names = ["part_a", "part_b", "parse", "work", "main"]
    ours: dict[str, list[float]] = {n: [] for n in names}
    spy: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "work.py")
        with open(script, "w") as f:
            f.write(PYSPY_WORK)
        for _ in range(repeat):
            prof_path, raw = os.path.join(d, "p.mfprof"), os.path.join(d, "spy.txt")
            subprocess.run([exe, "record", "--rate", "1000", "--nonblocking", "--format", "raw",
                            "-o", raw, "--", sys.executable, script, prof_path],
                           capture_output=True, check=True, timeout=300)
            rows = {r.name: r.total_s for r in Profile.load(prof_path).functions()}
            for n in names:
                ours[n].append(rows.get(n, 0) / rows["main"])
            counts: dict[str, int] = dict.fromkeys(names, 0)
            main_total = 0
            for line in open(raw):
                stack, _, c = line.rstrip().rpartition(" ")
                frames = {fr.split(" (")[0] for fr in stack.split(";")}
                if "main" in frames:
                    main_total += int(c)
                for n in names:
                    counts[n] += int(c) if n in frames else 0
            for n in names:
                spy[n].append(counts[n] / main_total if main_total else 0)
    print("\n| function | ours (share of main) | py-spy | difference |")
    print("|---|---:|---:|---:|")
    for n in names[:-1]:
        a, b = statistics.median(ours[n]), statistics.median(spy[n])
        print(f"| {n} | {a:.1%} | {b:.1%} | {(a - b) * 100:+.1f} pt |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-pyspy", action="store_true")
    ap.add_argument("--only-on-cpu", action="store_true", help="the on-CPU tables alone")
    ap.add_argument("--ab", metavar="PYTHON,PYTHON", help="instead: the lone 10 ms sleeper under each of "
                    "these interpreters (e.g. two builds' venvs), interleaved")
    ap.add_argument("--seconds", type=float, default=20.0, help="profiled seconds a run, with --ab")
    a = ap.parse_args()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    if a.ab:
        on_cpu_ab(a.repeat, a.ab.split(","), a.seconds)
        return
    on_cpu(a.repeat)
    if a.only_on_cpu:
        return
    rss(a.repeat)
    if not a.skip_pyspy:
        pyspy(a.repeat)


if __name__ == "__main__":
    main()
