"""Real Metaflow runs whose step does its work in child processes: the card
read back with metaflow.cards.get_cards has the workers as processes, the
hot function attributed to them, and the children's line; the live card
has them while the step runs (a child that ended, one still running)."""

import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import pytest
from support import HOT_SOURCE, card_profile_bytes, profile_card_of, run_flow

pytestmark = pytest.mark.integration

FLOW = """
import multiprocessing as mp
import time
from metaflow import FlowSpec, profile_card, step


""" + HOT_SOURCE + """

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


LIVE_FLOW = """
import multiprocessing as mp
import os
import time
from metaflow import FlowSpec, Parameter, profile_card, step


""" + HOT_SOURCE + """

def until(path):
    while not os.path.exists(path):
        hot(0.1)


class LiveChildrenFlow(FlowSpec):
    until = Parameter("until", default="")

    @profile_card(live_interval=5)
    @step
    def start(self):
        ctx = mp.get_context("fork")
        ended = ctx.Process(target=hot, args=(1.0,), name="Ended-1")
        ended.start()
        ended.join()
        running = ctx.Process(target=until, args=(self.until,), name="Running-1")
        running.start()
        running.join()
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    LiveChildrenFlow()
"""


def hot_in(profile, pid):
    """On-CPU seconds and samples of hot in one process."""
    rows = [f for f in profile.functions(on_cpu=True, pid=pid) if f.name == "hot"]
    return sum(f.total_s for f in rows), sum(f.samples for f in rows)


def live_profiles(task):
    from metaflow.cards import get_cards

    from metaflow_profiler import Profile

    try:
        found = list(get_cards(task, id="profile_card_start"))
    except Exception:  # not there yet
        return []
    return [Profile.from_bytes(card_profile_bytes(c.get())) for c in found]


def test_live_card_has_the_children(flow_dir):
    """While the step runs, each live update merges the children's profiles as
    they are: a child that ended (whole, hot's second in it) and one still
    running (its last periodic flush, marked partial), with the children's
    line; the final card has both whole."""
    from metaflow import Run, namespace

    (flow_dir / "flow.py").write_text(textwrap.dedent(LIVE_FLOW))
    stop = flow_dir / "until"
    rid = flow_dir / "run-id"
    log = open(flow_dir / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "flow.py", "run", "--run-id-file", str(rid),
                             "--until", str(stop)], cwd=flow_dir, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        namespace(None)
        seen, task, end = None, None, time.time() + 240
        while seen is None and time.time() < end and proc.poll() is None:
            time.sleep(0.5)
            try:
                task = task or Run(f"LiveChildrenFlow/{rid.read_text()}")["start"].task
            except Exception:
                continue
            for prof in live_profiles(task):
                by_name = {p["name"]: p for p in prof.processes()}
                ended, running = by_name.get("Ended-1"), by_name.get("Running-1")
                if prof.meta.get("live") and ended and running and \
                        hot_in(prof, running["pid"])[0] >= 1.0:
                    seen = prof
        stop.touch()
        assert seen is not None, (flow_dir / "run.log").read_text()[-3000:]
        assert proc.wait(240) == 0, (flow_dir / "run.log").read_text()[-3000:]
    finally:
        stop.touch()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    procs = {p["name"]: p for p in seen.processes()}
    ended, running = procs["Ended-1"], procs["Running-1"]
    assert not ended["partial"] and running["partial"], (ended, running)
    secs, samples = hot_in(seen, ended["pid"])
    assert samples >= 50 and secs >= 0.8, (secs, samples)  # it measured >= 1.0 s of CPU
    assert seen.stats()["children_processes"] == 2 and seen.meta["children"]["partial"] == 1
    assert any(n.startswith("children: 2 processes") for n in seen.meta["notes"])
    _, final = profile_card_of(task, "start")
    assert "live" not in final.meta
    procs = {p["name"]: p for p in final.processes() if not p["root"]}
    assert set(procs) == {"Ended-1", "Running-1"} and not any(p["partial"] for p in procs.values())
    assert hot_in(final, procs["Running-1"]["pid"])[0] > hot_in(seen, running["pid"])[0]


# The one torch this machine kind has: a CPU wheel for CPython 3.11, which
# scripts/test.sh installs into the 3.11 test venv (the tests never download
# torch: it would be a CUDA build of several GB).
TORCH_WHEEL = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"

LOADER_FLOW = """
import time
from metaflow import FlowSpec, profile_card, step


def crunch(seconds):
    t = time.process_time()
    x = 0
    while time.process_time() - t < seconds:
        x += 1
    return time.process_time() - t


class Crunched:
    # A map-style dataset (what DataLoader needs of one); no torch at import,
    # so only the task that runs the step pays for importing it.
    def __len__(self):
        return 24

    def __getitem__(self, i):
        return crunch(0.04)


class LoaderFlow(FlowSpec):
    @profile_card
    @step
    def start(self):
        from torch.utils.data import DataLoader

        loader = DataLoader(Crunched(), batch_size=4, num_workers=2)
        self.measured = float(sum(batch.sum() for batch in loader))
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    LoaderFlow()
"""


def test_dataloader_workers_on_the_card(flow_dir):
    """PyTorch's DataLoader(num_workers=2): its worker processes are on the
    card, named, with the dataset's __getitem__ work in them."""
    if importlib.util.find_spec("torch") is None:
        if sys.version_info[:2] == (3, 11) and os.path.exists(TORCH_WHEEL):
            pytest.fail(f"torch is not installed here: scripts/test.sh installs {TORCH_WHEEL}")
        pytest.skip(f"no torch for CPython {sys.version_info[0]}.{sys.version_info[1]}: the tests "
                    "install torch only from the CPU wheel for CPython 3.11 that this machine "
                    "kind keeps on disk, never from the network")
    status, run = run_flow(flow_dir, LOADER_FLOW)
    assert status == "successful"
    task = run["start"].task
    _, profile = profile_card_of(task, "start")
    root = profile.processes()[0]
    workers = [p for p in profile.processes()
               if not p["root"] and any(f.name == "crunch" for f in profile.functions(pid=p["pid"]))]
    assert len(workers) == 2, [(p["name"], p["ppid"]) for p in profile.processes()]
    secs = samples = 0
    for w in workers:
        assert w["ppid"] == root["pid"] and w["name"].startswith("Process-"), w
        rows = profile.functions(on_cpu=True, pid=w["pid"])
        assert any(f.name.endswith("__getitem__") for f in rows), [f.name for f in rows[:10]]
        for f in rows:
            if f.name == "crunch":
                secs, samples = secs + f.total_s, samples + f.samples
    measured = task.data.measured
    assert samples >= 50 and secs >= 0.8 * measured, (secs, measured, samples)
