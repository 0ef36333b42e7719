"""Card benchmark: size, time to first paint, redraw after a range selection.

    python bench/bench_card.py [--sizes 10000,100000,1000000] [--stacks 20000]

For each size it builds a profile with that many samples over `--stacks`
distinct stacks (synthetic but shaped like a real run: a few thousand
functions, stacks up to 60 deep, the stack changing on 15 % of samples,
4 threads sampled together on each ~1 ms tick with a few µs of jitter, as
the engine's sampler writes them, on/off CPU in stretches), renders the card
with render_html, opens it in Debian's headless Chromium and reads the viewer's own timings:

- size: bytes of the HTML file (goal: <= 2 MB at 1M samples / 20k stacks)
- first paint: from navigation start to the first frame after the card is
  drawn (goal, issue 12: <= 300 ms at 1M samples); the viewer's own part
  (decode, parse, build, draw) is also shown apart from the browser's HTML
  parsing; with --cpu also the page's main-thread CPU time up to it (from a
  trace's thread clock), which a shared machine's load hardly moves
- redraw: recompute + layout + draw after a range selection, median over
  several ranges, plus the time to the next frame (goal: <= 50 ms)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def builder_class():
    from metaflow_profiler._native import Builder

    return Builder


def make_profile(n_samples: int, n_stacks: int, seed: int = 1) -> bytes:
    Builder = builder_class()
    rng = random.Random(seed)
    b = Builder()
    n_funcs = 3000
    files = [b.string(f"/srv/app/pkg{i % 40}/mod{i}.py") for i in range(300)]
    funcs = []
    for i in range(n_funcs):
        kind = 1 if i % 11 == 0 else 0
        funcs.append(b.func(b.string(f"func_{i}"), files[i % len(files)], 10 + i % 500, kind))
    threads = [
        b.thread(100 + t, b.string("MainThread" if t == 0 else f"worker-{t}"), 1 if t == 0 else 0)
        for t in range(4)
    ]
    roots = [b.stack(-1, b.frame(funcs[t], 0)) for t in range(4)]
    # grow a stack tree: each new leaf extends a random existing node
    nodes = list(roots)
    depth = {r: 1 for r in roots}
    leaves = []
    focus = None  # a function just under the main thread's root: the card opens on it
    while len(nodes) < n_stacks:
        parent = (
            nodes[rng.randrange(len(nodes))]
            if rng.random() < 0.3
            else (leaves[-1] if leaves else roots[0])
        )
        if depth[parent] > 60:
            parent = roots[rng.randrange(4)]
        fi = rng.randrange(n_funcs)
        f = funcs[fi]
        node = b.stack(parent, b.frame(f, rng.randrange(1, 400)))
        if focus is None and parent == roots[0] and fi >= 4:
            focus = f"func_{fi}"
        if node not in depth:
            depth[node] = depth[parent] + 1
            nodes.append(node)
            leaves.append(node)
    hot = leaves[: max(1, len(leaves) // 20)]
    # Like the engine's sampler: one tick every ~1 ms (a few µs of jitter)
    # samples every thread at the same time (dt 0 after the first), each
    # thread's weight is its own time since its previous sample.
    n_threads = len(threads)
    cur = [leaves[rng.randrange(len(leaves))] for _ in range(n_threads)]
    on_cpu = [1] * n_threads
    last = [0] * n_threads
    t_ns = 0
    taken = 0
    while taken < n_samples:
        t_ns += 1_000_000 + int(rng.gauss(0, 2_000))
        for th in range(n_threads):
            if taken >= n_samples:
                break
            r = rng.random()
            if r < 0.05:
                cur[th] = leaves[rng.randrange(len(leaves))]
            elif r < 0.15:
                cur[th] = hot[rng.randrange(len(hot))]
            if rng.random() < 0.02:
                on_cpu[th] ^= 1  # threads run and wait in stretches
            b.sample(t_ns, cur[th], threads[th], t_ns - last[th], on_cpu[th])
            last[th] = t_ns
            taken += 1
    series = {
        "cpu_pct": b.series("cpu_pct", "%", 1),
        "rss_bytes": b.series("rss_bytes", "B", 0),
        "disk_read_Bps": b.series("disk_read_Bps", "B/s", 0),
        "net_recv_Bps": b.series("net_recv_Bps", "B/s", 0),
    }
    rss = 200_000_000
    for k in range(t_ns // 500_000_000 + 1):
        tk = k * 500_000_000
        rss += rng.randrange(-1_000_000, 2_000_000)
        b.point(series["cpu_pct"], tk, rng.randrange(500, 1000))
        b.point(series["rss_bytes"], tk, rss)
        b.point(series["disk_read_Bps"], tk, rng.randrange(0, 10_000_000))
        b.point(series["net_recv_Bps"], tk, rng.randrange(0, 1_000_000))
    for leaf in leaves[:5000]:
        b.memory(
            leaf, rng.randrange(1, 10_000_000), rng.randrange(1, 50_000_000), rng.randrange(1, 1000)
        )
    meta = {
        "backend": "sample",
        "python": sys.version.split()[0],
        "duration_ns": t_ns,
        "interval_ns": 1_000_000,
        "samples_taken": n_samples,
        "samples_decimation": 1,
        "sampler_mode": "without the GIL, through process_vm_readv",
        "focus": focus,
        "limits": {"memory_limit_bytes": 4 * 2**30, "cpus": 8},
        "timeline": {"totals": {"disk_read_bytes": 123_456_789, "net_recv_bytes": 1_234_567}},
    }
    return b.encode(json.dumps(meta))


def main_thread_cpu_ms(trace: dict) -> float | None:
    """CPU time (the trace's thread clock) of the page's main thread from
    navigation to the viewer's first frame: what the card costs, whatever
    else the machine runs (wall time on a shared machine is mostly waiting)."""
    ev = trace["traceEvents"]
    parse = [e for e in ev if e.get("name") == "ParseHTML"]
    mark = [e for e in ev if e.get("name") == "mfp-first-paint"]
    if not parse or not mark:
        return None
    pid, tid = parse[0]["pid"], parse[0]["tid"]
    tasks = [e for e in ev if e.get("pid") == pid and e.get("tid") == tid and e.get("ph") == "X"
             and e.get("name") in ("RunTask", "ThreadControllerImpl::RunTask") and "tdur" in e]
    return sum(e["tdur"] for e in tasks if e["ts"] < mark[0]["ts"]) / 1000


def measure(html_path: Path, reps: int, cpu: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    out: dict = {"first_paint_ms": [], "redraw_ms": [], "redraw_frame_ms": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        for _ in range(reps):
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errs=errors: errs.append(str(e)))
            if cpu:
                browser.start_tracing(page=page, categories=[
                    "devtools.timeline", "disabled-by-default-devtools.timeline", "blink.user_timing"])
            page.goto(html_path.as_uri())
            page.wait_for_selector("html[data-mfp-ready]", state="attached", timeout=60000)
            if cpu:
                ms = main_thread_cpu_ms(json.loads(browser.stop_tracing()))
                if ms is not None:
                    out.setdefault("first_paint_cpu_ms", []).append(ms)
            if errors or page.evaluate("window.__mfp.error"):
                raise SystemExit(f"card failed: {errors}")
            # what the card draws after its first frame (cards before issue 12 had nothing)
            if page.evaluate("'complete' in window.__mfp"):
                page.wait_for_selector("html[data-mfp-complete]", state="attached", timeout=60000)
            t = page.evaluate("window.__mfp.timings")
            out["first_paint_ms"].append(t["firstPaint"])
            out.setdefault("complete_ms", []).append(t.get("complete", t["firstPaint"]))
            out.setdefault("viewer_ms", []).append(t["firstPaint"] - t["start"])
            out.setdefault("inflate_ms", []).append(t["inflated"] - t["start"])
            out.setdefault("parse_ms", []).append(t["parsed"] - t["inflated"])
            out.setdefault("model_ms", []).append(t["model"] - t["parsed"])
            out.setdefault("render_ms", []).append(t["rendered"] - t["model"])
            for k, v in t.items():
                if k.startswith(("create_", "render_", "start_")) or k in ("layout", "draw", "aggregate"):
                    out.setdefault(k, []).append(v)
            res = page.evaluate(
                """async () => {
                  const D = window.__mfp.duration();
                  const ranges = [[0.1, 0.2], [0.0, 0.5], [0.3, 0.9], [0.0, 0.999], [0.45, 0.55]];
                  const sync = [], frame = [];
                  for (const [a, b] of ranges) {
                    const t0 = performance.now();
                    const ms = window.__mfp.selectRange(a * D, b * D);
                    await new Promise(r => requestAnimationFrame(() => r()));
                    frame.push(performance.now() - t0);
                    sync.push(ms);
                  }
                  window.__mfp.selectRange(null);
                  return {sync, frame};
                }"""
            )
            out["redraw_ms"].extend(res["sync"])
            out["redraw_frame_ms"].extend(res["frame"])
            ctx.close()
        browser.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--stacks", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--cpu", action="store_true",
                    help="also trace each load: the main thread's CPU time to the first frame")
    args = ap.parse_args()
    from metaflow_profiler.html import render_html

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            t0 = time.perf_counter()
            data = make_profile(n, args.stacks)
            t1 = time.perf_counter()
            html = render_html(data, title=f"bench {n}")
            t2 = time.perf_counter()
            path = Path(tmp) / f"card_{n}.html"
            path.write_text(html, encoding="utf-8")
            m = measure(path, args.reps, args.cpu)
            row = {
                "samples": n,
                "stacks": args.stacks,
                "profile_bytes": len(data),
                "card_bytes": len(html.encode()),
                "build_s": round(t1 - t0, 2),
                "render_html_ms": round((t2 - t1) * 1000, 1),
                **{k: round(v, 1) for k, v in m.items()},
            }
            rows.append(row)
            print(json.dumps(row))
    print()
    print(
        "| samples | card size | first paint | of which viewer | main-thread CPU to it "
        "| redraw (JS) | redraw to next frame |"
    )
    print(
        "|--------:|----------:|------------:|----------------:|---:|------------:|---------------------:|"
    )
    for r in rows:
        cpu_ms = f"{r['first_paint_cpu_ms']:.0f} ms" if "first_paint_cpu_ms" in r else "—"
        print(
            f"| {r['samples']:,} | {r['card_bytes'] / 1e6:.2f} MB | {r['first_paint_ms']:.0f} ms "
            f"| {r['viewer_ms']:.0f} ms | {cpu_ms} | {r['redraw_ms']:.1f} ms "
            f"| {r['redraw_frame_ms']:.1f} ms |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
