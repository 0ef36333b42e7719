"""@profile_card attached from outside the flow: `run --with profile_card[:k=v,...]`,
METAFLOW_DECOSPECS and Runner(...).run(decospecs=[...]). Metaflow hands the
task process the attributes as strings ("False", "0.01"); the card shows the
options that were asked for, and a bad value stops the run before it starts."""

import os
import subprocess
import sys

import pytest
from support import profile_card_of

pytestmark = pytest.mark.integration

PLAIN_FLOW = """
from metaflow import FlowSpec, step


def hot():
    return sum(i * i for i in range(400000))


class PlainFlow(FlowSpec):
    @step
    def start(self):
        self.total = hot()
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    PlainFlow()
"""


def _cli(flow_dir, *args, env=None):
    flow = flow_dir / "plain_flow.py"
    flow.write_text(PLAIN_FLOW)
    return subprocess.run([sys.executable, str(flow), *args], cwd=flow_dir, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def _latest_run(flow_dir):
    # A fresh process: the client caches its datastore root per process.
    code = ("from metaflow import Flow, namespace; namespace(None); "
            "print(Flow('PlainFlow').latest_run.pathspec)")
    out = subprocess.run([sys.executable, "-c", code], cwd=flow_dir, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from metaflow import Run, namespace

    namespace(None)
    return Run(out.stdout.strip())


def test_with_profile_card_plain_and_with_string_options(flow_dir):
    proc = _cli(flow_dir, "run", "--with", "profile_card")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _latest_run(flow_dir)
    for step in ("start", "end"):  # --with decorates every step
        _, profile = profile_card_of(run[step].task, step)
        assert profile.meta["backend"] == "sample"
    _, profile = profile_card_of(run["start"].task, "start")
    assert profile.meta["interval_ns"] == 1_000_000 and "memory" in profile.meta
    assert any(r.name == "hot" for r in profile.functions())

    proc = _cli(flow_dir, "run", "--with",
                "profile_card:sample_interval=0.01,memory=False,timeline_interval=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, profile = profile_card_of(_latest_run(flow_dir)["start"].task, "start")
    assert profile.meta["interval_ns"] == 10_000_000
    assert profile.meta["timeline_interval_ns"] == 0
    assert "memory" not in profile.meta


def test_metaflow_decospecs_env_with_trace(flow_dir):
    proc = _cli(flow_dir, "run", env={
        "METAFLOW_DECOSPECS": "profile_card:profiler=trace,sample_interval=0.01,memory=False"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, profile = profile_card_of(_latest_run(flow_dir)["start"].task, "start")
    assert profile.meta["backend"] == "trace" and profile.meta["counts"] == "calls"
    assert "memory" not in profile.meta


def test_runner_decospecs(flow_dir):
    from metaflow import Runner

    flow = flow_dir / "plain_flow.py"
    flow.write_text(PLAIN_FLOW)
    with Runner(str(flow), show_output=False, cwd=str(flow_dir)).run(
            decospecs=["profile_card:memory=True,create_card=True"]) as running:
        assert running.status == "successful"
        run = running.run
    _, profile = profile_card_of(run["start"].task, "start")
    assert "memory" in profile.meta
    assert profile.meta["focus"] == "PlainFlow.start"


@pytest.mark.parametrize("spec, message", [
    ("profile_card:sample_interval=fast",
     "--with profile_card (METAFLOW_DECOSPECS), on every step: sample_interval must be a number "
     "of seconds from 0.0001 to 60, got 'fast'"),
    ("profile_card:memory=yes", "on every step: memory must be True or False, got 'yes'"),
])
def test_bad_with_value_fails_before_the_flow_starts(flow_dir, spec, message):
    proc = _cli(flow_dir, "run", "--with", spec)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out, out[-3000:]
    assert "Workflow starting" not in out
