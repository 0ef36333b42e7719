"""What a baseline costs the card (issue 15): size and first paint with and
without one.

    python bench/bench_compare.py [--sizes 100000,1000000] [--stacks 20000] [--reps 3]

The profiles are bench_card.py's synthetic ones; the baseline is the same
program's shorter run (the same stack tree, 80 % of the samples), attached
with Profile.with_baseline as the card renderer does. Reports the card's
growth next to the baseline's TOTALS-only bytes (the most it may grow by,
compressed alike) and first paint with the comparison drawn.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_card import make_profile


def measure(path: Path, reps: int) -> dict:
    """Medians of the viewer's own timings over fresh pages."""
    import statistics

    from playwright.sync_api import sync_playwright

    out: dict = {"first_paint_ms": [], "viewer_ms": [], "compare_ms": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        for _ in range(reps):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(path.as_uri())
            page.wait_for_selector("html[data-mfp-ready]", state="attached", timeout=60000)
            t = page.evaluate("window.__mfp.timings")
            out["first_paint_ms"].append(t["firstPaint"])
            out["viewer_ms"].append(t["firstPaint"] - t["start"])
            out["compare_ms"].append(t.get("compare", 0))
            page.close()
        browser.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--stacks", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from metaflow_profiler import Profile
    from metaflow_profiler.html import render_html

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            this = Profile.from_bytes(make_profile(n, args.stacks))
            base = Profile.from_bytes(make_profile(int(n * 0.8), args.stacks))
            with_base = this.with_baseline(base, {"baseline": "1", "how": "previous"})
            totals_only = with_base.baseline().to_bytes()
            out = {"samples": n, "baseline_samples": int(n * 0.8),
                   "totals_only_deflated": len(base64.b64encode(zlib.compress(totals_only, 9)))}
            for label, prof in (("plain", this), ("compared", with_base)):
                html = render_html(prof.to_bytes(), title=f"bench {n}")
                path = Path(tmp) / f"{label}_{n}.html"
                path.write_text(html, encoding="utf-8")
                m = measure(path, args.reps)
                out[f"{label}_bytes"] = len(html.encode())
                out[f"{label}_first_paint_ms"] = round(m["first_paint_ms"], 1)
                out[f"{label}_viewer_ms"] = round(m["viewer_ms"], 1)
                out[f"{label}_compare_ms"] = round(m["compare_ms"], 1)
            out["growth_bytes"] = out["compared_bytes"] - out["plain_bytes"]
            rows.append(out)
            print(json.dumps(out))
    print()
    print("| samples | card | with baseline | growth | baseline TOTALS (deflated, base64) "
          "| first paint (viewer's part) | with baseline | of which the comparison |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r['samples']:,} | {r['plain_bytes'] / 1e6:.2f} MB | {r['compared_bytes'] / 1e6:.2f} MB "
              f"| {r['growth_bytes'] / 1e3:.0f} kB | {r['totals_only_deflated'] / 1e3:.0f} kB "
              f"| {r['plain_first_paint_ms']:.0f} ms ({r['plain_viewer_ms']:.0f}) "
              f"| {r['compared_first_paint_ms']:.0f} ms ({r['compared_viewer_ms']:.0f}) "
              f"| {r['compared_compare_ms']:.0f} ms |")


if __name__ == "__main__":
    main()
