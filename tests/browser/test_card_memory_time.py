"""Memory over time and live at the end (HEAP_EVENTS, LEAKS) in real
Chromium: a time range shows what was allocated in it and still live at its
end, the heap series names the top allocating functions beside RSS, and the
leaks tab shows what was live when the profile ended."""

from __future__ import annotations

import json

import pytest
from card_fixtures import load_builder, render_html

pytestmark = pytest.mark.browser

MB = 2**20
S_US = 1_000_000
S_NS = 1_000_000_000


def memory_profile() -> bytes:
    """4 s. load: 10 MB made at 0.5 s, freed at 3 s. build: 20 MB (through a
    "[native malloc]" leaf) made at 1 s, live at the end. temp: 5 MB live
    from 2 s to 2.5 s. RSS polled every 0.5 s."""
    b = load_builder()()
    S = b.string

    def stack(*funcs):
        p = -1
        for name, kind in funcs:
            p = b.stack(p, b.frame(b.func(S(name), S("/app/flow.py" if kind == 0 else ""), 1, kind), 1))
        return p

    main = b.thread(1, S("MainThread"), 1)
    root = ("<thread MainThread>", 2)
    step = ("run_step", 0)
    st_load = stack(root, step, ("load", 0))
    st_build = stack(root, step, ("build", 0), ("[native malloc]", 1))
    st_temp = stack(root, step, ("temp", 0))
    for i in range(400):  # CPU samples so the card has a timeline and flame graph
        b.sample((i + 1) * 10_000_000, st_load, main, 10_000_000, 1)
    rss = b.series("rss_bytes", "B", 0)
    for k in range(9):
        b.point(rss, k * S_NS // 2, 40 * MB + k * 4 * MB)
    b.heap_event(st_load, 10 * MB, S_NS // 2, 3 * S_NS)
    b.heap_event(st_build, 20 * MB, S_NS, None)
    b.heap_event(st_temp, 5 * MB, 2 * S_NS, 5 * S_NS // 2)
    b.leak(st_build, 20 * MB)
    b.memory(st_load, 10 * MB, 10 * MB, 1)
    b.memory(st_build, 20 * MB, 20 * MB, 1)
    b.memory(st_temp, 5 * MB, 5 * MB, 1)
    meta = {"backend": "sample", "duration_ns": 4 * S_NS, "interval_ns": 10_000_000,
            "samples_taken": 400, "samples_decimation": 1,
            "memory": {"rate_bytes": 131072, "peak_bytes": 35 * MB, "events": 3,
                       "events_min_life_us": 0}}
    return b.encode(json.dumps(meta))


@pytest.fixture
def opened(card):
    return card(render_html(memory_profile(), title="memory over time"))


def test_range_shows_what_was_allocated_in_it_and_still_live_at_its_end(opened, shot_dir):
    page = opened.page
    page.locator("#mfp-tab-memtime").click()
    assert page.locator("#mfp-panel-memtime canvas.flame-canvas").is_visible()
    total = lambda: page.evaluate("window.__mfp.hook('memtimeTotal')")  # noqa: E731
    caption = page.locator("#mfp-memtime-caption")
    # whole run: allocated while profiling and live at the end
    assert total() == 20 * MB
    assert "still live at the end" in caption.inner_text()
    page.evaluate(f"window.__mfp.selectRange({0.4 * S_US}, {1.5 * S_US})")
    assert total() == 30 * MB  # load and build, both live at 1.5 s
    assert "30.0 MiB" in caption.inner_text()
    page.evaluate(f"window.__mfp.selectRange({1.9 * S_US}, {2.2 * S_US})")
    assert total() == 5 * MB  # temp only
    page.evaluate(f"window.__mfp.selectRange({1.9 * S_US}, {2.6 * S_US})")
    assert total() == 0  # temp was freed before the range ended
    page.screenshot(path=str(shot_dir / "memtime.png"), full_page=True)
    # the same range drives the other panels
    assert opened.state()["range"] == [1.9 * S_US, 2.6 * S_US]


def test_heap_series_names_the_top_allocating_functions_beside_rss(opened):
    page = opened.page
    page.locator("#mfp-tab-memtime").click()
    series = {s["label"]: s["max"] for s in page.evaluate("window.__mfp.hook('memtimeSeries')")}
    # build's bytes are charged to build, not to its "[native malloc]" leaf
    assert series == {"sampled heap": 35 * MB, "build": 20 * MB, "load": 10 * MB, "temp": 5 * MB,
                      "rss": 72 * MB}
    legend = page.locator("#mfp-memtime-chart .tl-legend").inner_text()
    assert "build" in legend and "rss" in legend


def test_live_at_end_tab_shows_the_leaks_by_stack(opened, shot_dir):
    page = opened.page
    page.locator("#mfp-tab-leaks").click()
    assert page.locator("#mfp-panel-leaks canvas.flame-canvas").is_visible()
    assert page.evaluate("window.__mfp.hook('leaksTotal')") == 20 * MB
    page.screenshot(path=str(shot_dir / "leaks.png"), full_page=True)
