"""The sampler behind a seccomp filter, as container runtimes may install:
its cost when process_vm_readv is forbidden (it reads /proc/self/mem) and
when no memory read works (the GIL-taking fallback).

    python bench/bench_seccomp.py [--repeat 5]

Each case runs in a fresh process that installs a real filter (deny(),
also used by tests/unit/test_seccomp.py) and then times the workloads of
bench_overhead.py without and with the profiler, alternating, median of
--repeat. Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import subprocess
import sys
import time

# (process_vm_readv, pread64) by machine: the numbers a filter matches.
SYSCALLS = {"x86_64": (310, 17), "aarch64": (270, 67)}


def deny(numbers) -> None:
    """Make the listed syscalls fail with EPERM in this process from now on."""

    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]

    insns = [Insn(0x20, 0, 0, 0)]  # ld [0]: seccomp_data.nr
    for nr in numbers:
        insns += [Insn(0x15, 0, 1, nr), Insn(0x06, 0, 0, 0x00050000 | 1)]  # jeq nr; ret ERRNO(EPERM)
    insns.append(Insn(0x06, 0, 0, 0x7FFF0000))  # ret ALLOW
    arr = (Insn * len(insns))(*insns)
    prog = Prog(len(insns), ctypes.cast(arr, ctypes.POINTER(Insn)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter")  # NO_NEW_PRIVS, FILTER


def child(numbers, repeat: int) -> None:
    import bench_overhead as bo

    deny(numbers)
    from metaflow_profiler import Profiler

    rows = {}
    for name in ("json+regex+sort", "8 threads"):
        fn = bo.WORKLOADS[name]
        base, prof = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            base.append(time.perf_counter() - t)
            p = Profiler(interval=0.001, timeline_interval=0.5, memory=False)
            p.start()
            t = time.perf_counter()
            fn()
            prof.append(time.perf_counter() - t)
            m = p.stop().meta
        rows[name] = {"mode": m["sampler_mode"], "ratio": statistics.median(prof) / statistics.median(base),
                      "rate": m["sampler_passes"] / (m["duration_ns"] / 1e9),
                      "busy_us": m["sampler_busy_ns"] / m["sampler_passes"] / 1000}
    print(json.dumps(rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    if a.child is not None:
        child(json.loads(a.child), a.repeat)
        return
    vm_readv, pread = SYSCALLS[platform.machine()]
    print(f"Python {platform.python_version()}, {platform.machine()}, {time.strftime('%Y-%m-%d')}, "
          f"median of {a.repeat}\n")
    print("| filter denies | workload | how stacks are read | overhead | passes/s | µs per pass |")
    print("|---|---|---|---:|---:|---:|")
    for label, numbers in (("nothing", []), ("process_vm_readv", [vm_readv]),
                           ("process_vm_readv, pread64", [vm_readv, pread])):
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(numbers),
                              "--repeat", str(a.repeat)], capture_output=True, text=True, check=True)
        for name, r in json.loads(out.stdout.splitlines()[-1]).items():
            mode = r["mode"].split(":")[0].removeprefix("without the GIL, ")
            print(f"| {label} | {name} | {mode} | {r['ratio']:.3f}× | {r['rate']:.0f} | {r['busy_us']:.1f} |")


if __name__ == "__main__":
    main()
