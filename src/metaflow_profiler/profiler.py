"""The Profiler facade: checks its options (options.py), runs one backend,
returns a Profile."""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
import weakref
from typing import Any

from . import backends, native
from .options import ENGINE, Options
from .profile import Profile

BACKENDS = backends.NAMES
_PYTHON = platform.python_version()  # computed once: stop() runs while sampling
DEFAULT_MEMORY_RATE = ENGINE["memory_rate"].default
# The API's names for the options (options.py knows them by the decorator's).
_SPELLED = {"profiler": "backend", "sample_interval": "interval"}


def exclude_this_thread() -> None:
    """The calling thread is left out of every native profile from now on
    (neither sampled nor counted in memory): for the profiler's own threads.
    Without the compiled engine there is nothing to leave out of."""
    from .native import engine

    if engine is not None:
        engine.ignore_this_thread()


class ProfilerError(RuntimeError):
    """The profiler could not do its job (the profiled code is not affected)."""


# Profilers started, for the fork hooks (children.py): they pause their
# threads around a fork; running() leaves out a forked child's copies.
_running: weakref.WeakSet[Profiler] = weakref.WeakSet()


def running() -> list[Profiler]:
    """The Profilers running in this process (a forked child's copies of
    its parent's are not)."""
    pid = os.getpid()
    return [p for p in _running if p._pid == pid]


class Profiler:
    """Profile the code between start() and stop().

    backend: "sample" (native sampler, default), see BACKENDS.
    interval: seconds between samples (>= 0.0001).
    timeline_interval: seconds between resource-timeline points, 0 = off.
    memory: sampled allocation profiling (default on): live memory at the heap
        peak and total allocated by Python stack, Python and native allocations
        (sample backend; other backends ignore it with a note).
    memory_rate: mean bytes allocated between two allocation samples.
    subprocesses: profile every Python child process too (fork, spawn,
        forkserver, subprocess.run([sys.executable, ...]), grandchildren),
        each sample keeping its process (sample backend only).
    """

    def __init__(
        self,
        backend: str | None = "sample",
        interval: float = ENGINE["sample_interval"].default,
        timeline_interval: float = ENGINE["timeline_interval"].default,
        memory: bool = ENGINE["memory"].default,
        max_samples: int = ENGINE["max_samples"].default,
        memory_rate: int = DEFAULT_MEMORY_RATE,
        subprocesses: bool = ENGINE["subprocesses"].default,
        *,
        options: Options | None = None,
    ) -> None:
        """options: already checked Options (the decorator's); the other
        arguments are then ignored."""
        if options is None:
            options = Options.check(_SPELLED, profiler=backend, sample_interval=interval,
                                    timeline_interval=timeline_interval, memory=memory,
                                    max_samples=max_samples, memory_rate=memory_rate,
                                    subprocesses=subprocesses)
        self.options = options
        self.backend = options.profiler
        self.profile: Profile | None = None
        self._runner: Any = None
        self._children: Any = None
        self._children_error = ""
        self._start_unix_ns = 0
        self._pid = 0
        self._cpu0 = 0
        self._t0_ns = 0

    def start(self) -> None:
        if self._runner is not None:
            raise ProfilerError("this Profiler is already running")
        if os.environ.get("MFP_FAULT_INJECT") == "start":  # for tests of the failure path
            raise ProfilerError("profiler start failed (MFP_FAULT_INJECT=start)")
        if "metaflow_profiler.children" in sys.modules:
            sys.modules["metaflow_profiler.children"].step_aside()
        o = self.options
        rate = o.memory_rate if o.memory and backends.supports_memory(self.backend) else 0
        runner = backends.create(self.backend, o.interval_ns, o.timeline_interval_ns,
                                 o.max_samples, memory_rate=rate)
        self._start_unix_ns = time.time_ns()
        self._pid = os.getpid()
        self._cpu0 = time.process_time_ns()
        runner.start()
        self._runner = runner
        _running.add(self)
        self._children_error = ""
        if o.subprocesses and self.backend == "sample" and native.MISSING is None:
            try:
                from .children import Children  # it needs the C engine

                children = Children(o.interval_ns, rate, o.max_samples)
                children.start()
                self._t0_ns = runner.session.stats()["start_ns"]  # the children's clock
                self._children = children
            except Exception as exc:  # the parent's own profile goes on
                self._children_error = f"children are not profiled: {exc}"

    def snapshot(self, extra_meta: dict[str, Any] | None = None) -> bytes | None:
        """The profile so far, in the byte format, without stopping; None when
        the backend cannot take one (only the native sampler can). Safe from
        another thread than the one that started the profiler; extra_meta is
        merged into its META. Child processes come as they are now (the
        ended ones whole, running ones as of their last periodic flush)."""
        runner, children = self._runner, self._children
        if runner is None:
            raise ProfilerError("this Profiler is not running")
        take = getattr(runner, "snapshot", None)
        if take is None:
            return None
        meta = self._meta(extra_meta)
        data = take(meta)
        if children is not None:
            try:
                data = children.merge(data, self._t0_ns, meta, time.process_time_ns() - self._cpu0)
            except Exception:  # the parent's own profile so far still makes a card
                pass
        return data

    def stop(self, extra_meta: dict[str, Any] | None = None) -> Profile:
        """Stop and return the Profile; extra_meta is merged into its META."""
        runner, self._runner = self._runner, None
        children, self._children = self._children, None
        if runner is None:
            raise ProfilerError("this Profiler is not running")
        _running.discard(self)
        meta = self._meta(extra_meta)
        if self._pid != os.getpid():
            # A forked child's copy of a running profiler: the parent keeps its
            # samples; the child's own work went to its own profiler.
            meta["notes"].append(f"this profiler was started in process {self._pid}; process "
                                 f"{os.getpid()} is a forked child and has only a copy of it")
            self.profile = Profile.empty(meta)
            return self.profile
        try:
            data = runner.stop(meta)
        except Exception as exc:  # the card must still say what happened
            meta["error"] = {"type": type(exc).__name__, "message": str(exc),
                             "traceback": traceback.format_exc()}
            data = backends.empty_profile(meta)
        if children is not None:
            try:
                data = children.finish(data, self._t0_ns, meta, time.process_time_ns() - self._cpu0)
            except Exception as exc:
                meta["notes"].append(f"children: their profiles could not be merged: {exc}")
        self.profile = Profile.from_bytes(data)
        return self.profile

    def _meta(self, extra_meta: dict[str, Any] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "backend": self.backend,
            "python": _PYTHON,
            "start_unix_ns": self._start_unix_ns,
            "interval_ns": self.options.interval_ns,
            "timeline_interval_ns": self.options.timeline_interval_ns,
            "notes": [],
        }
        if self.options.memory and not backends.supports_memory(self.backend):
            meta["notes"].append(f"memory profile: the {self.backend!r} backend has none")
        if self._children_error:
            meta["notes"].append(self._children_error)
        extra = dict(extra_meta or {})
        meta["notes"] = list(extra.pop("notes", [])) + meta["notes"]  # the caller's first
        meta.update(extra)
        return meta

    def __enter__(self) -> Profiler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            self.stop()
