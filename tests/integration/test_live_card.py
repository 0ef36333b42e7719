"""The live card, in real Metaflow runs with the default options: read from
this process while the step runs, after the step was SIGKILLed, after the
kernel's OOM killer struck inside a memory cgroup, and across @retry
attempts. The runs start together (module fixture) so the module costs about
one 40 s step; every bound comes from the profile's own sample weights (wall
time), not from how fast the machine is."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from support import card_profile_bytes, new_flow_dir

pytestmark = pytest.mark.integration

FLOW = """
import os, time
from metaflow import FlowSpec, Parameter, current, profile_card, retry, step

RETRY = retry(times=1, minutes_between_retries=0) if os.environ.get("LIVE_RETRY") else (lambda f: f)


def hot(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def hog(step_bytes, pause):
    held = []
    while True:
        held.append(bytearray(step_bytes))
        time.sleep(pause)


class LiveFlow(FlowSpec):
    seconds = Parameter("seconds", default=40)
    pidfile = Parameter("pidfile", default="")
    cgroup = Parameter("cgroup", default="")
    fail_first = Parameter("fail_first", default=False)

    @RETRY
    @profile_card
    @step
    def start(self):
        if self.pidfile:
            with open(self.pidfile, "w") as f:
                f.write(str(os.getpid()))
        if self.cgroup:
            with open(os.path.join(self.cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            hog(8 << 20, 0.5)
        hot(self.seconds)
        if self.fail_first and current.retry_count == 0:
            raise RuntimeError("first attempt fails")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    LiveFlow()
"""

CARD_ID = "profile_card_start"
OOM_LIMIT = 200 << 20


class Running:
    """One `flow.py run` in the background."""

    def __init__(self, name, **params):
        self.dir = new_flow_dir(name)
        (self.dir / "flow.py").write_text(textwrap.dedent(FLOW))
        self.rid = self.dir / "run_id"
        self.pidfile = self.dir / "task.pid"
        args = [sys.executable, "flow.py", "run", "--run-id-file", str(self.rid),
                "--pidfile", str(self.pidfile)]
        for k, v in params.items():
            args += [f"--{k}", str(v)]
        self.log = open(self.dir / "run.log", "w")
        env = dict(os.environ, LIVE_RETRY="1" if params.get("fail_first") else "")
        self.proc = subprocess.Popen(args, cwd=self.dir, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.killed_at = None

    def task(self, timeout=120):
        from metaflow import Run, namespace

        namespace(None)
        end = time.time() + timeout
        while time.time() < end:
            try:
                if self.rid.exists() and self.rid.read_text():
                    return Run(f"LiveFlow/{self.rid.read_text()}")["start"].task
            except Exception:
                pass
            time.sleep(0.5)
        raise AssertionError(f"no task: {self.output()}")

    def wait(self, timeout=300):
        self.proc.wait(timeout)
        self.log.close()
        return self.proc.returncode

    def output(self):
        return (self.dir / "run.log").read_text()


def cards(task):
    from metaflow.cards import get_cards

    try:
        return list(get_cards(task, id=CARD_ID))
    except Exception:  # not there yet
        return []


def read_card(card):
    from metaflow_profiler import Profile

    html = card.get()
    return html, Profile.from_bytes(card_profile_bytes(html))


def first_live_card(run, timeout=120):
    """The first live card, once there: (task, html, profile)."""
    task = run.task(timeout)
    end = time.time() + timeout
    while time.time() < end:
        for c in cards(task):
            html, profile = read_card(c)
            if profile.meta.get("live"):
                return task, html, profile
        time.sleep(0.5)
    raise AssertionError(f"no live card: {run.output()}")


def seconds_of(profile, name):
    return sum(r.total_s for r in profile.functions() if r.name == name)


def memory_cgroup():
    """A fresh memory cgroup under this process's own, with OOM_LIMIT, or a
    reason why none can be made here."""
    for line in open("/proc/self/cgroup").read().splitlines():
        hid, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base, limit_file = "/sys/fs/cgroup/memory" + path, "memory.limit_in_bytes"
        elif hid == "0" and controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            base, limit_file = "/sys/fs/cgroup" + path, "memory.max"
        else:
            continue
        d = os.path.join(base, f"mfp-live-{os.getpid()}")
        # Only where that is the kernel's cgroup tree: in a chroot without
        # /sys, makedirs would make plain folders and nothing would stop the hog.
        if not os.path.exists(os.path.join(base, "cgroup.procs")):
            return None, f"{base} is not a mounted cgroup (no cgroup.procs)"
        try:
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, limit_file), "w") as f:
                f.write(str(OOM_LIMIT))
            for swap in ("memory.memsw.limit_in_bytes", "memory.swap.max"):
                if os.path.exists(os.path.join(d, swap)):
                    with open(os.path.join(d, swap), "w") as f:
                        f.write(str(OOM_LIMIT) if swap.endswith("bytes") else "0")
            return d, None
        except OSError as exc:
            return None, f"cannot make a memory cgroup under {base}: {exc}"
    return None, "no memory cgroup controller"


def kill_at(run, seconds):
    """SIGKILL the run's task `seconds` into its step (by its profile's start)."""
    try:
        _, _, first = first_live_card(run)
        time.sleep(max(0.0, first.meta["start_unix_ns"] / 1e9 + seconds - time.time()))
        os.kill(int(run.pidfile.read_text()), signal.SIGKILL)
        run.killed_at = time.time()
    except Exception as exc:  # the test says what went wrong
        run.kill_error = exc


@pytest.fixture(scope="module")
def runs():
    cg, why = memory_cgroup()
    started = {
        "long": Running("live-long", seconds=40),
        "killed": Running("live-killed", seconds=40),
        "retry": Running("live-retry", seconds=5, fail_first=True),
    }
    if cg:
        started["oom"] = Running("live-oom", seconds=0, cgroup=cg)
    killer = threading.Thread(target=kill_at, args=(started["killed"], 20), daemon=True)
    killer.start()
    yield started, why
    killer.join()
    for r in started.values():
        if r.proc.poll() is None:
            r.proc.kill()
        r.wait()
    if cg:
        try:
            os.rmdir(cg)
        except OSError:
            pass


def test_live_card_while_running_then_final(runs):
    run = runs[0]["long"]
    task, _, first = first_live_card(run)
    start_s = first.meta["start_unix_ns"] / 1e9
    time.sleep(max(0.0, start_s + 25 - time.time()))
    (card,) = cards(task)
    html, profile = read_card(card)
    live = profile.meta["live"]
    assert live["state"] == "running" and live["elapsed_s"] <= 25.5
    # 25 s in, the card holds at least 10 s of the hot function.
    assert seconds_of(profile, "hot") >= 10, (live, profile.functions()[:5])
    assert "running — updated" in profile.meta["notes"][0]
    assert re.search(r'METAFLOW_RELOAD_TOKEN = "live-\d+"', html)
    # The runtime data update is written just after its page: read apart
    # from it, it may be one update behind or ahead.
    token = card.get_data()["reload_token"]
    assert token in {f"live-{live['seq'] + d}" for d in (-1, 0, 1)}, (token, live)
    # The live card's own thread is left out (but for its first instants).
    assert sum(r.self_s for r in profile.functions() if r.name.startswith("LiveCard")) < 0.2

    assert run.wait() == 0, run.output()
    (card,) = cards(task)  # the final card replaced the live one, at its path
    html, profile = read_card(card)
    assert "live" not in profile.meta
    assert not any("Live card" in n for n in profile.meta["notes"])
    assert profile.meta["live_updates"] >= 3
    assert seconds_of(profile, "hot") >= 30
    assert 'METAFLOW_RELOAD_TOKEN = "final"' in html
    assert card.get_data()["reload_token"] == "final"


def test_killed_step_keeps_its_last_snapshot(runs):
    run = runs[0]["killed"]
    assert run.wait() != 0
    assert run.killed_at, getattr(run, "kill_error", None)
    task = run.task()
    (card,) = cards(task)
    _, profile = read_card(card)
    live = profile.meta["live"]
    assert live["state"] == "running" and live["elapsed_s"] <= 20.5
    assert seconds_of(profile, "hot") >= 10, (live, profile.functions()[:5])
    note = profile.meta["notes"][0]
    assert "last snapshot taken while the step was running" in note
    assert "no final card followed" in note


def test_oom_killed_step_names_the_allocating_function(runs):
    started, why = runs
    if "oom" not in started:
        pytest.skip(why)
    run = started["oom"]
    assert run.wait() != 0
    assert "Task failed" in run.output() or "killed" in run.output().lower(), run.output()
    task = run.task()
    (card,) = cards(task)
    _, profile = read_card(card)
    live = profile.meta["live"]
    assert live["reason"] == "memory", live
    mem = live["memory"]
    assert mem["limit_bytes"] == OOM_LIMIT and mem["used_bytes"] >= 0.8 * OOM_LIMIT, mem
    assert any(n.startswith("Live card: memory was at") and "MiB (cgroup" in n
               for n in profile.meta["notes"]), profile.meta["notes"]
    rows = {r.name: r for r in profile.memory_functions()}
    # At least half the limit was live in hog() at the last update (its
    # bytearrays, sampled one per 128 KiB on average: thousands of samples).
    assert rows["hog"].total_bytes >= 0.5 * OOM_LIMIT, rows.get("hog")


def test_live_card_on_each_retry_attempt(runs):
    run = runs[0]["retry"]
    assert run.wait() == 0, run.output()
    task = run.task()
    # The card id holds the latest attempt's card; a retried attempt keeps
    # its own under <id>_attempt<N> (issue 11).
    from metaflow.cards import get_cards

    retried = [read_card(c)[1] for c in get_cards(task, id=f"{CARD_ID}_attempt1")]
    found = retried + [read_card(c)[1] for c in cards(task)]
    assert [p.meta["attempt"] for p in found] == [0, 1]
    assert found[0].meta["step_failed"] and not found[1].meta["step_failed"]
    for p in found:  # each attempt had its live card, then its final one
        assert "live" not in p.meta and p.meta["live_updates"] >= 1, p.meta
        assert seconds_of(p, "hot") >= 4
