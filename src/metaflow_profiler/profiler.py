"""The Profiler facade: validates options, runs one backend, returns a Profile."""

from __future__ import annotations

import os
import platform
import time
import traceback
from typing import Any

from . import backends
from .profile import Profile

BACKENDS = backends.NAMES
_PYTHON = platform.python_version()  # computed once: stop() runs while sampling
# Mean bytes allocated between two allocation samples (native/heap). Lower is
# more precise and costs more; bench/bench_memory.py measures both.
DEFAULT_MEMORY_RATE = 128 * 1024


class ProfilerError(RuntimeError):
    """The profiler could not do its job (the profiled code is not affected)."""


def _number(name: str, value: Any, low: float, high: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    v = float(value)
    if allow_zero and v == 0:
        return v
    if not (low <= v <= high):
        zero = "0 (off) or " if allow_zero else ""
        raise ValueError(f"{name} must be {zero}between {low:g} and {high:g} seconds, got {value!r}")
    return v


def validate_options(backend: str | None, interval: Any, timeline_interval: Any, memory: Any,
                     memory_rate: Any = DEFAULT_MEMORY_RATE) -> str:
    """Check the options the decorator and the API share; return the backend name.

    memory=True with a backend that has no memory profiler is not an error (it is
    the default): the run goes without one and its META says so."""
    name = backends.resolve(backend)
    _number("interval", interval, 0.0001, 60)
    _number("timeline_interval", timeline_interval, 0.001, 3600, allow_zero=True)
    if not isinstance(memory, bool):
        raise ValueError(f"memory must be True or False, got {memory!r}")
    if (isinstance(memory_rate, bool) or not isinstance(memory_rate, int)
            or not 1 <= memory_rate <= 2**40):
        raise ValueError(f"memory_rate must be a number of bytes between 1 and 2**40, got {memory_rate!r}")
    return name


class Profiler:
    """Profile the code between start() and stop().

    backend: "sample" (native sampler, default), see BACKENDS.
    interval: seconds between samples (>= 0.0001).
    timeline_interval: seconds between resource-timeline points, 0 = off.
    memory: sampled allocation profiling (default on): live memory at the heap
        peak and total allocated by Python stack, Python and native allocations
        (sample backend; other backends ignore it with a note).
    memory_rate: mean bytes allocated between two allocation samples.
    """

    def __init__(
        self,
        backend: str | None = "sample",
        interval: float = 0.001,
        timeline_interval: float = 0.5,
        memory: bool = True,
        max_samples: int = 0,
        memory_rate: int = DEFAULT_MEMORY_RATE,
    ) -> None:
        self.backend = validate_options(backend, interval, timeline_interval, memory, memory_rate)
        self.memory_rate = memory_rate
        self.interval = float(interval)
        self.timeline_interval = float(timeline_interval)
        self.memory = memory
        self.max_samples = max_samples
        self.profile: Profile | None = None
        self._runner: Any = None
        self._start_unix_ns = 0

    def start(self) -> None:
        if self._runner is not None:
            raise ProfilerError("this Profiler is already running")
        if os.environ.get("MFP_FAULT_INJECT") == "start":  # for tests of the failure path
            raise ProfilerError("profiler start failed (MFP_FAULT_INJECT=start)")
        rate = self.memory_rate if self.memory and backends.supports_memory(self.backend) else 0
        runner = backends.create(self.backend, self.interval, self.timeline_interval,
                                 self.max_samples, memory_rate=rate)
        self._start_unix_ns = time.time_ns()
        runner.start()
        self._runner = runner

    def stop(self, extra_meta: dict[str, Any] | None = None) -> Profile:
        """Stop and return the Profile; extra_meta is merged into its META."""
        runner, self._runner = self._runner, None
        if runner is None:
            raise ProfilerError("this Profiler is not running")
        meta: dict[str, Any] = {
            "backend": self.backend,
            "python": _PYTHON,
            "start_unix_ns": self._start_unix_ns,
            "interval_ns": int(self.interval * 1e9),
            "timeline_interval_ns": int(self.timeline_interval * 1e9),
            "notes": [],
        }
        if self.memory and not backends.supports_memory(self.backend):
            meta["notes"].append(f"memory profile: the {self.backend!r} backend has none")
        meta.update(extra_meta or {})
        try:
            data = runner.stop(meta)
        except Exception as exc:  # the card must still say what happened
            meta["error"] = {"type": type(exc).__name__, "message": str(exc),
                             "traceback": traceback.format_exc()}
            data = backends.empty_profile(meta)
        self.profile = Profile.from_bytes(data)
        return self.profile

    def __enter__(self) -> Profiler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            self.stop()
