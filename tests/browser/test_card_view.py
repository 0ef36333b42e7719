"""The card in real Chromium: what a person sees and can do with it."""

from __future__ import annotations

import re

import pytest
from card_fixtures import XSS, render_html, sample_profile

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def profile():
    return sample_profile()


@pytest.fixture
def opened(card, profile):
    data, _ = profile
    return card(render_html(data, title="TrainFlow / train"))


def stat_text(page, key):
    return page.locator(f'[data-stat="{key}"]').inner_text()


def test_stats_grid_shows_only_meaningful_cards(opened, shot_dir):
    page = opened.page
    assert page.locator("h1.card-title").inner_text() == "TrainFlow / train"
    assert "4.00 s" in stat_text(page, "duration")
    assert "4,400" in stat_text(page, "samples")
    assert "97.0%" in stat_text(page, "cpu")  # cpu_pct scale 1: 970 -> 97.0
    assert "248 MiB" in stat_text(page, "rss")  # 260e6 B
    assert "4.77 MiB/s" in stat_text(page, "disk_read")
    # present but never non-zero, or absent: no card
    keys = page.locator("[data-stat]").evaluate_all("els => els.map(e => e.dataset.stat)")
    assert "disk_write" not in keys and "net_recv" not in keys
    assert not any(k.startswith("gpu") for k in keys)
    # main thread on CPU all the time: exactly one core, no aliasing bumps
    cpu_readout = page.locator("#mfp-timeline .tl-readout").first.inner_text()
    assert "peak sampled threads 100%" in cpu_readout
    sub = page.locator(".card-sub").inner_text()
    assert "sample" in sub and "3.11.7" in sub
    page.screenshot(path=str(shot_dir / "card_light.png"), full_page=True)


def test_step_failed_banner_notes_and_text_only(opened):
    page = opened.page
    banner = page.locator("#mfp-step-failed")
    assert banner.is_visible()
    assert "Step failed" in banner.inner_text()
    assert "ValueError: bad <input> & stuff" in banner.inner_text()
    notes = page.locator("#mfp-notes li").all_inner_texts()
    # the machine's lack of a GPU library is no news: it waits in About
    assert notes == ["note with <b>markup</b>"]
    assert page.locator("#mfp-notes b").count() == 0
    env = page.locator("#mfp-env-notes li")
    assert not env.first.is_visible()
    page.locator("#mfp-about summary").click()
    assert env.all_inner_texts() == ["GPU: NVML not found"]
    assert env.first.is_visible()


def test_flamegraph_merges_by_function_with_percent_tooltip(opened, profile):
    _, counts = profile
    names = {b["name"] for b in opened.boxes()}
    assert {"run_step", "train", "load_data", "parse_csv", "numpy.dot", "time.sleep"} <= names
    total = sum(counts[k] * 1000 for k in ("dot", "parse", "xss", "gc")) + counts["sleep"] * 10000
    assert opened.state()["rootTotal"] == total
    opened.hover_box("train")
    tip = opened.page.locator("#mfp-panel-flame .tooltip")
    assert tip.is_visible()
    text = tip.inner_text()
    train_ms = (counts["dot"] + counts["xss"]) * 1000
    assert "train" in text and "/app/model.py:40" in text
    pct = f"{100 * train_ms / total:.1f}%"
    assert pct in text, (pct, text)


def test_search_dims_and_reports_matched_share(opened, profile, shot_dir):
    _, counts = profile
    page = opened.page
    share = opened.search("parse")
    total = sum(counts[k] * 1000 for k in ("dot", "parse", "xss", "gc")) + counts["sleep"] * 10000
    expected = 100 * counts["parse"] * 1000 / total
    assert f"matched {expected:.1f}% of time" in share
    page.screenshot(path=str(shot_dir / "search.png"))
    # regex: two functions, no double counting of nested matches
    page.locator("#mfp-regex").click()
    expected = 100 * sum(counts[k] * 1000 for k in ("dot", "parse", "xss", "gc")) / total
    assert f"matched {expected:.1f}% of time · 2 functions" in opened.search("^(run_step|train)$")
    assert opened.search("(").startswith("invalid regex")
    assert opened.search("a(?=b)").startswith("invalid regex: lookarounds")


def test_click_zooms_and_breadcrumb_resets(opened, shot_dir):
    page = opened.page
    before = opened.box("train")["w"]
    opened.click_box("train")
    assert opened.state()["zoomName"] == "train"
    crumbs = page.locator("#mfp-panel-flame .crumb").all_inner_texts()
    assert crumbs == ["all", "<thread MainThread>", "run_step", "train"]
    assert page.locator('#mfp-panel-flame .crumb[aria-current="true"]').inner_text() == "train"
    assert opened.box("train")["w"] > before  # now full width
    assert "load_data" not in {b["name"] for b in opened.boxes()}
    # the zoomed function's time on the stack joins the CPU chart
    cpu_legend = page.locator("#mfp-timeline .tl-chart").first.locator(".tl-key")
    assert "train" in cpu_legend.all_inner_texts()
    page.screenshot(path=str(shot_dir / "zoom.png"), full_page=True)
    page.locator("#mfp-panel-flame .crumb", has_text="run_step").click()
    assert opened.state()["zoomName"] == "run_step"
    page.get_by_role("button", name="Reset zoom").first.click()
    assert opened.state()["zoom"] == 0
    assert page.locator("#mfp-panel-flame .crumb").all_inner_texts() == ["all"]
    assert "train" not in cpu_legend.all_inner_texts()


def test_keyboard_search_escape_and_zoom(opened):
    page = opened.page
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "mfp-search"
    page.keyboard.type("numpy")
    assert "matched" in opened.wait_search("numpy")
    page.keyboard.press("Escape")
    assert page.locator("#mfp-search").input_value() == ""
    assert page.locator("#mfp-match").inner_text() == ""
    opened.hover_box("train")
    page.keyboard.press("+")
    assert opened.state()["zoomName"] == "train"
    page.keyboard.press("-")
    assert opened.state()["zoomName"] == "run_step"
    page.keyboard.press("Escape")
    assert opened.state()["zoom"] == 0
    opened.hover_box("parse_csv")
    page.keyboard.press("c")
    assert page.locator("#mfp-toast").inner_text() == "Copied: parse_csv"


def test_range_selection_recomputes_from_samples(opened, shot_dir):
    page = opened.page
    canvas = page.locator("#mfp-timeline canvas.tl-canvas").nth(0)  # CPU chart
    bb = canvas.bounding_box()
    # drag over the first quarter of the run: only load_data/parse_csv ran then
    page.mouse.move(bb["x"] + 2, bb["y"] + 30)
    page.mouse.down()
    page.mouse.move(bb["x"] + bb["width"] * 0.12, bb["y"] + 30, steps=4)
    page.mouse.move(bb["x"] + bb["width"] * 0.25, bb["y"] + 30, steps=4)
    page.mouse.up()
    st = opened.state()
    assert st["range"] is not None
    assert 0.9e6 < st["range"][1] < 1.1e6
    names = {b["name"] for b in opened.boxes()}
    assert "parse_csv" in names and "train" not in names and "numpy.dot" not in names
    assert page.locator("#mfp-range").is_visible()
    assert "Range" in page.locator("#mfp-range").inner_text()
    page.screenshot(path=str(shot_dir / "range.png"), full_page=True)
    page.locator("#mfp-range-clear").click()
    assert opened.state()["range"] is None
    assert "train" in {b["name"] for b in opened.boxes()}


def test_crosshair_reads_values_on_every_chart(opened):
    page = opened.page
    canvases = page.locator("#mfp-timeline canvas.tl-canvas")
    bb = canvases.nth(2).bounding_box()  # disk chart
    page.mouse.move(bb["x"] + bb["width"] * 0.5, bb["y"] + 20)
    readouts = page.locator("#mfp-timeline .tl-readout").all_inner_texts()
    assert len(readouts) == 3  # CPU, memory, disk
    assert all(r.startswith("2.00 s") for r in readouts), readouts
    assert any("rss" in r and "MiB" in r for r in readouts)


def test_thread_selector_and_on_cpu_view(opened, profile):
    _, counts = profile
    page = opened.page
    options = page.locator("#mfp-thread option").all_inner_texts()
    assert options == [
        "All threads (2)",
        "MainThread (1001) · main — 4.00 s, 100.0% on CPU",
        "heartbeat (1002) — 4.00 s, 0% on CPU",
    ]
    page.locator("#mfp-thread").select_option(value="1")
    assert opened.state()["rootTotal"] == counts["sleep"] * 10000
    assert "time.sleep" in {b["name"] for b in opened.boxes()}
    page.locator("#mfp-mode button", has_text="On CPU").click()
    assert opened.state()["rootTotal"] == 0
    assert page.locator("#mfp-panel-flame .flame-empty").is_visible()
    page.locator("#mfp-thread").select_option(value="-1")
    names = {b["name"] for b in opened.boxes()}
    assert "time.sleep" not in names and "train" in names


def test_top_functions_table_sorts(opened, shot_dir):
    page = opened.page
    page.locator("#mfp-tab-table").click()
    rows = page.locator("#mfp-table tbody tr")
    # on-CPU self time first: the heartbeat's sleep (most wall time, never
    # on CPU) does not lead; it is listed, greyed and marked waiting
    first = rows.nth(0).locator("td").nth(0).inner_text()
    assert first == "numpy.dot"
    sleep = page.locator("#mfp-table tbody tr", has_text="time.sleep")
    assert "idle" in sleep.get_attribute("class") and "waiting" in sleep.inner_text().lower()
    assert "idle" not in (rows.nth(0).get_attribute("class") or "")
    page.locator('#mfp-table th button[data-key="self"]').click()
    assert rows.nth(0).locator("td").nth(0).inner_text().startswith("time.sleep")
    page.locator('#mfp-table th button[data-key="total"]').click()
    names = page.locator("#mfp-table tbody tr td.fn-name").all_inner_texts()
    assert names[0] in ("<thread MainThread>", "run_step")
    page.locator('#mfp-table th button[data-key="name"]').click()
    names = page.locator("#mfp-table tbody tr td.fn-name").all_inner_texts()
    assert names == sorted(names, key=str.lower) or names == sorted(names)
    page.screenshot(path=str(shot_dir / "table.png"), full_page=True)
    # the same table over memory at the heap peak
    page.locator("#mfp-table-source button", has_text="Memory at peak").click()
    page.locator('#mfp-table th button[data-key="self"]').click()
    first = page.locator("#mfp-table tbody tr").nth(0).locator("td").all_inner_texts()
    assert first[0] == "parse_csv" and first[2] == "50.0 MiB" and first[3] == "62.5%"


def test_sandwich_shows_callers_and_callees(opened, shot_dir):
    page = opened.page
    page.locator("#mfp-tab-table").click()
    page.locator(
        "#mfp-table tbody tr", has=page.locator("td.fn-name", has_text=re.compile("^train$"))
    ).click()
    assert page.locator("#mfp-panel-sandwich").is_visible()
    assert "train" in page.locator(".sw-title").inner_text()
    callers = page.evaluate(
        """() => { const fg = document.querySelectorAll('#mfp-panel-sandwich .flame-host');
        return [...fg].map(h => h.querySelector('canvas').getAttribute('aria-label')); }"""
    )
    assert callers == ["callers", "callees"]
    page.screenshot(path=str(shot_dir / "sandwich.png"), full_page=True)
    st = opened.state()
    assert st["tab"] == "sandwich" and st["selFunc"] >= 0
    # the two graphs hold the right functions
    names = page.evaluate("window.__mfp.sandwichNames()")
    assert "run_step" in names["callers"] and "<thread MainThread>" in names["callers"]
    assert "numpy.dot" in names["callees"] and XSS in names["callees"]
    assert "load_data" not in names["callees"] and "load_data" not in names["callers"]


def test_memory_flamegraph(opened, shot_dir):
    page = opened.page
    page.locator("#mfp-tab-memory").click()
    canvas = page.locator("#mfp-panel-memory canvas.flame-canvas")
    assert canvas.is_visible()
    page.screenshot(path=str(shot_dir / "memory.png"), full_page=True)
    root = page.evaluate("window.__mfp.memoryTotal()")
    assert root == 80 * 2**20
    assert "matched 62.5% of memory" in opened.search("parse_csv")
    page.locator("#mfp-mem-mode button", has_text="Allocated").click()
    assert page.evaluate("window.__mfp.memoryTotal()") == 140 * 2**20
    assert "matched 57.1% of memory" in page.locator("#mfp-match").inner_text()


def test_xss_function_name_renders_as_text(opened):
    page = opened.page
    page.locator("#mfp-tab-table").click()
    opened.search("onerror")
    cells = page.locator("#mfp-table td.fn-name").all_inner_texts()
    assert cells == [XSS]
    assert page.locator("#mfp-table td.fn-loc").all_inner_texts() == ["<b>evil</b>.py:1"]
    assert page.locator("img").count() == 0
    assert page.locator("b").count() == 0
    assert page.evaluate("window.__mfp.ready") is True
    assert opened.dialogs == []


def test_copy_name_without_clipboard_permission(opened):
    page = opened.page
    page.evaluate(
        """() => { window.__copied = [];
        document.addEventListener('copy', () => window.__copied.push(
            document.getSelection().toString() || document.activeElement.value)); }"""
    )
    opened.click_box("numpy.dot")
    page.locator("#mfp-panel-flame .copy-btn").click()
    copied = page.evaluate("window.__copied")
    toast = page.locator("#mfp-toast")
    manual = page.locator("#mfp-copy-manual input")
    if copied:
        assert copied[-1] == "numpy.dot"
        assert toast.inner_text() == "Copied: numpy.dot"
    else:
        assert manual.input_value() == "numpy.dot"


def test_dark_theme(card, profile, shot_dir):
    data, _ = profile
    c = card(render_html(data, title="dark"), scheme="dark")
    bg = c.page.evaluate("getComputedStyle(document.body).backgroundColor")
    nums = [int(x) for x in re.findall(r"\d+", bg)[:3]]
    assert max(nums) < 60, bg
    c.page.screenshot(path=str(shot_dir / "card_dark.png"), full_page=True)


def test_stack_chart_shows_time_order_and_follows_the_range(opened, shot_dir):
    page = opened.page
    page.locator("#mfp-tab-stack").click()
    assert "MainThread" in page.locator(".stack-title").inner_text()
    boxes = page.evaluate("window.__mfp.stackBoxes()")
    width = max(b["x1"] for b in boxes)

    def spans(name):
        return [(b["x0"] / width, b["x1"] / width) for b in boxes if b["name"] == name]

    # first 30 % of the run: load_data > parse_csv (cut by the odd <GC>
    # sample); afterwards train
    load = spans("load_data")
    assert min(a for a, _ in load) < 0.01 and 0.28 < max(b for _, b in load) < 0.32
    # a pixel shows the sample at its centre: 1 ms <GC> slivers among 3.3
    # samples per pixel show up only partly over the whole run ...
    assert 0 < len(spans("<GC>")) < 42
    assert min(a for a, _ in spans("train")) > 0.28
    assert all(b["depth"] == 0 for b in boxes if b["name"] == "<thread MainThread>")
    page.screenshot(path=str(shot_dir / "stack_chart.png"), full_page=True)
    # ... and all of them once a range brings a sample to several pixels:
    # 400-800 ms holds the <GC> samples i = 485, 582, 679, 776
    page.evaluate("window.__mfp.selectRange(400000, 800000)")
    gc = [b for b in page.evaluate("window.__mfp.stackBoxes()") if b["name"] == "<GC>"]
    assert len(gc) == 4
    # a range from 50 % to 100 %: no load_data left, train fills it
    page.evaluate("window.__mfp.selectRange(window.__mfp.duration() / 2, window.__mfp.duration())")
    names = {b["name"] for b in page.evaluate("window.__mfp.stackBoxes()")}
    assert "load_data" not in names and "train" in names
    # dragging across the stack chart narrows the range further
    canvas = page.locator("#mfp-panel-stack canvas.flame-canvas")
    bb = canvas.bounding_box()
    page.mouse.move(bb["x"] + bb["width"] * 0.25, bb["y"] + 5)
    page.mouse.down()
    page.mouse.move(bb["x"] + bb["width"] * 0.75, bb["y"] + 5, steps=3)
    page.mouse.up()
    a, b = opened.state()["range"]
    assert abs(a - 2_500_000) < 20_000 and abs(b - 3_500_000) < 20_000  # middle of 2-4 s
    assert page.locator("#mfp-range").is_visible()
    # clicking a box selects its function for the sandwich and the CPU chart
    canvas = page.locator("#mfp-panel-stack canvas.flame-canvas")
    canvas.click(position={"x": 40, "y": 2 * 18 + 9})
    assert opened.state()["selFunc"] >= 0
    legend = page.locator("#mfp-timeline .tl-chart").first.locator(".tl-key").all_inner_texts()
    assert "train" in legend


def test_theme_switch_repaints_canvases(opened):
    page = opened.page
    pixel = """() => { const c = document.querySelector('#mfp-panel-flame canvas');
        return Array.from(c.getContext('2d').getImageData(c.width - 8, 4, 1, 1).data); }"""
    light = page.evaluate(pixel)
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(100)
    dark = page.evaluate(pixel)
    assert sum(dark[:3]) < sum(light[:3]) - 150, (light, dark)
