"""The live card in Chromium: the page the task writes while the step runs
(plugins/live.py's notes, card.py's renderer) shows the "Live snapshot"
banner, carries the hooks Metaflow's card viewers use, and the final card
(no META "live") shows no banner."""

from __future__ import annotations

import json
import time

import pytest
from card_fixtures import load_builder

from metaflow_extensions.profiler.plugins.cards.profile_card.card import render_card
from metaflow_extensions.profiler.plugins.live import live_notes

pytestmark = pytest.mark.browser


def profile(meta):
    b = load_builder()()
    f = b.func(b.string("hot"), b.string("flow.py"), 3, 0)
    s = b.stack(-1, b.frame(f, 4))
    t = b.thread(1, b.string("MainThread"), 1)
    for i in range(200):
        b.sample(i * 1_000_000, s, t, 1_000_000, 1)
    return b.encode(json.dumps(meta))


def live_meta():
    info = {"state": "running", "seq": 3, "reason": "memory", "elapsed_s": 25.2,
            "updated_unix_ns": int(time.mktime((2026, 12, 1, 10, 31, 2, 0, 0, 0)) * 1e9),
            "interval_s": 10.0,
            "memory": {"used_bytes": int(15.6 * 2**30), "limit_bytes": 16 * 2**30,
                       "source": "cgroup v2", "oom_kills": 0},
            "oom_kills_at_start": 0}
    return {"backend": "sample", "duration_ns": 200_000_000, "live": info,
            "notes": [*live_notes(info), "memory: heap at peak 1.0 GiB"]}


def test_live_card_shows_its_banner_and_runtime_hooks(card):
    c = card(render_card(profile(live_meta()), "Flow/1/start/2", token="live-3"))
    banner = c.page.locator("#mfp-live")
    assert banner.is_visible()
    text = banner.inner_text()
    assert "Live snapshot" in text
    assert "running — updated" in text and "25 s into the step" in text
    assert "last snapshot taken while the step was running" in text
    assert "memory was at 15.6 of 16.0 GiB (cgroup v2 limit) at the last update" in text
    notes = c.page.locator("#mfp-notes li").all_inner_texts()
    assert notes == ["memory: heap at peak 1.0 GiB"]  # the live lines are in the banner only
    assert c.page.evaluate("window.METAFLOW_RELOAD_TOKEN") == "live-3"
    assert c.page.evaluate("typeof window.metaflow_card_update") == "function"
    assert c.page.evaluate("window.metaflow_card_update({})") is True
    assert "hot" in {b["name"] for b in c.boxes()}


def test_final_card_has_no_live_banner(card):
    meta = live_meta()
    del meta["live"]  # what the final card's META looks like
    meta["notes"] = ["memory: heap at peak 1.0 GiB"]
    c = card(render_card(profile(meta), "Flow/1/start/2"))
    assert c.page.locator("#mfp-live").count() == 0
    # Metaflow writes the final token in place of the placeholder.
    assert c.page.evaluate("window.METAFLOW_RELOAD_TOKEN") == "[METAFLOW_RELOAD_TOKEN]"
