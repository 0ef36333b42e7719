"""Backend registry. A backend runner has start() and stop(meta) -> profile bytes.

"sample" is the native sampler; issue-tracked backends (trace, cprofile,
pyinstrument) register here as they land.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from .. import _native


class Runner(Protocol):
    def start(self) -> None: ...
    def stop(self, meta: dict[str, Any]) -> bytes: ...


def _sample(interval: float, timeline_interval: float, max_samples: int) -> Runner:
    from .sample import SampleRunner

    return SampleRunner(interval, timeline_interval, max_samples)


_FACTORIES = {"sample": _sample}
NAMES = tuple(_FACTORIES)
DEFAULT = "sample"


def resolve(name: str | None) -> str:
    """The backend name to use; None picks the best available."""
    if name is None:
        return DEFAULT
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"unknown profiler backend {name!r}; available: {', '.join(NAMES)}")
    return name


def supports_memory(name: str) -> bool:
    return False


def create(name: str, interval: float, timeline_interval: float, max_samples: int) -> Runner:
    return _FACTORIES[resolve(name)](interval, timeline_interval, max_samples)


def meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, separators=(",", ":"), default=str)


def empty_profile(meta: dict[str, Any]) -> bytes:
    """A valid profile with no samples, carrying meta (e.g. the error)."""
    return _native.Builder().encode(meta_json(meta))
