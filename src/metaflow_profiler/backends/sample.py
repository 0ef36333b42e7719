"""The native sampler backend: a C thread samples every Python thread's stack
without the GIL (native/sampler), and a C poller records the resource timeline
(native/timeline)."""

from __future__ import annotations

import json
import threading
from typing import Any

from .. import _native
from . import merge_timeline, meta_json, name_threads


class SampleRunner:
    def __init__(self, interval_ns: int, timeline_ns: int, max_samples: int,
                 memory_rate: int = 0) -> None:
        self._session = _native.Session(interval_ns, timeline_ns, max_samples,
                                        memory_rate=memory_rate)
        self._memory = memory_rate > 0
        self._interval_ns = interval_ns

    @property
    def session(self) -> Any:
        return self._session

    def start(self) -> None:
        self._session.start()

    def stop(self, meta: dict[str, Any]) -> bytes:
        s = self._session
        s.stop()
        name_threads(s)
        self._fill_meta(meta, s.stats())
        return s.encode(meta_json(meta))

    def snapshot(self, meta: dict[str, Any]) -> bytes:
        """The profile so far, sampling on (the live card). Any thread; the
        copy and the encoding run without the GIL (native Session.snapshot)."""
        s = self._session
        main = threading.main_thread().native_id
        s.snapshot([(tid, name, tid == main) for tid, name in _native.thread_names().items()])
        self._fill_meta(meta, s.stats())
        return s.encode_snapshot(meta_json(meta))

    def _fill_meta(self, meta: dict[str, Any], st: dict[str, Any]) -> None:
        meta.update(
            duration_ns=st["duration_ns"],
            samples_taken=st["samples"],
            samples_dropped=sum(st["dropped"].values()),
            drop_reasons=st["dropped"],
            samples_decimation=st["decimation"],
            sampler_passes=st["passes"],
            sampler_busy_ns=st["busy_ns"],
            sampler_mode=st["mechanism"],
        )
        if st["mechanism"].startswith("public C API"):
            # The rate this one achieved: it waits for the GIL at each pass.
            secs = st["duration_ns"] / 1e9
            rate = st["passes"] / secs if secs > 0 else 0.0
            meta["notes"].append(f"stacks sampled through the {st['mechanism']}: slower than "
                                 f"the usual GIL-free sampler ({rate:.0f} passes a second of "
                                 f"{1e9 / self._interval_ns:.0f} asked for)")
        if st.get("elided"):
            meta["notes"].append(f"{st['elided']} samples of stacks deeper than 16,384 frames keep "
                                 "their 8,192 innermost and outermost frames; "
                                 "\"[deep stack: frames elided]\" marks the frames left out")
        if self._memory:
            _memory_meta(meta, st)
        merge_timeline(meta, st)


def _memory_meta(meta: dict[str, Any], st: dict[str, Any]) -> None:
    """META["memory"] from the heap tracker (native/heap), and the card's line."""
    if st.get("heap_error"):
        meta["notes"].append(f"memory profile unavailable: {st['heap_error']}")
        return
    if not st.get("heap_info"):
        return
    info = json.loads(st["heap_info"])
    meta["notes"].extend(info.pop("notes", []))
    meta["memory"] = info
    # The two figures are read at the same moment, but they count different
    # things: the heap counts bytes allocated (a fresh buffer counts before
    # its pages are written), RSS the pages resident. Say which is which.
    peak, rss = info.get("peak_bytes", 0), info.get("rss_at_peak_bytes", 0)
    line = f"live heap at its peak {_fmt_bytes(peak)} (allocated bytes, estimated"
    line += f" from one sample per {_fmt_bytes(info.get('rate_bytes', 0))} allocated)"
    if rss:
        line += (f"; RSS at that moment {_fmt_bytes(rss)} (resident pages: memory allocated "
                 "but not yet written is not resident)")
    meta["notes"].append(f"memory: {line}")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
