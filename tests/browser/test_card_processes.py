"""A card of a process tree (issue 14) in real Chromium: the processes merged
by the engine (PROCESSES/PROCESS_MAP) appear in the process/thread selector,
and choosing one process shows only its work."""

from __future__ import annotations

import json

import pytest
from card_fixtures import render_html

from metaflow_profiler import _native

pytestmark = pytest.mark.browser


def one_process(tid: int, leaf: str, n: int) -> bytes:
    """Thread tid: n samples of 1 ms, on CPU, of main > leaf."""
    b = _native.Builder()
    s = b.string
    main = b.stack(-1, b.frame(b.func(s("main"), s("/app/job.py"), 1, 0), 2))
    stack = b.stack(main, b.frame(b.func(s(leaf), s("/app/job.py"), 10, 0), 11))
    th = b.thread(tid, s("MainThread"), 1)
    for i in range(n):
        b.sample(i * 1_000_000, stack, th, 1_000_000, 1)
    b.memory(stack, n * 1000, n * 2000, n)  # its heap at peak: n kB
    return b.encode(json.dumps({"backend": "sample", "duration_ns": n * 1_000_000}))


@pytest.fixture(scope="module")
def tree() -> bytes:
    parent = one_process(100, "wait", 300)
    kids = [(one_process(200, "hot", 200), 5_000_000,
             (200, 100, "ForkPoolWorker-1", 0, 200_000_000, 200_000_000, 1 << 24, 0)),
            (one_process(300, "hot", 100), 9_000_000,
             (300, 100, "ForkPoolWorker-2", 2, 100_000_000, 100_000_000, 1 << 23, 0))]
    merged, bad = _native.merge(parent, kids, base_process=(100, 1, "python job.py", 1,
                                                            300_000_000, 1_000_000, 1 << 25, 0))
    assert bad == []
    return merged


def test_processes_in_the_selector_and_one_process_view(card, tree):
    opened = card(render_html(tree, title="tree"))
    page = opened.page
    groups = page.locator("#mfp-thread optgroup").all()
    labels = [g.get_attribute("label") for g in groups]
    assert len(labels) == 3 and any("ForkPoolWorker-1" in x and "200" in x for x in labels), labels
    whole = opened.state()["rootTotal"]
    page.locator("#mfp-thread").select_option(value="p1")  # ForkPoolWorker-1
    assert opened.state()["rootTotal"] == 200 * 1000
    assert "wait" not in {b["name"] for b in opened.boxes()}
    page.locator("#mfp-tab-memory").click()
    assert page.evaluate("window.__mfp.memoryTotal()") == 200 * 1000  # its own heap only
    page.locator("#mfp-thread").select_option(value="-1")
    assert opened.state()["rootTotal"] == whole == 600 * 1000
    assert page.evaluate("window.__mfp.memoryTotal()") == 600 * 1000
    assert not opened.errors
