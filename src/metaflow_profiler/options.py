"""Every option of the profiler, defined once: default, type, bounds, and how
a value is read.

Values come as Python values (the API, `@profile_card(memory=False)`) or as
the strings Metaflow hands a task for `--with profile_card:memory=False`
(Metaflow decodes JSON forms, so `false`, `0.01` and `null` arrive typed,
but `False`, `True` and `None` arrive as strings; its own decorators read
them with `str(v) == "True"` and `float(v)`). Each reader accepts both. An
error names the option as the caller spells it (`interval` in the API,
`sample_interval` on the decorator). The C engine gets the checked values
in integer nanoseconds and re-checks nothing but its own invariants.
No metaflow import here: the engine API uses this module too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class OptionError(ValueError):
    """A bad option value; the message names the option and says what it takes."""


@dataclass(frozen=True)
class Option:
    default: Any
    read: Callable[[Any], Any]  # the checked value, or ValueError("must be ...")
    help: str


def _strip(v: Any) -> Any:
    return v.strip() if isinstance(v, str) else v


def flag(v: Any) -> bool:
    v = _strip(v)
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError("must be True or False")


def _number(v: Any) -> float:
    v = _strip(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("must be a number")
    return float(v)


def seconds(low: float, high: float, off: bool = False) -> Callable[[Any], float]:
    zero = "0 (off) or " if off else ""
    why = f"must be {zero}a number of seconds from {low:g} to {high:g}"

    def read(v: Any) -> float:
        try:
            x = _number(v)
        except ValueError:
            raise ValueError(why) from None
        if off and x == 0:
            return 0.0
        if not (math.isfinite(x) and low <= x <= high):
            raise ValueError(why)
        return x

    return read


def count(low: int, high: int, unit: str) -> Callable[[Any], int]:
    why = f"must be a whole number of {unit} from {low} to {high:,}"

    def read(v: Any) -> int:
        try:
            x = _number(v)
        except ValueError:
            raise ValueError(why) from None
        if not (math.isfinite(x) and x == int(x) and low <= x <= high):
            raise ValueError(why)
        return int(x)

    return read


def backend(v: Any) -> str:
    from . import backends

    v = _strip(v)
    if v is None or v in ("", "None", "none", "null"):
        return backends.DEFAULT
    try:
        return backends.resolve(v)
    except ValueError as exc:
        raise ValueError(f"names no usable backend: {exc}") from None


def identifier(v: Any) -> str:
    v = _strip(v)
    if not isinstance(v, str) or not v.isidentifier() or v.startswith("_"):
        raise ValueError("must be a Python identifier not starting with '_'")
    return v


def compare_target(v: Any) -> str | bool:
    """"previous", False, a run id, or a pathspec of a run, step or task."""
    v = _strip(v)
    if v is False or v is None or (isinstance(v, str) and v.lower() in ("false", "none", "null")):
        return False
    if v is True or (isinstance(v, str) and v.lower() == "true"):
        return "previous"
    if isinstance(v, int):
        v = str(v)
    if isinstance(v, str) and re.fullmatch(r"[^/\s]+(/[^/\s]+){0,3}", v):
        return v
    raise ValueError('must be "previous", False, a run id or a pathspec (Flow/run[/step[/task]])')


# The engine's options (Profiler, the CLI and the decorator), by the
# decorator's names.
ENGINE: dict[str, Option] = {
    "profiler": Option(None, backend, 'backend name; None = the best available ("sample")'),
    "sample_interval": Option(0.001, seconds(0.0001, 60), "seconds between samples"),
    "timeline_interval": Option(0.5, seconds(0.001, 3600, off=True),
                                "seconds between resource-timeline points; 0 = off"),
    "memory": Option(True, flag, "sampled allocation profiling, Python and native"),
    # Mean bytes allocated between two allocation samples (native/heap). Lower
    # is more precise and costs more; bench/bench_memory.py measures both.
    "memory_rate": Option(128 * 1024, count(1, 2**40, "bytes"),
                          "mean bytes allocated between two allocation samples"),
    "max_samples": Option(0, count(0, 2**32, "samples"),
                          "cap on SAMPLES records; 0 = the engine's default"),
    "subprocesses": Option(True, flag, "profile the Python child processes too (children.py)"),
}

# What @profile_card takes: the engine's user-facing options and its own.
DECORATOR: dict[str, Option] = {
    **{k: ENGINE[k] for k in ("profiler", "sample_interval", "timeline_interval", "memory",
                              "subprocesses")},
    "artifact_name": Option("profile_card_data", identifier, "task artifact holding the profile"),
    "create_card": Option(True, flag, "attach the card"),
    "compare": Option("previous", compare_target,
                      'what the card compares with: "previous" run, a run id or pathspec, or False'),
    "live_interval": Option(10.0, seconds(1, 3600, off=True),
                            "seconds between live-card updates while the step runs, stretching "
                            "on long steps; 0 = off"),
}


def read(table: Mapping[str, Option], values: Mapping[str, Any],
         spelled: Mapping[str, str] | None = None, where: str = "") -> dict[str, Any]:
    """Every option of `table` checked, defaults filled in. `spelled` maps an
    option to the name the caller knows it by; `where` prefixes errors."""
    spelled = spelled or {}
    out = {}
    for name, opt in table.items():
        value = values.get(name, opt.default)
        try:
            out[name] = opt.read(value)
        except ValueError as exc:
            raise OptionError(f"{where}{spelled.get(name, name)} {exc}, got {value!r}") from None
    return out


@dataclass(frozen=True)
class Options:
    """The engine's options, checked; made by Options.check()."""

    profiler: str
    sample_interval: float
    timeline_interval: float
    memory: bool
    memory_rate: int
    max_samples: int
    subprocesses: bool = True

    @classmethod
    def check(cls, spelled: Mapping[str, str] | None = None, where: str = "",
              **values: Any) -> Options:
        unknown = set(values) - set(ENGINE)
        if unknown:
            raise OptionError(f"{where}unknown option(s): {', '.join(sorted(unknown))}")
        return cls(**read(ENGINE, values, spelled, where))

    # The one conversion to what the engine and META hold.
    @property
    def interval_ns(self) -> int:
        return round(self.sample_interval * 1e9)

    @property
    def timeline_interval_ns(self) -> int:
        return round(self.timeline_interval * 1e9)
