"""An interpreter whose frame layout this build does not know (a newer
CPython, a free-threaded build) gets the GIL-taking sampler on the public C
API, no memory profile, and a card that says so. scripts/portable.sh builds
the extension that way (MFP_PORTABLE=1) on a known interpreter and runs this
file against it; the usual builds run it too and check the GIL-free path.
Either way, the step runs and its card is right."""

import threading

import pytest
from support import profile_card_of, run_flow, spin

from metaflow_profiler import Profiler, _native

pytestmark = pytest.mark.integration

KNOWN = bool(_native.KNOWS_FRAME_LAYOUT)


def in_a_thread():
    return spin(0.3)


def in_main():
    return spin(0.3)


def test_sampler_mode_and_stacks_match_the_build():
    with Profiler(interval=0.001, timeline_interval=0, memory=True) as p:
        t = threading.Thread(target=in_a_thread, name="worker")
        t.start()
        in_main()
        t.join()
    prof = p.profile
    mode = prof.meta["sampler_mode"]
    notes = prof.meta["notes"]
    if KNOWN:
        assert mode.startswith("without the GIL"), mode
        assert "memory" in prof.meta
    else:
        assert mode.startswith("public C API with the GIL: this build does not know the frame layout")
        assert any("slower than the usual GIL-free sampler" in n for n in notes), notes
        assert any(n.startswith("memory profile unavailable: the memory profiler does not know Python")
                   for n in notes), notes
        assert "memory" not in prof.meta
    rows = {r.name: r for r in prof.functions()}
    # Both threads' own functions, with their first lines, from either sampler.
    for fn in (in_a_thread, in_main):
        assert rows[fn.__name__].line == fn.__code__.co_firstlineno
        assert rows[fn.__name__].total_s > 0.1, rows[fn.__name__]
    names = {t["name"] for t in prof.threads()}
    assert "worker" in names and "MainThread" in names, names


FLOW = """
import time
from metaflow import FlowSpec, profile_card, step


def busy():
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:
        pass


class UnknownFlow(FlowSpec):
    @profile_card
    @step
    def start(self):
        busy()
        self.x = 42
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnknownFlow()
"""


def test_flow_card_says_how_it_sampled(flow_dir):
    status, run = run_flow(flow_dir, FLOW)
    assert status == "successful"
    assert run["start"].task.data.x == 42
    _, prof = profile_card_of(run["start"].task, "start")
    rows = {r.name: r for r in prof.functions()}
    assert rows["busy"].self_s > 0.3, rows["busy"]
    notes = prof.meta["notes"]
    if KNOWN:
        assert prof.meta["sampler_mode"].startswith("without the GIL")
        assert not any("memory profile unavailable" in n for n in notes), notes
    else:
        assert "does not know the frame layout" in prof.meta["sampler_mode"]
        assert any("memory profile unavailable" in n for n in notes), notes
