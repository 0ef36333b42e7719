"""The engine API (metaflow_profiler) without Metaflow: options, the native
sampler's attribution, threads, the profile bytes and exports."""

import json
import math
import os
import subprocess
import sys
import threading
import time

import pytest
from support import card_profile_bytes, overloaded, spin

from metaflow_profiler import BACKENDS, Profile, Profiler, _native


def work(units):
    n = 0
    for i in range(units * 20000):
        n += i % 7
    return n


def part_a():
    return work(7)


def part_b():
    return work(3)


def alternate(rounds):
    """Returns the wall time measured in part_a and in part_b: the ground
    truth, which on a busy machine drifts from the 70/30 split of the work."""
    spent = [0.0, 0.0]
    for _ in range(rounds):
        t0 = time.perf_counter()
        part_a()
        t1 = time.perf_counter()
        part_b()
        spent[0] += t1 - t0
        spent[1] += time.perf_counter() - t1
    return spent


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "nope"}, "backend names no usable backend: unknown profiler backend 'nope'; "
                              "available: sample"),
        ({"interval": 0}, "interval must be a number of seconds from 0.0001 to 60, got 0"),
        ({"interval": "fast"}, "interval must be a number of seconds from 0.0001 to 60"),
        ({"interval": True}, "interval must be a number of seconds"),
        ({"interval": float("nan")}, "interval must be a number of seconds"),
        ({"timeline_interval": -1}, "timeline_interval must be 0 (off) or a number of seconds"),
        ({"memory": "yes"}, "memory must be True or False"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ValueError) as err:
        Profiler(**kwargs)
    assert message in str(err.value)


def test_registry_default_is_the_native_sampler():
    assert "sample" in BACKENDS
    assert Profiler(backend=None).backend == "sample"


def margin(p, n, floor=0.0):
    """Three binomial standard errors of a share p measured from n samples:
    what sampling alone can move it by, however loaded the machine is."""
    return max(floor, 3 * math.sqrt(max(p * (1 - p), 0.01) / max(n, 1)))


def test_known_split_is_attributed_within_3_points():
    with Profiler(interval=0.001, timeline_interval=0) as p:
        spent_a, spent_b = alternate(60)  # a does 70% of the work, b 30%, alternating
    truth = spent_a / (spent_a + spent_b)
    rows = {r.name: r for r in p.profile.functions()}
    a, b = rows["part_a"], rows["part_b"]
    n = a.samples + b.samples
    assert n >= 30, n  # ~600 at 1 kHz; fewer only when the sampler was starved
    # The sampler's passes are uneven on a busy machine (it waits for a core
    # too), so each sample weighs the time since the previous pass: the
    # weights' share is the time share, within the binomial error of n
    # samples and of the time the weights miss (a pass held up longer than
    # twice the usual gap stands for twice the usual gap; that time may all
    # have been one function's); the bare counts' share drifts further.
    weights = a.total_s / (a.total_s + b.total_s)
    missed = max(0.0, 1 - (a.total_s + b.total_s) / (spent_a + spent_b))
    assert abs(weights - truth) <= margin(truth, n, 0.03) + missed, (weights, truth, n, missed)
    assert abs(a.samples / n - truth) <= margin(truth, n, 0.03) + missed + 0.06, (
        a.samples / n, truth, n)
    assert rows["alternate"].total_s == pytest.approx(a.total_s + b.total_s, rel=0.05)


def compute(spent):
    """About a millisecond of Python work; adds the CPU time it used to
    spent[0], read inside its own frame (so a busy machine preempting the
    thread at those reads stops it in compute, in the truth as in the
    profile)."""
    c0 = time.thread_time()
    x = 0
    for i in range(15000):
        x += i * i
    spent[0] += time.thread_time() - c0
    return x


def compute_then_sleep(stop, go, sleep_s, spent, out):
    """compute(); time.sleep(sleep_s) until stop; spent[0] counts the CPU
    seconds in compute, out gets (those, CPU seconds in the sleep calls, CPU
    seconds in all). The CPU around compute is not the CPU of a sleep
    measured alone: with eight threads each woken thread waits for the GIL,
    which costs CPU too (a truth that took compute's as all but that of lone
    sleeps was 0.7-1.5 points too high)."""
    go.wait()
    t0 = time.thread_time()
    in_sleep = 0.0
    while not stop.is_set():
        compute(spent)
        s0 = time.thread_time()
        time.sleep(sleep_s)
        in_sleep += time.thread_time() - s0
    out.append((spent[0], in_sleep, time.thread_time() - t0))


@pytest.mark.parametrize("threads, sleep_s, saturate", [
    (1, 0.001, False), (1, 0.01, False), (8, 0.001, False),
    (1, 0.001, True), (1, 0.01, True), (8, 0.01, True),
])
def test_on_cpu_time_of_compute_and_sleep_is_the_threads_cpu_time(threads, sleep_s, saturate):
    """compute(); time.sleep(): the thread's CPU clock says ~98 % of its CPU
    time is in compute. The CPU a thread used since its last sample was
    spent before the sample (the compute before a sleep), so a view that
    hands it to whatever stack the sample sees shows a third of it on the
    sleep line; the sampler must give it to stacks it saw running. Also
    with 8 threads taking turns at the GIL (a stack read from a thread
    state copied at the start of the pass showed compute's caller), and on
    a machine whose every core is busy with other processes (a woken
    sleeper waits for a core while its stack still shows the sleep)."""
    stop, go, out = threading.Event(), threading.Event(), []
    spent = [[0.0] for _ in range(threads)]
    workers = [threading.Thread(target=compute_then_sleep, args=(stop, go, sleep_s, c, out))
               for c in spent]
    for w in workers:
        w.start()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)] if saturate else []
    try:
        with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
            go.set()
            # long enough for compute to use 0.2 s of CPU, which a loaded
            # machine gives it more slowly (and the sampler fewer passes)
            start, least = time.monotonic(), 1.5 if sleep_s < 0.005 else 3.0
            while time.monotonic() - start < least or (
                    sum(c[0] for c in spent) < 0.2 and time.monotonic() - start < 6 * least):
                time.sleep(0.05)
            stop.set()
            for w in workers:
                w.join()
    finally:
        go.set()
        stop.set()
        for h in hogs:
            h.kill()
            h.wait()
    total = sum(t for _, _, t in out)
    truth = sum(c for c, _, _ in out) / total
    # The CPU of the sleep call itself (its system call, waking, taking the
    # GIL back) is spent where the sampler sees the thread asleep or does not
    # run (on its own core): it lands in compute, the one error issue 13 left
    # (bench/RESULTS.md), 1-5 % of this loop's CPU on the earlier machines and
    # up to ~6 % on a slower VM under ASan. Or, where the thread is seen
    # taking the GIL back at the sleep line, the debt settled there is paid
    # by that line (CI on 3.14: 14 % on the sleep line, 6.5 % unseen, compute
    # 6.5 points short). Measured, it widens both sides.
    unseen = sum(s for _, s, _ in out) / total
    cpu = {r.name: r for r in p.profile.functions(on_cpu=True)}
    loop = cpu["compute_then_sleep"]
    got = cpu["compute"].total_s / loop.total_s
    # compute really is most of the CPU time (on a busy machine a sleep's
    # system call costs more, so less: still far from the ~65 % that a
    # sampler handing compute's CPU to the sleep line shows)
    assert truth > 0.75, truth
    assert loop.samples >= 10, loop
    # Within 2 points of the truth, give or take what sampling alone can
    # move a share measured from these on-CPU samples: three binomial
    # standard errors over their effective count (a starved sampler's
    # samples weigh unequally: one pass held up 40 ms outweighs forty).
    # Before issue 13 compute showed 64-67 %; with a GIL-free rule that
    # fired at the sleep line, 66 % on a machine with one core busy.
    tab = p.profile._t["samples"]
    w = [x for x, f in zip(tab["weight_ns"], tab["flags"]) if f & 1]
    n_eff = sum(w) ** 2 / sum(x * x for x in w)
    m = 0.02 + margin(truth, n_eff)
    where = [(r.line, round(r.self_s, 4), r.samples)
             for r in p.profile.lines(loop, on_cpu=True) if r.self_s]  # the loop's own lines
    assert -(m + unseen) <= got - truth <= m + unseen, (got, truth, unseen, loop.samples, round(n_eff), where)
    # never more on CPU than the CPU used, but for two marks a thread: its
    # last, which pays a whole sample's weight, and its first, which may pay
    # for CPU it used before the truth's clock started (its wait for `go`);
    # a sample's weight is large when the sampler was starved itself (0.071 s
    # over with 8 threads at load 14), and a starved sampler may see less
    heaviest = max(w for w, f in zip(tab["weight_ns"], tab["flags"]) if f & 1) / 1e9
    assert loop.total_s <= 1.1 * total + 2 * threads * heaviest, (loop, heaviest)


def test_threads_named_and_idle_time_is_not_on_cpu():
    def sleeper():
        time.sleep(0.4)

    t = threading.Thread(target=sleeper, name="sleepy-worker")
    with Profiler(interval=0.001, timeline_interval=0) as p:
        t.start()
        cpu0 = time.thread_time()
        spin(0.4)
        spin_cpu = time.thread_time() - cpu0  # below 0.4 s on a busy machine
        t.join()
    prof = p.profile
    names = {th["name"] for th in prof.threads()}
    assert "sleepy-worker" in names and "MainThread" in names
    wall = {r.name.rsplit(".", 1)[-1]: r.total_s for r in prof.functions()}
    cpu_rows = {r.name.rsplit(".", 1)[-1]: r for r in prof.functions(on_cpu=True)}
    cpu = {name: r.total_s for name, r in cpu_rows.items()}
    # Both ran ~0.4 s of wall time; relative checks hold on a loaded machine.
    assert wall["sleeper"] > 0.5 * wall["spin"] > 0.05, (prof.meta, prof.threads())
    assert cpu.get("sleeper", 0) < 0.1 * wall["sleeper"]
    # On-CPU time is the CPU time the thread used, also when a busy machine
    # gave spin less than all of its wall time; never more. On a saturated
    # machine or under a sanitizer the reads are slow and fewer samples find
    # the thread running to carry its CPU: short (25 % short seen at load 40
    # under ASan), a known shortfall of the on-CPU accounting (issue 13).
    # The last mark pays a whole sample's weight, which a starved sampler
    # makes large (0.049 s against 0.032 s used, under ASan at load 13).
    last_mark = 2 * cpu["spin"] / cpu_rows["spin"].samples
    assert cpu["spin"] <= 1.15 * spin_cpu + max(0.01, last_mark), (cpu["spin"], spin_cpu)
    assert cpu["spin"] >= (0.5 if overloaded() else 0.85) * spin_cpu - 0.01, (cpu["spin"], spin_cpu)


def test_on_cpu_time_of_a_part_time_thread_is_its_cpu_time():
    """A thread that computes 0.2 ms and sleeps 0.4 ms, over and over: every
    1 ms sample finds it on CPU for about a third of its time. The on-CPU
    view must show about a third of its wall time (the CPU it used), not
    all of it or none (when a sample's on-CPU mark was "ran at least half
    of the time", it showed none)."""
    used = []

    def part_time(stop):
        t0, in_sleep = time.thread_time(), 0.0
        while not stop.is_set():
            end = time.perf_counter() + 0.0002
            while time.perf_counter() < end:
                pass
            s0 = time.thread_time()
            time.sleep(0.0004)
            in_sleep += time.thread_time() - s0
        used.append(time.thread_time() - t0)
        used.append(in_sleep)

    stop = threading.Event()
    t = threading.Thread(target=part_time, args=(stop,))
    with Profiler(interval=0.001, timeline_interval=0) as p:
        t.start()
        time.sleep(1.0)
        stop.set()
        t.join()
    wall = {r.name.rsplit(".", 1)[-1]: r.total_s for r in p.profile.functions()}["part_time"]
    cpu = {r.name.rsplit(".", 1)[-1]: r.total_s
           for r in p.profile.functions(on_cpu=True)}.get("part_time", 0)
    assert 0 < used[0] < 0.8 * wall, (used, wall)  # really part time (little CPU when busy)
    assert 0 < cpu <= 1.15 * used[0] + 0.01, (cpu, used[0], wall)
    # A sample may carry CPU time only when it finds the thread running (the
    # GIL held across its stack read), so on a machine busy enough that
    # reads are slow and bursts short, some of a 0.2 ms burst's CPU waits
    # for a sample that finds it: the CPU then shows short, never long (under
    # ASan at load 8 on 3.14: a quarter of it; "none" is what this guards).
    assert cpu >= (0.1 if overloaded() else 0.3) * used[0], (cpu, used[0], wall)
    # Not within 15 %: the shortfall RESULTS records as unfixed (ninth and
    # eleventh sessions), which the pass time does not predict. With passes
    # of 11-26 us 60 runs on 3.11 showed 0.76-0.97 of the CPU, one CI run
    # 0.68 with 17 us passes, and a clean-clone CI on 3.15 0.75 with 6 us
    # passes (the bound was then 15 % where passes took at most 10 us).
    # The floor is half, which still fails the old rule (it showed none).
    if not overloaded():
        meta = p.profile.meta
        pass_s = meta["sampler_busy_ns"] / max(meta["sampler_passes"], 1) / 1e9
        assert cpu >= 0.5 * used[0], (cpu, used, wall, pass_s)


def hash_blocks(stop, used):
    """SHA-256 over 1 MiB blocks: C code that releases the GIL for each
    block, so it is never found holding it. used[0]: its CPU seconds."""
    import hashlib

    block, t0 = b"x" * (1 << 20), time.thread_time()
    while not stop.is_set():
        hashlib.sha256(block).digest()
        used[0] = time.thread_time() - t0


def test_on_cpu_time_of_c_code_without_the_gil_is_its_cpu_time():
    """A thread hashing without the GIL is on CPU the whole time: its CPU
    clock says so between passes, though it seldom moves during a read
    (on these kernels another thread's clock is brought up to date at a
    tick or a switch). Before, it showed 2 % of its CPU time on CPU."""
    stop, used = threading.Event(), [0.0]
    t = threading.Thread(target=hash_blocks, args=(stop, used))
    with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
        t.start()
        start = time.monotonic()  # 0.3 s of its CPU, which a busy machine gives slowly
        while time.monotonic() - start < 1.0 or (used[0] < 0.3 and time.monotonic() - start < 5):
            time.sleep(0.05)
        stop.set()
        t.join()
    cpu = {r.name: r for r in p.profile.functions(on_cpu=True)}.get("hash_blocks")
    got = cpu.total_s if cpu else 0.0
    # never more than the CPU used, but for its first and last marks (a
    # whole sample's weight each, large when the sampler was starved)
    marks = 2 * got / cpu.samples if cpu else 0.0
    assert got <= 1.15 * used[0] + max(0.01, marks), (got, used[0])
    # On a machine with more runnable work than cores the thread runs in
    # slices, and "ran half the time since its last sample, twice in a row"
    # holds less often: short then, never long.
    if not overloaded():
        assert got >= 0.6 * used[0], (got, used[0], p.profile.meta.get("sampler"))


def test_a_generators_samples_keep_its_callers(tmp_path):
    """sum() over a generator expression: the generator's frame has a caller
    only while it runs, so a stack copied across one of its million yields
    ended at it (16 % of the samples on 3.13, 0-13 % on 3.11, as stacks
    of the generator's frame alone). Such a read is torn: read again."""
    def crunch():
        return sum(i * i for i in range(300_000))

    with Profiler(interval=0.001, timeline_interval=0, memory=False) as p:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            crunch()
    p.profile.export(tmp_path / "c.txt", format="collapsed")
    rows = [line.rsplit(" ", 1) for line in (tmp_path / "c.txt").read_text().splitlines()]
    in_gen = [(stack, int(n)) for stack, n in rows if "<genexpr>" in stack]
    assert in_gen, rows  # the generator was sampled
    bare = [(stack, n) for stack, n in in_gen if "<genexpr>" in stack.split(";")[0]]
    assert not bare, (bare, sum(n for _, n in in_gen))
    # under its caller (on 3.12 under ASan a few samples show the entry
    # frame "<interpreter trampoline>" between the two: a blemish of its own)
    callers = [[f for f in stack.split(";")[:-1] if f != "<interpreter trampoline>"][-1]
               for stack, _ in in_gen]
    assert all(c.endswith(".crunch") for c in callers), in_gen


def test_lines_and_files_are_recorded():
    with Profiler(interval=0.001, timeline_interval=0) as p:
        for _ in range(10):
            part_a()
    row = next(r for r in p.profile.functions() if r.name == "part_a")
    assert row.filename == __file__
    assert row.line == part_a.__code__.co_firstlineno


def test_bytes_round_trip_and_files(tmp_path):
    t0 = time.perf_counter()
    with Profiler(interval=0.001, timeline_interval=0.05) as p:
        spin(0.2)
        # ~200 samples at 1 kHz, far fewer when the sampler is starved (17 at
        # load 14 under a clean-clone CI): spin on until there are enough
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            snap = p.snapshot()  # None where the backend takes none
            if snap is None or Profile.from_bytes(snap).stats()["samples"] > 20:
                break
            spin(0.05)
    wall = time.perf_counter() - t0
    prof = p.profile
    again = Profile.from_bytes(prof.to_bytes())
    assert again.functions() == prof.functions()
    assert again.stats() == prof.stats()
    prof.save(tmp_path / "x.mfprof")
    assert Profile.load(tmp_path / "x.mfprof").to_bytes() == prof.to_bytes()
    stats = prof.stats()
    assert 0.15 < stats["duration_s"] <= wall, (stats["duration_s"], wall)
    assert stats["samples"] > 20
    assert stats["peak_cpu_pct"] > 0


@pytest.mark.parametrize("data", [b"", b"garbage", b"MFPROF\x07", b"MFPROF\x01\x02\xff\xff\xff"])
def test_corrupt_bytes_give_a_clear_error(data):
    with pytest.raises(ValueError, match="not a valid profile"):
        Profile.from_bytes(data)


def test_every_truncation_is_rejected_or_decoded():
    with Profiler(interval=0.001, timeline_interval=0) as p:
        spin(0.05)
    data = p.profile.to_bytes()
    for cut in range(0, len(data), max(1, len(data) // 200)):
        try:
            Profile.from_bytes(data[:cut])
        except ValueError:
            pass


def torn_samples(profile, function):
    """(weight in ms, stack root first) of each sample of this thread whose
    stack lacks `function`."""
    tot, threads = profile._t["totals"], profile.threads()
    out = []
    for stack, thread, w in zip(tot["stack"], tot["thread"], tot["weight_ns"]):
        if threads[thread]["tid"] == threading.get_native_id():
            names = [profile._func_key(f)[0] for f in reversed(profile._path_funcs(stack))]
            if function not in names:
                out.append((w / 1e6, names))
    return out


def test_exports(tmp_path):
    with Profiler(interval=0.001, timeline_interval=0) as p:
        spent = sum(alternate(10))
    p.profile.export(tmp_path / "c.txt", format="collapsed")
    lines = (tmp_path / "c.txt").read_text().splitlines()
    assert any(";alternate;part_a;work " in line for line in lines)
    p.profile.export(tmp_path / "s.json", format="speedscope")
    doc = json.loads((tmp_path / "s.json").read_text())
    names = {f["name"] for f in doc["shared"]["frames"]}
    assert {"part_a", "part_b"} <= names
    # Every sample's weight is exported (ms), and every sample of this
    # thread reaches this test's frame: a stack that does not was read torn
    # (stops 22 and 24 each met one in CI, under ASan on 3.11).
    exported = sum(w for prof in doc["profiles"] for w in prof["weights"])
    leaves = sum(f.self_s for f in p.profile.functions()) * 1000
    assert exported == pytest.approx(leaves, abs=0.01)
    torn = torn_samples(p.profile, "test_exports")
    assert not torn, (torn, p.profile.threads())
    # They stand for the work: all of it unless the sampler was starved (a
    # saturated machine, a sanitizer), when a running thread's sample is
    # capped at twice the usual gap; never more than it.
    assert exported <= 1.1 * spent * 1000 + 5
    if not overloaded():
        assert exported > 0.5 * spent * 1000
    with pytest.raises(ValueError, match="unknown export format"):
        p.profile.export(tmp_path / "x", format="pprof")


def test_card_carries_the_profile(tmp_path):
    with Profiler(interval=0.001, timeline_interval=0) as p:
        spin(0.05)
    html = p.profile.to_html(tmp_path / "card.html", title="unit")
    assert (tmp_path / "card.html").read_text() == html
    assert card_profile_bytes(html) == p.profile.to_bytes()


def test_start_stop_many_times_leaves_results_intact():
    total = 0
    for i in range(200):
        p = Profiler(interval=0.0001, timeline_interval=0)
        p.start()
        total += sum(range(i))
        p.stop()
    assert total == sum(sum(range(i)) for i in range(200))


def test_profiler_misuse_is_an_error():
    p = Profiler(timeline_interval=0)
    with pytest.raises(RuntimeError, match="not running"):
        p.stop()
    p.start()
    with pytest.raises(RuntimeError, match="already running"):
        p.start()
    p.stop()


def test_builder_rejects_bad_indices():
    b = _native.Builder()
    name = b.string("f")
    with pytest.raises(IndexError):
        b.func(name, 99, 1, 0)
    func = b.func(name, name, 1, 0)
    frame = b.frame(func, 3)
    with pytest.raises(IndexError):
        b.stack(5, frame)
    stack = b.stack(-1, frame)
    thread = b.thread(1, name, 0)
    b.sample(10, stack, thread, 1000, 1)
    prof = Profile.from_bytes(b.encode("{}"))
    assert prof.functions()[0].name == "f"


def test_gil_fallback_sampler_gives_the_same_answer(monkeypatch):
    """Where interpreter memory cannot be copied, stacks are read through the
    public C API with the GIL: fewer samples (it waits for the GIL, which
    changes hands every few ms) but the same functions; the card says so."""
    monkeypatch.setenv("MFP_SAMPLER", "gil")
    # A sample waits for the GIL to change hands, once a switch interval: at
    # the default 5 ms, about as long as a round of alternate() under ASan,
    # samples can keep falling at one phase of the rounds (once, 3.15 ASan in
    # the full suite: part_b 39 samples, part_a 19). At 0.5 ms each waits
    # far less than a round, and the sampler's random gaps spread them.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        with Profiler(interval=0.001, timeline_interval=0) as p:
            alternate(60)
    finally:
        sys.setswitchinterval(switch)
    prof = p.profile
    assert prof.meta["sampler_mode"].startswith("public C API with the GIL")
    assert any("slower than the usual GIL-free sampler" in n for n in prof.meta["notes"])
    rows = {r.name: r for r in prof.functions()}
    assert rows["part_a"].total_s > rows["part_b"].total_s > 0
    assert rows["part_a"].line == part_a.__code__.co_firstlineno
