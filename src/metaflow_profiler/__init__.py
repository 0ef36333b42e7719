"""metaflow-profiler's engine API: a native (C) sampling profiler, its profile
format, and the self-contained HTML card. Does not import metaflow.

    from metaflow_profiler import Profiler, Profile
    with Profiler(interval=0.001) as p:
        work()
    p.profile.functions()[:5]
"""

from .profile import FunctionDiff, FunctionStat, LineStat, MemoryStat, Profile
from .profiler import BACKENDS, Profiler, ProfilerError

__all__ = ["BACKENDS", "FunctionDiff", "FunctionStat", "LineStat", "MemoryStat", "Profile", "Profiler",
           "ProfilerError"]
