"""Profile: the decoded profile format (docs/FORMAT.md) and the questions a
user asks of it — stats, hottest functions, memory at peak — plus saving,
the HTML card, and exports to other tools."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any, NamedTuple

from . import _native


class FunctionStat(NamedTuple):
    name: str
    filename: str
    line: int
    self_s: float
    total_s: float
    samples: int


class MemoryStat(NamedTuple):
    name: str
    filename: str
    line: int
    self_bytes: int
    total_bytes: int


# Timeline series → stats key and the factor to the unit stats() reports.
_SERIES_STATS = {
    "cpu_pct": ("cpu_pct", 1.0),
    "rss_bytes": ("rss_mb", 1 / 2**20),
    "rss_peak_bytes": ("rss_kernel_mb", 1 / 2**20),
    "cgroup_mem_bytes": ("cgroup_mem_mb", 1 / 2**20),
    "cgroup_mem_limit_bytes": ("cgroup_mem_limit_mb", 1 / 2**20),
    "children_rss_bytes": ("children_rss_mb", 1 / 2**20),
    "disk_read_Bps": ("disk_read_mbps", 1 / 2**20),
    "disk_write_Bps": ("disk_write_mbps", 1 / 2**20),
    "net_recv_Bps": ("net_recv_mbps", 1 / 2**20),
    "net_sent_Bps": ("net_sent_mbps", 1 / 2**20),
}
_AVERAGED = ("cpu_pct", "rss_bytes")


class Profile:
    """An immutable profile. Made by Profiler.stop() or Profile.from_bytes()."""

    def __init__(self, data: bytes, tables: dict[str, Any], meta: dict[str, Any]) -> None:
        self._bytes = data
        self._t = tables
        self.meta = meta

    # ---- bytes and files ----
    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """Decode; ValueError saying why when the bytes are not a valid profile."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected profile bytes, got {type(data).__name__}")
        data = bytes(data)
        tables = _native.decode(data)
        try:
            meta = json.loads(tables["meta"]) if tables["meta"] else {}
        except ValueError as exc:
            raise ValueError(f"not a valid profile: META is not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ValueError("not a valid profile: META is not a JSON object")
        return cls(data, tables, meta)

    @classmethod
    def empty(cls, meta: dict[str, Any]) -> Profile:
        """A profile with no samples that carries meta, e.g. why profiling failed."""
        from .backends import empty_profile

        return cls.from_bytes(empty_profile(meta))

    def to_bytes(self) -> bytes:
        return self._bytes

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "wb") as f:
            f.write(self._bytes)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    # ---- questions ----
    def _func_key(self, func: int) -> tuple[str, str, int]:
        f, s = self._t["funcs"], self._t["strings"]
        return s[f["name"][func]], s[f["file"][func]], f["line"][func]

    def _path_funcs(self, stack: int) -> list[int]:
        """Functions of a stack node, leaf first."""
        parent, frame = self._t["stacks"]["parent"], self._t["stacks"]["frame"]
        func = self._t["frames"]["func"]
        out = []
        while stack != -1:
            out.append(func[frame[stack]])
            stack = parent[stack]
        return out

    def _by_function(self, stacks: list[int], values: list[int]) -> tuple[dict, dict]:
        """Self and total value per function; recursion counts once per stack."""
        self_v: dict[int, int] = defaultdict(int)
        total_v: dict[int, int] = defaultdict(int)
        paths: dict[int, list[int]] = {}
        for stack, v in zip(stacks, values):
            path = paths.get(stack)
            if path is None:
                path = paths[stack] = self._path_funcs(stack)
            self_v[path[0]] += v
            for func in set(path):
                total_v[func] += v
        return self_v, total_v

    def functions(self, on_cpu: bool = False) -> list[FunctionStat]:
        """Every function sampled, by total (inclusive) wall time, hottest first.
        on_cpu=True counts only samples where the thread was running on a CPU."""
        tot = self._t["totals"]
        rows = [i for i, f in enumerate(tot["flags"]) if f & 1 or not on_cpu]
        stacks = [tot["stack"][i] for i in rows]
        self_w, total_w = self._by_function(stacks, [tot["weight_ns"][i] for i in rows])
        self_c, total_c = self._by_function(stacks, [tot["count"][i] for i in rows])
        # A deterministic profile counts calls: a function's own, not its callees'.
        count = self_c if self.meta.get("counts") == "calls" else total_c
        rows = [
            FunctionStat(*self._func_key(f), self_w[f] / 1e9, total_w[f] / 1e9, count[f])
            for f in total_w
        ]
        rows.sort(key=lambda r: (-r.total_s, -r.self_s, r.name))
        return rows

    def memory_functions(self) -> list[MemoryStat]:
        """Every function holding sampled memory at the heap peak, by total bytes."""
        mem = self._t["memory"]
        self_b, total_b = self._by_function(mem["stack"], mem["live_bytes"])
        rows = [MemoryStat(*self._func_key(f), self_b[f], total_b[f]) for f in total_b]
        rows.sort(key=lambda r: (-r.total_bytes, -r.self_bytes, r.name))
        return rows

    def threads(self) -> list[dict[str, Any]]:
        th, s = self._t["threads"], self._t["strings"]
        return [
            {"tid": tid, "name": s[name], "main": bool(flags & 1)}
            for tid, name, flags in zip(th["tid"], th["name"], th["flags"])
        ]

    def series(self) -> dict[str, tuple[list[float], list[float]]]:
        """Timeline series by name: (seconds since start, values in the series' unit)."""
        s = self._t["strings"]
        out = {}
        for row in self._t["series"]:
            div = 10 ** row["scale"]
            out[s[row["name"]]] = ([t / 1e9 for t in row["t_ns"]], [v / div for v in row["value"]])
        return out

    def stats(self) -> dict[str, Any]:
        """Summary: duration, samples, peak/avg CPU and RSS, disk/network/GPU peaks, limits."""
        m = self.meta
        out: dict[str, Any] = {
            "backend": m.get("backend"),
            "duration_s": m.get("duration_ns", 0) / 1e9,
            self._count_key(): sum(self._t["totals"]["count"]),
            "samples_dropped": m.get("samples_dropped", 0),
            "threads": len(self._t["threads"]["tid"]),
            "step_failed": bool(m.get("step_failed", False)),
        }
        # The poller's own peaks and averages are exact; the series may have
        # been thinned for long runs. Profiles without them use the series.
        tl = m.get("timeline") or {}
        peaks, avgs = dict(tl.get("peaks") or {}), dict(tl.get("averages") or {})
        for name, (_, values) in self.series().items():
            if values and name not in peaks:
                peaks[name] = max(values)
                avgs[name] = sum(values) / len(values)
        for name, value in peaks.items():
            key, factor = _SERIES_STATS.get(name, (name, 1.0))
            out[f"peak_{key}"] = value * factor
            if name in _AVERAGED and name in avgs:
                out[f"avg_{key}"] = avgs[name] * factor
        for name, value in (tl.get("totals") or {}).items():
            out[f"total_{name}"] = value
        for key, value in (m.get("limits") or {}).items():
            out[f"limit_{key}"] = value
        return out

    def _count_key(self) -> str:
        return "calls" if self.meta.get("counts") == "calls" else "samples"

    # ---- outputs ----
    def to_html(self, path: str | os.PathLike[str] | None = None, title: str = "") -> str:
        """The self-contained card Metaflow shows; also written to path when given."""
        from .html import render_html

        page = render_html(self._bytes, title=title or self.meta.get("title", ""))
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
        return page

    def export(self, path: str | os.PathLike[str], format: str = "speedscope") -> None:
        """The CPU profile for other tools: "speedscope" (JSON) or "collapsed" (text)."""
        if format == "collapsed":
            text = self._collapsed()
        elif format == "speedscope":
            text = json.dumps(self._speedscope())
        else:
            raise ValueError(f"unknown export format {format!r}; available: speedscope, collapsed")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def _stack_names(self, stack: int) -> list[str]:
        return [self._func_key(f)[0] for f in reversed(self._path_funcs(stack))]

    def _collapsed(self) -> str:
        tot = self._t["totals"]
        lines: dict[str, int] = defaultdict(int)
        for stack, n in zip(tot["stack"], tot["count"]):
            lines[";".join(x.replace(";", ":") for x in self._stack_names(stack))] += n
        return "".join(f"{k} {v}\n" for k, v in sorted(lines.items()))

    def _speedscope(self) -> dict[str, Any]:
        s, funcs, tot = self._t["strings"], self._t["funcs"], self._t["totals"]
        frames = [
            {"name": s[n], "file": s[f], "line": ln}
            for n, f, ln in zip(funcs["name"], funcs["file"], funcs["line"])
        ]
        samples = [list(reversed(self._path_funcs(st))) for st in tot["stack"]]
        weights = [w / 1e6 for w in tot["weight_ns"]]
        return {
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": frames},
            "profiles": [{
                "type": "sampled", "name": self.meta.get("title") or "profile",
                "unit": "milliseconds", "startValue": 0, "endValue": sum(weights),
                "samples": samples, "weights": weights,
            }],
            "exporter": "metaflow-profiler",
        }
