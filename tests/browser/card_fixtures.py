"""Profiles with known shares for the card tests, built with the engine's
own encoder (metaflow_profiler._native.Builder)."""

from __future__ import annotations

import json

from metaflow_profiler.html import render_html

__all__ = ["XSS", "load_builder", "render_html", "sample_profile"]


def load_builder():
    from metaflow_profiler._native import Builder

    return Builder


XSS = "</script><img src=x onerror=alert(1)>"


def sample_profile(step_failed: bool = True) -> tuple[bytes, dict]:
    """A small profile with known shares.

    Main thread, 1 ms samples, 4000 of them, all on CPU:
      first 30 % (1200 samples): run_step > load_data > parse_csv
      then 2800: every 10th run_step > train > XSS, else run_step > train > numpy.dot
      every 97th sample (overrides): run_step > <GC>
    Background thread: 400 samples of 10 ms, off CPU, in time.sleep.
    """
    Builder = load_builder()
    b = Builder()
    S = b.string

    def fn(name, file, line, kind=0):
        return b.func(S(name), S(file), line, kind)

    main_t = b.thread(1001, S("MainThread"), 1)
    bg = b.thread(1002, S("heartbeat"), 0)
    f = {
        "root": fn("<thread MainThread>", "", 0, 2),
        "run": fn("run_step", "/app/flow.py", 10),
        "train": fn("train", "/app/model.py", 40),
        "load": fn("load_data", "/app/data.py", 5),
        "dot": fn("numpy.dot", "<native>", 0, 1),
        "parse": fn("parse_csv", "/app/data.py", 30),
        "xss": fn(XSS, "/app/<b>evil</b>.py", 1),
        "gc": fn("<GC>", "", 0, 3),
        "bgroot": fn("<thread heartbeat>", "", 0, 2),
        "sleep": fn("time.sleep", "<native>", 0, 1),
    }

    def st(*names):
        p = -1
        for n in names:
            p = b.stack(p, b.frame(f[n], 1))
        return p

    stacks = {
        "dot": st("root", "run", "train", "dot"),
        "parse": st("root", "run", "load", "parse"),
        "xss": st("root", "run", "train", "xss"),
        "gc": st("root", "run", "gc"),
        "sleep": st("bgroot", "sleep"),
    }
    counts = {k: 0 for k in stacks}
    t = 0
    for i in range(4000):
        t += 1_000_000
        key = "parse" if i < 1200 else ("dot" if i % 10 else "xss")
        if i % 97 == 0:
            key = "gc"
        counts[key] += 1
        b.sample(t, stacks[key], main_t, 1_000_000, 1)
        if i % 10 == 0:
            b.sample(t, stacks["sleep"], bg, 10_000_000, 0)
            counts["sleep"] += 1
    cpu = b.series("cpu_pct", "%", 1)
    rss = b.series("rss_bytes", "B", 0)
    lim = b.series("cgroup_mem_limit_bytes", "B", 0)
    dr = b.series("disk_read_Bps", "B/s", 0)
    for k in range(9):
        tn = k * 500_000_000
        b.point(cpu, tn, 300 if k < 2 else 950 + (k % 3) * 10)
        b.point(rss, tn, 100_000_000 + k * 20_000_000)
        b.point(lim, tn, 400_000_000)
        b.point(dr, tn, 5_000_000 if k < 3 else 0)
    b.memory(stacks["parse"], 50 * 2**20, 80 * 2**20, 100)
    b.memory(stacks["dot"], 30 * 2**20, 60 * 2**20, 50)
    meta = {
        "backend": "sample",
        "python": "3.11.7",
        "duration_ns": 4_000_000_000,
        "interval_ns": 1_000_000,
        "samples_taken": 4400,
        "samples_decimation": 1,
        "notes": ["GPU: NVML not found", "note with <b>markup</b>"],
    }
    if step_failed:
        meta["step_failed"] = True
        meta["step_error"] = {"type": "ValueError", "message": "bad <input> & stuff"}
    return b.encode(json.dumps(meta)), counts
