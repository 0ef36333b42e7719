"""The cprofile backend: the built-in cProfile, converted into our profile.

cProfile keeps, per function, its calls and times, and per caller→callee
pair the same; not the paths. The call tree is rebuilt from the pairs: a
function's roots are the calls from outside the profiled code; below a node
of function F with total time T, each callee G gets T × (time of F→G ÷ time
of F) — exact one level down from a root, a proportional estimate deeper.
A node's self time is its total minus its children's, so a time shows once
in the tree; recursion (a callee already on the path) stays in the caller's
self time. Counts are calls scaled the same way; META says all this.
"""

from __future__ import annotations

import cProfile
import re
import threading
import time
from typing import Any

from ..native import Builder
from . import meta_json

_MAX_NODES = 200_000
_MAX_DEPTH = 256
_PRUNE = 1e-5  # paths below this share of the run's time stay in their caller

_BUILTIN = re.compile(r"<built-in method (.+)>$")
_METHOD = re.compile(r"<method '(.+)' of '(.+)' objects>$")

Key = Any  # a code object, or cProfile's label of a built-in


def _describe(code: Key) -> tuple[str, str, int, int]:
    """(name, file, first line, kind) of a cProfile entry."""
    if isinstance(code, str):
        m = _BUILTIN.match(code)
        if m:
            return m.group(1), "", 0, 1
        m = _METHOD.match(code)
        if m:
            return f"{m.group(2)}.{m.group(1)}", "", 0, 1
        return code, "", 0, 1
    name = getattr(code, "co_qualname", code.co_name)
    return name, code.co_filename, code.co_firstlineno, 0


class CProfileRunner:
    def __init__(self, interval_ns: int, timeline_ns: int, max_samples: int) -> None:
        self._prof = cProfile.Profile()
        self._t0 = 0

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()
        self._prof.enable()

    def stop(self, meta: dict[str, Any]) -> bytes:
        self._prof.disable()
        duration = time.perf_counter_ns() - self._t0
        stats = self._prof.getstats()
        b = Builder()
        current = threading.current_thread()
        tid = threading.get_native_id()
        th = b.thread(tid, b.string(current.name), int(current is threading.main_thread()))
        nodes = _Tree(b, th, stats).build()
        meta.update(
            duration_ns=duration,
            counts="calls",
            weights="self_time",
            calls_traced=sum(e.callcount for e in stats),
            tree_nodes=nodes,
        )
        meta.pop("interval_ns", None)
        meta["notes"].append(
            "cProfile keeps only caller→callee pairs; the call tree is reconstructed "
            "(below the first level, times and calls are split in proportion)")
        meta["notes"].append(
            "cProfile follows the thread that started it; no resource timeline with this backend")
        if nodes >= _MAX_NODES:
            meta["notes"].append(f"reconstructed tree cut at {_MAX_NODES} nodes")
        return b.encode(meta_json(meta))


class _Tree:
    def __init__(self, b: Any, thread: int, stats: list) -> None:
        self.b, self.thread = b, thread
        self.total: dict[Key, tuple[float, float]] = {}  # code -> (calls, total s)
        self.callees: dict[Key, list[tuple[Key, float, float]]] = {}
        incoming: dict[Key, list[float]] = {}
        self_calls: dict[Key, float] = {}  # F→F: direct recursion
        for e in stats:
            if e.code == "<method 'disable' of '_lsprof.Profiler' objects>":
                continue
            self.total[e.code] = (e.callcount, e.totaltime)
            out = []
            for c in e.calls or ():
                out.append((c.code, c.callcount, c.totaltime))
                if c.code == e.code:
                    self_calls[e.code] = c.callcount
                else:
                    acc = incoming.setdefault(c.code, [0.0, 0.0])
                    acc[0] += c.callcount
                    acc[1] += c.totaltime
            out.sort(key=lambda x: -x[2])
            self.callees[e.code] = out
        self.roots = []
        for code, (calls, tt) in self.total.items():
            in_calls, in_tt = incoming.get(code, (0.0, 0.0))
            # A function's callcount includes its recursive calls, which emit()
            # adds back at every node of it from the F→F pair: a root's own
            # calls are the rest.
            rest, rest_calls = tt - in_tt, calls - in_calls - self_calls.get(code, 0)
            if code not in incoming or (rest > max(1e-6, 0.005 * tt) and rest_calls > 0):
                self.roots.append((code, max(rest_calls, 1), rest if code in incoming else tt))
        self.roots.sort(key=lambda r: -r[2])
        self.cut = _PRUNE * sum(r[2] for r in self.roots)
        self.frames: dict[Key, int] = {}
        self.nodes = 0

    def frame(self, code: Key) -> int:
        f = self.frames.get(code)
        if f is None:
            name, file, line, kind = _describe(code)
            func = self.b.func(self.b.string(name), self.b.string(file), line, kind)
            f = self.frames[code] = self.b.frame(func, 0)
        return f

    def build(self) -> int:
        for code, calls, tt in self.roots:
            self.emit(-1, code, calls, tt, [code])
        return self.nodes

    def emit(self, parent: int, code: Key, calls: float, tt: float, path: list) -> None:
        if self.nodes >= _MAX_NODES:
            return
        node = self.b.stack(parent, self.frame(code))
        self.nodes += 1
        f_tt = self.total.get(code, (0, 0.0))[1]
        scale = tt / f_tt if f_tt > 0 else 0.0
        kids = []
        if len(path) < _MAX_DEPTH:
            for callee, c_calls, c_tt in self.callees.get(code, ()):
                share = c_tt * scale
                if callee == code:
                    calls += c_calls * scale  # direct recursion: its calls, time stays here
                if callee in path or share < self.cut or callee not in self.total:
                    continue
                kids.append((callee, c_calls * scale, share))
        self_s = max(0.0, tt - sum(k[2] for k in kids))
        self.b.total(node, self.thread, 0, max(1, round(calls)), round(self_s * 1e9))
        for callee, c_calls, share in kids:
            path.append(callee)
            self.emit(node, callee, c_calls, share, path)
            path.pop()
