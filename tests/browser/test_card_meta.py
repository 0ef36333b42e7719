"""What META adds to the card: the focus the card opens on, limits beside
the peaks, the About panel, and the words of deterministic profiles."""

from __future__ import annotations

import json

import pytest
from card_fixtures import load_builder, render_html

pytestmark = pytest.mark.browser

GiB = 2**30
MiB = 2**20

# A Metaflow-like stack: the step function sits under a dozen framework frames.
FRAMEWORK = [
    "<module>",
    "FlowSpec.__init__",
    "main",
    "BaseCommand.__call__",
    "BaseCommand.main",
    "Command.invoke",
    "Context.invoke",
    "cli_wrap.wrapper_func",
    "pass_context.new_func",
    "step",
    "MetaflowTask.run_step",
    "MetaflowTask._exec_step_function",
]


def focus_profile(meta_extra: dict | None = None, samples: int = 1000) -> bytes:
    """Main thread, 1 ms samples:
    60 %: FRAMEWORK > TrainFlow.train > featurize
    20 %: FRAMEWORK > TrainFlow.train > fit
    10 %: FRAMEWORK[:10] > persist        (framework work outside the step)
    10 %: <thread> > retry > TrainFlow.train > fit   (a lighter second call path)
    """
    b = load_builder()()
    S = b.string

    def fn(name, file="/srv/metaflow/x.py", line=1, kind=0):
        return b.func(S(name), S(file), line, kind)

    th = b.thread(7, S("MainThread"), 1)
    root = fn("<thread MainThread>", "", 0, 2)
    fw = [fn(n) for n in FRAMEWORK]
    train = fn("TrainFlow.train", "/app/train_flow.py", 44)
    feat = fn("featurize", "/app/train_flow.py", 20)
    fit = fn("fit", "/app/train_flow.py", 30)
    persist = fn("persist", "/srv/metaflow/datastore.py", 9)
    retry = fn("retry", "/srv/metaflow/retry.py", 3)

    def st(funcs):
        p = -1
        for f in funcs:
            p = b.stack(p, b.frame(f, 1))
        return p

    step = [root, *fw, train]
    stacks = {
        "feat": st([*step, feat]),
        "fit": st([*step, fit]),
        "persist": st([root, *fw[:10], persist]),
        "retry": st([root, retry, train, fit]),
    }
    t = 0
    for i in range(samples):
        t += 1_000_000
        k = i * 10 // samples
        key = "persist" if k == 0 else "retry" if k == 9 else "fit" if k in (7, 8) else "feat"
        b.sample(t, stacks[key], th, 1_000_000, 1)
    meta = {"backend": "sample", "duration_ns": t, "interval_ns": 1_000_000, "samples_taken": samples}
    meta.update(meta_extra or {})
    return b.encode(json.dumps(meta))


def crumbs(page):
    return page.locator("#mfp-panel-flame .crumb").all_inner_texts()


def test_opens_on_the_step_function_and_reset_shows_all(card):
    c = card(render_html(focus_profile({"focus": "TrainFlow.train"}), title="focus"))
    page = c.page
    st = c.state()
    assert st["zoomName"] == "TrainFlow.train"
    assert st["selFunc"] == -1  # opened on it, not selected
    boxes = c.boxes()
    top = [b for b in boxes if b["name"] == "TrainFlow.train"]
    # the heavier of its two call paths (80 % vs 10 %), full width, near the top
    assert len(top) == 1 and top[0]["total"] == 800_000
    assert top[0]["depth"] <= 2 and top[0]["w"] > 1000
    names = {b["name"] for b in boxes}
    assert {"featurize", "fit"} <= names
    # no wall of framework frames above it, no framework work beside it
    assert not names & {"<module>", "main", "Command.invoke", "persist", "retry"}
    trail = crumbs(page)
    assert trail[0] == "all" and trail[-1] == "TrainFlow.train"
    assert "MetaflowTask._exec_step_function" in trail
    assert any(t.startswith("…") for t in trail)  # the middle of the path, folded
    assert page.locator("#mfp-focus-hint").is_visible()
    # the folded middle opens on click: every frame above is reachable
    page.locator("#mfp-panel-flame .crumb-gap").click()
    assert crumbs(page) == ["all", "<thread MainThread>", *FRAMEWORK, "TrainFlow.train"]
    page.locator("#mfp-panel-flame .crumb", has_text="Command.invoke").click()
    assert c.state()["zoomName"] == "Command.invoke"
    page.get_by_role("button", name="Reset zoom").first.click()
    assert c.state()["zoom"] == 0
    assert {"<module>", "persist", "retry"} <= {b["name"] for b in c.boxes()}
    assert page.locator("#mfp-focus-hint").count() == 0


def test_focus_leaves_top_functions_and_sandwich_whole(card):
    c = card(render_html(focus_profile({"focus": "TrainFlow.train"}), title="focus"))
    page = c.page
    page.locator("#mfp-tab-table").click()
    rows = page.locator("#mfp-table tbody tr .fn-name").all_inner_texts()
    assert "persist" in rows and "retry" in rows and "<module>" in rows
    page.locator("#mfp-table tbody tr", has_text="TrainFlow.train").first.click()
    callers = page.evaluate("window.__mfp.sandwichNames()")["callers"]
    assert "retry" in callers and "MetaflowTask._exec_step_function" in callers


def test_stack_chart_starts_at_the_step_with_a_way_back(card):
    c = card(render_html(focus_profile({"focus": "TrainFlow.train"}), title="focus"))
    page = c.page
    page.locator("#mfp-tab-stack").click()
    boxes = page.evaluate("window.__mfp.stackBoxes()")
    top = {b["name"] for b in boxes if b["depth"] == 0}
    # step samples start at the step; other samples lose only the frames
    # they share with the step's path
    assert top == {"TrainFlow.train", "persist", "retry"}
    toggle = page.locator("#mfp-stack-focus")
    assert toggle.is_visible() and "TrainFlow.train" in toggle.inner_text()
    toggle.get_by_role("button", name="Whole stack").click()
    boxes = page.evaluate("window.__mfp.stackBoxes()")
    assert {b["name"] for b in boxes if b["depth"] == 0} == {"<thread MainThread>"}
    assert any(b["name"] == "TrainFlow.train" and b["depth"] == 13 for b in boxes)


@pytest.mark.parametrize("focus", ["NoSuchFlow.train", "", 42])
def test_unknown_focus_opens_normally(card, focus):
    c = card(render_html(focus_profile({"focus": focus}), title="focus"))
    assert c.state()["zoom"] == 0
    assert crumbs(c.page) == ["all"]
    assert c.page.locator("#mfp-stack-focus").is_hidden()


def test_a_qualified_name_in_the_profile_matches_the_focus(card):
    c = card(render_html(focus_profile({"focus": "flow.TrainFlow.train"}), title="focus"))
    assert c.state()["zoom"] == 0  # a longer name is not ours
    c2 = card(render_html(focus_profile({"focus": "train"}), title="focus"), name="b.html")
    assert c2.state()["zoomName"] == "TrainFlow.train"


def limits_profile(meta_extra: dict) -> bytes:
    b = load_builder()()
    S = b.string
    th = b.thread(1, S("MainThread"), 1)
    f = b.func(S("work"), S("/app/w.py"), 1, 0)
    stack = b.stack(-1, b.frame(f, 1))
    for i in range(100):
        b.sample((i + 1) * 10_000_000, stack, th, 10_000_000, 1)
    cpu = b.series("cpu_pct", "%", 1)
    rss = b.series("rss_bytes", "B", 0)
    dw = b.series("disk_write_Bps", "B/s", 0)
    nr = b.series("net_recv_Bps", "B/s", 0)
    cg = b.series("cgroup_mem_bytes", "B", 0)
    for k in range(3):
        b.point(cg, (k + 1) * 300_000_000, 40 * GiB)  # page cache of the whole container
        tn = (k + 1) * 300_000_000
        b.point(cpu, tn, 1500)  # 150.0 %
        b.point(rss, tn, 10 * GiB)  # the thinned series misses the real peak
        b.point(dw, tn, 1_000_000)
        b.point(nr, tn, 0)
    meta = {"backend": "sample", "duration_ns": 1_000_000_000, "interval_ns": 10_000_000,
            "samples_taken": 100}
    meta.update(meta_extra)
    return b.encode(json.dumps(meta))


def memory_keys(page):
    chart = page.locator("#mfp-timeline .tl-chart", has=page.locator(".tl-title", has_text="Memory"))
    return chart.locator(".tl-key").all_inner_texts()


def stat(page, key):
    return page.locator(f'[data-stat="{key}"]').inner_text()


def test_peaks_beside_limits_and_exact_totals(card):
    meta = {
        "limits": {"memory_limit_bytes": 16 * GiB, "memory_total_bytes": 64 * GiB, "cpus": 8,
                   "cpu_quota_cores": 2.5},
        "timeline": {
            "peaks": {"cpu_pct": 231.5, "rss_bytes": int(15.1 * GiB), "disk_write_Bps": 9 * MiB},
            "averages": {"cpu_pct": 120.0, "rss_bytes": 12 * GiB},
            "totals": {"disk_write_bytes": 64 * MiB, "disk_read_bytes": 0, "net_recv_bytes": 3 * MiB,
                       "net_sent_bytes": 0},
        },
    }
    page = card(render_html(limits_profile(meta), title="limits")).page
    rss = page.locator('[data-stat="rss"]')
    assert rss.locator(".stat-value").inner_text() == "15.1 GiB"  # META's exact peak, not the series' 10 GiB
    assert "of a 16.0 GiB limit" in rss.inner_text()
    assert "alert" in rss.get_attribute("class")  # 94 % of the limit
    assert "memlimit" not in page.locator("[data-stat]").evaluate_all("els => els.map(e => e.dataset.stat)")
    cpu = stat(page, "cpu")
    assert "232%" in cpu and "avg 120%" in cpu and "of a 2.5-CPU quota" in cpu
    dw = page.locator('[data-stat="disk_write"]')
    assert dw.locator(".stat-value").inner_text() == "64.0 MiB"
    assert "peak 9.00 MiB/s" in dw.inner_text()
    # a total is worth a card even when the thinned series shows nothing
    assert page.locator('[data-stat="net_recv"] .stat-value').inner_text() == "3.00 MiB"
    assert page.locator('[data-stat="disk_read"]').count() == 0
    # beside a limit the cgroup's usage means something: it is drawn
    assert "cgroup" in memory_keys(page)


def test_no_cgroup_limit_means_no_limit_and_totals_from_the_series(card):
    meta = {"limits": {"memory_total_bytes": 64 * GiB, "cpus": 4}}
    page = card(render_html(limits_profile(meta), title="limits")).page
    rss = stat(page, "rss")
    assert "limit" not in rss and "64" not in rss  # the machine's RAM is not a limit
    assert "10.0 GiB" in rss
    # without a limit the cgroup line (mostly page cache) would only squash RSS
    assert memory_keys(page) == ["rss"]
    assert "150%" in stat(page, "cpu") and "of 4 CPUs" in stat(page, "cpu")
    # no META totals: the area under the rate series (3 × 0.3 s × 1 MB/s)
    assert page.locator('[data-stat="disk_write"] .stat-value').inner_text() == "879 KiB"  # 900,000 B


def test_about_panel_says_how_the_profile_was_recorded(card):
    meta = {
        "python": "3.12.1",
        "sampler_mode": "without the GIL, through process_vm_readv",
        "samples_taken": 800,
        "samples_dropped": 25,
        "drop_reasons": {"thread_busy": 20, "read_failed": 5},
        "samples_decimation": 4,
        "sampler_busy_ns": 50_000_000,
        "limits": {"cpus": 2, "cgroup": "v2"},
        "notes": ["GPU: no NVML library (libnvidia-ml.so.1): no GPU series",
                  "memory: heap at peak 1.2 GB of RSS 2 GB"],
    }
    page = card(render_html(limits_profile(meta), title="about")).page
    about = page.locator("#mfp-about")
    assert about.get_attribute("open") is None
    assert not about.locator("dl").is_visible()
    gist = about.locator("summary").inner_text()
    assert "About this profile" in gist and "800/s" in gist and "25 dropped" in gist
    # the important note stays on top, the environment one waits in About
    assert page.locator("#mfp-notes li").all_inner_texts() == ["memory: heap at peak 1.2 GB of RSS 2 GB"]
    about.locator("summary").click()
    text = about.inner_text()
    assert "sample — without the GIL, through process_vm_readv" in text
    assert "every 10.0 ms requested" in text
    assert "800 samples/s achieved" in text  # 800 samples in 1 s
    assert "25 (thread_busy 20, read_failed 5)" in text
    assert "every 4th sample kept" in text
    assert "5.00% of the run" in text  # sampler busy 50 ms of 1 s
    assert "2 CPUs" in text and "cgroup v2" in text
    assert about.locator("#mfp-env-notes li").all_inner_texts() == [
        "GPU: no NVML library (libnvidia-ml.so.1): no GPU series"
    ]


def traced_profile() -> bytes:
    """A deterministic trace: TOTALS only, counts are calls, weights self time,
    flags 0. main calls step 1×; step calls parse 500× and fit 3×."""
    b = load_builder()()
    S = b.string
    th = b.thread(1, S("MainThread"), 1)

    def fn(name):
        return b.func(S(name), S("/app/t.py"), 1, 0)

    main, step, parse, fit = fn("main"), fn("step"), fn("parse"), fn("fit")
    s_main = b.stack(-1, b.frame(main, 1))
    s_step = b.stack(s_main, b.frame(step, 1))
    s_parse = b.stack(s_step, b.frame(parse, 1))
    s_fit = b.stack(s_step, b.frame(fit, 1))
    b.total(s_main, th, 0, 1, 1_000_000)
    b.total(s_step, th, 0, 1, 2_000_000)
    b.total(s_parse, th, 0, 500, 30_000_000)
    b.total(s_fit, th, 0, 3, 60_000_000)
    meta = {"backend": "trace", "counts": "calls", "weights": "self_time", "duration_ns": 95_000_000,
            "calls_traced": 505, "tracer_mechanism": "sys.monitoring", "focus": "step"}
    return b.encode(json.dumps(meta))


def test_deterministic_profile_speaks_of_calls(card):
    c = card(render_html(traced_profile(), title="trace"))
    page = c.page
    samples = page.locator('[data-stat="samples"]')
    assert samples.locator(".stat-label").inner_text().lower() == "calls"
    assert "505" in samples.inner_text()
    assert "sample" not in page.locator("#mfp-stats").inner_text().lower()
    # a tracer does not know who was on CPU: no toggle that would show nothing
    assert page.locator("#mfp-mode").count() == 0
    assert c.state()["zoomName"] == "step"
    c.hover_box("parse")
    tip = page.locator("#mfp-panel-flame .tooltip").inner_text()
    assert "Calls" in tip and "500" in tip and "Samples" not in tip
    # inclusive time: self times summed up the tree
    assert c.box("step")["total"] == 92_000
    page.locator("#mfp-tab-table").click()
    heads = page.locator("#mfp-table thead th").all_inner_texts()
    assert "Calls" in heads and "Samples" not in heads
    row = page.locator("#mfp-table tbody tr", has_text="parse").inner_text()
    assert "500" in row
    page.locator("#mfp-about summary").click()
    assert "every call timed" in page.locator("#mfp-about").inner_text()
    assert "sys.monitoring" in page.locator("#mfp-about").inner_text()


def test_sampled_profile_counts_samples_in_tooltip_and_table(card):
    c = card(render_html(focus_profile(), title="samples"))
    c.hover_box("TrainFlow.train")
    tip = c.page.locator("#mfp-panel-flame .tooltip").inner_text()
    assert "Samples" in tip and "800" in tip  # this box: the step's path only
    c.page.locator("#mfp-tab-table").click()
    heads = c.page.locator("#mfp-table thead th").all_inner_texts()
    assert "Samples" in heads
    row = c.page.locator("#mfp-table tbody tr", has_text="TrainFlow.train").inner_text()
    assert "900" in row  # every sample with it on the stack, both paths


def test_meta_of_the_wrong_shapes_never_breaks_the_card(card):
    meta = {
        "focus": {"name": "TrainFlow.train"},
        "limits": "16 GB",
        "timeline": [1, 2],
        "drop_reasons": "many",
        "samples_dropped": 3,
        "samples_decimation": "4",
        "sampler_mode": 7,
        "counts": ["calls"],
        "notes": [1, None, "GPU: none", {"x": 1}],
    }
    c = card(render_html(focus_profile(meta), title="odd"))
    assert c.page.locator("html").get_attribute("data-mfp-ready") == "ok"
    assert c.state()["zoom"] == 0
    assert c.page.locator("#mfp-problem").count() == 0
    c.page.locator("#mfp-about summary").click()
    assert c.page.locator("#mfp-env-notes li").all_inner_texts() == ["GPU: none"]


def test_peak_rss_network_and_cgroup_say_whose_they_are(card):
    """META rss / network / limits.cgroup_scope (the resource poller's):
    the kernel's peak (or a lower bound), the process's own TCP bytes as the
    step's, the namespace's apart, the container's cgroup named so."""
    meta = {
        "rss": {"peak_bytes": 614 * MiB, "peak_source": "kernel", "children_peak_bytes": 100 * MiB},
        "network": {"net_scope": "namespace", "sock_scope": "process_tcp", "loopback": False},
        "limits": {"cgroup": "v2", "cgroup_scope": "container", "cgroup_memory_peak_bytes": 10 * GiB,
                   "memory_limit_bytes": 16 * GiB, "oom_kills": 1},
        "timeline": {"totals": {"net_recv_bytes": 9 * GiB, "net_sent_bytes": 0, "sock_recv_bytes": 2 * MiB}},
    }
    page = card(render_html(limits_profile(meta), title="whose")).page
    rss = page.locator('[data-stat="rss"]')
    assert rss.locator(".stat-value").inner_text() == "614 MiB"  # not the series' 10 GiB
    assert "children 100 MiB" in rss.inner_text() and "of a 16.0 GiB limit" in rss.inner_text()
    # the step's own TCP bytes; the namespace's 9 GiB is not presented as the step's
    assert page.locator('[data-stat="net_recv"] .stat-value').inner_text() == "2.00 MiB"
    assert "9.00 GiB" not in page.locator("#mfp-stats").inner_text()
    assert "the container's cgroup" in page.locator('[data-stat="oom"]').inner_text()
    page.locator("#mfp-about summary").click()
    about = page.locator("#mfp-about").inner_text()
    assert "Network namespace" in about and "received 9.00 GiB" in about and "not only this step" in about
    assert "cgroup memory peak 10.0 GiB (the container's cgroup" in about
    assert "the kernel's peak (VmHWM)" in about
    # a peak reached before the start: the figure is a lower bound and says so
    meta["rss"] = {"peak_bytes": 534 * MiB, "peak_source": "polled"}
    page = card(render_html(limits_profile(meta), title="polled"), name="b.html").page
    rss = page.locator('[data-stat="rss"]')
    assert rss.locator(".stat-value").inner_text() == "≥ 534 MiB" and "at least" in rss.inner_text()


def test_a_script_profile_opens_on_the_script(card):
    b = load_builder()()
    S = b.string
    th = b.thread(1, S("MainThread"), 1)
    runpy_py = S("/usr/lib/python3.11/runpy.py")
    runpy = [b.func(S(n), runpy_py, 1, 0) for n in ("_run_module_as_main", "_run_code")]
    script = b.func(S("<module>"), S("train.py"), 1, 0)
    other = b.func(S("<module>"), S("/usr/lib/python3.11/json/__init__.py"), 1, 0)
    work = b.func(S("work"), S("train.py"), 5, 0)
    p = -1
    for f in (*runpy, script, other, work):
        p = b.stack(p, b.frame(f, 1))
    for i in range(10):
        b.sample((i + 1) * 1_000_000, p, th, 1_000_000, 1)
    meta = {"entry": {"name": "<module>", "file": "train.py"}}
    c = card(render_html(b.encode(json.dumps(meta)), title="script"))
    assert c.state()["zoomName"] == "<module>"
    assert c.box("<module>")["depth"] == 2  # two faded runpy rows above it
    assert "opened on <module>" in c.page.locator("#mfp-focus-hint").inner_text()
