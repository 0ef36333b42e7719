"""Import machinery folded into one "import <module>" frame, as the Python
readers fold it (Profile.fold_imports, on by default), with a toggle."""

from __future__ import annotations

import json

import pytest
from card_fixtures import load_builder, render_html

from metaflow_profiler import Profile

pytestmark = pytest.mark.browser

BOOT = "<frozen importlib._bootstrap>"
TORCH = "/venv/lib/python3.11/site-packages/torch/__init__.py"


def import_profile() -> bytes:
    """job.py imports torch (100 ms in the machinery itself, 300 ms in
    torch's load_libs) and then works for 400 ms; a second, unrelated chain
    finds nothing to run (50 ms)."""
    b = load_builder()()
    th = b.thread(1, b.string("MainThread"), 1)

    def frame(name, file):
        return b.frame(b.func(b.string(name), b.string(file), 1, 0), 1)

    user = b.stack(-1, frame("<module>", "/app/job.py"))
    node = user
    for name in ("_find_and_load", "_find_and_load_unlocked", "_load_unlocked"):
        node = b.stack(node, frame(name, BOOT))
    machinery = node
    node = b.stack(node, frame("exec_module", "<frozen importlib._bootstrap_external>"))
    libs = b.stack(b.stack(node, frame("<module>", TORCH)), frame("load_libs", TORCH))
    work = b.stack(user, frame("work", "/app/job.py"))
    finding = b.stack(b.stack(work, frame("_find_spec", BOOT)), frame("find_spec", BOOT))
    t = 0
    for stack, ms in ((machinery, 100), (libs, 300), (work, 350), (finding, 50)):
        for _ in range(ms):
            t += 1_000_000
            b.sample(t, stack, th, 1_000_000, 1)
    return b.encode(json.dumps({"duration_ns": t, "interval_ns": 1_000_000}))


def card_totals(c) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in c.boxes():
        out[b["name"]] = out.get(b["name"], 0) + b["total"] / 1e6
    return out


def python_totals(data: bytes, fold: bool) -> dict[str, float]:
    p = Profile.from_bytes(data)
    p.fold_imports = fold
    return {r.name: r.total_s for r in p.functions()}


def test_imports_fold_like_the_python_readers_and_unfold_on_request(card, shot_dir):
    data = import_profile()
    c = card(render_html(data, title="imports"))
    page = c.page
    assert c.state()["foldImports"] is True
    folded = card_totals(c)
    assert folded["import torch"] == pytest.approx(0.4)
    assert folded["import (finding and loading)"] == pytest.approx(0.05)
    assert not {"_find_and_load", "exec_module", "_find_spec"} & set(folded)
    want = python_totals(data, True)
    for name in ("import torch", "import (finding and loading)", "load_libs", "work"):
        assert folded[name] == pytest.approx(want[name]), name
    # torch's own frames hang under the one import frame
    depth = {b["name"]: b["depth"] for b in c.boxes()}
    assert depth["load_libs"] == depth["import torch"] + 2
    page.screenshot(path=str(shot_dir / "imports-folded.png"), full_page=True)

    # the search and the selection stay across the toggle
    c.search("load_libs")
    page.locator("#mfp-fold-imports").uncheck()
    st = c.state()
    assert st["foldImports"] is False and st["query"] == "load_libs"
    assert "matched 37.5%" in c.wait_search("load_libs")
    frames = card_totals(c)
    assert "import torch" not in frames and frames["_find_and_load"] == pytest.approx(0.4)
    want = python_totals(data, False)
    for name in ("_find_and_load", "exec_module", "_find_spec", "load_libs", "work"):
        assert frames[name] == pytest.approx(want[name]), name

    page.locator("#mfp-fold-imports").check()
    assert card_totals(c)["import torch"] == pytest.approx(0.4)


def test_no_toggle_without_import_machinery(card):
    b = load_builder()()
    th = b.thread(1, b.string("MainThread"), 1)
    s = b.stack(-1, b.frame(b.func(b.string("work"), b.string("/app/w.py"), 1, 0), 1))
    for i in range(10):
        b.sample((i + 1) * 1_000_000, s, th, 1_000_000, 1)
    c = card(render_html(b.encode('{"duration_ns": 10000000}'), title="plain"))
    assert c.page.locator("#mfp-fold-imports").count() == 0
    assert c.box("work")["total"] == 10_000


def test_profile_to_html_opens_as_the_profile_folds(card):
    """Profile.to_html writes the card as the Python readers of that profile
    show it: unfolded when fold_imports was turned off, folded by default."""
    data = import_profile()
    p = Profile.from_bytes(data)
    assert card(p.to_html(title="folded")).state()["foldImports"] is True
    p.fold_imports = False
    c = card(p.to_html(title="unfolded"))
    assert c.state()["foldImports"] is False
    assert not c.page.locator("#mfp-fold-imports").is_checked()
    assert card_totals(c)["_find_and_load"] == pytest.approx(0.4)
