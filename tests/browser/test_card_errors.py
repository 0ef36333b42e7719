"""The card never shows a blank page: missing or corrupt data, iframes."""

from __future__ import annotations

import base64
import json
import re
import zlib

import pytest
from card_fixtures import XSS, load_builder, render_html, sample_profile

pytestmark = pytest.mark.browser


def error_text(c):
    box = c.page.locator("#mfp-error-card")
    assert box.is_visible()
    return box.inner_text()


def test_missing_profile_shows_error_with_reason(card, shot_dir):
    c = card(render_html(None, title="t", error="profiler crashed: <boom> & more"))
    text = error_text(c)
    assert "No profile to show" in text
    assert "profiler crashed: <boom> & more" in text
    assert c.page.evaluate("window.__mfp.error") is True
    c.page.screenshot(path=str(shot_dir / "error_missing.png"))


def test_garbage_bytes_show_error(card):
    c = card(render_html(b"garbage", title="t"))
    assert "not a profile" in error_text(c)


def test_truncated_profile_shows_error(card):
    data, _ = sample_profile()
    c = card(render_html(data[: len(data) // 2], title="t", error="extra detail"))
    text = error_text(c)
    assert "could not be read" in text and "extra detail" in text


def test_payload_that_is_not_deflate_shows_error(card):
    html = render_html(b"MFPROF\x01", title="t")
    good = base64.b64encode(zlib.compress(b"MFPROF\x01", 9)).decode()
    bad = base64.b64encode(b"\x00not deflate at all" * 4).decode()
    c = card(html.replace(good, bad))
    assert "deflate" in error_text(c)


def test_out_of_range_index_is_corrupt_not_a_crash(card):
    B = load_builder()
    b = B()
    f = b.func(b.string("f"), b.string("x.py"), 1, 0)
    s = b.stack(-1, b.frame(f, 1))
    t = b.thread(1, b.string("main"), 1)
    b.sample(1_000, s, t, 1_000, 1)  # dt 1 µs: one byte
    data = bytearray(b.encode("{}"))
    # STACKS is tiny; pointing the only sample at stack 9 must be rejected.
    # SAMPLES (tag 7) payload: n=1, dt=1, stack, thread, weight, flags.
    pos = 7  # after magic + version
    while pos < len(data):
        tag, length = data[pos], data[pos + 1]
        if tag == 7:
            assert data[pos + 4] == s
            data[pos + 4] = 9
            break
        pos += 2 + length
    c = card(render_html(bytes(data), title="t"))
    assert "out of range" in error_text(c)


def test_empty_but_valid_profile_renders(card):
    B = load_builder()
    c = card(render_html(B().encode(json.dumps({"backend": "trace"})), title="empty"))
    assert c.page.locator("#mfp-error-card").count() == 0
    assert c.page.locator("#mfp-panel-flame .flame-empty").is_visible()


def test_profiler_error_shown_as_warning(card):
    B = load_builder()
    meta = {"error": {"type": "OSError", "message": "perf <denied>", "traceback": "tb line"}}
    c = card(render_html(B().encode(json.dumps(meta)), title="t"))
    w = c.page.locator("#mfp-profiler-error")
    assert "OSError: perf <denied>" in w.inner_text()


def test_in_sandboxed_iframe_reports_height(card, browser, tmp_path, shot_dir):
    data, _ = sample_profile()
    c = card(render_html(data, title="in iframe"), name="inner.html")
    parent = tmp_path / "parent.html"
    parent.write_text(
        "<!doctype html><html><body><script>window.msgs=[];"
        "addEventListener('message', e => window.msgs.push(e.data));</script>"
        '<iframe id="f" sandbox="allow-scripts" src="inner.html" '
        'style="width:1200px;height:300px;border:0"></iframe></body></html>'
    )
    page = c.page.context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(parent.as_uri())
    page.wait_for_function(
        "window.msgs.some(m => m && m.type === 'PluginHeightCheck' && m.height > 600)",
        timeout=15000,
    )
    frame = page.frame_locator("#f")
    assert frame.locator("h1.card-title").inner_text() == "in iframe"
    assert frame.locator("[data-stat=duration]").is_visible()
    heights = page.evaluate("window.msgs.filter(m => m.type === 'PluginHeightCheck')")
    assert all(isinstance(m["height"], int) for m in heights)
    assert errors == []
    # the size the UI would apply shows the whole card
    h = heights[-1]["height"]
    page.evaluate(f"document.getElementById('f').style.height = '{h}px'")
    page.screenshot(path=str(shot_dir / "iframe.png"), full_page=True)
    assert re.match(r"^\d+$", str(h))
    # copy a function name inside the permission-less iframe
    box = frame.locator("#mfp-panel-flame canvas.flame-canvas")
    bb = box.bounding_box()
    page.mouse.click(bb["x"] + 20, bb["y"] + 18 * 2 + 9)  # row 2: run_step
    frame.locator("#mfp-panel-flame .copy-btn").click()
    toast = frame.locator("#mfp-toast")
    manual = frame.locator("#mfp-copy-manual input")
    assert toast.is_visible() or manual.is_visible()
    if toast.is_visible():
        assert toast.inner_text() == "Copied: run_step"
    else:
        assert manual.input_value() == "run_step"
    assert errors == []


def test_deep_recursion_draws_and_counts_once(card):
    B = load_builder()
    b = B()
    rec = b.func(b.string("recurse"), b.string("r.py"), 1, 0)
    leaf = b.func(b.string("leaf"), b.string("r.py"), 9, 0)
    t = b.thread(1, b.string("main"), 1)
    s = -1
    for _ in range(1500):
        s = b.stack(s, b.frame(rec, 2))
    s = b.stack(s, b.frame(leaf, 10))
    for i in range(100):
        b.sample((i + 1) * 1_000_000, s, t, 1_000_000, 1)
    c = card(render_html(b.encode("{}"), title="deep"))
    page = c.page
    assert page.locator("#mfp-panel-flame .flame-more").is_visible()
    canvas_h = page.evaluate("document.querySelector('#mfp-panel-flame canvas').height")
    assert canvas_h <= 400 * 18 + 2
    page.locator("#mfp-tab-table").click()
    cells = {}
    for i in range(page.locator("#mfp-table tbody tr").count()):
        row = page.locator("#mfp-table tbody tr").nth(i).locator("td").all_inner_texts()
        cells[row[0]] = row
    # inclusive time of a recursive function is counted once: 100 %, not 1500x
    assert cells["recurse"][6] == "100.0%" and cells["recurse"][5] == "100 ms"
    assert cells["leaf"][2] == "100 ms"


def test_range_on_profile_without_timed_samples_keeps_whole_run(card):
    B = load_builder()
    b = B()
    f = b.func(b.string("work"), b.string("w.py"), 1, 0)
    s = b.stack(-1, b.frame(f, 1))
    b.thread(1, b.string("main"), 1)
    cpu = b.series("cpu_pct", "%", 0)
    for k in range(5):
        b.point(cpu, k * 1_000_000_000, 50)
    data = bytearray(b.encode('{"duration_ns": 4000000000}'))
    c = card(render_html(bytes(data), title="no samples"))
    # no SAMPLES and no TOTALS: an empty flame graph and a working timeline
    assert c.page.locator("#mfp-panel-flame .flame-empty").is_visible()
    bb = c.page.locator("#mfp-timeline canvas.tl-canvas").first.bounding_box()
    c.page.mouse.move(bb["x"] + 100, bb["y"] + 20)
    c.page.mouse.down()
    c.page.mouse.move(bb["x"] + 300, bb["y"] + 20, steps=3)
    c.page.mouse.up()
    assert c.page.locator("#mfp-range .range-note").is_visible()
    assert s == 0


def test_gpu_and_network_series_get_stats_and_charts(card):
    B = load_builder()
    b = B()
    f = b.func(b.string("step"), b.string("s.py"), 1, 0)
    s = b.stack(-1, b.frame(f, 1))
    t = b.thread(1, b.string("main"), 1)
    for i in range(50):
        b.sample((i + 1) * 10_000_000, s, t, 10_000_000, 1)
    util = b.series("gpu0_util_pct", "%", 0)
    mem = b.series("gpu0_mem_bytes", "B", 0)
    tot = b.series("gpu0_mem_total_bytes", "B", 0)
    rx = b.series("net_recv_Bps", "B/s", 0)
    tx = b.series("net_sent_Bps", "B/s", 0)
    oom = b.series("cgroup_oom_kills", "", 0)
    for k in range(6):
        tn = k * 100_000_000
        b.point(util, tn, 20 * k)
        b.point(mem, tn, k * 2**30)
        b.point(tot, tn, 16 * 2**30)
        b.point(rx, tn, k * 2**20)
        b.point(tx, tn, 0)
        b.point(oom, tn, 1 if k == 5 else 0)
    meta = {"duration_ns": 500_000_000, "limits": {"cpus": 2, "cpu_throttled_s": 1.5}}
    c = card(render_html(b.encode(json.dumps(meta)), title="gpu"))
    page = c.page
    assert "100%" in page.locator('[data-stat="gpu0_util"]').inner_text()
    gm = page.locator('[data-stat="gpu0_mem"]').inner_text()
    assert "5.00 GiB" in gm and "of 16.0 GiB" in gm
    assert "5.00 MiB/s" in page.locator('[data-stat="net_recv"]').inner_text()
    assert page.locator('[data-stat="net_sent"]').count() == 0  # all zero: not meaningful
    assert page.locator('[data-stat="oom"] .stat-value').inner_text() == "1"
    assert "1.50 s" in page.locator('[data-stat="throttled"]').inner_text()
    titles = page.locator("#mfp-timeline .tl-title").all_inner_texts()
    assert titles == ["CPU", "Network", "GPU", "GPU memory"]


@pytest.mark.parametrize("seed", range(8))
def test_mutated_profiles_never_break_the_page(card, seed):
    """Truncated or bit-flipped profiles: an error card or a card, never a crash."""
    import random

    data, _ = sample_profile()
    rng = random.Random(seed)
    buf = bytearray(data)
    if seed % 2:
        buf = buf[: rng.randrange(7, len(buf))]
    for _ in range(1 + seed):
        i = rng.randrange(6, len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    c = card(render_html(bytes(buf), title=f"mutant {seed}"))
    state = c.page.evaluate("document.documentElement.dataset.mfpReady")
    assert state in ("ok", "error")
    if state == "error":
        assert c.page.locator("#mfp-error-card").is_visible()
    else:
        assert c.page.locator("#mfp-panel-flame").is_visible()


def test_error_text_with_a_good_profile_is_a_note_not_a_failure(card):
    data, _ = sample_profile(step_failed=False)
    c = card(render_html(data, title="t", error="sampler stopped early: <reason>"))
    assert c.page.locator("#mfp-error-card").count() == 0
    assert c.page.locator("#mfp-step-failed").count() == 0
    assert "sampler stopped early: <reason>" in c.page.locator(".warn-card").inner_text()
    assert "train" in {b["name"] for b in c.boxes()}


def test_every_profile_string_is_text(card):
    """Thread names, notes, errors, title, drop reasons: none becomes markup."""
    B = load_builder()
    b = B()
    f = b.func(b.string(XSS), b.string(XSS), 1, 0)
    s = b.stack(-1, b.frame(f, 1))
    t = b.thread(1, b.string(XSS), 1)
    b.thread(2, b.string("other"), 0)
    b.sample(1_000_000, s, t, 1_000_000, 1)
    meta = {
        "title": XSS,
        "backend": XSS,
        "python": XSS,
        "notes": [XSS],
        "error": {"type": XSS, "message": XSS, "traceback": XSS},
        "step_failed": True,
        "step_error": {"type": XSS, "message": XSS},
        "samples_dropped": 3,
        "drop_reasons": {XSS: 3},
    }
    c = card(render_html(b.encode(json.dumps(meta))))
    page = c.page
    assert page.locator("h1.card-title").inner_text() == XSS
    assert XSS in page.locator("#mfp-step-failed").inner_text()
    assert XSS in page.locator("#mfp-profiler-error").inner_text()
    assert page.locator("#mfp-notes li").inner_text() == XSS
    assert XSS in page.locator('[data-stat="dropped"]').inner_text()
    assert XSS in page.locator("#mfp-thread").inner_text()
    assert page.locator("img").count() == 0
    assert c.dialogs == []
