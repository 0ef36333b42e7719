"""Real Metaflow runs (local datastore and metadata, a temporary working
directory) of flows decorated with @profile_card; the card is read back with
metaflow.cards.get_cards, exactly as a user would."""

import subprocess
import sys

import pytest
from support import REPO, card_profile_bytes, new_flow_dir, profile_card_of, run_flow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def good_run():
    return run_flow(new_flow_dir("good"), REPO / "examples" / "train_flow.py", size=20000)


@pytest.fixture(scope="module")
def failed_run():
    return run_flow(new_flow_dir("failed"), REPO / "examples" / "train_flow.py", size=5000,
                    fail=True)


def test_hot_function_has_the_largest_share(good_run):
    status, run = good_run
    assert status == "successful"
    task = run["train"].task
    _, profile = profile_card_of(task, "train")
    assert profile.meta["focus"] == "TrainFlow.train"
    rows = {r.name: r for r in profile.functions()}
    step_total = rows["TrainFlow.train"].samples
    assert step_total >= 100
    below_step = [r for r in rows.values() if r.samples < step_total]
    hottest = max(below_step, key=lambda r: r.samples)
    assert hottest.name == "featurize"
    assert rows["featurize"].samples > 0.5 * step_total
    fit = rows["fit"].samples if "fit" in rows else 0
    assert rows["featurize"].samples > 10 * fit


def test_artifact_is_a_plain_dict(good_run):
    _, run = good_run
    data = run["train"].task["profile_card_data"].data
    assert isinstance(data, dict)
    assert data["format_version"] == 1 and data["step_failed"] is False and data["error"] is None
    assert isinstance(data["profile"], bytes) and data["profile"].startswith(b"MFPROF")
    assert data["stats"]["samples"] > 0 and data["stats"]["duration_s"] > 0
    assert run["end"].task["model"].data == run["train"].task["model"].data


def test_card_only_on_the_decorated_step(good_run):
    from metaflow.cards import get_cards

    _, run = good_run
    for step in ("start", "end"):
        with pytest.raises(Exception, match="Card not found"):
            list(get_cards(run[step].task))


def test_failed_step_has_card_with_banner(failed_run):
    status, run = failed_run
    assert status == "failed"
    assert not run.successful
    task = run["train"].task
    assert not task.successful
    assert "training diverged" in str(task.exception)
    data = task["profile_card_data"].data
    assert data["step_failed"] is True
    line = next(i for i, text in enumerate((REPO / "examples" / "train_flow.py").open(), 1)
                if "raise RuntimeError" in text)
    assert data["step_error"] == {
        "type": "RuntimeError", "message": "training diverged (demo failure)",
        # the user's frames only: the step's line, then the exception
        "traceback": f'train_flow.py:{line} in train: raise RuntimeError("training diverged '
                     '(demo failure)")\nRuntimeError: training diverged (demo failure)'}
    _, profile = profile_card_of(task, "train")
    assert profile.meta["step_failed"] is True
    assert profile.meta["step_error"]["message"] == "training diverged (demo failure)"
    assert any(r.name == "featurize" for r in profile.functions())


FLOW_WITH_IMPORT = """
from metaflow import FlowSpec, step
from metaflow_extensions.profiler.plugins.profile_decorator import profile_card


class ImportFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.work)

    @profile_card(sample_interval=0.002, timeline_interval=0.1)
    @step
    def work(self):
        self.total = sum(i * i for i in range(300000))
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ImportFlow()
"""


def test_forced_start_failure_keeps_the_step_result(flow_dir):
    status, run = run_flow(flow_dir, FLOW_WITH_IMPORT, env={"MFP_FAULT_INJECT": "start"})
    assert status == "successful"
    task = run["work"].task
    assert task["total"].data == sum(i * i for i in range(300000))
    data = task["profile_card_data"].data
    assert "MFP_FAULT_INJECT" in data["error"]["message"]
    _, profile = profile_card_of(task, "work")
    assert profile.meta["error"]["type"] == "ProfilerError"
    assert profile.stats()["samples"] == 0


def test_extension_import_path_and_options(flow_dir):
    status, run = run_flow(flow_dir, FLOW_WITH_IMPORT)
    assert status == "successful"
    _, profile = profile_card_of(run["work"].task, "work")
    assert profile.meta["interval_ns"] == 2_000_000
    assert profile.meta["timeline_interval_ns"] == 100_000_000


BAD_OPTION_FLOW = """
from metaflow import FlowSpec, step, profile_card


class BadFlow(FlowSpec):
    @profile_card({option})
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BadFlow()
"""


@pytest.mark.parametrize(
    "option, message",
    [
        ("profiler='nope'", "step 'start': profiler names no usable backend: unknown profiler "
                            "backend 'nope'; available: sample"),
        ("sample_interval=0", "step 'start': sample_interval must be a number of seconds from"),
        ("sample_interval='fast'", "sample_interval must be a number of seconds"),
        ("timeline_interval=-1", "timeline_interval must be 0 (off) or a number of seconds"),
        ("artifact_name='_hidden'", "artifact_name must be a Python identifier"),
        ("compare='last week'", 'compare must be "previous", False, a run id or a pathspec'),
    ],
)
def test_bad_options_fail_when_the_flow_starts(flow_dir, option, message):
    flow = flow_dir / "bad_flow.py"
    flow.write_text(BAD_OPTION_FLOW.format(option=option))
    proc = subprocess.run([sys.executable, str(flow), "run"], cwd=flow_dir, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "Workflow starting" not in proc.stdout + proc.stderr


USER_CARD_FLOW = """
from metaflow import FlowSpec, card, profile_card, step


class UserCardFlow(FlowSpec):
    @card(type="profile_card", id="mine")
    @profile_card
    @step
    def start(self):
        sum(i * i for i in range(200000))
        if self.input is None:
            raise ValueError("boom")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UserCardFlow()
"""


def test_a_card_the_user_attached_is_used_not_doubled(flow_dir):
    from metaflow.cards import get_cards

    status, run = run_flow(flow_dir, USER_CARD_FLOW)
    assert status == "failed"
    assert "boom" in str(run["start"].task.exception)
    cards = list(get_cards(run["start"].task))
    assert [c.id for c in cards] == ["mine"]  # rendered although the step failed
    assert card_profile_bytes(cards[0].get()) is not None
