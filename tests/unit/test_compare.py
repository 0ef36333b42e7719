"""Profile.diff, with_baseline/baseline and merge, and the CLI's diff and
merge, on profiles built with the engine's own encoder (known numbers)."""

import json
import subprocess
import sys

import pytest
from metaflow_profiler._native import Builder
from support import card_profile_bytes

from metaflow_profiler import Profile

MS = 1_000_000


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
    m = {"backend": "sample", "duration_ns": t or 1, "start_unix_ns": 1_700_000_000 * 10**9}
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


def test_no_baseline_is_said_in_meta_only():
    _, new = before_after()
    out = new.with_baseline(None, {"missing": "no earlier run"})
    assert out.baseline() is None and out.meta["compare"] == {"missing": "no earlier run"}
    assert out.functions() == new.functions()


def test_merge_adds_totals_and_keeps_tasks_apart():
    tasks = [build([([STEP, ("work", "/w/flow.py", 5)], n)], meta={"duration_ns": n * MS})
             for n in (30, 90, 40)]
    m = Profile.merge(tasks, ["3", "4", "5"])
    rows = {r.name: r for r in m.functions()}
    assert rows["work"].samples == 160 and rows["work"].total_s == pytest.approx(0.160)
    # same tid in every input: still three threads
    assert [t["name"] for t in m.threads()] == ["3 MainThread", "4 MainThread", "5 MainThread"]
    assert len({t["tid"] for t in m.threads()}) == 3
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
