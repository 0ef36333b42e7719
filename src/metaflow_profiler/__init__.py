"""metaflow-profiler's engine API: a native (C) sampling profiler, its profile
format, and the self-contained HTML card. Does not import metaflow.

    from metaflow_profiler import Profiler, Profile
    with Profiler(interval=0.001) as p:
        work()
    p.profile.functions()[:5]

The names load on first use: every profiled child process imports this
package at start-up (children.py), and most of it is not needed there.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs a child's start-up ~10 ms
if TYPE_CHECKING:
    from .profile import FunctionDiff, FunctionStat, LineStat, MemoryStat, Profile
    from .profiler import BACKENDS, Profiler, ProfilerError

_FROM = {"FunctionDiff": "profile", "FunctionStat": "profile", "LineStat": "profile",
         "MemoryStat": "profile", "Profile": "profile", "BACKENDS": "profiler",
         "Profiler": "profiler", "ProfilerError": "profiler"}

__all__ = ["BACKENDS", "FunctionDiff", "FunctionStat", "LineStat", "MemoryStat", "Profile", "Profiler",
           "ProfilerError"]


def __getattr__(name: str) -> object:
    if name not in _FROM:
        raise AttributeError(f"module 'metaflow_profiler' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    globals()[name] = value
    return value
