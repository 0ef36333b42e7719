"""A/B of the card: an older viewer against this one on the same 1M-sample
profile, alternating page loads so both see the same machine load.

    git archive <commit> viewer src/metaflow_profiler/html.py | tar -x -C /tmp/old
    python bench/ab_card.py [rounds]

Makes /tmp/p1m.mfprof (bench_card.make_profile(1_000_000, 20000)) once; the
old tree goes in /tmp/old (a viewer of the fixed-order era: its html.py is loaded
with its files read from /tmp/old/viewer)."""
import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_card

from metaflow_profiler.html import render_html

p1m = Path("/tmp/p1m.mfprof")
if not p1m.exists():
    p1m.write_bytes(bench_card.make_profile(1_000_000, 20000))
data = p1m.read_bytes()
spec = importlib.util.spec_from_file_location("oldhtml", "/tmp/old/src/metaflow_profiler/html.py")
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
old._viewer_file = lambda name: Path("/tmp/old/viewer", name).read_text()
Path("/tmp/ab_old.html").write_text(old.render_html(data, title="old"))
Path("/tmp/ab_new.html").write_text(render_html(data, title="new"))
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
res = {"old": [], "new": []}
for _ in range(rounds):
    for k in ("old", "new"):
        m = bench_card.measure(Path(f"/tmp/ab_{k}.html"), 1)
        m["load1"] = os.getloadavg()[0]
        res[k].append(m)
for k, rows in res.items():
    keys = ("first_paint_ms", "complete_ms", "viewer_ms", "redraw_ms", "redraw_frame_ms", "load1")
    print(k, {key: round(statistics.median(r[key] for r in rows), 1) for key in keys if key in rows[0]})
    print("  first paint each round:", [round(r["first_paint_ms"]) for r in rows])
Path("/tmp/ab.json").write_text(json.dumps(res))
