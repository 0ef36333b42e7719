"""pyformat.py, the pure-Python profile writer and reader used where the C
engine cannot load, checked against the C encoder and decoder; and the
pure-Python sampler that stands in for the native backends there."""

import itertools
import json
import threading
import time

import pytest
from support import spin

from metaflow_profiler import Profile, Profiler, _native, pyformat
from metaflow_profiler.backends.pysample import PySampleRunner


def _fill(b):
    """The same calls on either Builder; returns the encoded bytes."""
    f = b.func(b.string("f"), b.string("a.py"), 3, 0)
    g = b.func(b.string("g"), b.string("b.py"), 9, 0)
    n = b.func(b.string("[native malloc]"), 0, 0, 1)
    root = b.stack(-1, b.frame(f, 4))
    leaf = b.stack(root, b.frame(g, 10))
    leaf2 = b.stack(root, b.frame(g, 11))
    mem = b.stack(leaf, b.frame(n, 0))
    t1 = b.thread(101, b.string("MainThread"), 1)
    t2 = b.thread(202, b.string("worker"), 0)
    b.thread(202, b.string("worker-renamed"), 2)
    for i in range(50):  # enough to pass the cap of 8 and decimate several times
        b.sample(i * 1_000_500, (leaf, leaf2)[i % 2], (t1, t2)[i % 3 == 0], 1_000_700, i % 2)
    b.total(root, t1, 0, 7, 123_456_789)
    s = b.series("rss_bytes", "B", 0)
    for i, v in enumerate((10, 5, 2**40, -3)):
        b.point(s, i * 2_500_000, v)
    b.memory(mem, 4096, 8192, 3)
    for i in range(6):  # one out of time order, one freed before it was made, one still live
        b.heap_event((mem, leaf)[i % 2], 1000 * i, (5_000_500, 4_000_000)[i == 3] + i * 1500,
                     None if i == 4 else (7_250_999 if i != 5 else 1))
    b.leak(mem, 777)
    b.leak(leaf, 5)
    b.leak(mem, 3)
    return b.encode(json.dumps({"title": "t", "notes": ["é"]}))


def test_python_builder_writes_the_engines_bytes():
    c, py = _fill(_native.Builder(max_samples=8)), _fill(pyformat.Builder(max_samples=8))
    assert py == c
    assert pyformat.decode(c) == _native.decode(c)


def test_python_decoder_reads_a_real_native_profile():
    with Profiler(interval=0.001, timeline_interval=0.01, memory=True) as p:
        spin(0.2)
        keep = [bytearray(4096) for _ in range(300)]
    data = p.profile.to_bytes()
    assert pyformat.decode(data) == _native.decode(data)
    assert len(keep) == 300


def _same_verdict(data):
    try:
        want = _native.decode(data)
    except ValueError:
        with pytest.raises(ValueError, match=r"^not a valid profile: "):
            pyformat.decode(data)
        return False
    assert pyformat.decode(data) == want
    return True


def test_python_decoder_rejects_what_the_c_decoder_rejects():
    data = _fill(pyformat.Builder())
    # Cut anywhere (a cut between sections is a valid, smaller profile).
    accepted = sum(_same_verdict(data[:cut]) for cut in range(len(data)))
    assert 0 < accepted < len(data) // 4
    # Any one byte changed: wrong indices, counts, lengths, varints.
    for pos in range(len(MAGIC_AND_VERSION), len(data)):
        for flip in (0x01, 0x80, 0x7F):
            _same_verdict(data[:pos] + bytes([data[pos] ^ flip]) + data[pos + 1:])


MAGIC_AND_VERSION = b"MFPROF\x01"


def spin_sampled(r, seconds, passes):
    """Python code for `seconds` and until r has made `passes` more passes:
    on a loaded machine under ASan the sampler thread got 2 passes in 0.58 s
    (3.14, load 12), so a fixed time does not make a count of samples."""
    start, end = r._passes, time.perf_counter() + seconds
    while time.perf_counter() < end or r._passes < start + passes:
        pass


def hot_in_python_sampler(r):
    spin_sampled(r, 0.4, 5)


def test_python_sampler_profiles_every_thread():
    r = PySampleRunner(2_000_000, 0, 0)
    r.start()
    t = threading.Thread(target=spin_sampled, args=(r, 0.3, 2), name="helper")
    t.start()
    t0 = time.perf_counter()
    hot_in_python_sampler(r)
    spent = time.perf_counter() - t0
    t.join()
    meta = {"backend": "sample", "notes": []}
    prof = Profile.from_bytes(r.stop(meta))
    assert prof.meta["backend"] == "pysample" and prof.meta["backend_requested"] == "sample"
    assert prof.meta["interval_ns"] == 2_000_000
    rows = {x.name: x for x in prof.functions()}
    hot = rows["hot_in_python_sampler"]
    # Weights are the time between passes, so they add up to the wall time
    # spent whatever rate the GIL allowed: off by at most a pass at each end.
    times = sorted(set(prof._t["samples"]["t_ns"]))
    gap = max(b - a for a, b in itertools.pairwise(times)) / 1e9
    assert hot.samples >= 3 and abs(hot.total_s - spent) <= 2 * gap + 0.01, (hot, spent, gap)
    assert {"MainThread", "helper"} <= {th["name"] for th in prof.threads()}
    sampled, total = sum(prof._t["samples"]["weight_ns"]), sum(prof._t["totals"]["weight_ns"])
    assert abs(sampled - total) <= 1000 * len(prof._t["samples"]["t_ns"])  # µs rounding
