"""The pyinstrument backend (when pyinstrument is installed): pyinstrument
samples the thread that started it; its raw records (stack, time since the
previous record) are converted into our profile — SAMPLES in time order and
TOTALS — so the card is the same as for our own sampler."""

from __future__ import annotations

import threading
from typing import Any

from ..native import Builder
from . import meta_json

_SEP, _ATTR = "\x00", "\x01"


def _parse(info: str) -> tuple[str, str, int, int, int]:
    """(name, file, first line, current line, kind) of a pyinstrument frame."""
    ident, _, attrs = info.partition(_ATTR)
    parts = ident.split(_SEP)
    name = parts[0]
    file = parts[1] if len(parts) > 1 else ""
    try:
        first = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        first = 0
    line = 0
    for a in attrs.split(_ATTR) if attrs else ():
        if a.startswith("c") and a[1:]:
            name = f"{a[1:]}.{name}"
        elif a.startswith("l") and a[1:].isdigit():
            line = int(a[1:])
    if file == "<built-in>":
        return name, "", 0, 0, 1
    return name, file, first, line, 0


class PyinstrumentRunner:
    def __init__(self, interval_ns: int, timeline_ns: int, max_samples: int) -> None:
        from pyinstrument import Profiler

        self._max_samples = max_samples
        self._interval_ns = interval_ns
        self._prof = Profiler(interval=interval_ns / 1e9, async_mode="disabled")

    def start(self) -> None:
        self._prof.start()

    def stop(self, meta: dict[str, Any]) -> bytes:
        session = self._prof.stop()
        b = Builder(max_samples=self._max_samples)
        current = threading.current_thread()
        th = b.thread(threading.get_native_id(), b.string(current.name),
                      int(current is threading.main_thread()))
        frames: dict[str, int] = {}
        stacks: dict[tuple[int, int], int] = {}
        t_ns = 0
        interval_ns = self._interval_ns
        counted = 0
        for records, seconds in session.frame_records:
            node = -1
            for info in records:
                if _SEP + "<thread>" + _SEP in info:
                    continue  # pyinstrument's thread root; the thread is its own table
                f = frames.get(info)
                if f is None:
                    name, file, first, line, kind = _parse(info)
                    func = b.func(b.string(name), b.string(file), first, kind)
                    f = frames[info] = b.frame(func, line)
                key = (node, f)
                nxt = stacks.get(key)
                if nxt is None:
                    nxt = stacks[key] = b.stack(node, f)
                node = nxt
            weight = max(0, round(seconds * 1e9))
            if node >= 0:
                b.sample(t_ns, node, th, weight, 0)
                counted += 1
                # pyinstrument takes a sample at the first call or return after
                # each interval, so one record of a long C call or sleep stands
                # for many intervals: count it as that many samples, as our
                # sampler would (the Samples column), its time unchanged.
                extra = round(weight / interval_ns) - 1 if interval_ns else 0
                if extra > 0:
                    b.total(node, th, 0, extra, 0)
                    counted += extra
            t_ns += weight
        meta.update(
            duration_ns=round(session.duration * 1e9),
            samples_taken=counted,
            pyinstrument_records=len(session.frame_records),
            counts="samples",
            weights="wall_time",
            pyinstrument_cpu_time_ns=round(session.cpu_time * 1e9),
        )
        if not session.frame_records:
            meta["notes"].append("pyinstrument recorded no samples")
        meta["notes"].extend([
            "pyinstrument samples only the thread that started it; on-CPU state is not known",
            "no resource timeline with this backend",
        ])
        return b.encode(meta_json(meta))
