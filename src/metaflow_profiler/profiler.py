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


def validate_options(backend: str | None, interval: Any, timeline_interval: Any, memory: Any) -> str:
    """Check the options the decorator and the API share; return the backend name."""
    name = backends.resolve(backend)
    _number("interval", interval, 0.0001, 60)
    _number("timeline_interval", timeline_interval, 0.001, 3600, allow_zero=True)
    if not isinstance(memory, bool):
        raise ValueError(f"memory must be True or False, got {memory!r}")
    if memory and not backends.supports_memory(name):
        raise ValueError("memory=True is not available yet: the native memory profiler is not built")
    return name


class Profiler:
    """Profile the code between start() and stop().

    backend: "sample" (native sampler, default), see BACKENDS.
    interval: seconds between samples (>= 0.0001).
    timeline_interval: seconds between resource-timeline points, 0 = off.
    memory: sampled allocation profiling (not available yet).
    """

    def __init__(
        self,
        backend: str | None = "sample",
        interval: float = 0.001,
        timeline_interval: float = 0.5,
        memory: bool = False,
        max_samples: int = 0,
    ) -> None:
        self.backend = validate_options(backend, interval, timeline_interval, memory)
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
        runner = backends.create(self.backend, self.interval, self.timeline_interval, self.max_samples)
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
            "python": platform.python_version(),
            "start_unix_ns": self._start_unix_ns,
            "interval_ns": int(self.interval * 1e9),
            "timeline_interval_ns": int(self.timeline_interval * 1e9),
            "notes": [],
        }
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
