"""The backends other than the sampler — the native tracer (trace), the
cProfile and pyinstrument adapters — and the registry that picks them. The
tracer's numbers are checked exactly: call counts, the tree's paths, where
generator, coroutine, exception and thread time goes."""

import asyncio
import sys
import threading
import time

import pytest

from metaflow_profiler import Profile, Profiler, _native, backends


def paths(profile):
    """{(func names root→leaf): [calls or samples, weight_ns]} over every thread;
    functions local to a test go by their own name."""
    t = _native.decode(profile.to_bytes())
    s, parent, frame = t["strings"], t["stacks"]["parent"], t["stacks"]["frame"]
    func, name = t["frames"]["func"], t["funcs"]["name"]

    def names(i):
        out = []
        while i != -1:
            out.append(s[name[func[frame[i]]]].rsplit(".<locals>.", 1)[-1])
            i = parent[i]
        return tuple(reversed(out))

    out = {}
    tot = t["totals"]
    for st, c, w in zip(tot["stack"], tot["count"], tot["weight_ns"]):
        row = out.setdefault(names(st), [0, 0])
        row[0] += c
        row[1] += w
    return out


def under(p, *suffix):
    """Rows whose path ends with `suffix`."""
    return {k: v for k, v in p.items() if k[-len(suffix):] == suffix}


def calls_of(p, leaf):
    return sum(v[0] for k, v in p.items() if k[-1] == leaf)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def sleepy():
    time.sleep(0.1)


def outer():
    middle()
    middle()


def middle():
    leaf()


def leaf():
    return sum(range(100))


def ticker(n):
    for i in range(n):
        time.sleep(0.01)
        yield i


def consume():
    return list(ticker(3))


def fail_deep(k):
    if k == 0:
        raise KeyError("deep")
    fail_deep(k - 1)


def catcher():
    try:
        fail_deep(3)
    except KeyError:
        pass
    after_catch()


def after_catch():
    return 1


async def job(i):
    await asyncio.sleep(0.05)
    await asyncio.sleep(0.05)
    return i


async def fan_out():
    return await asyncio.gather(*(job(i) for i in range(4)))


def traced(fn, backend="trace", **kw):
    p = Profiler(backend=backend, timeline_interval=0, **kw)
    p.start()
    try:
        fn()
    finally:
        prof = p.stop()
    assert "error" not in prof.meta, prof.meta.get("error")
    return prof


# ---- registry -----------------------------------------------------------------

def test_none_picks_the_native_sampler():
    assert backends.resolve(None) == "sample"
    assert Profiler(backend=None).backend == "sample"


def test_all_names_are_registered():
    assert backends.NAMES == ("sample", "trace", "cprofile", "pyinstrument")
    assert {"sample", "trace", "cprofile"} <= set(backends.available())


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError) as e:
        backends.resolve("perf")
    msg = str(e.value)
    assert msg.startswith("unknown profiler backend 'perf'; available: sample, trace, cprofile")
    for name in backends.available():
        assert name in msg


def test_known_but_missing_backend_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyinstrument", None)  # as if not installed
    assert "pyinstrument" not in backends.available()
    with pytest.raises(ValueError) as e:  # the decorator reports ValueErrors before the step
        Profiler(backend="pyinstrument")
    assert "pip install pyinstrument" in str(e.value)


# ---- the Builder's aggregate rows -------------------------------------------------

def test_builder_total_adds_rows_without_samples():
    b = _native.Builder()
    f = b.func(b.string("f"), b.string("a.py"), 1, 0)
    st = b.stack(-1, b.frame(f, 0))
    th = b.thread(7, b.string("main"), 1)
    b.total(st, th, 0, 3, 5000)
    b.total(st, th, 0, 2, 1000)
    with pytest.raises(IndexError):
        b.total(st + 1, th, 0, 1, 1)
    t = _native.decode(b.encode('{"counts":"calls"}'))
    assert t["totals"]["count"] == [5] and t["totals"]["weight_ns"] == [6000]
    assert t["samples"]["stack"] == []


# ---- trace --------------------------------------------------------------------

def test_trace_counts_every_call_exactly():
    prof = traced(lambda: fib(15))
    p = paths(prof)
    assert calls_of(p, "fib") == 1973  # fib(15) makes 1973 calls
    assert prof.meta["backend"] == "trace"
    assert prof.meta["counts"] == "calls" and prof.meta["weights"] == "self_time"
    depth = max(len(k) for k in p if k[-1] == "fib") - min(len(k) for k in p if k[-1] == "fib")
    assert depth == 14  # the recursion is a chain of 15 fib nodes


def test_trace_builds_the_exact_tree():
    prof = traced(outer)
    p = paths(prof)
    (path,) = under(p, "outer", "middle", "leaf")
    assert p[path][0] == 2
    assert p[(*path, "builtins.sum")][0] == 2  # C functions are nodes too
    assert p[path[:-1]][0] == 2 and p[path[:-2]][0] == 1
    assert not [k for k in p if k[-1] == "leaf" and k[-2] != "middle"]


def test_trace_self_time_is_wall_time_of_the_node():
    prof = traced(sleepy)
    p = paths(prof)
    (path,) = under(p, "sleepy", "time.sleep")
    assert p[path][1] >= 100_000_000
    assert p[path[:-1]][1] < 50_000_000  # sleepy's own time excludes the sleep
    rows = {r.name: r for r in prof.functions()}
    assert rows["sleepy"].total_s >= 0.1 and rows["sleepy"].self_s < 0.05


def test_trace_generator_is_one_call_and_its_time_goes_to_it():
    prof = traced(consume)
    p = paths(prof)
    gen = under(p, "consume", "ticker")
    assert sum(v[0] for v in gen.values()) == 1  # resumed 3 times, started once
    sleeps = under(p, "consume", "ticker", "time.sleep")
    assert sum(v[0] for v in sleeps.values()) == 3
    assert sum(v[1] for v in sleeps.values()) >= 30_000_000


def test_trace_exception_unwinds_every_level():
    prof = traced(catcher)
    p = paths(prof)
    assert calls_of(p, "fail_deep") == 4
    (chain,) = [k for k in p if k[-1] == "fail_deep" and k.count("fail_deep") == 4]
    assert chain[chain.index("catcher") + 1] == "fail_deep"
    (after,) = under(p, "catcher", "after_catch")  # the stack is balanced after the raise
    assert p[after][0] == 1


def test_trace_coroutines_count_once_per_task():
    prof = traced(lambda: asyncio.run(fan_out()))
    p = paths(prof)
    assert calls_of(p, "job") == 4
    assert calls_of(p, "fan_out") == 1
    job_time = sum(v[1] for k, v in p.items() if "job" in k)
    # Suspended time is not the coroutine's (it waits in the loop): the four
    # jobs sleep 400 ms between them, of which they may show only their work.
    assert job_time < 200_000_000


def test_trace_follows_every_thread():
    done = threading.Event()

    def worker():
        fib(10)
        done.set()

    def run():
        t = threading.Thread(target=worker, name="tracer-worker")
        t.start()
        t.join()
        fib(12)

    prof = traced(run)
    p = paths(prof)
    assert done.is_set()
    assert calls_of(p, "fib") == 177 + 465  # fib(10) in the worker, fib(12) in main
    t = _native.decode(prof.to_bytes())
    by_thread = {}
    for th, c in zip(t["totals"]["thread"], t["totals"]["count"]):
        by_thread.setdefault(th, 0)
        by_thread[th] += c
    assert len(t["threads"]["tid"]) >= 2
    names = {th["name"] for th in prof.threads()}
    assert {"MainThread", "tracer-worker"} <= names  # the worker ended before stop()


def test_trace_keeps_the_callers_of_start():
    """Frames running when tracing starts seed the stack: a call after the
    starting function returned lands under the right caller."""
    p = Profiler(backend="trace", timeline_interval=0)

    def begin():
        p.start()

    def seeded_caller():
        begin()
        leaf()
        return p.stop()

    prof = seeded_caller()
    rows = paths(prof)
    (path,) = under(rows, "seeded_caller", "leaf")
    assert rows[path][0] == 1
    assert not under(rows, "begin", "leaf")


def test_trace_runs_again_and_refuses_two_at_once():
    a = _native.Tracer()
    a.start()
    b = _native.Tracer()
    with pytest.raises(RuntimeError, match="already running"):
        b.start()
    a.stop()
    prof = traced(lambda: fib(8))
    assert calls_of(paths(prof), "fib") == 67


def call_site(f, x):
    return f(x)


def identity(x):
    return x


def test_trace_sees_c_calls_again_in_the_next_run():
    """3.12+ turns off CALL events at sites that call Python functions; the
    next run must see a C function called at such a site."""
    def names(callees):
        prof = traced(lambda: [call_site(f, [1]) for f in callees])
        return {k[-1] for k in paths(prof) if k[-2:-1] == ("call_site",)}

    assert names([identity]) == {"identity"}
    assert names([len]) == {"builtins.len"}


def test_trace_start_fails_cleanly_when_the_hooks_are_taken():
    if sys.version_info >= (3, 12):
        mon = sys.monitoring
        taken = [i for i in range(6) if mon.get_tool(i) is None]
        for i in taken:
            mon.use_tool_id(i, "test")
        try:
            with pytest.raises(RuntimeError, match=r"no free sys\.monitoring tool id"):
                _native.Tracer().start()
        finally:
            for i in taken:
                mon.free_tool_id(i)
    else:
        sys.setprofile(lambda *a: None)
        try:
            with pytest.raises(RuntimeError, match="another profiler is active"):
                _native.Tracer().start()
        finally:
            sys.setprofile(None)
    assert calls_of(paths(traced(lambda: fib(5))), "fib") == 15  # nothing was left behind


def test_trace_node_cap_keeps_the_stack_balanced():
    t = _native.Tracer(max_nodes=8)
    t.start()
    outer()
    fib(6)
    t.stop()
    st = t.stats()
    assert st["nodes"] <= 8 and st["dropped_nodes"] > 0
    prof = Profile.from_bytes(t.encode("{}"))
    assert prof.functions()


def down(k):
    return 0 if k == 0 else 1 + down(k - 1)


def test_trace_deep_recursion_and_thread_churn():
    def run():
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(5000)
        try:
            assert down(3000) == 3000
        finally:
            sys.setrecursionlimit(old)
        threads = [threading.Thread(target=down, args=(20,)) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    prof = traced(run)
    p = paths(prof)
    assert calls_of(p, "down") == 3001 + 40 * 21
    assert len(_native.decode(prof.to_bytes())["threads"]["tid"]) >= 41
    assert max(len(k) for k in p) > 3000


# ---- cprofile -------------------------------------------------------------------

def two_callers():
    for _ in range(3):
        outer()
    fib(12)


def test_cprofile_reconstructs_the_tree():
    prof = traced(two_callers, backend="cprofile")
    assert prof.meta["backend"] == "cprofile"
    assert any("reconstructed" in n for n in prof.meta["notes"])
    assert prof.meta["counts"] == "calls" and prof.meta["weights"] == "self_time"
    p = paths(prof)
    (path,) = under(p, "two_callers", "outer", "middle", "leaf")
    assert p[path][0] == 6
    assert calls_of(p, "fib") == 465  # recursion folded into one node with all its calls
    assert p[path[:-3]][0] == 1


def test_cprofile_counts_a_recursive_root_once():
    """A recursive function called from outside the profiled code is a root
    of the rebuilt tree; its callcount already holds its recursive calls."""
    b = backends.create("cprofile", 1_000_000, 0, 0)
    b.start()
    fib(15)
    data = b.stop({"notes": []})
    prof = Profile.from_bytes(data)
    t = _native.decode(data)
    assert calls_of(paths(prof), "fib") == 1973  # fib(15) makes 1973 calls
    assert sum(t["totals"]["count"]) <= prof.meta["calls_traced"]


# ---- pyinstrument ---------------------------------------------------------------

def test_pyinstrument_is_converted():
    pytest.importorskip("pyinstrument")  # optional dependency; the 3.11 test venv has it

    def busy():
        end = time.perf_counter() + 0.2
        while time.perf_counter() < end:
            leaf()

    prof = traced(busy, backend="pyinstrument", interval=0.001)
    assert prof.meta["backend"] == "pyinstrument"
    p = paths(prof)
    busy_rows = [v for k, v in p.items() if "busy" in k]
    assert sum(v[0] for v in busy_rows) >= 5  # fewer than 200 when the machine is busy
    assert sum(v[1] for v in busy_rows) >= 150_000_000  # wall time, whatever the load
    t = _native.decode(prof.to_bytes())
    # time-ordered too; each sample's weight is whole µs in the file
    assert abs(sum(t["samples"]["weight_ns"]) - sum(t["totals"]["weight_ns"])) <= 1000 * len(
        t["samples"]["weight_ns"])
    assert len(t["samples"]["stack"]) == prof.meta["pyinstrument_records"]
    assert t["samples"]["t_ns"] == sorted(t["samples"]["t_ns"])


def test_pyinstrument_counts_a_long_record_as_the_samples_it_stands_for():
    """pyinstrument samples at the first call or return after each interval,
    so 90 ms in one C call is one record; the Samples column must say ~90
    at 1 ms, as for our sampler, not 1."""
    pytest.importorskip("pyinstrument")

    def long_c_call():
        time.sleep(0.09)

    prof = traced(long_c_call, backend="pyinstrument", interval=0.001)
    row = next(r for r in prof.functions() if r.name.endswith("long_c_call"))
    assert row.total_s >= 0.09
    assert abs(row.samples - row.total_s / 0.001) <= 2, row
    assert prof.stats()["samples"] == prof.meta["samples_taken"]
