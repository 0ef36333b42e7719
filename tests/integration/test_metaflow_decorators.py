"""@profile_card beside Metaflow's own decorators, in one real run: @retry
(each attempt's card says which it is; the documented id gets the latest),
@catch (the card says the exception was caught), @timeout (the card says it
timed out, with the user's frames), @resources (requested beside used), and
an artifact of the user's under the profile's name (never overwritten).
Names that would collide and can be seen before the run are refused."""

import re
import subprocess
import sys

import pytest
from support import card_profile_bytes, new_flow_dir, profile_card_of, run_flow

from metaflow_profiler import Profile

pytestmark = pytest.mark.integration

FLOW = """
import time
from metaflow import (FlowSpec, catch, current, profile_card, resources, retry, step,
                      timeout)


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def flaky_work():
    spin(0.3)
    if current.retry_count == 0:
        raise RuntimeError("first attempt fails")


def stuck():
    while True:
        spin(0.05)


class AroundFlow(FlowSpec):
    @resources(memory=2048, cpu=2)
    @profile_card(memory=False)
    @step
    def start(self):
        setattr(self, "profile_card" + "_data", "the user's own value")
        spin(0.3)
        self.next(self.flaky)

    @retry(times=1, minutes_between_retries=0)
    @profile_card(memory=False, timeline_interval=0)
    @step
    def flaky(self):
        flaky_work()
        self.next(self.caught)

    @catch(var="failure")
    @profile_card(memory=False, timeline_interval=0)
    @step
    def caught(self):
        spin(0.2)
        raise ValueError("bad value in caught")
        self.next(self.slow)

    @timeout(seconds=2)
    @catch(var="timed_out")
    @profile_card(memory=False, timeline_interval=0)
    @step
    def slow(self):
        stuck()
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    AroundFlow()
"""


@pytest.fixture(scope="module")
def around_run():
    d = new_flow_dir("around")
    return (d, *run_flow(d, FLOW))


def test_retry_cards_name_their_attempt_and_the_id_gets_the_latest(around_run):
    d, status, run = around_run
    assert status == "successful"
    from metaflow.cards import get_cards

    task = run["flaky"].task
    _, latest = profile_card_of(task, "flaky")  # exactly one card has the documented id
    assert latest.meta["attempt"] == 1 and latest.meta["attempts"] == 2
    assert latest.meta["title"].endswith("(attempt 2 of 2)") and not latest.meta["step_failed"]
    assert "attempt 2 of 2 (@retry)" in latest.meta["notes"]
    (first,) = get_cards(task, id="profile_card_flaky_attempt1")
    first = Profile.from_bytes(card_profile_bytes(first.get()))
    assert first.meta["attempt"] == 0 and first.meta["title"].endswith("(attempt 1 of 2)")
    assert first.meta["step_failed"] and first.meta["step_error"]["message"] == "first attempt fails"
    # The command the README documents writes the latest attempt's card.
    out = d / "flaky.html"
    subprocess.run([sys.executable, "flow.py", "card", "get", f"{run.id}/flaky", "--id",
                    "profile_card_flaky", str(out)], cwd=d, check=True, capture_output=True)
    assert Profile.from_bytes(card_profile_bytes(out.read_text())).meta["attempt"] == 1


def test_catch_card_says_the_exception_was_caught(around_run):
    _, _, run = around_run
    _, prof = profile_card_of(run["caught"].task, "caught")
    err = prof.meta["step_error"]
    assert prof.meta["step_failed"] and err["caught"] and err["caught_var"] == "failure"
    assert any("@catch caught it into self.failure" in n for n in prof.meta["notes"])
    # The user's frames only: the step, not Metaflow's task runner.
    assert err["traceback"].splitlines()[0].startswith("flow.py:")
    assert "metaflow" not in err["traceback"].replace("bad value", "")


def test_timeout_card_says_it_timed_out_with_the_users_frames(around_run):
    _, _, run = around_run
    _, prof = profile_card_of(run["slow"].task, "slow")
    err = prof.meta["step_error"]
    assert err["timed_out"] and err["type"] == "TimeoutException"
    assert "\n" not in err["message"]
    frames = err["traceback"].splitlines()
    assert any(re.match(r"flow\.py:\d+ in stuck", f) for f in frames), frames
    assert len(frames) <= 6, frames  # slow -> stuck -> spin, and the exception line
    assert any(n.startswith("the step timed out (@timeout)") for n in prof.meta["notes"])
    rows = {r.name: r for r in prof.functions()}
    assert rows["stuck"].total_s > 1.0


def test_resources_requested_beside_used(around_run):
    _, _, run = around_run
    _, prof = profile_card_of(run["start"].task, "start")
    assert prof.meta["resources"]["requested"] == {"from": "@resources", "cpu": 2.0,
                                                   "memory_mb": 2048.0}
    note = next(n for n in prof.meta["notes"] if n.startswith("memory: peak "))
    assert re.fullmatch(r"memory: peak \d+ MB of 2\.0 GB requested; CPU: avg \d+\.\d of 2 "
                        r"requested \(@resources\)", note), note


def test_the_users_artifact_is_never_overwritten(around_run):
    _, _, run = around_run
    task = run["start"].task
    assert task["profile_card_data"].data == "the user's own value"
    assert task["profile_card_data_profile_card"].data["format_version"] == 1
    _, prof = profile_card_of(task, "start")  # the card finds the fallback
    assert prof.stats()["samples"] > 0


REFUSED = """
from metaflow import FlowSpec, profile_card, step


class RefusedFlow(FlowSpec):
    @profile_card(artifact_name={name!r})
    @step
    def start(self):
        self.model = 1
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RefusedFlow()
"""


@pytest.mark.parametrize("name, message", [
    ("input", "artifact_name 'input' is a name FlowSpec defines"),
    ("name", "artifact_name 'name' is a name FlowSpec defines"),
    ("model", "artifact_name 'model' is an artifact the step sets itself (self.model = ...)"),
])
def test_colliding_names_are_refused_before_the_flow_starts(flow_dir, name, message):
    (flow_dir / "refused.py").write_text(REFUSED.format(name=name))
    proc = subprocess.run([sys.executable, "refused.py", "run"], cwd=flow_dir, capture_output=True,
                          text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"step 'start': {message}" in out, out[-2000:]
    assert "Workflow starting" not in out
