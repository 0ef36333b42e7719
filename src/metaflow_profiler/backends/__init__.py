"""Backend registry. A backend runner has start() and stop(meta) -> profile bytes.

    sample        native sampler (default; the best available)
    trace         native deterministic tracer: exact call tree, calls, self time
    cprofile      the built-in cProfile, converted (tree reconstructed)
    pyinstrument  pyinstrument, converted (only when it is installed)

Every backend writes the same profile format, so the card shows them alike;
META "backend" says which one ran, "counts"/"weights" what TOTALS hold.
Where the compiled engine cannot load, sample and trace run as the
pure-Python sampler (pysample.py) and META says so.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

from .. import native
from ..native import Builder


class Runner(Protocol):
    def start(self) -> None: ...
    def stop(self, meta: dict[str, Any]) -> bytes: ...


def _sample(interval_ns: int, timeline_ns: int, max_samples: int,
            memory_rate: int = 0) -> Runner:
    from .sample import SampleRunner

    return SampleRunner(interval_ns, timeline_ns, max_samples, memory_rate)


def _trace(interval_ns: int, timeline_ns: int, max_samples: int) -> Runner:
    from .trace import TraceRunner

    return TraceRunner(interval_ns, timeline_ns, max_samples)


def _cprofile(interval_ns: int, timeline_ns: int, max_samples: int) -> Runner:
    from .cprofile import CProfileRunner

    return CProfileRunner(interval_ns, timeline_ns, max_samples)


def _pyinstrument(interval_ns: int, timeline_ns: int, max_samples: int) -> Runner:
    from .pyinstrument import PyinstrumentRunner

    return PyinstrumentRunner(interval_ns, timeline_ns, max_samples)


_FACTORIES = {"sample": _sample, "trace": _trace, "cprofile": _cprofile,
              "pyinstrument": _pyinstrument}
NAMES = tuple(_FACTORIES)
DEFAULT = "sample"

# Backends that need a package we do not depend on: name -> (module, pip name).
_REQUIRES = {"pyinstrument": ("pyinstrument", "pyinstrument")}


class BackendUnavailable(ValueError):
    """A known backend that cannot run here (its package is not installed)."""


def _missing(name: str) -> str | None:
    """Why `name` cannot run here, or None when it can."""
    req = _REQUIRES.get(name)
    if req is None:
        return None
    import importlib.util

    if importlib.util.find_spec(req[0]) is None:
        return f"{req[0]} is not installed; install it with `pip install {req[1]}`"
    return None


def available() -> tuple[str, ...]:
    """The backends that can run in this environment, best first."""
    return tuple(n for n in NAMES if _missing(n) is None)


def resolve(name: str | None) -> str:
    """The backend name to use; None picks the best available (the native
    sampler). ValueError for an unknown name (listing the available ones) and
    BackendUnavailable (a ValueError) for a known one that cannot run here."""
    if name is None:
        return DEFAULT
    if not isinstance(name, str) or name not in _FACTORIES:
        names = ", ".join(available())
        raise ValueError(f"unknown profiler backend {name!r}; available: {names}")
    why = _missing(name)
    if why:
        raise BackendUnavailable(f"profiler backend {name!r} is not available: {why}")
    return name


# Backends whose factory takes memory_rate (sampled allocation profiling, native/heap).
_MEMORY = frozenset({"sample"})
_NATIVE = frozenset({"sample", "trace"})  # these need the C engine


def supports_memory(name: str) -> bool:
    return name in _MEMORY


def create(name: str, interval_ns: int, timeline_ns: int, max_samples: int,
           memory_rate: int = 0) -> Runner:
    """memory_rate: mean bytes between allocation samples, 0 = no memory profile."""
    name = resolve(name)
    if name in _NATIVE and native.MISSING:
        from .pysample import PySampleRunner

        return PySampleRunner(interval_ns, timeline_ns, max_samples)
    if memory_rate and name in _MEMORY:
        return _FACTORIES[name](interval_ns, timeline_ns, max_samples, memory_rate=memory_rate)
    return _FACTORIES[name](interval_ns, timeline_ns, max_samples)


def meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, separators=(",", ":"), default=str)


def empty_profile(meta: dict[str, Any]) -> bytes:
    """A valid profile with no samples, carrying meta (e.g. the error)."""
    return Builder().encode(meta_json(meta))


def merge_timeline(meta: dict[str, Any], stats: dict[str, Any]) -> None:
    """Put what the resource poller reported (native Session/Tracer stats)
    into META: limits, notes, and its exact peaks, averages and totals."""
    if stats.get("timeline_error"):
        meta["notes"].append(f"resource timeline unavailable: {stats['timeline_error']}")
    if stats.get("timeline_info"):
        info = json.loads(stats["timeline_info"])
        meta["limits"] = info.pop("limits", {})
        meta["notes"].extend(info.pop("notes", []))
        if info.get("rss"):
            meta["rss"] = info.pop("rss")
        if info.get("network"):
            meta["network"] = info.pop("network")
        meta["timeline"] = info


def name_threads(run: Any) -> None:
    """Give the threads a stopped native run saw their Python names."""
    main = threading.main_thread().native_id
    from .. import _native

    for tid, name in _native.thread_names().items():
        run.name_thread(tid, name, tid == main)

