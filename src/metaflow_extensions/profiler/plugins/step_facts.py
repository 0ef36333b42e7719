"""What the card says about the step's Metaflow surroundings, as META keys
and notes (docs/FORMAT.md): an exception with the user's own frames,
whether @catch caught it or @timeout raised it, and the resources the step
asked for (@resources, @kubernetes, @batch) beside what it used. Plain
functions of the decorators' attributes and the profile's stats; nothing
here may raise into the step (callers catch)."""

from __future__ import annotations

import os
import sysconfig
import traceback
from typing import Any

_MAX_FRAMES = 12


def _framework_dirs() -> tuple[str, ...]:
    import metaflow

    import metaflow_profiler

    dirs = [os.path.dirname(metaflow.__file__), os.path.dirname(metaflow_profiler.__file__),
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            sysconfig.get_paths()["stdlib"]]
    return tuple(os.path.realpath(d) + os.sep for d in dirs)


def user_traceback(exc: BaseException) -> str:
    """The traceback's frames outside Metaflow, this package and the stdlib
    (the step's code and the libraries it calls), innermost last, compact."""
    skip = _framework_dirs()
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not os.path.realpath(f.filename).startswith(skip)]
    cut = len(frames) > _MAX_FRAMES
    frames = frames[-_MAX_FRAMES:]
    lines = [f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}"
             + (f": {f.line.strip()}" if f.line else "") for f in frames]
    if cut:
        lines.insert(0, "...")
    first = str(exc).strip().split("\n")[0]  # @timeout's message holds a whole stack
    lines.append(f"{type(exc).__name__}: {first}".rstrip(": "))
    return "\n".join(lines)


def step_error(exc: BaseException, decorators: list, retry_count: int,
               max_user_code_retries: int) -> dict[str, Any]:
    """META `step_error`: type, message, the user's traceback; `timed_out`
    for @timeout; `caught` (and the @catch var) when @catch will catch it."""
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc).strip(),
                           "traceback": user_traceback(exc)}
    if type(exc).__name__ == "TimeoutException" and type(exc).__module__.endswith("timeout_decorator"):
        out["timed_out"] = True
        out["message"] = out["message"].split("\n")[0]  # Metaflow's 30-line stack stays in the log
    catch = next((d for d in decorators if d.name == "catch"), None)
    if catch is not None and retry_count >= max_user_code_retries:
        out["caught"] = True
        if catch.attributes.get("var"):
            out["caught_var"] = catch.attributes["var"]
    return out


def error_notes(err: dict[str, Any]) -> list[str]:
    notes = []
    if err.get("timed_out"):
        notes.append(f"the step timed out (@timeout): {err['message']}")
    if err.get("caught"):
        var = f" into self.{err['caught_var']}" if err.get("caught_var") else ""
        notes.append(f"the step raised {err['type']} and @catch caught it{var}: the run went on")
    return notes


def assigned_names(step_func: Any) -> set[str]:
    """The `self.<name>` the step function assigns, read from its source
    (empty when the source cannot be read)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(step_func)))
    except (OSError, TypeError, SyntaxError):
        return set()
    names = set()
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for t in targets:
            for sub in ast.walk(t):
                if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                        and sub.value.id == "self"):
                    names.add(sub.attr)
    return names


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x > 0 else None


def requested(decorators: list) -> dict[str, Any] | None:
    """META `resources.requested` ({cpu, memory_mb, gpu}, `from`): from
    @kubernetes or @batch when present (they absorb @resources), else @resources."""
    by_name = {d.name: d for d in decorators}
    for name in ("kubernetes", "batch", "resources"):
        d = by_name.get(name)
        if d is None:
            continue
        a = d.attributes
        req = {k: _number(a.get(key)) for k, key in
               (("cpu", "cpu"), ("memory_mb", "memory"), ("gpu", "gpu"))}
        req = {k: v for k, v in req.items() if v is not None}
        if req:
            return {"from": f"@{name}", **req}
    return None


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def resources_note(req: dict[str, Any], stats: dict[str, Any]) -> str:
    """'memory: peak 3.1 GB of 16.0 GB requested; CPU: avg 1.2 of 4 requested (@resources)'."""
    parts = []
    if "memory_mb" in req:
        peak = stats.get("peak_rss_mb")
        used = f"peak {_gb(peak)}" if peak else "peak not measured"
        parts.append(f"memory: {used} of {_gb(req['memory_mb'])} requested")
    if "cpu" in req:
        avg = stats.get("avg_cpu_pct")
        used = f"avg {avg / 100:.1f}" if avg is not None else "use not measured"
        parts.append(f"CPU: {used} of {req['cpu']:g} requested")
    if "gpu" in req:
        seen = sorted({k.split("_")[1] for k in stats if k.startswith("peak_gpu")})
        parts.append(f"GPU: {req['gpu']:g} requested, {len(seen)} seen by NVML")
    return "; ".join(parts) + f" ({req['from']})"
