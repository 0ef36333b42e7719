"""Comparing runs (issue 15) with real Metaflow runs: the card compares with
the previous successful run of its step, or the run `compare` names, or says
there is none; `python -m metaflow_profiler merge` makes one profile of a
foreach's tasks. Flows run as `python flow.py run` in subprocesses (the
Playwright loop in this process rules out Metaflow's Runner) and are read
back with the client and get_cards, as a user would. Here, not in
integration/, so the flows run once (on the browser run's interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from support import card_profile_bytes, new_flow_dir, profile_card_of

from metaflow_profiler import Profile

pytestmark = [pytest.mark.browser, pytest.mark.integration]

COMPARE_FLOW = '''
import time
from metaflow import FlowSpec, Parameter, step, profile_card


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def common_work():
    spin(0.15)


def slow_extra():
    end = time.perf_counter() + 0.4
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


class CompareFlow(FlowSpec):
    slow = Parameter("slow", default=False, type=bool)
    fail = Parameter("fail", default=False, type=bool)

    @profile_card(sample_interval=0.002, timeline_interval=0, memory=False{option})
    @step
    def start(self):
        common_work()
        if self.slow:
            slow_extra()
        if self.fail:
            raise RuntimeError("failed on purpose")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CompareFlow()
'''


def run(flow_dir, source, *args):
    """Run a flow in a subprocess; returns (succeeded, run id)."""
    (flow_dir / "flow.py").write_text(textwrap.dedent(source))
    id_file = flow_dir / "run_id"
    proc = subprocess.run([sys.executable, "flow.py", "run", "--run-id-file", str(id_file), *args],
                          cwd=flow_dir, capture_output=True, text=True, timeout=300)
    return proc.returncode == 0, id_file.read_text().strip()


@pytest.fixture(scope="module")
def runs():
    """first (no predecessor), failed (slow, fails in the step), slow (the
    previous successful run is first), chosen (slow, compare= first's id), off
    (compare=False), by_path (slow, compare= first's task pathspec)."""
    d = new_flow_dir("compare")
    out = {}
    ok, out["first"] = run(d, COMPARE_FLOW.format(option=""))
    assert ok
    ok, out["failed"] = run(d, COMPARE_FLOW.format(option=""), "--slow", "True", "--fail", "True")
    assert not ok
    ok, out["slow"] = run(d, COMPARE_FLOW.format(option=""), "--slow", "True")
    assert ok
    ok, out["chosen"] = run(d, COMPARE_FLOW.format(option=f", compare={out['first']!r}"),
                            "--slow", "True")
    assert ok
    ok, out["off"] = run(d, COMPARE_FLOW.format(option=", compare=False"))
    assert ok
    path = f"CompareFlow/{out['first']}/start/1"
    ok, out["by_path"] = run(d, COMPARE_FLOW.format(option=f", compare={path!r}"), "--slow", "True")
    assert ok
    return out


def card_of(run_id):
    from metaflow import Task

    return profile_card_of(Task(f"CompareFlow/{run_id}/start/1"), "start")


def test_the_first_run_has_nothing_to_compare_with(runs):
    _, prof = card_of(runs["first"])
    assert prof.baseline() is None
    assert "No earlier run of CompareFlow" in prof.meta["compare"]["missing"]


def test_the_previous_successful_run_is_the_baseline(runs):
    _, prof = card_of(runs["slow"])
    info = prof.meta["compare"]
    # the failed run in between is skipped
    assert info == {"baseline": runs["first"], "how": "previous",
                    "pathspec": f"CompareFlow/{runs['first']}/start/1"}
    top = prof.diff(prof.baseline(), by="self")[0]
    assert top.name == "slow_extra" and top.before_s == 0
    # 0.4 of the step's 0.55 s: most of what this run added over the first
    added = sum(max(r.after_self_s - r.before_self_s, 0) for r in prof.diff(prof.baseline()))
    assert top.after_self_s > 0.5 * added


def test_the_card_names_the_previous_run_and_the_slower_function(runs, card):
    html, _ = card_of(runs["slow"])
    c = card(html)
    head = c.page.locator("#mfp-compare-head").inner_text()
    assert head.startswith(f"Compared with run {runs['first']} (")
    grew = c.page.locator("#mfp-compare-grew li").first
    assert grew.get_attribute("data-name") == "slow_extra"
    html, _ = card_of(runs["first"])
    first = card(html, name="first.html")
    assert first.page.locator("#mfp-compare").inner_text().startswith(
        "No comparison: No earlier run of CompareFlow")


def test_the_baseline_costs_the_card_its_totals(runs):
    from metaflow import Task

    from metaflow_profiler.html import render_html
    from metaflow_profiler.profile import BASELINE, _sections

    _, prof = card_of(runs["slow"])
    first = Task(f"CompareFlow/{runs['first']}/start/1")["profile_card_data"].data["profile"]
    totals = dict(_sections(first))[8]
    # what the card carries of the baseline beyond its TOTALS: names and
    # stacks only the first run's process sampled (the runs' imports differ
    # in which of their stacks a sample caught)
    only_first = sum(len(p) for t, p in _sections(dict(_sections(prof.to_bytes()))[BASELINE])
                     if t in (2, 3, 4, 5))
    bare = prof.with_baseline(None, prof.meta["compare"])
    growth = len(render_html(prof.to_bytes(), title="t")) - len(render_html(bare.to_bytes(), title="t"))
    print(f"card growth {growth} B; baseline TOTALS {len(totals)} B, its own tables "
          f"{only_first} B, whole baseline profile {len(first)} B")
    assert growth <= len(totals) + only_first + 256, (growth, len(totals), only_first)
    assert growth < len(first) / 4


def test_a_failed_run_compares_with_the_previous_success_too(runs):
    _, prof = card_of(runs["failed"])
    assert prof.meta["compare"]["baseline"] == runs["first"]


def test_compare_names_the_run(runs):
    _, prof = card_of(runs["chosen"])
    # the slow run is the closest earlier success; the option overrides it
    assert prof.meta["compare"]["baseline"] == runs["first"]
    assert prof.meta["compare"]["how"] == "chosen"


def test_compare_names_a_task_by_pathspec(runs):
    _, prof = card_of(runs["by_path"])
    path = f"CompareFlow/{runs['first']}/start/1"
    assert prof.meta["compare"] == {"baseline": runs["first"], "pathspec": path, "how": "chosen"}
    assert prof.diff(prof.baseline(), by="self")[0].name == "slow_extra"


def test_compare_false_leaves_the_card_alone(runs):
    from metaflow import Task

    _, prof = card_of(runs["off"])
    assert "compare" not in prof.meta and prof.baseline() is None
    artifact = Task(f"CompareFlow/{runs['off']}/start/1")["profile_card_data"].data
    assert prof.to_bytes() == artifact["profile"]


def test_cli_diff_reads_pathspecs(runs, tmp_path):
    base, new = (f"CompareFlow/{runs[k]}/start/1" for k in ("first", "slow"))
    r = subprocess.run([sys.executable, "-m", "metaflow_profiler", "diff", base, new,
                        "--html", "card.html"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{base} -> {new}: ")
    assert "slow_extra" in r.stdout.splitlines()[2]  # the biggest change first
    card = Profile.from_bytes(card_profile_bytes((tmp_path / "card.html").read_text()))
    assert card.meta["compare"] == {"baseline": runs["first"], "pathspec": base, "how": "chosen"}
    assert card.baseline().functions() == card_of(runs["first"])[1].functions()


FANOUT_FLOW = '''
import time
from metaflow import FlowSpec, step, profile_card


def crunch(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


class FanoutFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(8))
        self.next(self.work, foreach="items")

    @profile_card(sample_interval=0.002, timeline_interval=0.05, memory=False)
    @step
    def work(self):
        self.item = self.input
        # 1.4 s apart: on a loaded machine a 0.1 s task's profiled span was
        # seen to wait 0.6 s more (load average 38 on 2 cores)
        crunch(1.5 if self.item == 5 else 0.1)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FanoutFlow()
'''


@pytest.fixture(scope="module")
def fanout():
    d = new_flow_dir("fanout")
    ok, run_id = run(d, FANOUT_FLOW, "--max-workers", "2")
    assert ok
    return run_id


def test_merge_a_foreach_names_the_slowest_task(fanout, tmp_path, card):
    from metaflow import Step

    tasks = list(Step(f"FanoutFlow/{fanout}/work"))
    assert len(tasks) == 8
    slow_id = next(t.id for t in tasks if t["item"].data == 5)
    r = subprocess.run([sys.executable, "-m", "metaflow_profiler", "merge",
                        f"FanoutFlow/{fanout}/work", "-o", "m.mfprof", "--html", "m.html"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"slowest: {slow_id} (" in r.stdout
    merged = Profile.load(tmp_path / "m.mfprof")
    rows = merged.meta["merged"]
    assert sorted(r["label"] for r in rows) == sorted(t.id for t in tasks)
    # where a task got enough samples (a loaded machine can starve a few),
    # the loop is its top function
    sampled = [r for r in rows if r["samples"] >= 20]
    assert sampled and all(r["top"]["name"] == "crunch" for r in sampled), [
        (r["label"], r["samples"], r["top"]["name"], r["top"]["self_ns"] // 10**6) for r in rows]
    assert all(r["peak_rss_bytes"] > 0 for r in rows), rows
    c = card((tmp_path / "m.html").read_text())
    assert c.page.locator("#mfp-tasks-head").inner_text().startswith(
        f"8 profiles merged · slowest: {slow_id} (")
    # the merge adds up exactly what each task's own profile holds
    def crunch(prof):
        return next(f for f in prof.functions() if f.name == "crunch")

    profiles = [Profile.from_bytes(t["profile_card_data"].data["profile"]) for t in tasks]
    own = [crunch(p) for p in profiles]
    assert crunch(merged).samples == sum(f.samples for f in own)
    assert crunch(merged).total_s == pytest.approx(sum(f.total_s for f in own))
    # each task is a process of the merged profile, named by its task id,
    # with its samples (memory over time: tests/unit/test_compare.py)
    assert [p["name"] for p in merged.processes()] == [r["label"] for r in rows]
    per_process = [0] * len(rows)
    for thread, n in zip(merged._t["totals"]["thread"], merged._t["totals"]["count"]):
        per_process[merged._t["thread_process"][thread]] += n
    assert per_process == [r["samples"] for r in rows]
    assert len(merged._t["samples"]["t_ns"]) == sum(len(p._t["samples"]["t_ns"]) for p in profiles)
