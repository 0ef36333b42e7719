"""The native deterministic tracer backend: every call of every thread is
timed in C (native/tracer; sys.monitoring on 3.12+, a C profile function on
3.11), giving the exact call tree with call counts and self time. The C
poller records the resource timeline beside it (native/timeline)."""

from __future__ import annotations

from typing import Any

from .. import _native
from . import merge_timeline, meta_json, name_threads


class TraceRunner:
    def __init__(self, interval_ns: int, timeline_ns: int, max_samples: int) -> None:
        # interval and max_samples are for samplers; a tracer records every call.
        self._tracer = _native.Tracer(timeline_interval_ns=timeline_ns)

    def start(self) -> None:
        self._tracer.start()

    def stop(self, meta: dict[str, Any]) -> bytes:
        t = self._tracer
        t.stop()
        name_threads(t)
        st = t.stats()
        meta.update(
            duration_ns=st["duration_ns"],
            counts="calls",
            weights="self_time",
            calls_traced=st["calls"],
            tracer_mechanism=st["mechanism"],
            tracer_nodes=st["nodes"],
        )
        meta.pop("interval_ns", None)
        meta["notes"].append(
            f"deterministic trace ({st['mechanism']}): every call timed; "
            "times are wall time and include the tracer's own cost"
        )
        if st["dropped_nodes"]:
            meta["notes"].append(
                f"call tree full: {st['dropped_nodes']} calls at new call paths counted to their caller"
            )
        if st["lost_threads"]:
            meta["notes"].append(f"{st['lost_threads']} thread(s) stopped being traced (out of memory)")
        merge_timeline(meta, st)
        return t.encode(meta_json(meta))
