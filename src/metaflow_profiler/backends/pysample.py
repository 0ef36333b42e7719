"""The pure-Python sampler: stands in for the native backends where the
compiled engine cannot load (native.py says when). A daemon thread wakes
every interval and records every other thread's stack from
sys._current_frames(). It needs the GIL, so under a busy thread it wakes
about once per switch interval (5 ms by default); each sample's weight is
the time since the previous pass, so totals stay wall time whatever the
achieved rate. No on-CPU state, memory profile or resource timeline.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from .. import native
from ..native import Builder, missing_note
from . import meta_json

_MIN_INTERVAL_NS = 1_000_000  # below this the thread would mostly wait for the GIL


class PySampleRunner:
    def __init__(self, interval_ns: int, timeline_ns: int, max_samples: int,
                 memory_rate: int = 0) -> None:
        self._interval_ns = max(interval_ns, _MIN_INTERVAL_NS)
        self._b = Builder(max_samples=max_samples)
        self._funcs: dict[Any, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._passes = 0
        self._t0 = 0

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()
        self._thread = threading.Thread(target=self._loop, name="mfp-pysample", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        me, last = threading.get_ident(), self._t0
        while not self._stop.wait(self._interval_ns / 1e9):
            now = time.perf_counter_ns()
            threads = {t.ident: t for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident != me:
                    self._record(threads.get(ident), ident, frame, now - self._t0, now - last)
            last = now
            self._passes += 1

    def _record(self, t: threading.Thread | None, ident: int, frame: Any, t_ns: int,
                weight: int) -> None:
        b = self._b
        codes = []
        while frame is not None:
            codes.append((frame.f_code, frame.f_lineno or 0))
            frame = frame.f_back
        node = -1
        for code, line in reversed(codes):
            func = self._funcs.get(code)
            if func is None:
                name = getattr(code, "co_qualname", code.co_name)
                func = self._funcs[code] = b.func(b.string(name), b.string(code.co_filename),
                                                  code.co_firstlineno, 0)
            node = b.stack(node, b.frame(func, line))
        if node < 0:
            return
        tid = getattr(t, "native_id", None) or ident
        name = t.name if t is not None else f"thread {ident}"
        th = b.thread(tid, b.string(name), int(t is threading.main_thread()))
        b.sample(t_ns, node, th, weight, 0)

    def stop(self, meta: dict[str, Any]) -> bytes:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        duration = time.perf_counter_ns() - self._t0
        meta.update(
            backend="pysample",
            backend_requested=meta.get("backend"),
            duration_ns=duration,
            interval_ns=self._interval_ns,
            samples_taken=self._passes,
            native_missing=native.MISSING,
        )
        meta.pop("timeline_interval_ns", None)
        meta["notes"].append(missing_note())
        return self._b.encode(meta_json(meta))
