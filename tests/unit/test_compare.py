"""Profile.diff, with_baseline/baseline and merge, and the CLI's diff and
merge, on profiles built with the engine's own encoder (known numbers)."""

import json
import subprocess
import sys

import pytest
from metaflow_profiler._native import Builder
from support import card_profile_bytes

from metaflow_profiler import Profile, _native, pyformat

MS = 1_000_000
T0 = 1_700_000_000 * 10**9


def build(stacks, *, tid=7, meta=None, per_sample=True):
    """A profile of one thread: stacks is [(path, n_samples)], path a list of
    (name, file, first_line) root first; each sample 1 ms on CPU."""
    b = Builder()
    th = b.thread(tid, b.string("MainThread"), 1)
    t = 0
    for path, n in stacks:
        node = -1
        for name, file, line in path:
            node = b.stack(node, b.frame(b.func(b.string(name), b.string(file), line, 0), line))
        if per_sample:
            for _ in range(n):
                t += MS
                b.sample(t, node, th, MS, 1)
        else:
            b.total(node, th, 1, n, n * MS)
    m = {"backend": "sample", "duration_ns": t or 1, "start_unix_ns": T0}
    m.update(meta or {})
    return Profile.from_bytes(b.encode(json.dumps(m)))


STEP = ("Flow.train", "/w/flow.py", 20)


def before_after():
    base = build([([STEP, ("common", "/w/flow.py", 10)], 100),
                  ([STEP, ("helper", "/tmp/a1/pkg/util.py", 3)], 40)])
    # common moved down 4 lines, util.py unpacked elsewhere, slow is new
    new = build([([STEP, ("common", "/w/flow.py", 14)], 100),
                 ([STEP, ("helper", "/tmp/b2/pkg/util.py", 3)], 10),
                 ([STEP, ("slow", "/w/flow.py", 30)], 60)])
    return base, new


def test_diff_matches_functions_by_identity_and_sorts_by_change():
    base, new = before_after()
    rows = new.diff(base)
    by = {r.name: r for r in rows}
    assert set(by) == {"Flow.train", "common", "helper", "slow"}
    assert rows[0].name == "slow"  # +60 ms beats the step's +30 ms
    assert by["slow"].before_s == 0 and by["slow"].after_s == pytest.approx(0.060)
    assert by["slow"].after_share == pytest.approx(60 / 170)
    assert by["slow"].after_self_s == pytest.approx(0.060)
    assert by["common"].delta_s == pytest.approx(0)  # its line moved; still one function
    assert by["helper"].filename == "/tmp/b2/pkg/util.py"
    assert by["helper"].delta_s == pytest.approx(-0.030)
    assert by["helper"].before_share == pytest.approx(40 / 140)
    assert by["Flow.train"].before_s == pytest.approx(0.140)
    assert by["Flow.train"].after_s == pytest.approx(0.170)
    # by self time: where the time was added or lost; the step itself has none
    assert [r.name for r in new.diff(base, by="self")][:2] == ["slow", "helper"]
    assert [r.name for r in new.diff(base, by="self")][2:] == ["Flow.train", "common"]
    with pytest.raises(ValueError, match="by must be"):
        new.diff(base, by="line")


def test_diff_keeps_two_files_apart_when_the_file_name_is_ambiguous():
    base = build([([("f", "/a/x.py", 1)], 10), ([("f", "/b/x.py", 1)], 10)])
    new = build([([("f", "/c/x.py", 1)], 10)])
    rows = new.diff(base)
    assert sorted((r.filename, r.before_s, r.after_s) for r in rows) == [
        ("/a/x.py", pytest.approx(0.01), 0), ("/b/x.py", pytest.approx(0.01), 0),
        ("/c/x.py", 0, pytest.approx(0.01))]


def test_a_baseline_costs_its_totals_not_its_samples():
    base, new = before_after()
    big = build([([STEP, ("common", "/w/flow.py", 10)], 5000)])
    for b in (base, big):
        out = new.with_baseline(b, {"baseline": "run 1"})
        assert out.meta["compare"] == {"baseline": "run 1"}
        got = out.baseline()
        assert got is not None and got.functions() == b.functions()
        assert got.to_bytes().startswith(b"MFPROF")
        assert len(got._t["samples"]["t_ns"]) == 0  # SAMPLES left behind
        growth = len(out.to_bytes()) - len(new.to_bytes())
        assert growth < len(b.to_bytes())
    # 5000 samples' SAMPLES are most of that profile; the card carries none of them
    assert len(new.with_baseline(big, {}).to_bytes()) < len(new.to_bytes()) + len(big.to_bytes()) / 4
    # the rest of the profile is untouched, and a second baseline replaces the first
    twice = new.with_baseline(big, {"baseline": "a"}).with_baseline(base, {"baseline": "b"})
    assert twice.functions() == new.functions() and twice.baseline().functions() == base.functions()
    assert twice.meta["compare"] == {"baseline": "b"}
    assert new.baseline() is None


def program(extra=None, samples_per_stack=3, seed=0):
    """A profile of a realistic shape: 3 threads, 240 distinct stacks 8 deep
    (the same code whatever the seed: a seed only changes how the samples
    fall), plus `extra` (a function only this run ran)."""
    import random

    rnd = random.Random(seed)
    b = Builder()
    s = b.string
    threads = [b.thread(100 + i, s(f"Worker-{i}"), 1 if i == 0 else 0) for i in range(3)]
    leaves = []
    for i in range(240):
        node = -1
        for depth in range(8):
            k = (i >> depth) % 4 if depth < 5 else i
            name = f"pkg.mod{depth}.Class{k}.method_{depth}_{k}"
            f = b.func(s(name), s(f"/opt/venv/lib/python3.11/site-packages/pkg/mod{depth}.py"),
                       10 * depth + 1, 0)
            node = b.stack(node, b.frame(f, 10 * depth + 2 + k % 3))
        leaves.append(node)
    if extra:
        f = b.func(s(extra), s("/w/flow.py"), 30, 0)
        leaves.append(b.stack(leaves[0], b.frame(f, 31)))
    t = 0
    for _ in range(samples_per_stack):
        for leaf in leaves:
            t += MS
            b.sample(t, leaf, threads[rnd.randrange(3)], MS, 1)
    return Profile.from_bytes(b.encode(json.dumps({
        "backend": "sample", "duration_ns": t, "start_unix_ns": T0, "python": "3.11.7",
        "title": "Flow.train", "notes": ["a note the comparison does not need " * 4]})))


def card_growth(new, base):
    """Bytes the baseline adds to the card (the same META compare on both)."""
    from metaflow_profiler.html import render_html

    info = {"baseline": "1234", "how": "previous", "pathspec": "Flow/1234/train/7"}
    return (len(render_html(new.with_baseline(base, info).to_bytes(), title="t"))
            - len(render_html(new.with_baseline(None, info).to_bytes(), title="t")))


def test_the_card_grows_by_the_baselines_totals():
    from metaflow_profiler.profile import _sections

    new = program(seed=1)
    for n in (3, 30):  # ten times the samples: the same growth
        base = program(samples_per_stack=n, seed=2)
        totals = dict(_sections(base.to_bytes()))[8]
        growth = card_growth(new, base)
        # the tables are this run's already; 256 bytes: the baseline's
        # duration and date, section headers, its three thread names
        assert growth <= len(totals) + 256, (growth, len(totals))
        assert len(base.to_bytes()) > 4 * len(totals) > 4 * 1000
        assert new.with_baseline(base, {}).baseline().functions() == base.functions()
    # code only the baseline ran travels too: its names, not the shared ones
    base = program(extra="Flow.slow_extra", seed=2)
    bl = dict(_sections(new.with_baseline(base, {}).to_bytes()))[15]
    strings = dict(_sections(bl))[2]
    assert b"Flow.slow_extra" in strings and b"/w/flow.py" in strings and b"pkg" not in strings
    assert new.with_baseline(base, {}).baseline().functions() == base.functions()
    totals = dict(_sections(base.to_bytes()))[8]
    assert card_growth(new, base) <= len(totals) + len(strings) + 256


def test_a_baseline_reads_without_the_engine(monkeypatch):
    # a worker whose .so does not load renders the card with pyformat
    from metaflow_profiler import native
    from metaflow_profiler import profile as profile_module

    base, new = program(extra="Flow.slow_extra", seed=2), program(seed=1)
    card = new.with_baseline(base, {"baseline": "1"})
    monkeypatch.setattr(native, "Builder", pyformat.Builder)
    monkeypatch.setattr(profile_module, "decode", pyformat.decode)
    assert Profile.from_bytes(card.to_bytes()).baseline().functions() == base.functions()


def test_a_baseline_written_whole_still_reads():
    # cards made before the baseline shared this profile's tables
    from metaflow_profiler.profile import BASELINE, _join, _sections

    base, new = before_after()
    kept = [(t, p) for t, p in _sections(base.to_bytes()) if t in (1, 2, 3, 4, 5, 6, 8)]
    old = Profile.from_bytes(_join([*_sections(new.to_bytes()), (BASELINE, _join(kept))]))
    assert old.baseline().functions() == base.functions()
    assert old.diff(old.baseline())[0].name == "slow"


def test_no_baseline_is_said_in_meta_only():
    _, new = before_after()
    out = new.with_baseline(None, {"missing": "no earlier run"})
    assert out.baseline() is None and out.meta["compare"] == {"missing": "no earlier run"}
    assert out.functions() == new.functions()


def test_merge_adds_totals_and_keeps_tasks_apart():
    tasks = [build([([STEP, ("work", "/w/flow.py", 5)], n)],
                   meta={"duration_ns": n * MS, "start_unix_ns": T0 + i * 10**9})
             for i, n in enumerate((30, 90, 40))]
    m = Profile.merge(tasks, ["3", "4", "5"])
    rows = {r.name: r for r in m.functions()}
    assert rows["work"].samples == 160 and rows["work"].total_s == pytest.approx(0.160)
    # same tid in every input: still three threads, each in its task's process
    assert [p["name"] for p in m.processes()] == ["3", "4", "5"]
    assert all(p["root"] for p in m.processes()) and m.stats()["processes"] == 3
    assert [m._t["thread_process"][i] for i in range(3)] == [0, 1, 2]
    assert [p["start_s"] for p in m.processes()] == [0, 1, 2]
    # SAMPLES come along on one clock: task "4" started 1 s after "3"
    t, th = m._t["samples"]["t_ns"], m._t["samples"]["thread"]
    assert len(t) == 160 and t == sorted(t)
    assert min(x for x, i in zip(t, th) if i == 1) == 10**9 + MS
    assert m.meta["start_unix_ns"] == T0 and m.meta["duration_ns"] == 2 * 10**9 + 40 * MS
    merged = m.meta["merged"]
    assert [r["label"] for r in merged] == ["3", "4", "5"]
    assert max(merged, key=lambda r: r["duration_ns"])["label"] == "4"
    assert merged[1]["top"]["name"] == "work" and merged[1]["samples"] == 90
    assert m.meta["backend"] == "sample"
    # totals-only inputs (a deterministic backend) merge the same way
    calls = [build([([("f", "/x.py", 1)], 5)], per_sample=False, meta={"counts": "calls"})] * 2
    assert Profile.merge(calls).functions()[0].samples == 10
    with pytest.raises(ValueError, match="counts differ"):
        Profile.merge([tasks[0], calls[0]])
    with pytest.raises(ValueError, match="nothing to merge"):
        Profile.merge([])


def task_with_children(task_tid, start_s):
    """A task's profile that followed two child processes (as children.py
    merges them), with memory over time and leaks in the task and a child."""
    def one(tid, leaf, n, heap=False):
        b = Builder()
        s = b.string
        main = b.stack(-1, b.frame(b.func(s("main"), s("/w/flow.py"), 1, 0), 2))
        leaf_stack = b.stack(main, b.frame(b.func(s(leaf), s("/w/flow.py"), 10, 0), 11))
        th = b.thread(tid, s("MainThread"), 1)
        for i in range(n):
            b.sample((i + 1) * MS, leaf_stack, th, MS, 1)
        if heap:
            b.memory(leaf_stack, 4096, 8192, 2)
            b.heap_event(leaf_stack, 4096, 2 * MS, None)  # live at the end
            b.heap_event(leaf_stack, 1024, 3 * MS, 5 * MS)
            b.leak(leaf_stack, 4096)
        return b.encode(json.dumps({"backend": "sample", "duration_ns": n * MS}))

    kids = [(one(task_tid + 1, "hot", 40, heap=True), 2 * MS,
             (task_tid + 1, task_tid, "ForkPoolWorker-1", 0, 40 * MS, 40 * MS, 1 << 24, 4096)),
            (one(task_tid + 2, "hot", 20), 3 * MS,
             (task_tid + 2, task_tid, "ForkPoolWorker-2", 0, 20 * MS, 20 * MS, 1 << 23, 0))]
    data, bad = _native.merge(one(task_tid, "wait", 50, heap=True), kids,
                              base_process=(task_tid, 1, "python flow.py", 1, 50 * MS, MS,
                                            1 << 25, 4096),
                              meta=json.dumps({"backend": "sample", "duration_ns": 50 * MS,
                                               "start_unix_ns": T0 + int(start_s * 1e9)}))
    assert bad == []
    return Profile.from_bytes(data)


def test_merge_keeps_each_tasks_processes_and_memory_over_time():
    tasks = [task_with_children(100, 0), task_with_children(200, 0.5)]
    assert len(tasks[0].processes()) == 3 and len(tasks[0]._t["heap_events"]["stack"]) == 4
    m = Profile.merge(tasks, ["t1", "t2"])
    procs = m.processes()
    # each task's own process is named by its label; its children keep their names
    assert [(p["pid"], p["name"], p["root"]) for p in procs] == [
        (100, "t1", True), (101, "ForkPoolWorker-1", False), (102, "ForkPoolWorker-2", False),
        (200, "t2", True), (201, "ForkPoolWorker-1", False), (202, "ForkPoolWorker-2", False)]
    assert procs[4]["start_s"] == pytest.approx(0.502)
    assert m.stats()["children_processes"] == 4 and m.stats()["processes"] == 6
    # each sample keeps its process and thread
    for task, pid in ((tasks[0], 101), (tasks[1], 202)):
        assert m.functions(pid=pid) == task.functions(pid=pid)
    assert {t["pid"] for t in m.threads()} == {100, 101, 102, 200, 201, 202}
    assert sum(m._t["samples"]["weight_ns"]) == sum(sum(t._t["samples"]["weight_ns"]) for t in tasks)
    # memory at peak keeps its process too
    assert [m._t["memory_process"][i] for i in range(len(m._t["memory"]["stack"]))] == [0, 1, 3, 4]
    # memory over time: every event, in allocation order, task 2's 0.5 s later
    ev = m._t["heap_events"]
    assert len(ev["stack"]) == 8 and ev["t_alloc_ns"] == sorted(ev["t_alloc_ns"])
    assert ev["t_alloc_ns"][-1] == 5 * 10**8 + 5 * MS and ev["t_free_ns"].count(None) == 4
    assert m.meta["memory"]["events"] == 8
    # leaks: one stack per leaf function, added up over tasks and processes
    s = m._t["strings"]
    leaks = {s[m._t["funcs"]["name"][m._t["frames"]["func"][m._t["stacks"]["frame"][st]]]]: b
             for st, b in zip(m._t["leaks"]["stack"], m._t["leaks"]["live_bytes"])}
    assert leaks == {"wait": 2 * 4096, "hot": 2 * 4096}
    # the pure-Python reader (no compiled engine) reads the merged profile the same
    assert pyformat.decode(m.to_bytes()) == _native.decode(m.to_bytes())


def test_merge_without_the_engine_says_what_is_missing(monkeypatch):
    from metaflow_profiler import native

    monkeypatch.setattr(native, "engine", None)
    monkeypatch.setattr(native, "MISSING", "no compiled engine is installed")
    with pytest.raises(RuntimeError, match="merging profiles needs the compiled engine: no comp"):
        Profile.merge([build([([STEP], 3)])])


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "metaflow_profiler", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_diff_and_merge_files_without_metaflow(tmp_path):
    base, new = before_after()
    base.save(tmp_path / "base.mfprof")
    new.save(tmp_path / "new.mfprof")
    r = cli("diff", "base.mfprof", "new.mfprof", "--html", "card.html", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "slow (/w/flow.py)" in lines[2]  # the biggest change comes first
    card = Profile.from_bytes(card_profile_bytes((tmp_path / "card.html").read_text()))
    assert card.baseline().functions() == base.functions()
    assert card.meta["compare"]["baseline"] == "base.mfprof"

    for i, n in enumerate((30, 90, 40)):
        build([([("work", "/w/flow.py", 5)], n)]).save(tmp_path / f"t{i}.mfprof")
    r = cli("merge", "t0.mfprof", "t1.mfprof", "t2.mfprof", "-o", "m.mfprof", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "slowest: t1.mfprof" in r.stdout
    assert Profile.load(tmp_path / "m.mfprof").functions()[0].samples == 160

    # files only: Metaflow is never imported
    code = ("import sys; from metaflow_profiler.__main__ import main; "
            "main(['diff', 'base.mfprof', 'new.mfprof']); "
            "main(['merge', 't0.mfprof', 't1.mfprof']); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'metaflow'], 'imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_says_what_is_wrong(tmp_path):
    r = cli("diff", "nope.mfprof", "nope2.mfprof", cwd=tmp_path)
    assert r.returncode == 2 and "No such file" in r.stderr
    r = cli("merge", "not a/path spec", cwd=tmp_path)
    assert r.returncode == 2 and "not a pathspec" in r.stderr


def test_merge_of_tasks_that_spent_their_time_importing():
    # A folded "import <module>" frame is numbered past the function table:
    # a task whose top function is one must still get its row.
    boot = "<frozen importlib._bootstrap>"
    stack = [STEP, ("_find_and_load", boot, 1), ("_load_unlocked", boot, 1)]
    tasks = [build([(stack, 20)], meta={"duration_ns": 20 * MS}) for _ in range(2)]
    merged = Profile.merge(tasks, ["1", "2"]).meta["merged"]
    assert [r["top"]["name"] for r in merged] == ["import (finding and loading)"] * 2


def test_diff_of_profiles_that_import():
    # Folded imports are numbered past the function table (an IndexError in
    # diff when the baseline's sampler had caught an import).
    boot = "<frozen importlib._bootstrap>"
    stack = [STEP, ("_find_and_load", boot, 1), ("_load_unlocked", boot, 1)]
    base = build([(stack, 20), ([STEP], 10)])
    new = build([(stack, 5), ([STEP], 40)])
    by = {r.name: r for r in new.diff(base, by="self")}
    imp = by["import (finding and loading)"]
    assert imp.before_s == pytest.approx(0.020) and imp.after_s == pytest.approx(0.005)
    assert by["Flow.train"].after_self_s - by["Flow.train"].before_self_s == pytest.approx(0.030)
