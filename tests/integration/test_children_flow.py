"""A real Metaflow run whose step does its work in a multiprocessing Pool:
the card read back with metaflow.cards.get_cards has the workers as
processes, the hot function attributed to them, and the children's line."""

import pytest
from support import profile_card_of, run_flow

pytestmark = pytest.mark.integration

FLOW = """
import multiprocessing as mp
import time
from metaflow import FlowSpec, profile_card, step


def hot(seconds):
    t = time.process_time()
    x = 0
    while time.process_time() - t < seconds:
        x += 1
    return time.process_time() - t


class PoolFlow(FlowSpec):
    @profile_card
    @step
    def start(self):
        with mp.get_context("{method}").Pool(2) as pool:
            self.measured = sum(pool.map(hot, [0.15] * 6))
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    PoolFlow()
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_on_the_card(flow_dir, method):
    status, run = run_flow(flow_dir, FLOW.replace("{method}", method))
    assert status == "successful"
    task = run["start"].task
    _, profile = profile_card_of(task, "start")
    kids = [p for p in profile.processes() if not p["root"]]
    prefix = "ForkPoolWorker-" if method == "fork" else "SpawnPoolWorker-"
    workers = [p for p in kids if p["name"].startswith(prefix)]
    assert len(workers) == 2, [p["name"] for p in kids]
    secs = samples = 0
    for w in workers:
        for f in profile.functions(on_cpu=True, pid=w["pid"]):
            if f.name == "hot":
                secs, samples = secs + f.total_s, samples + f.samples
    measured = task.data.measured
    assert samples >= 50 and secs >= 0.8 * measured, (secs, measured, samples)
    stats = task.data.profile_card_data["stats"]
    assert stats["children_processes"] == len(kids) and stats["children_cpu_s"] >= measured
    assert any(n.startswith(f"children: {len(kids)} processes") for n in profile.meta["notes"])
