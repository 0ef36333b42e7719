"""Profile's readers (functions, lines, exports) on profiles built to a known
answer, and on odd input: deep stacks, wrongly typed META, non-profiles."""

import inspect
import json
import math
import time

import pytest

from metaflow_profiler import Profile, Profiler, _native


def build(stacks, meta=None):
    """A profile with one sample per (stack, weight_us); a stack is a list of
    (name, line) root first, all in file "m.py"."""
    b = _native.Builder()
    th = b.thread(1, b.string("main"), 1)
    funcs, nodes = {}, {}
    t = 0
    for path, weight_us in stacks:
        node = -1
        for name, line in path:
            if name not in funcs:
                funcs[name] = b.func(b.string(name), b.string("m.py"), 1, 0)
            key = (node, name, line)
            if key not in nodes:
                nodes[key] = b.stack(node, b.frame(funcs[name], line))
            node = nodes[key]
        t += weight_us * 1000
        b.sample(t, node, th, weight_us * 1000, 1)
    return Profile.from_bytes(b.encode(json.dumps(meta or {"backend": "sample"})))


def test_lines_split_a_function_by_its_current_line():
    p = build([
        ([("main", 3), ("f", 10)], 600),             # f's own time on line 10
        ([("main", 3), ("f", 11)], 300),             # and on line 11
        ([("main", 3), ("f", 12), ("g", 20)], 100),  # line 12 calls g
    ])
    rows = {r.line: r for r in p.lines("f")}
    assert set(rows) == {10, 11, 12}
    assert rows[10].self_s == pytest.approx(600e-6) and rows[10].total_s == pytest.approx(600e-6)
    assert rows[11].self_s == pytest.approx(300e-6)
    assert rows[12].self_s == 0 and rows[12].total_s == pytest.approx(100e-6)
    assert [r.line for r in p.lines("f")] == [10, 11, 12]  # hottest first
    f = next(r for r in p.functions() if r.name == "f")
    assert p.lines(f) == p.lines("f")
    assert {(r.name, r.line) for r in p.lines()} == {("main", 3), ("f", 10), ("f", 11), ("f", 12),
                                                     ("g", 20)}


def test_recursion_counts_once_per_stack_in_functions_and_lines():
    p = build([([("r", 5), ("r", 5), ("r", 6)], 100), ([("r", 5)], 100)])
    (row,) = p.functions()
    assert row.total_s == pytest.approx(200e-6) and row.samples == 2
    rows = {r.line: r for r in p.lines("r")}
    assert rows[5].total_s == pytest.approx(200e-6)
    assert rows[6].self_s == pytest.approx(100e-6)


def test_readers_are_linear_in_stack_depth():
    """A valid file with one deep recursion, sampled at every depth: walking
    every stack to its root is quadratic (the issue's 183 KB file took 75 s
    and 1.6 GB); a pass over the tree is not. 30,000 levels would take
    minutes the quadratic way and well under a second this way, so the bound
    below has a margin of some 50x for a loaded machine."""
    depth = 30000
    b = _native.Builder()
    th = b.thread(1, b.string("main"), 1)
    frames = [b.frame(b.func(b.string(f"f{i % 3}"), b.string("m.py"), i % 3 + 1, 0), i % 50)
              for i in range(3)]
    node = -1
    for i in range(depth):
        node = b.stack(node, frames[i % 3])
        b.sample(i * 1000, node, th, 1000, 1)
    p = Profile.from_bytes(b.encode("{}"))
    t0 = time.process_time()
    rows = p.functions()
    lines = p.lines("f1")
    elapsed = time.process_time() - t0
    assert rows[0].samples == depth and rows[0].total_s == pytest.approx(depth * 1e-6)
    assert sum(r.self_s for r in rows) == pytest.approx(depth * 1e-6)
    assert lines and elapsed < 10, elapsed


def test_entry_cuts_the_launchers_frames():
    """META entry (set by `python -m metaflow_profiler run`): stacks that
    reach the script's <module> start there."""
    path = [("_run_code", 1), ("main", 2), ("<module>", 1), ("work", 7)]
    p = build([(path, 500), ([("_run_code", 1), ("main", 2)], 10)],
              meta={"entry": {"name": "<module>", "file": "m.py"}})
    rows = p.functions()
    assert {r.name for r in rows[:2]} == {"<module>", "work"}
    assert {r.name: r.total_s for r in rows}["main"] == pytest.approx(10e-6)


def test_collapsed_keeps_functions_that_share_a_name_apart(tmp_path):
    b = _native.Builder()
    th = b.thread(1, b.string("main"), 1)
    mod_a = b.func(b.string("<module>"), b.string("a.py"), 1, 0)
    mod_b = b.func(b.string("<module>"), b.string("b.py"), 1, 0)
    work = b.func(b.string("work"), b.string("a.py"), 3, 0)
    na = b.stack(-1, b.frame(mod_a, 1))
    nb = b.stack(na, b.frame(mod_b, 1))
    b.sample(1, b.stack(nb, b.frame(work, 4)), th, 1000, 1)
    b.sample(2, na, th, 1000, 1)
    Profile.from_bytes(b.encode("{}")).export(tmp_path / "c.txt", format="collapsed")
    assert (tmp_path / "c.txt").read_text().splitlines() == [
        "<module> (a.py:1) 1", "<module> (a.py:1);<module> (b.py:1);work 1"]


@pytest.mark.parametrize("meta, message", [
    ({"duration_ns": "12"}, "META duration_ns must be a number, got str"),
    ({"notes": "oops"}, "META notes must be a JSON array"),
    ({"timeline": {"peaks": {"rss_bytes": "big"}}}, "META timeline.peaks.rss_bytes must be a number"),
    ({"step_failed": 1}, "META step_failed must be a JSON boolean"),
    ({"samples_dropped": True}, "META samples_dropped must be a number"),
])
def test_wrongly_typed_meta_is_one_clear_error(meta, message):
    data = _native.Builder().encode(json.dumps(meta))
    with pytest.raises(ValueError, match="not a valid profile: " + message.replace(".", r"\.")):
        Profile.from_bytes(data)


def test_load_checks_the_magic_before_reading_on(tmp_path):
    with pytest.raises(ValueError, match="does not start with MFPROF"):
        Profile.load("/dev/zero")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="does not start with MFPROF"):
        Profile.load(tmp_path / "empty")


def hot_lines(rounds):
    """Two lines doing C work in the ratio of their sizes; returns the wall
    time spent on each, the truth the profile is held to."""
    spent = [0.0, 0.0]
    for _ in range(rounds):
        t0 = time.perf_counter()
        sum(range(60000))  # the first hot line
        t1 = time.perf_counter()
        sum(range(30000))  # the second
        spent[0] += t1 - t0
        spent[1] += time.perf_counter() - t1
    return spent


def test_lines_of_a_sampled_function_match_the_time_spent_on_them():
    with Profiler(interval=0.001, timeline_interval=0) as p:
        spent = hot_lines(300)
    src, first = inspect.getsourcelines(hot_lines)
    where = [first + i for i, text in enumerate(src) if "sum(range(" in text]
    rows = {r.line: r for r in p.profile.lines("hot_lines")}
    a, b = rows[where[0]], rows[where[1]]
    n = a.samples + b.samples
    truth = spent[0] / sum(spent)
    share = a.self_s / (a.self_s + b.self_s)
    # the binomial standard error of the share at n samples, and one
    # sample's worth of time at each of the 600 line changes
    margin = 3 * math.sqrt(truth * (1 - truth) / n) + 0.02
    assert n > 100 and abs(share - truth) <= margin, (share, truth, n)


def test_import_machinery_folds_into_one_frame_per_import():
    boot = "<frozen importlib._bootstrap>"
    b = _native.Builder()
    th = b.thread(1, b.string("main"), 1)

    def frame(name, file):
        return b.frame(b.func(b.string(name), b.string(file), 1, 0), 1)

    user = b.stack(-1, frame("<module>", "job.py"))
    node = user
    for name in ("_find_and_load", "_find_and_load_unlocked", "_load_unlocked"):
        node = b.stack(node, frame(name, boot))
    b.sample(1, node, th, 1000, 1)  # time in the machinery itself
    node = b.stack(node, frame("exec_module", "<frozen importlib._bootstrap_external>"))
    mod = b.stack(node, frame("<module>", "/venv/lib/python3.11/site-packages/torch/__init__.py"))
    b.sample(2, b.stack(mod, frame("load_libs", "/venv/lib/python3.11/site-packages/torch/__init__.py")),
             th, 3000, 1)
    p = Profile.from_bytes(b.encode("{}"))
    rows = {r.name: r for r in p.functions()}
    assert "_find_and_load" not in rows and "exec_module" not in rows
    assert rows["import torch"].total_s == pytest.approx(4e-6)
    assert rows["import torch"].self_s == pytest.approx(1e-6)
    assert rows["load_libs"].total_s == pytest.approx(3e-6)
    assert p.lines("import torch")[0].total_s == pytest.approx(4e-6)
    p.fold_imports = False
    rows = {r.name: r for r in p.functions()}
    assert rows["_find_and_load"].total_s == pytest.approx(4e-6) and "import torch" not in rows
