"""The card's first view, search safety, lines, and the panels' shared state."""

from __future__ import annotations

import json
import re

import pytest
from card_fixtures import load_builder, render_html, sample_profile
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

FRAMEWORK = ["<module>", "main", "MetaflowTask.run_step", "MetaflowTask._exec_step_function"]


def threaded_profile(samples: int = 1000) -> bytes:
    """The step's thread and two workers it started, 1 ms samples each tick:
    main: <thread MainThread> > FRAMEWORK > TrainFlow.train > fit     (on CPU)
    worker-1, worker-2: <thread worker-N> > Thread.run > tree_fit   (on CPU)
    and a heartbeat, always waiting in time.sleep (off CPU)."""
    b = load_builder()()
    S = b.string

    def fn(name, file="/srv/x.py", line=1, kind=0):
        return b.func(S(name), S(file), line, kind)

    def st(funcs):
        p = -1
        for f in funcs:
            p = b.stack(p, b.frame(f, 1))
        return p

    main = b.thread(10, S("MainThread"), 1)
    w1 = b.thread(11, S("worker-1"), 0)
    w2 = b.thread(12, S("worker-2"), 0)
    hb = b.thread(13, S("heartbeat"), 0)
    train, fit, run, tree_fit = fn("TrainFlow.train"), fn("fit"), fn("Thread.run"), fn("tree_fit")
    fw = [fn(n) for n in FRAMEWORK]
    stacks = {
        main: st([fn("<thread MainThread>", "", 0, 2), *fw, train, fit]),
        w1: st([fn("<thread worker-1>", "", 0, 2), run, tree_fit]),
        w2: st([fn("<thread worker-2>", "", 0, 2), run, tree_fit]),
        hb: st([fn("<thread heartbeat>", "", 0, 2), fn("time.sleep", "<native>", 0, 1)]),
    }
    t = 0
    for _ in range(samples):
        t += 1_000_000
        for th, s in stacks.items():
            b.sample(t, s, th, 1_000_000, 0 if th == hb else 1)
    meta = {
        "backend": "sample",
        "duration_ns": t,
        "interval_ns": 1_000_000,
        "samples_taken": 4 * samples,
        "focus": "TrainFlow.train",
    }
    return b.encode(json.dumps(meta))


def test_first_view_puts_other_threads_beside_the_step(card, shot_dir):
    c = card(render_html(threaded_profile(), title="threads"))
    st = c.state()
    assert st["zoomName"] == "TrainFlow.train" and st["thread"] == -1
    # every thread's work is in the first view, beside the step function
    assert set(st["beside"]) == {"<thread worker-1>", "<thread worker-2>", "<thread heartbeat>"}
    boxes = c.boxes()
    names = {b["name"] for b in boxes}
    assert {"TrainFlow.train", "fit", "tree_fit", "time.sleep"} <= names
    # side by side in proportion: the step is a quarter of the time
    step = next(b for b in boxes if b["name"] == "TrainFlow.train")
    width = sum(b["w"] for b in boxes if b["depth"] == step["depth"])
    assert step["w"] / width == pytest.approx(0.25, abs=0.01)
    note = c.page.locator("#mfp-beside-note")
    # written just after the redraw; named by thread, busiest first
    expect(note).to_contain_text("Beside the step function: 75.0% of the time ran outside it")
    expect(note).to_contain_text("in worker-1 25.0%, worker-2 25.0%, heartbeat 25.0%")
    c.page.screenshot(path=str(shot_dir / "beside.png"), full_page=True)
    # On CPU: the sleeping heartbeat leaves, the workers stay
    c.page.locator("#mfp-mode button", has_text="On CPU").click()
    assert set(c.state()["beside"]) == {"<thread worker-1>", "<thread worker-2>"}
    expect(note).to_contain_text("66.7% of the time")
    # a click leaves the step view; the note goes with it
    c.click_box("tree_fit")
    assert c.state()["beside"] == [] and note.is_hidden()


def test_one_thread_step_view_has_nothing_beside(card):
    c = card(render_html(sample_profile()[0], title="plain"))
    assert c.state()["beside"] == []
    assert c.page.locator("#mfp-beside-note").is_hidden()


def test_catastrophic_regex_never_blocks_the_page(card):
    """`(a+)+$` against 40 a's and a '!' backtracks for ages in RegExp; typed
    key by key it must leave the page responsive and answer correctly."""
    b = load_builder()()
    S = b.string
    th = b.thread(1, S("MainThread"), 1)
    slow = b.func(S("a" * 40 + "!"), S("/app/x.py"), 3, 0)
    banana = b.func(S("banana"), S("/app/x.py"), 9, 0)
    for i, f in enumerate([slow, banana] * 50):
        b.sample((i + 1) * 1_000_000, b.stack(-1, b.frame(f, 1)), th, 1_000_000, 1)
    c = card(render_html(b.encode("{}"), title="regex"))
    page = c.page
    page.evaluate("""() => { window.__longest = 0;
        new PerformanceObserver(l => l.getEntries().forEach(e => {
            window.__longest = Math.max(window.__longest, e.duration); }))
            .observe({entryTypes: ["longtask"]}); }""")
    page.locator("#mfp-regex").click()
    search = page.locator("#mfp-search")
    # every keystroke, as a person types; a frozen page fails these timeouts
    search.press_sequentially("(a+)+$", delay=30, timeout=20_000)
    expect(page.locator("#mfp-match")).to_have_text(
        re.compile(r"^matched 50\.0% of time · 1 function$"), timeout=20_000
    )
    assert page.locator("#mfp-regex").get_attribute("aria-pressed") == "true"
    assert page.evaluate("window.__longest") < 1000
    # the matcher agrees with the browser's RegExp where RegExp is safe
    cases = [
        ("^ba(na)+$", "banana"),
        ("(a+)+$", "xa"),
        ("a{2,3}b", "aab"),
        ("a{2,3}b", "ab"),
        ("[^a-c]x", "dx"),
        ("\\d+\\.\\d", "v3.1"),
        ("^(foo|ba[rz])$", "BAZ"),
        ("x|", "q"),
        ("a.c", "a\nc"),
        ("[\\w.]+_x", "a.b_x"),
        ("^$", ""),
        ("colou?r", "COLOR"),
        ("(?:ab)*c", "ababc"),
        ("\\s", "a b"),
    ]
    for pattern, text in cases:
        ours = page.evaluate("([p, t]) => window.__mfp.hook('regexTest', p, t)", [pattern, text])
        native = page.evaluate("([p, t]) => new RegExp(p, 'i').test(t)", [pattern, text])
        assert ours == {"match": native}, (pattern, text, ours)
    for bad in ["(a)\\1", "(?=a)", "(?<n>a)", "a{3,1}", "*a", "[b-a]", "\\bword"]:
        assert "error" in page.evaluate("p => window.__mfp.hook('regexTest', p, 'x')", bad), bad


def test_search_waits_for_the_typing_to_stop(card):
    c = card(render_html(sample_profile()[0], title="debounce"))
    page = c.page
    # five keystrokes in one task: well inside the debounce however busy the machine
    page.evaluate("""() => { const s = document.getElementById("mfp-search");
        for (const q of ["n", "nu", "num", "nump", "numpy"]) {
            s.value = q; s.dispatchEvent(new Event("input", {bubbles: true})); } }""")
    assert "matched" in c.wait_search("numpy")
    # one search ran for the whole burst of keystrokes, not one per key
    assert page.evaluate("window.__mfp.hook('searchRuns')") == 1


def lines_profile() -> bytes:
    """compute() at line 10 for 600 samples (the leaf), at line 12 calling
    helper() for 300, at line 14 for 100."""
    b = load_builder()()
    S = b.string
    th = b.thread(1, S("MainThread"), 1)
    root = b.func(S("<thread MainThread>"), S(""), 0, 2)
    compute = b.func(S("compute"), S("/app/model.py"), 8, 0)
    helper = b.func(S("helper"), S("/app/model.py"), 30, 0)
    r = b.stack(-1, b.frame(root, 0))
    at = {line: b.stack(r, b.frame(compute, line)) for line in (10, 12, 14)}
    via_helper = b.stack(at[12], b.frame(helper, 31))
    t = 0
    for i in range(1000):
        t += 1_000_000
        s = at[10] if i < 600 else via_helper if i < 900 else at[14]
        b.sample(t, s, th, 1_000_000, 1)
    return b.encode(json.dumps({"duration_ns": t, "interval_ns": 1_000_000}))


def test_hot_lines_of_the_selected_function(card, shot_dir):
    c = card(render_html(lines_profile(), title="lines"))
    page = c.page
    c.click_box("compute")
    hot = page.locator("#mfp-flame-lines").inner_text()
    assert ":10 60.0%" in hot and ":12 30.0%" in hot and ":14 10.0%" in hot
    page.locator("#mfp-panel-flame .details button", has_text="Sandwich").click()
    rows = page.locator("#mfp-lines tbody tr")
    got = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
    assert got == [
        ["model.py:10", "600 ms", "600 ms", "60.0%"],
        ["model.py:12", "0", "300 ms", "30.0%"],  # it called helper from there
        ["model.py:14", "100 ms", "100 ms", "10.0%"],
    ]
    page.screenshot(path=str(shot_dir / "lines.png"), full_page=True)
    # the lines follow the range: the last 40 % of the run holds lines 12 and 14
    page.evaluate("window.__mfp.selectRange(650000, 1000000)")
    lines = page.locator("#mfp-lines tbody tr td.fn-loc").all_inner_texts()
    assert lines == ["model.py:12", "model.py:14"]


def test_a_step_shorter_than_the_interval_says_why_it_is_empty(card):
    b = load_builder()()
    b.thread(1, b.string("MainThread"), 1)
    meta = {"backend": "sample", "duration_ns": 25_000_000, "interval_ns": 10_000_000, "samples_taken": 0}
    c = card(render_html(b.encode(json.dumps(meta)), title="short"))
    text = c.page.locator("#mfp-panel-flame .flame-empty").inner_text()
    assert "the step ran 25.0 ms" in text and "every 10.0 ms" in text


def test_a_filter_that_leaves_nothing_says_which(card):
    c = card(render_html(sample_profile()[0], title="filters"))
    c.page.locator("#mfp-thread").select_option(value="1")
    c.page.locator("#mfp-mode button", has_text="On CPU").click()
    text = c.page.locator("#mfp-panel-flame .flame-empty").inner_text()
    assert "No samples of heartbeat (1002) on CPU" in text


def test_deep_flame_graph_is_drawn_whole_and_scrolls_with_the_page(card):
    b = load_builder()()
    th = b.thread(1, b.string("main"), 1)
    s = -1
    for d in range(120):
        s = b.stack(s, b.frame(b.func(b.string(f"level_{d}"), b.string("d.py"), d + 1, 0), 1))
    for i in range(50):
        b.sample((i + 1) * 1_000_000, s, th, 1_000_000, 1)
    c = card(render_html(b.encode("{}"), title="deep"))
    page = c.page
    canvas = page.locator("#mfp-panel-flame canvas.flame-canvas")
    h = canvas.evaluate("e => e.getBoundingClientRect().height")
    assert h == (120 + 1) * 18 + 2  # the root row and 120 levels
    # nothing clips it: the graph's box is as tall as the canvas, and the
    # deepest frame can be scrolled to and hovered
    host_h = page.locator("#mfp-panel-flame .flame-scroll").evaluate("e => e.clientHeight")
    assert host_h >= h
    c.hover_box("level_119")
    assert "level_119" in page.locator("#mfp-panel-flame .tooltip").inner_text()


def test_one_state_drives_every_panel(card):
    """A range, a thread and a search set once are what every tab shows."""
    c = card(render_html(sample_profile()[0], title="state"))
    page = c.page
    c.page.evaluate("window.__mfp.selectRange(0, 1000000)")
    c.search("parse")
    for tab in ("table", "sandwich", "stack", "flame"):
        page.locator(f"#mfp-tab-{tab}").click()
        st = c.state()
        assert st["tab"] == tab and st["range"] == [0, 1000000] and st["query"] == "parse"
    page.locator("#mfp-tab-table").click()
    assert page.locator("#mfp-table tbody tr td.fn-name").all_inner_texts() == ["parse_csv"]
    assert "Range 0 – 1.00 s" in page.locator("#mfp-range").inner_text()
    page.locator("#mfp-tab-stack").click()
    names = {b["name"] for b in page.evaluate("window.__mfp.stackBoxes()")}
    assert "train" not in names and "parse_csv" in names


def read_uv(buf: bytes | bytearray, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, pos


def test_a_big_profile_opens_from_totals_and_a_bad_sample_is_a_warning(card):
    """Past 200,000 samples the card draws its first view from TOTALS and
    decodes SAMPLES after the first frame; a fault found then leaves the
    card working and says what is missing."""
    b = load_builder()()
    th = b.thread(1, b.string("MainThread"), 1)
    work = b.stack(-1, b.frame(b.func(b.string("work"), b.string("w.py"), 1, 0), 1))
    n = 210_000
    for i in range(n):
        b.sample((i + 1) * 10_000, work, th, 10_000, 1)
    data = b.encode(json.dumps({"duration_ns": n * 10_000, "interval_ns": 10_000}))
    good = card(render_html(data, title="big"))
    assert good.page.locator("#mfp-problem").count() == 0
    assert good.box("work")["total"] == n * 10
    # a range reads SAMPLES: the first second holds the samples at 10, 20, … 999,990 µs
    good.page.evaluate("window.__mfp.selectRange(0, 1000000)")
    assert good.state()["rootTotal"] == 99_999 * 10
    # point the first sample at a stack that does not exist
    buf = bytearray(data)
    pos = 7
    while True:
        tag, pos = read_uv(buf, pos)
        length, start = read_uv(buf, pos)
        if tag == 7:
            count, p = read_uv(buf, start)
            for _ in range(count):  # dt column
                _, p = read_uv(buf, p)
            assert buf[p] == work
            buf[p] = 99
            break
        pos = start + length
    bad = card(render_html(bytes(buf), title="bad"), name="bad.html")
    page = bad.page
    assert page.locator("html").get_attribute("data-mfp-ready") == "ok"
    assert bad.box("work")["total"] == n * 10  # TOTALS are intact
    problem = page.locator("#mfp-problem").inner_text()
    assert "sample stack index 99 out of range" in problem and "whole-run views come from TOTALS" in problem


def uv(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def test_processes_and_their_threads_are_one_selection(card):
    """PROCESSES / PROCESS_MAP (tags 11, 12): the thread picker groups threads
    by process, and picking a process shows all of its threads."""
    b = load_builder()()
    S = b.string
    names = [S("python train.py"), S("ForkPoolWorker-1")]
    th = [b.thread(1, S("MainThread"), 1), b.thread(2, S("feeder"), 0), b.thread(3, S("MainThread"), 1)]

    def leaf(name):
        return b.stack(-1, b.frame(b.func(S(name), S("/app/w.py"), 1, 0), 1))

    stacks = [leaf("parent_main"), leaf("parent_feeder"), leaf("child_work")]
    for i in range(300):
        for k in range(3):
            b.sample((i + 1) * 1_000_000, stacks[k], th[k], 1_000_000, 1)
    data = b.encode(json.dumps({"duration_ns": 300_000_000}))
    cols = [[100, 101], [1, 100], names, [1, 2], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]]
    procs = uv(2) + b"".join(uv(v) for col in cols for v in col)
    pmap = uv(3) + uv(0) + uv(0) + uv(1) + uv(0)
    data += uv(11) + uv(len(procs)) + procs + uv(12) + uv(len(pmap)) + pmap
    c = card(render_html(data, title="processes"))
    page = c.page
    groups = page.locator("#mfp-thread optgroup").evaluate_all("gs => gs.map(g => g.label)")
    assert groups == ["python train.py (pid 100)", "ForkPoolWorker-1 (pid 101) · partial"]
    page.locator("#mfp-thread").select_option(value="p0")
    st = c.state()
    assert st["process"] == 0 and st["thread"] == -1 and st["rootTotal"] == 2 * 300 * 1000
    assert {b["name"] for b in c.boxes()} == {"", "parent_main", "parent_feeder"}
    page.locator("#mfp-thread").select_option(value="p1")
    assert {b["name"] for b in c.boxes()} == {"", "child_work"}
    page.locator("#mfp-thread").select_option(value="1")
    assert c.state()["process"] == -1 and {b["name"] for b in c.boxes()} == {"", "parent_feeder"}
