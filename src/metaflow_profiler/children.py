"""Child processes: every Python child of a profiled process is profiled too,
and its profile comes back to the parent's (docs/ARCHITECTURE.md, "Children").

How a child gets a profiler of its own:
- fork (multiprocessing "fork", a forkserver's children, os.fork): an
  os.register_at_fork hook, in the child, where only the forking thread
  survived and the parent's engine is a dead copy.
- a fresh interpreter (multiprocessing "spawn", the forkserver itself,
  joblib/loky workers, subprocess.run([sys.executable, ...])): the parent
  puts a private directory holding a sitecustomize.py (and its bytecode)
  first on PYTHONPATH; it takes itself off sys.path and runs the
  sitecustomize it shadows, if any. PYTHONPATH, not a .pth file: a .pth
  works only from site-packages, and on a remote Metaflow worker this
  package travels in the code package.
Either hook only counts the child (a byte appended to "started") and starts
a thread that sleeps DEFER_S (two sample intervals at least), then starts
the child's profiler and becomes its flusher: after a fork, all of it in C
(_native.fork_child, then _forked_start), since each page a forked child
first writes is copied. A child that ends sooner (a
`python -c pass`, a short forked helper) imports nothing of ours and writes
nothing: the parent counts it (META children.short), its CPU still in the
timeline's. Grandchildren inherit both hooks. The configuration travels in
MFP_CHILDREN: "interval_ns memory_rate max_samples dir", not JSON, for the
start-up's sake; this module imports neither json, typing nor threading at
the top, for a child that does start.

Each child writes its profile into the private directory: at exit (atexit,
os._exit), on SIGTERM while it has its default disposition (caught in C,
module.c "SIGTERM caught": the flusher writes, then the child dies of it),
when the parent stops (a "stop" file the child polls), and every few
seconds (so a child that is SIGKILLed or crashes leaves what it had). One
file per child, overwritten each time (atomically), so files stay bounded
by the number of children. The parent merges them into its own profile at
stop (native/profile/merge.c) and removes the directory; a snapshot of the
parent's profile (the live card) merges them as they are then: the whole
profile of a child that ended, the last periodic flush of one still
running. Nothing here may change what the child does: every hook swallows
its own errors, and a child whose profiler fails runs on.
"""

from __future__ import annotations

import _signal  # not signal: that one imports enum, ~3.5 ms
import _thread  # not threading: ~2.5 ms (the engine's threads are pthreads)
import atexit
import os
import resource
import sys
import time

from . import _native

TYPE_CHECKING = False  # not typing's: importing typing costs ~2.5 ms
if TYPE_CHECKING:
    from typing import Any

ENV = "MFP_CHILDREN"
_SITE = "site"
_STOP = "stop"
_STARTED = "started"  # one byte per child that reached its hook
# How long stop() waits for running children to write their last profile.
STOP_WAIT_S = 2.0
# Periodic flushes: the first after 0.5 s, then twice as far apart, up to 8 s.
FLUSH_FIRST_S, FLUSH_MAX_S = 0.5, 8.0
_POLL_S = 0.05
# How long a SIGTERM waits at most for the child's last profile before it
# kills: a bound for a flush stuck on something we did not foresee, not a
# budget (it takes ~10 ms; up to 0.5 s seen under ASan on a loaded machine,
# and a 2 s bound here lost a worker's profile now and then).
SIGTERM_FLUSH_S = 10.0
# A child starts its profiler once it has lived this long (at least two
# sample intervals): one that ends sooner is counted, not profiled, and pays
# only for the start-up hook (a 9 ms `python -c pass` paid ~3.5 ms for a
# profiler started at once: bench/RESULTS.md).
DEFER_S = 0.005
# The switch interval while it starts, on its own thread: a main thread that
# is busy hands the GIL over once an interval (5 ms by default), and the
# start waits for it at each file it reads or writes (~50 of them): up to
# 0.3 s seen with 5 ms. With 0.1 ms the start takes a few ms.
SWITCH_S = 1e-4
_NAME_MAX = 160

_SITECUSTOMIZE = '''\
# Written by metaflow_profiler: profiles this Python child of a profiled
# process, then runs the sitecustomize this file shadows. Safe to delete.
def _mfp_start():
    # Only what the interpreter has loaded already (_thread aside): a child
    # that ends before its profiler starts pays for this and nothing more.
    import os, sys, time, _signal, _thread
    here, pkg, want, defer_s = {here!r}, {pkg!r}, {version!r}, {defer_s!r}
    while here in sys.path:
        sys.path.remove(here)
    if tuple(sys.version_info[:2]) != want or not os.environ.get("MFP_CHILDREN"):
        return

    def later(main_tid):
        time.sleep(defer_s)
        # A busy main thread hands the GIL over once a switch interval (5 ms):
        # each file the import reads would wait that long (children.py).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, {switch_s!r}))
        low = sys.getswitchinterval()  # in whole microseconds: not quite what was set
        try:
            try:
                from metaflow_profiler import children
            except ImportError:
                sys.path.append(pkg)
                try:
                    from metaflow_profiler import children
                finally:
                    if pkg in sys.path:
                        sys.path.remove(pkg)
        except Exception:
            sys.setswitchinterval(switch)
            return
        children.run_child(main_tid, switch, low)

    def defer():
        raw = os.environ.get("MFP_CHILDREN")
        if not raw:
            return
        try:
            fd = os.open(raw.split(" ", 3)[3] + "/started", os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b".")  # counted, profiled or not
            finally:
                os.close(fd)
        except OSError:
            return  # the parent stopped
        old = _signal.pthread_sigmask(_signal.SIG_BLOCK, {{_signal.SIGTERM}})
        try:
            _thread.start_new_thread(later, (_thread.get_native_id(),))
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, old)

    def forked():
        # Before this process's profiler started (a forkserver forks at once):
        # its fork hook does the same from then on.
        c = sys.modules.get("metaflow_profiler.children")
        if c is None or not getattr(c, "_fork_hooks", False):
            try:
                defer()
            except Exception:
                pass

    defer()
    os.register_at_fork(after_in_child=forked)


def _mfp_chain():
    import sys
    me = sys.modules.pop("sitecustomize")
    try:
        import sitecustomize  # noqa: F401  the one we shadow, if any
    except ModuleNotFoundError as exc:
        sys.modules["sitecustomize"] = me  # the import system expects one
        if exc.name != "sitecustomize":
            raise
    except BaseException:
        sys.modules["sitecustomize"] = me
        raise


try:
    _mfp_start()
except Exception:
    pass
_mfp_chain()
'''


def process_name() -> str:
    """multiprocessing's name for this process, else its command line."""
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        try:
            name = mp.current_process().name
            if name and name != "MainProcess":
                return name
        except Exception:
            pass
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    argv[0] = os.path.basename(argv[0])
    return " ".join(argv)[:_NAME_MAX]


def _cpu_ns() -> int:
    return time.process_time_ns()


def _rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- the parent ----------------------------------------------------------


class Children:
    """The parent's side: the private directory, the environment its children
    inherit, and the merge of what they wrote. One per running Profiler."""

    def __init__(self, interval_ns: int, memory_rate: int, max_samples: int) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="mfp-children-")
        site = os.path.join(self.dir, _SITE)
        os.mkdir(site)
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._defer_s = defer_s(interval_ns)
        with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(_SITECUSTOMIZE.format(here=site, pkg=pkg, version=tuple(sys.version_info[:2]),
                                          defer_s=self._defer_s, switch_s=SWITCH_S))
        with open(os.path.join(self.dir, _STARTED), "wb"):
            pass
        _compile(os.path.join(site, "sitecustomize.py"))
        self._site = site
        self._config = f"{int(interval_ns)} {int(memory_rate)} {int(max_samples)} {self.dir}"
        self._saved: dict[str, str | None] = {}
        self._ended: dict[str, tuple[dict[str, Any], bytes]] = {}  # final profiles read
        self.pid = os.getpid()

    def start(self) -> None:
        global _parent
        for key in (ENV, "PYTHONPATH"):
            self._saved[key] = os.environ.get(key)
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = self._site + (os.pathsep + old if old else "")
        os.environ[ENV] = self._config
        _parent = self
        _native.follow_forks(os.path.join(self.dir, _STARTED), self._defer_s, _forked_start)
        _install_fork_hooks()

    def _restore_env(self) -> None:
        """Children started from now on run unprofiled. PYTHONPATH loses only
        our entry, whatever else the program changed meanwhile."""
        global _parent
        if _parent is self:
            _parent = None
            _native.follow_forks(None)
        if os.environ.get(ENV) == self._config:
            _setenv(ENV, self._saved.get(ENV))
        parts = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if self._site in parts:
            parts.remove(self._site)
            _setenv("PYTHONPATH", os.pathsep.join(parts) or None)

    def finish(self, data: bytes, t0_ns: int, meta: dict[str, Any], cpu_ns: int) -> bytes:
        """Wait for running children, merge every child's profile into data (the
        parent's own), remove the directory. Returns the merged bytes; meta (the
        parent's META) gets "children" and a note."""
        self._restore_env()
        try:
            with open(os.path.join(self.dir, _STOP), "w"):
                pass
            self._wait_for_running()
            return self.merge(data, t0_ns, meta, cpu_ns)
        finally:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)

    def merge(self, data: bytes, t0_ns: int, meta: dict[str, Any], cpu_ns: int) -> bytes:
        """data (the parent's profile, so far or whole) with every child's
        profile as it is now: the whole one of a child that ended, the last
        periodic flush of one still running (the live card's snapshot)."""
        inputs, summary = self._collect(t0_ns)
        if not inputs and not summary["short"]:
            return data
        meta["children"] = summary
        meta["notes"].append(_summary_line(summary, self._defer_s))
        me = (self.pid, os.getppid(), process_name(), 1, meta.get("duration_ns", 0), cpu_ns,
              _rss_peak_bytes(), (meta.get("memory") or {}).get("peak_bytes", 0))
        from .backends import meta_json

        merged, bad = _native.merge(data, inputs, base_process=me, meta=meta_json(meta))
        if bad:
            summary["unreadable"] = len(bad)
            meta["notes"].append(f"children: {len(bad)} profiles could not be read")
            merged, _ = _native.merge(data, [x for i, x in enumerate(inputs) if i not in bad],
                                      base_process=me, meta=meta_json(meta))
        return merged

    def _running(self) -> list[int]:
        out = []
        for name in os.listdir(self.dir):
            if name.endswith(".live"):
                pid = int(name.split(".")[0])
                if _alive(pid):
                    out.append(pid)
        return out

    def _wait_for_running(self) -> None:
        deadline = time.monotonic() + STOP_WAIT_S
        while self._running() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _collect(self, t0_ns: int) -> tuple[list[tuple[bytes, int, tuple]], dict[str, Any]]:
        import json
        inputs = []
        cpu = rss = 0
        partial = 0
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".json"):
                continue
            base = name[: -len(".json")]
            info, data = self._ended.get(base, (None, b""))
            if info is None:
                try:
                    # The identity first: a child writes it after the profile,
                    # so a final one means the profile read next is final too.
                    with open(os.path.join(self.dir, name), encoding="utf-8") as f:
                        info = json.load(f)
                    with open(os.path.join(self.dir, base + ".mfprof"), "rb") as f:
                        data = f.read()
                except (OSError, ValueError):
                    continue
                if info.get("final"):  # it will not change: live updates read it once
                    self._ended[base] = (info, data)
            flags = 0 if info.get("final") else 2
            partial += not info.get("final")
            cpu += info["cpu_ns"]
            rss = max(rss, info["rss_peak_bytes"])
            proc = (info["pid"], info["ppid"], info["name"], flags, info["duration_ns"],
                    info["cpu_ns"], info["rss_peak_bytes"], info.get("heap_peak_bytes", 0))
            inputs.append((data, info["start_mono_ns"] - t0_ns, proc))
        try:
            started = os.stat(os.path.join(self.dir, _STARTED)).st_size
        except OSError:
            started = 0
        summary = {"processes": len(inputs), "cpu_s": cpu / 1e9, "peak_rss_bytes": rss,
                   "partial": partial, "short": max(0, started - len(inputs))}
        return inputs, summary


def _compile(path: str) -> None:
    """Its bytecode next to it, written here: children of a program run with
    PYTHONDONTWRITEBYTECODE (common in containers) would otherwise compile
    the hook at each start, ~2 ms of a 9 ms `python -c pass`."""
    try:
        import importlib.util
        import py_compile

        py_compile.compile(path, cfile=importlib.util.cache_from_source(path), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    except Exception:
        pass  # they compile it themselves


def _summary_line(s: dict[str, Any], defer: float) -> str:
    parts = []
    if s["processes"]:
        line = (f"{s['processes']} processes, peak RSS {s['peak_rss_bytes'] / 2**20:.1f} MiB,"
                f" CPU {s['cpu_s']:.2f} s")
        if s["partial"]:
            line += f" ({s['partial']} ended before their last profile: killed, crashed or still running)"
        parts.append(line)
    if s["short"]:
        parts.append(f"{s['short']} {'more ' if s['processes'] else ''}not profiled (ended within"
                     f" their first {defer * 1000:.0f} ms, or still in them)")
    return "children: " + "; ".join(parts)


def _setenv(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


# ---- the child -------------------------------------------------------------


def defer_s(interval_ns: int) -> float:
    return max(DEFER_S, 2 * interval_ns / 1e9)


class _Child:
    """This process's own profiler, started from the inherited configuration
    on the thread that then runs its flusher."""

    def __init__(self, config: dict[str, Any], main_tid: int) -> None:
        self.dir = config["dir"]
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.main_tid = main_tid
        self.lock = _thread.allocate_lock()
        self.done = False
        self.memory = config["memory_rate"] > 0
        self.session = _native.Session(config["interval_ns"], 0, config["max_samples"],
                                       memory_rate=config["memory_rate"])
        st = self.session_start_ns = _mono_ns()
        self.session.start()
        self.base = os.path.join(self.dir, f"{self.pid}-{st}")
        self.sigterm = False  # caught (module.c "SIGTERM caught"), once the flusher runs

    def run_flusher(self) -> None:
        try:
            # Python's view first: a handler the program set is its own.
            if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
                self.sigterm = _native.sigterm_catch()
        except Exception:
            pass
        period = FLUSH_FIRST_S
        next_flush = time.monotonic() + period
        stop = os.path.join(self.dir, _STOP)
        while not self.done:
            if self.sigterm:
                if _native.sigterm_wait(_POLL_S, SIGTERM_FLUSH_S):
                    self.finish()  # and dies of it
                    return
            else:
                time.sleep(_POLL_S)
            if self.done:
                return
            if os.path.exists(stop) or not os.path.isdir(self.dir):
                self.finish()
                return
            if time.monotonic() >= next_flush:
                self.flush(final=False)
                period = min(period * 2, FLUSH_MAX_S)
                next_flush = time.monotonic() + period

    def _meta(self) -> str:
        # The parent keeps its own META; a child's is read by nobody.
        return f'{{"backend": "sample", "python": {_json_str(sys.version.split()[0])}, "notes": []}}'

    def flush(self, final: bool) -> None:
        """Write this process's profile so far (final: stop profiling first).
        Waits for a flush in progress on another thread, so a final one that
        returns has landed (unless it failed)."""
        with self.lock:
            self._flush(final)

    def _flush(self, final: bool) -> None:
        if self.done or os.getpid() != self.pid:
            return
        s = self.session
        if final:
            self.done = True
            s.stop()
            self._name_threads()
            info = s.stats().get("heap_info") if self.memory else None
            heap = _json_int(info, "peak_bytes") if info else 0
            data = s.encode(self._meta())
        else:
            heap = 0
            s.snapshot([(tid, name, tid == self.main_tid) for tid, name in self._names()])
            data = s.encode_snapshot(self._meta())
        info = {"pid": self.pid, "ppid": self.ppid, "name": process_name(),
                "start_mono_ns": self.session_start_ns,
                "duration_ns": _mono_ns() - self.session_start_ns,
                "cpu_ns": _cpu_ns(),  # the whole process's, its first milliseconds too
                "rss_peak_bytes": _rss_peak_bytes(), "heap_peak_bytes": heap, "final": final}
        _write(self.base + ".mfprof", data)
        _write(self.base + ".json", _json_object(info).encode())
        if final:
            try:
                os.unlink(os.path.join(self.dir, f"{self.pid}.live"))
            except OSError:
                pass

    def _names(self) -> list[tuple[int, str]]:
        names = _native.thread_names()  # {} where the program never imported threading
        threading = sys.modules.get("threading")
        if threading is not None:
            # After a plain os.fork, threading still gives the main thread the
            # forking thread's native id in the parent.
            stale = threading.main_thread().native_id
            names = {self.main_tid if tid == stale else tid: name for tid, name in names.items()}
        names.setdefault(self.main_tid, "MainThread")
        return list(names.items())

    def _name_threads(self) -> None:
        for tid, name in self._names():
            self.session.name_thread(tid, name, tid == self.main_tid)

    def finish(self) -> None:
        """The last flush; then a SIGTERM that came kills the process."""
        try:
            self.flush(final=True)
        except Exception:
            pass
        if self.sigterm and self.pid == os.getpid():
            _native.sigterm_release()


def _json_str(s: str) -> str:
    """s as a JSON string, in ASCII: the name may hold anything a command line
    can, lone surrogates (surrogateescape) included."""
    out = []
    for c in s:
        o = ord(c)
        if 0x20 <= o < 0x7F and c not in '"\\':
            out.append(c)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:  # beyond the BMP: a surrogate pair
            o -= 0x10000
            out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}")
    return '"' + "".join(out) + '"'


def _json_object(d: dict[str, Any]) -> str:
    """A flat dict of str, bool and int as JSON."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v) if isinstance(v, int) else _json_str(str(v))
    return "{" + ", ".join(f"{_json_str(k)}: {value(v)}" for k, v in d.items()) + "}"


def _json_int(text: str, key: str) -> int:
    """The integer at "key": in the engine's flat JSON (heap_info), else 0."""
    at = text.find(f'"{key}":')
    if at < 0:
        return 0
    rest = text[at + len(key) + 3:]
    return int(rest[:len(rest) - len(rest.lstrip("0123456789"))] or 0)


def _write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _mono_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


_parent: Children | None = None  # the running parent tracker in this process
_child: _Child | None = None      # this process's own child profiler
_real_exit = os._exit
_fork_hooks = False
_start_lock = (os.getpid(), _thread.allocate_lock())


def _lock() -> Any:
    """This process's start lock. A forked child's copy may be held by a
    thread that did not come along: a child makes its own at first use."""
    global _start_lock
    pid, lock = _start_lock
    if pid != os.getpid():
        _start_lock = pid, lock = os.getpid(), _thread.allocate_lock()
    return lock


def _forked_start(main_tid: int) -> None:
    """The start of a forked child's profiler, on the thread the C fork hook
    (_native.fork_child) started, defer_s() after the fork: what the hook
    left undone, so that a child that ended sooner paid nothing for it."""
    global _child
    try:
        _paused.clear()  # the parent's, copied
        _drop_fork_filter()
        c = _child
        if c is not None and c.pid != os.getpid():
            c.done = True  # a dead copy: its thread did not come along
            _child = None
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_S))
    except Exception:
        return
    run_child(main_tid, switch, sys.getswitchinterval())


def run_child(main_tid: int, switch_s: float, low_s: float) -> None:
    """Profile this process as a child, when MFP_CHILDREN says so, then run
    its flusher: the body of the thread the hook started, which lowered the
    switch interval from switch_s to low_s for the start. Never raises."""
    try:
        _native.ignore_this_thread()  # neither sampled nor in the memory profile, from the start
        c = start_child(main_tid)
    finally:
        if sys.getswitchinterval() == low_s:  # not changed by the program meanwhile
            sys.setswitchinterval(switch_s)
    if c is not None:
        try:
            c.run_flusher()
        except Exception:
            pass


def start_child(main_tid: int) -> _Child | None:
    global _child
    try:
        with _lock():
            raw = os.environ.get(ENV)
            if not raw or _child is not None or sys.is_finalizing():
                return None
            interval_ns, memory_rate, max_samples, dir_ = raw.split(" ", 3)
            config = {"dir": dir_, "interval_ns": int(interval_ns),
                      "memory_rate": int(memory_rate), "max_samples": int(max_samples)}
            if not os.path.isdir(dir_) or os.path.exists(os.path.join(dir_, _STOP)):
                return None
            profiler = _profiler()
            if profiler is not None and profiler.running():
                return None  # the program profiles itself (step_aside)
            atexit.register(_at_exit)
            _child = _Child(config, main_tid)
            _native.follow_forks(os.path.join(dir_, _STARTED), defer_s(config["interval_ns"]),
                                 _forked_start)
            _install_fork_hooks()
            os._exit = _exit_wrapper
            # Last: the parent (and a test) take it to mean "profiled, and its
            # exit will write the profile".
            with open(os.path.join(dir_, f"{_child.pid}.live"), "w"):
                pass
            return _child
    except Exception:
        c, _child = _child, None
        if c is not None:
            c.finish()  # stops its session; it swallows its own errors
        return None


def _running_child() -> _Child | None:
    """This process's own child profiler while it runs (not a fork's copy)."""
    c = _child
    return c if c is not None and c.pid == os.getpid() and not c.done else None


def step_aside() -> None:
    """A Profiler is starting in this process: the child profiler writes what it
    has and stops, so the engine (one heap tracker a process) is the user's."""
    with _lock():
        c = _running_child()
    if c is not None:
        c.finish()


def _at_exit() -> None:
    c = _child
    if c is not None and c.pid == os.getpid():
        c.finish()


def _exit_wrapper(code: int) -> None:
    try:
        _at_exit()
    except BaseException:
        pass
    _real_exit(code)


# ---- fork ----------------------------------------------------------------


def _install_fork_hooks() -> None:
    global _fork_hooks
    if not _fork_hooks:
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                            after_in_child=_native.fork_child)
        _fork_hooks = True


_paused: list[Any] = []


def _profiler() -> Any:
    """The profiler module where this process imported it: a child that only
    runs its own child profiler does not pay for importing it at each fork."""
    return sys.modules.get(__name__.rpartition(".")[0] + ".profiler")


def _sessions() -> list[Any]:
    profiler = _profiler()
    out = [] if profiler is None else [
        p._runner.session for p in profiler.running() if hasattr(p._runner, "session")]
    c = _running_child()
    if c is not None:
        out.append(c.session)
    return out


# CPython 3.12+ warns about forking a multi-threaded process (3.11 does
# not). Where our threads are all that make it so, the warning is about
# nothing a child could trip on (docs/ARCHITECTURE.md, "Around a fork"),
# so for that fork a filter ignoring exactly its warning goes first in the
# filters. 3.12 warns before the after-fork hooks run in the parent, which
# take the filter out again; 3.13-3.15 after them (3.14 and 3.15 count the
# threads before), so there it stays until the next fork's hook decides
# again — every fork warning comes after that hook (only os.fork() and
# os.forkpty() give it, and its text names this process).
_FORK_WARNS = sys.version_info >= (3, 12)
_WARNS_BEFORE_AFTER_HOOKS = sys.version_info[:2] == (3, 12)
_FORK_WARNING = "This process (pid={}) is multi-threaded, use of fork() may lead to deadlocks in the child."
_fork_filter: tuple | None = None  # the filter this process put first, while it may be there


def _warns_anyway() -> bool:
    """Whether this fork is of a multi-threaded process whatever we pause: a
    Python thread besides the forking one (the program's, a Metaflow step's
    live card, a fork from a thread), or this child's own flusher. Threads
    Python does not know of (a native library's pool) are not seen: for them
    the pause is paid and avoids nothing, as before."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return True
    return _running_child() is not None


def _warning_ignored(frame: Any) -> bool:
    """Whether the warning, raised by os.fork() called from frame, would be
    ignored by the warnings filters, so that nobody sees it (not shown,
    raised nor recorded): the filter found as CPython's _warnings.c finds
    it. The default filters ignore a DeprecationWarning but in __main__, so
    a fork made by multiprocessing or concurrent.futures needs no pause.
    Where unsure: not ignored."""
    if getattr(sys.flags, "context_aware_warnings", False):
        return False  # 3.14+: the filters may be a context's own
    import _warnings

    w = sys.modules.get("warnings")
    filters = w.filters if w is not None else _warnings.filters
    module = frame.f_globals.get("__name__")
    if not isinstance(module, str):
        return False
    text = _FORK_WARNING.format(os.getpid())
    for action, msg, cat, mod, ln in filters:
        # A plain string matches exactly (the built-in filters), else a regex.
        if ((msg is None or (msg == text if type(msg) is str else msg.match(text)))
                and issubclass(DeprecationWarning, cat)
                and (mod is None or (mod == module if type(mod) is str else mod.match(module)))
                and (ln == 0 or ln == frame.f_lineno)):
            return action == "ignore"
    return (w.defaultaction if w is not None else _warnings._defaultaction) == "ignore"


def _before_fork() -> None:
    """Where only our threads would make CPython warn about this fork, and
    somebody would see it, a filter that ignores it (above). Where the
    filters are a context's own (3.14+'s context_aware_warnings), our
    threads are joined instead, before the threads are counted, and started
    again after it (~0.2 ms, bench/RESULTS.md)."""
    if not _FORK_WARNS:
        return
    try:
        _drop_fork_filter()
        if not _sessions() or _warns_anyway() or _warning_ignored(sys._getframe(1)):
            return
        if not getattr(sys.flags, "context_aware_warnings", False):
            _add_fork_filter()
        else:
            for s in _sessions():
                s.pause()
                _paused.append(s)
    except Exception:
        pass


def _after_fork_parent() -> None:
    if _WARNS_BEFORE_AFTER_HOOKS:
        _drop_fork_filter()
    while _paused:
        try:
            _paused.pop().resume()
        except Exception:
            pass


def _add_fork_filter() -> None:
    global _fork_filter
    import warnings

    _fork_filter = ("ignore", _OnlyOurThreads(_FORK_WARNING.format(os.getpid())),
                    DeprecationWarning, None, 0)
    warnings.filters.insert(0, _fork_filter)
    warnings._filters_mutated()


class _OnlyOurThreads:
    """The fork filter's message, which the warnings machinery calls as a
    regex's match(): this process's fork warning, while the threads besides
    the forking one are all the engine's (named mfp-*: _native.
    program_threads). Asked as CPython warns, after the fork, so that it
    counts what CPython counted: a native library's pool that its own
    atfork handler shut down for the fork (OpenBLAS's) is not there, and
    a thread the program started meanwhile is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def match(self, text: str) -> bool:
        return text == self.text and _native.program_threads(2) == 1


def _drop_fork_filter() -> None:
    """Takes out the filter put in by this process or, in a forked child,
    by its parent (the child's copy of it). Never raises."""
    global _fork_filter
    f, _fork_filter = _fork_filter, None
    if f is None:
        return
    try:
        import warnings

        warnings.filters.remove(f)  # not there: a catch_warnings() ended meanwhile
        warnings._filters_mutated()
    except Exception:
        pass
