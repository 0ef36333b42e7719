"""An interpreter whose frame layout this build does not know (a newer
CPython, a free-threaded build) gets the GIL-taking sampler on the public C
API, no memory profile, and a card that says so. scripts/portable.sh builds
the extension that way (MFP_PORTABLE=1) on a known interpreter and runs this
file against it; the usual builds run it too and check the GIL-free path.
Either way, the step runs and its card is right."""

import math
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
    # Both ran 0.3 s side by side, and a pass samples every thread, so each
    # has about half of their samples, however few a busy machine allowed
    # (three binomial standard errors, and a pass at either end).
    a, b = rows["in_a_thread"].samples, rows["in_main"].samples
    n = a + b
    assert min(a, b) > 0 and abs(a / n - 0.5) <= 3 * math.sqrt(0.25 / n) + 2 / n, (a, b)
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
    # busy() is nearly all of the step: judged by the samples the step got
    # (on a busy machine, or with the GIL-taking sampler, there are few).
    step = next(r for r in rows.values() if r.name.endswith("UnknownFlow.start"))
    share = rows["busy"].samples / step.samples
    assert step.samples >= 5 and share >= 0.8 - 3 * math.sqrt(0.8 * 0.2 / step.samples), (
        rows["busy"], step)
    notes = prof.meta["notes"]
    if KNOWN:
        assert prof.meta["sampler_mode"].startswith("without the GIL")
        assert not any("memory profile unavailable" in n for n in notes), notes
    else:
        assert "does not know the frame layout" in prof.meta["sampler_mode"]
        assert any("memory profile unavailable" in n for n in notes), notes
