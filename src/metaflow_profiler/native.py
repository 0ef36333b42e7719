"""The compiled engine, or what stands in for it where it cannot load.

The `.so` is built for one CPython minor version and platform. A worker
that gets it in a Metaflow code package but runs another Python (or none
was built) cannot import it; there the profile format comes from
pyformat.py (same interface, pure Python) and the native backends are
replaced by a Python sampler (backends/pysample.py), with a note on the
card saying what was missing and how to get it. Import from here, not
from _native, whatever does not itself need the C engine.
"""

from __future__ import annotations

import os
import platform
import sysconfig
from typing import Any


def _why(exc: ImportError) -> str:
    """What was missing, in the user's terms rather than the import error's."""
    here = os.path.dirname(os.path.abspath(__file__))
    built = sorted(f[len("_native."):-len(".so")] for f in os.listdir(here)
                   if f.startswith("_native.") and f.endswith(".so"))
    need = (sysconfig.get_config_var("EXT_SUFFIX") or ".so")[1:-len(".so")]
    if not built:
        return "no compiled engine (metaflow_profiler/_native*.so) is installed"
    if need not in built:
        return f"the compiled engine was built for {', '.join(built)}; this Python needs {need}"
    return f"the compiled engine did not load: {exc}"


try:
    from . import _native as engine

    MISSING: str | None = None
except ImportError as exc:
    engine = None
    MISSING = _why(exc)

if engine is not None:
    Builder: Any = engine.Builder
    decode: Any = engine.decode
else:
    from . import pyformat

    Builder = pyformat.Builder
    decode = pyformat.decode

HOW_TO_GET = ("install metaflow-profiler in the image the step runs in "
              "(`pip install metaflow-profiler`, or `@pypi(packages={'metaflow-profiler': ...})`), "
              "or run the step on the Python version the flow was launched with")


def missing_note() -> str:
    return (f"native engine missing on this worker (Python {platform.python_version()}, "
            f"{platform.machine()}): {MISSING}. A pure-Python sampler made this profile: "
            f"coarser, no memory profile, no resource timeline. To get the native one, "
            f"{HOW_TO_GET}.")
