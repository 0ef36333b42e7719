"""The comparison on the card (issue 15) in real Chromium: the words on top,
the differential flame graph, the baseline beside each function in Top
functions and Sandwich, the card without a baseline, and a merged card's
table of tasks. Profiles with known numbers, built by the engine's encoder."""

from __future__ import annotations

import json

import pytest
from card_fixtures import load_builder, render_html

from metaflow_profiler import Profile

pytestmark = pytest.mark.browser

MS = 1_000_000
FRAMEWORK = [("<module>", "/w/flow.py"), ("MetaflowTask.run_step", "/mf/task.py")]
STEP = ("Flow.train", "/w/flow.py")
START = 1_700_000_000 * 10**9  # 2023-11-14 22:13:20 UTC


def build(stacks, duration_ms, start=START):
    """1 ms samples on CPU; stacks: [(path below the step, samples)]."""
    b = load_builder()()
    th = b.thread(7, b.string("MainThread"), 1)
    t = 0
    for path, n in stacks:
        node = -1
        for i, (name, file) in enumerate([*FRAMEWORK, STEP, *path]):
            line = 10 + i
            node = b.stack(node, b.frame(b.func(b.string(name), b.string(file), line, 0), line))
        for _ in range(n):
            t += MS
            b.sample(t, node, th, MS, 1)
    meta = {"backend": "sample", "duration_ns": duration_ms * MS, "start_unix_ns": start,
            "interval_ns": MS, "focus": "Flow.train"}
    return Profile.from_bytes(b.encode(json.dumps(meta)))


def pair():
    """The baseline: 12.4 s... in ms: load 400, fit 300, old_helper 100.
    This run: load 400, fit 150, slow_extra 600 (new), old_helper gone."""
    base = build([([("load", "/w/flow.py")], 400), ([("fit", "/w/model.py")], 300),
                  ([("old_helper", "/w/flow.py")], 100)], 800, start=START)
    new = build([([("load", "/w/flow.py")], 400), ([("fit", "/w/model.py")], 150),
                 ([("slow_extra", "/w/flow.py")], 600)], 1150, start=START + 86400 * 10**9)
    return base, new


@pytest.fixture
def compared(card):
    base, new = pair()
    info = {"baseline": "1234", "pathspec": "Flow/1234/train/5", "how": "previous"}
    return card(render_html(new.with_baseline(base, info).to_bytes(), title="Flow/1299/train/9"))


def test_first_paint_says_what_changed_in_words(compared):
    page = compared.page
    head = page.locator("#mfp-compare-head").inner_text()
    assert head == "Compared with run 1234 (2023-11-14 22:13 UTC): 0.80 s → 1.15 s (+44 %)"
    grew = page.locator("#mfp-compare-grew li")
    assert grew.count() == 1  # the step and its callers only pass slow_extra's time on
    assert grew.nth(0).get_attribute("data-name") == "slow_extra"
    assert "0 s → 0.60 s (+0.60 s) · 0% → 52.2% of the time" in grew.nth(0).inner_text()
    shrank = [page.locator("#mfp-compare-shrank li").nth(i).get_attribute("data-name") for i in range(2)]
    assert shrank == ["fit", "old_helper"]  # -150 ms, then -100 ms
    assert "0.30 s → 0.15 s (−0.15 s)" in page.locator("#mfp-compare-shrank li").nth(0).inner_text()
    # load did not change: not named
    assert "load" not in page.locator("#mfp-compare").inner_text()


def test_differential_flame_graph_colours_by_change(compared):
    page = compared.page
    page.click("#mfp-tab-diff")
    boxes = {b["name"]: b for b in page.evaluate("window.__mfp.hook('diffBoxes')")}
    # widths from this run, opened on the step
    assert boxes["Flow.train"]["after"] == 1150 * 1000 and boxes["Flow.train"]["before"] == 800 * 1000
    assert boxes["slow_extra"]["before"] == 0 and boxes["slow_extra"]["color"].startswith("hsl(4,85%")
    assert boxes["fit"]["color"].startswith("hsl(214,")  # halved: blue
    assert boxes["load"]["color"] == "hsl(220,10%,84%)"  # the same: grey
    assert "old_helper" not in boxes  # gone from this run: no box (the list names it)
    assert boxes["slow_extra"]["w"] > boxes["load"]["w"] > boxes["fit"]["w"]
    compared.page.locator("#mfp-panel-diff canvas.flame-canvas").click(
        position={"x": boxes["fit"]["x"] + 5, "y": boxes["fit"]["depth"] * 18 + 9})
    assert "baseline 300 ms → this run 150 ms (−50 %)" in page.locator("#mfp-diff-detail").inner_text()


def test_top_functions_and_sandwich_show_the_baseline(compared):
    page = compared.page
    page.click("#mfp-tab-table")
    cells = {}
    for row in page.locator("#mfp-table tbody tr").all():
        tds = row.locator("td").all_inner_texts()
        cells[tds[0]] = tds
    heads = page.locator("#mfp-table thead th").all_inner_texts()
    b, d = heads.index("Baseline"), heads.index("Δ total")
    assert cells["fit"][b] == "300 ms" and cells["fit"][d] == "−150 ms"
    assert cells["slow_extra"][b] == "0" and cells["slow_extra"][d] == "+600 ms"
    # a time range is not the baseline's whole run: the columns go
    page.evaluate("window.__mfp.selectRange(0, 500000)")
    assert not page.locator("#mfp-table thead th", has_text="Baseline").is_visible()
    page.evaluate("window.__mfp.selectRange(null)")
    page.locator("#mfp-compare-shrank button.compare-fn", has_text="fit").click()
    assert compared.state()["tab"] == "sandwich"
    assert page.locator("#mfp-sandwich-baseline").inner_text() == (
        "baseline total 300 ms (37.5%) → 150 ms (13.0%) · −50 %")


def test_no_baseline_says_so_and_changes_nothing_else(card):
    _, new = pair()
    plain = card(render_html(new.to_bytes()), name="plain.html")
    missing = card(render_html(new.with_baseline(None, {"missing": "No earlier run of Flow whose "
               "step train succeeded with a profile."}).to_bytes()), name="missing.html")
    assert missing.page.locator("#mfp-compare").inner_text() == (
        "No comparison: No earlier run of Flow whose step train succeeded with a profile.")
    assert plain.page.locator("#mfp-compare").count() == 0
    tabs = [c.page.locator("nav.tabs button").all_inner_texts() for c in (plain, missing)]
    assert tabs[0] == tabs[1] and "Diff flame graph" not in tabs[0]
    for c in (plain, missing):
        c.page.click("#mfp-tab-table")
    assert not missing.page.locator("#mfp-table thead th", has_text="Baseline").count()
    assert plain.boxes() == missing.boxes()


def test_a_merged_card_names_the_slowest_and_largest_task(card):
    tasks = [build([([("work", "/w/flow.py")], n)], n) for n in (30, 90, 40)]
    merged = Profile.merge(tasks, ["11", "12", "13"])
    c = card(render_html(merged.to_bytes()))
    head = c.page.locator("#mfp-tasks-head").inner_text()
    assert head.startswith("3 profiles merged · slowest: 12 (90.0 ms)")
    labels = [r.get_attribute("data-label") for r in c.page.locator("#mfp-tasks-table tbody tr").all()]
    assert labels == ["12", "13", "11"]
    assert "work 90.0 ms" in c.page.locator("#mfp-tasks-table tbody tr").nth(0).inner_text()
