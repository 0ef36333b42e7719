"""The resource timeline (native/timeline) against psutil and against what the
test itself did: RSS, CPU of a busy loop and of a child process, 64 MB written
and fsync'd, bytes sent over 127.0.0.1, a fake NVML for the GPU path, and
broken /proc and cgroup trees that must degrade to notes."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from support import overloaded, spin

from metaflow_profiler import Profiler

ROOT = Path(__file__).resolve().parents[2]
MB = 2**20
INTERVAL = 0.02


def area(series: tuple[list[float], list[float]], a: float, b: float) -> float:
    """Area under a rate series between a and b (seconds since the start):
    each point stands for the time since the previous one. A window needs an
    interval of quiet at both ends, since a rate spreads over its interval."""
    total, prev = 0.0, 0.0
    for t, v in zip(*series):
        lo, hi = max(prev, a), min(t, b)
        if hi > lo:
            total += v * (hi - lo)
        prev = t
    return total


def polls_around(series: tuple[list[float], list[float]], a: float, b: float) -> tuple[float, float]:
    """[a, b] widened to the polls that enclose it: a total over it then has
    every interval that saw the work whole, however late a loaded machine
    ran the polls (a rate spread over a late poll's interval was cut at b:
    120 of 128 MB under ASan at load 8)."""
    t = series[0]
    return max([x for x in t if x <= a], default=0.0), min([x for x in t if x >= b], default=b)


class Clock:
    """Seconds since the profile start, close enough to the engine's t0."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0


def profiled(interval: float = INTERVAL):
    clock = Clock()
    p = Profiler(timeline_interval=interval)
    p.start()
    return p, clock


def test_rss_matches_psutil():
    me = psutil.Process()
    p, now = profiled()
    block = bytearray(96 * MB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(0.1)
    at, want = now(), me.memory_info().rss
    time.sleep(0.1)
    prof = p.stop()
    del block
    t, v = prof.series()["rss_bytes"]
    got = [x for ti, x in zip(t, v) if ti <= at][-1]
    assert abs(got - want) / want < 0.05, (got, want)
    assert max(prof.series()["rss_peak_bytes"][1]) >= 96 * MB
    assert prof.stats()["peak_rss_mb"] >= 96


def test_busy_loop_cpu_matches_psutil():
    """The series' mean over a window around a busy loop vs what psutil says
    we got (a loaded machine may give us less than a core: both see it)."""
    me = psutil.Process()
    p, now = profiled()
    a, c0 = now(), me.cpu_times()
    time.sleep(0.05)  # quiet on both sides: the polls that straddle the edges
    spin(0.6)
    time.sleep(0.05)
    b, c1 = now(), me.cpu_times()
    prof = p.stop()
    want = 100 * ((c1.user + c1.system) - (c0.user + c0.system)) / (b - a)
    got = area(prof.series()["cpu_pct"], a, b) / (b - a)
    assert abs(got - want) < 10, (got, want)
    assert prof.stats()["peak_cpu_pct"] > 0


def test_child_process_cpu_counted_while_alive():
    """A child that burns 0.5 s of CPU, measured by psutil before it is reaped."""
    code = (
        "import sys, time\n"
        "while time.process_time() < 0.5: pass\n"
        "print('done', flush=True)\n"
        "sys.stdin.read()\n"
    )
    p, now = profiled()
    a = now()
    time.sleep(0.05)  # quiet before: the poll that straddles a
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "done"
    time.sleep(0.1)
    ct = psutil.Process(child.pid).cpu_times()
    child_cpu = ct.user + ct.system
    b = now()
    child.communicate("")
    prof = p.stop()
    seen = area(prof.series()["cpu_pct"], a, b) / 100
    assert child_cpu >= 0.45  # psutil reads clock ticks
    # our own share in that window is small: we only waited
    assert child_cpu * 0.95 < seen < child_cpu + 0.25, (seen, child_cpu)
    assert max(prof.series()["children"][1]) >= 1


def test_disk_write_64mb_fsynced(tmp_path: Path):
    me = psutil.Process()
    p, now = profiled()
    a = now()
    time.sleep(0.05)  # quiet on both sides: the polls that straddle the edges
    io0 = me.io_counters()
    with open(tmp_path / "blob", "wb") as f:
        chunk = os.urandom(MB)
        f.writelines(chunk for _ in range(64))
        f.flush()
        os.fsync(f.fileno())
    io1 = me.io_counters()
    (tmp_path / "blob").unlink()
    time.sleep(0.05)
    b = now()
    prof = p.stop()
    got = area(prof.series()["disk_write_Bps"], *polls_around(prof.series()["disk_write_Bps"], a, b))
    assert abs(got - 64 * MB) / (64 * MB) < 0.05, got / MB
    assert abs(got - (io1.write_bytes - io0.write_bytes)) / (64 * MB) < 0.05
    assert prof.stats()["peak_disk_write_mbps"] > 0


def send_over_loopback(total: int) -> int:
    """Send total bytes to ourselves over 127.0.0.1; returns what arrived."""
    server = socket.create_server(("127.0.0.1", 0))
    got: list[int] = []

    def receive() -> None:
        conn, _ = server.accept()
        with conn:
            n = 0
            while data := conn.recv(1 << 16):
                n += len(data)
        got.append(n)

    th = threading.Thread(target=receive)
    th.start()
    with socket.create_connection(server.getsockname()) as c:
        buf = b"x" * (1 << 16)
        for _ in range(total // len(buf)):
            c.sendall(buf)
    th.join()
    server.close()
    return got[0]


def test_loopback_bytes_sent(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MFP_TIMELINE_LOOPBACK", "1")  # loopback is excluded by default
    total = 128 * MB
    lo0 = psutil.net_io_counters(pernic=True).get("lo")
    p, now = profiled()
    a = now()
    time.sleep(0.05)  # quiet on both sides: the polls that straddle the edges
    got = send_over_loopback(total)
    time.sleep(0.05)
    b = now()
    prof = p.stop()
    lo1 = psutil.net_io_counters(pernic=True).get("lo")
    assert got == total
    sent = area(prof.series()["net_sent_Bps"], *polls_around(prof.series()["net_sent_Bps"], a, b))
    assert abs(sent - total) / total < 0.05, sent / MB
    if lo0 and lo1:  # psutil's view of the same interface over the whole run
        assert sent <= (lo1.bytes_sent - lo0.bytes_sent) * 1.05 + MB


def test_loopback_excluded_by_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MFP_TIMELINE_LOOPBACK", raising=False)
    p, now = profiled()
    a = now()
    assert send_over_loopback(32 * MB) == 32 * MB
    b = now() + INTERVAL
    time.sleep(0.05)
    prof = p.stop()
    # 32 MB went over lo; what other traffic the namespace had is far less
    assert area(prof.series()["net_sent_Bps"], a, b) < 8 * MB


def test_interval_is_honoured():
    p, _ = profiled(0.05)
    time.sleep(1.0)
    prof = p.stop()
    t, _ = prof.series()["rss_bytes"]
    assert 3 <= len(t) <= 23, t  # 21 expected; a loaded machine delays some
    # never faster than asked, on average
    assert (t[-2] - t[0]) / (len(t) - 2) >= 0.04, t
    if not overloaded():
        # a late poll is followed by an early one: the median gap is the interval
        gaps = sorted(b - a for a, b in itertools.pairwise(t[:-1]))
        assert 0.04 < gaps[len(gaps) // 2] < 0.06, gaps
    off = Profiler(timeline_interval=0)
    off.start()
    assert off.stop().series() == {}


@pytest.fixture(scope="module")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake NVML the C tests use, built here with the system compiler."""
    out = tmp_path_factory.mktemp("nvml") / "libfake_nvml.so"
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-O1",
            "-o",
            str(out),
            str(ROOT / "native" / "tests" / "fake_nvml.c"),
        ],
        check=True,
    )
    return out


def test_gpu_series_from_fake_nvml(monkeypatch: pytest.MonkeyPatch, fake_nvml: Path):
    monkeypatch.setenv("MFP_NVML_LIBRARY", str(fake_nvml))
    monkeypatch.setenv("FAKE_NVML_DEVICES", "2")
    p, _ = profiled()
    time.sleep(0.2)
    prof = p.stop()
    s = prof.series()
    assert set(s["gpu0_util_pct"][1]) == {30}
    assert set(s["gpu1_util_pct"][1]) == {70}
    assert max(s["gpu1_mem_bytes"][1]) == 2 * 2**30
    assert max(s["gpu0_mem_total_bytes"][1]) == 16 * 2**30
    assert "gpu2_util_pct" not in s
    assert prof.stats()["peak_gpu1_util_pct"] == 70


@pytest.mark.parametrize("env", [{"FAKE_NVML_DEVICES": "0"}, {"FAKE_NVML_INIT_ERROR": "3"}, {}])
def test_no_gpu_is_no_series_and_no_error(
    monkeypatch: pytest.MonkeyPatch, fake_nvml: Path, env: dict[str, str]
):
    lib = str(fake_nvml) if env else str(fake_nvml.parent / "missing.so")
    monkeypatch.setenv("MFP_NVML_LIBRARY", lib)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p, _ = profiled()
    time.sleep(0.05)
    prof = p.stop()
    assert not [n for n in prof.series() if n.startswith("gpu")]
    assert "cpu_pct" in prof.series()
    assert any(n.startswith("GPU") for n in prof.meta["notes"])
    assert "error" not in prof.meta


def test_missing_and_garbage_proc_files_degrade_to_notes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self" / "net").mkdir(parents=True)
    cg.mkdir()
    (proc / "self" / "stat").write_text("not a stat line")
    (proc / "self" / "io").write_text("read_bytes: lots\n")
    (proc / "self" / "net" / "dev").write_text("h\nh\n  eth0: 1 2\n")
    (proc / "self" / "cgroup").write_text("0::/gone\n")
    monkeypatch.setenv("MFP_PROC_ROOT", str(proc))
    monkeypatch.setenv("MFP_CGROUP_ROOT", str(cg))
    p, _ = profiled()
    time.sleep(0.05)
    prof = p.stop()
    assert prof.series() == {}
    notes = " | ".join(prof.meta["notes"])
    for word in ("self/stat", "VmHWM", "self/io", "net/dev", "cgroup"):
        assert word in notes, (word, notes)
    assert "error" not in prof.meta
    assert prof.stats()["duration_s"] > 0


def test_cgroup_limits_from_a_v2_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("0::/job\n")
    (cg / "job").mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpu memory\n")
    (cg / "memory.max").write_text("max\n")
    (cg / "job" / "memory.current").write_text(f"{15 * 2**30}\n")
    (cg / "job" / "memory.max").write_text(f"{16 * 2**30}\n")
    (cg / "job" / "memory.peak").write_text(f"{int(15.1 * 2**30)}\n")
    (cg / "job" / "memory.events").write_text("oom 0\noom_kill 0\n")
    (cg / "job" / "cpu.max").write_text("200000 100000\n")
    (cg / "job" / "cpu.stat").write_text("usage_usec 5\nthrottled_usec 0\n")
    monkeypatch.setenv("MFP_PROC_ROOT", str(proc))
    monkeypatch.setenv("MFP_CGROUP_ROOT", str(cg))
    p, _ = profiled()
    time.sleep(0.05)
    prof = p.stop()
    limits = prof.meta["limits"]
    assert limits["memory_limit_bytes"] == 16 * 2**30
    assert limits["cgroup_memory_peak_bytes"] == int(15.1 * 2**30)
    assert limits["cpu_quota_cores"] == 2.0
    assert limits["cgroup"] == "v2"
    assert max(prof.series()["cgroup_mem_bytes"][1]) == 15 * 2**30
    assert max(prof.series()["cgroup_mem_limit_bytes"][1]) == 16 * 2**30


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_child_does_not_hang():
    p, _ = profiled(0.005)
    pid = os.fork()
    if pid == 0:  # the child has no poller thread; stopping there must return
        try:
            p.stop()
        finally:
            os._exit(0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(status) == 0
    prof = p.stop()
    assert len(prof.series()["rss_bytes"][0]) >= 2


SPIKE = r"""
import json, sys, time
from metaflow_profiler import Profiler

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

before = bytearray(int(sys.argv[1]) * 2**20)  # a peak before the start
for i in range(0, len(before), 4096):
    before[i] = 1
del before
with Profiler(timeline_interval=0.5, memory=False) as p:
    time.sleep(0.6)  # a poll or two of the quiet process
    spike = b"\x01" * (int(sys.argv[2]) * 2**20)  # then a short spike, likely between polls
    del spike
    time.sleep(0.1)
print(json.dumps({"stats": p.profile.stats(), "rss": p.profile.meta["rss"], "hwm": hwm()}))
"""


def spike(before_mb: int, spike_mb: int) -> dict:
    r = subprocess.run([sys.executable, "-c", SPIKE, str(before_mb), str(spike_mb)],
                       capture_output=True, text=True, timeout=60, check=True)
    import json

    return json.loads(r.stdout)


def test_peak_rss_is_the_kernels_peak_of_the_profiled_span():
    """A 300 MB spike between two 0.5 s polls: the poll never sees it, the
    kernel's VmHWM does; the headline peak must be the kernel's."""
    out = spike(0, 300)
    st, rss = out["stats"], out["rss"]
    assert rss["peak_source"] == "kernel" and rss["peak_bytes"] == out["hwm"]
    assert st["peak_rss_mb"] == pytest.approx(out["hwm"] / 1e6)  # MB are 10^6 bytes
    assert st["peak_rss_mb"] > 300 * MB / 1e6
    assert rss["polled_peak_bytes"] <= rss["peak_bytes"]  # a poll may or may not catch it


def test_a_peak_before_the_start_is_not_the_runs():
    """VmHWM is the process's whole life: when the run never exceeds a peak
    reached before it started, the peak is not known exactly and the card
    must not show the earlier one as the step's."""
    out = spike(400, 100)
    rss = out["rss"]
    assert rss["peak_source"] == "polled" and rss["hwm_at_start_bytes"] >= 400 * MB
    assert rss["peak_bytes"] < 300 * MB
    assert out["stats"]["peak_rss_mb"] == pytest.approx(rss["peak_bytes"] / 1e6)


ECHO_SERVER = r"""
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
n = 0
while n < int(sys.argv[1]):
    b = c.recv(1 << 16)
    if not b:
        break
    n += len(b)
c.sendall(b"y" * int(sys.argv[2]))
c.close()
"""


def test_socket_bytes_are_this_processs_own(monkeypatch: pytest.MonkeyPatch):
    """32 MB sent to, 8 MB received from another process over TCP: the
    namespace counts both ends of loopback traffic (and anyone else's), the
    process's own sockets count exactly what this process moved."""
    monkeypatch.setenv("MFP_TIMELINE_LOOPBACK", "1")
    sent, recv = 32 * MB, 8 * MB
    srv = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(sent), str(recv)],
                           stdout=subprocess.PIPE, text=True)
    port = int(srv.stdout.readline())
    p, _ = profiled(0.05)
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"x" * sent)
    got = 0
    while got < recv:
        got += len(c.recv(1 << 16))
    time.sleep(0.1)  # a poll while the socket is open
    c.close()
    prof = p.stop()
    srv.wait(timeout=30)
    totals = prof.meta["timeline"]["totals"]
    assert prof.meta["network"]["sock_scope"] == "process_tcp"
    assert abs(totals["sock_sent_bytes"] - sent) <= 16
    assert abs(totals["sock_recv_bytes"] - recv) <= 16
    assert totals["net_recv_bytes"] >= sent + recv  # lo: the server's receiving too
    assert abs(prof.stats()["total_sock_sent_bytes"] - sent) <= 16


def test_socket_bytes_leave_loopback_out_by_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MFP_TIMELINE_LOOPBACK", raising=False)
    p, _ = profiled(0.05)
    assert send_over_loopback(8 * MB) == 8 * MB
    time.sleep(0.1)
    prof = p.stop()
    totals = prof.meta["timeline"]["totals"]
    assert totals.get("sock_sent_bytes", 0) == 0 and totals.get("sock_recv_bytes", 0) == 0


def test_cgroup_figures_say_whose_they_are():
    # v1 (these machines): the cgroup's processes that are not ours, read
    # before and after; on a shared machine others come and go meanwhile.
    line = next((x for x in Path("/proc/self/cgroup").read_text().splitlines()
                 if ":memory:" in x), None)
    procs = Path("/sys/fs/cgroup/memory" + line.split(":", 2)[2]) / "cgroup.procs" if line else None

    def others_now():
        if procs is None or not procs.exists():
            return None
        me = psutil.Process()
        mine = {me.pid, *(c.pid for c in me.children(recursive=True))}
        return {x for x in map(int, procs.read_text().split()) if x not in mine}

    before = others_now()
    prof = Profiler(timeline_interval=0.05).__enter__()
    time.sleep(0.1)
    prof = prof.stop()
    after = others_now()
    limits = prof.meta["limits"]
    if "cgroup" not in limits:
        pytest.skip("no memory cgroup readable here")
    others = limits["cgroup_other_processes"]
    assert limits["cgroup_scope"] == ("step" if others == 0 else "container")
    if before is not None:
        # At least those there all along, at most those seen at either end.
        assert len(before & after) <= others <= len(before | after), (others, before, after)
