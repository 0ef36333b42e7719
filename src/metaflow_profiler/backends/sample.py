"""The native sampler backend: a C thread samples every Python thread's stack
without the GIL (native/sampler), and a C poller records the resource timeline
(native/timeline)."""

from __future__ import annotations

import json
import threading
from typing import Any

from .. import _native
from . import meta_json


class SampleRunner:
    def __init__(self, interval: float, timeline_interval: float, max_samples: int) -> None:
        self._session = _native.Session(interval, timeline_interval, max_samples)

    def start(self) -> None:
        self._session.start()

    def stop(self, meta: dict[str, Any]) -> bytes:
        s = self._session
        s.stop()
        main = threading.main_thread().native_id
        for tid, name in _native.thread_names().items():
            s.name_thread(tid, name, tid == main)
        st = s.stats()
        meta.update(
            duration_ns=st["duration_ns"],
            samples_taken=st["samples"],
            samples_dropped=sum(st["dropped"].values()),
            drop_reasons=st["dropped"],
            samples_decimation=st["decimation"],
            sampler_passes=st["passes"],
            sampler_busy_ns=st["busy_ns"],
            memory_reader=st["mechanism"],
        )
        if st["timeline_error"]:
            meta["notes"].append(f"resource timeline unavailable: {st['timeline_error']}")
        if st["timeline_info"]:
            info = json.loads(st["timeline_info"])
            meta["limits"] = info.get("limits", {})
            meta["notes"].extend(info.get("notes", []))
        return s.encode(meta_json(meta))
