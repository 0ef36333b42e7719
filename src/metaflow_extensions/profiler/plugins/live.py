"""The live card: while a decorated step runs, its profile card is rewritten
with the profile so far, so the Metaflow UI, `card server`, `card get` and
`get_cards` show it growing — and a step that is killed (SIGKILL, the OOM
killer, an evicted pod) keeps its last snapshot.

Why from the task process itself: Metaflow refreshes a runtime card by
starting `python flow.py card create ...`, which costs a Metaflow import
(>= 0.38 s of CPU here) plus the user's flow module (torch: seconds) per
update. Here a daemon thread of the task takes a snapshot of
the native profile (encoded in C without the GIL, the sampler never
stopped), renders the same self-contained HTML as the final card and writes
it through the task's card datastore at the final card's own path, with a
runtime "data" update beside it whose reload token tells card viewers to
reload. The final card, rendered by Metaflow when the task ends, overwrites
it. Nothing here may affect the step: every failure is caught, logged once,
and after a few the thread gives up.

Cadence: the first update FIRST_UPDATE_S after the start, then every
`live_interval` seconds, stretching to a tenth of the time the step has run
(at most MAX_INTERVAL_S), so an hour-long step pays for a few dozen updates.
Memory is read every MEMORY_POLL_S (faster as it nears its limit); when it
passes MEMORY_FRACTION of the cgroup's or @resources' limit an update is
made at once (and again at every further 5 % of the limit), so an
out-of-memory kill leaves a profile from just before it. Memory that falls
back under the first rung (a worker the OOM killer took, a batch freed)
re-arms the ladder: a step that once peaked at 95 % and then grows again
gets its updates at 80 % again, not only past 100 %.

The thread keeps the task's CPU priority: its CPU is small (tens of ms an
update), but it shares the GIL with the step, and a step that hands the GIL
to a deprioritised thread waits for that thread to be scheduled — on a busy
machine that held the step up more than the work itself (bench/RESULTS.md).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

FIRST_UPDATE_S = 3.0
MAX_INTERVAL_S = 300.0
MEMORY_POLL_S = 2.0
MEMORY_FRACTION = 0.8
MEMORY_RUNG = 0.05
MAX_FAILURES = 3
_UNLIMITED = 1 << 60
# zlib level of the live page: 9 (the final card's) costs ~15x the CPU of 6
# for ~1 % less on long profiles, once per update.
LIVE_ZLIB_LEVEL = 6


def next_interval(base: float, elapsed: float) -> float:
    """Seconds until the next update, `elapsed` seconds into the step."""
    return max(base, min(0.1 * elapsed, MAX_INTERVAL_S))


# ---- memory and its limit ---------------------------------------------------


class MemoryLadder:
    """When memory calls for an update: past MEMORY_FRACTION of the limit,
    then at each further MEMORY_RUNG; from the start again once memory is
    back under the first rung's foot (one rung of hysteresis, so memory
    hovering at a rung does not update at every poll)."""

    FOOT = MEMORY_FRACTION - MEMORY_RUNG

    def __init__(self) -> None:
        self.level = self.FOOT

    def due(self, share: float) -> bool:
        if share < self.FOOT:
            self.level = self.FOOT
        if share < self.level + MEMORY_RUNG:
            return False
        self.level = share
        return True



def poll_period(mem: dict[str, Any] | None) -> float:
    """Seconds until memory is read again: often only near the limit."""
    share = mem["used_bytes"] / mem["limit_bytes"] if mem else 0.0
    return MEMORY_POLL_S if share < 0.5 else 0.5 if share < 0.7 else 0.2


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _counter(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return _int(v)
    return None


def _cgroup_dirs() -> list[tuple[str, str]]:
    """(version, directory) of this process's memory cgroup and its parents,
    innermost first."""
    out: list[tuple[str, str]] = []
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                if os.path.exists(os.path.join(root, "cgroup.controllers")):
                    out += [("v2", d) for d in _up(root, path)]
                    break
        elif "memory" in controllers.split(","):
            out += [("v1", d) for d in _up("/sys/fs/cgroup/memory", path)]
    return out


def _up(root: str, path: str) -> list[str]:
    dirs, parts = [], [p for p in path.split("/") if p]
    for k in range(len(parts), -1, -1):
        d = os.path.join(root, *parts[:k])
        if os.path.isdir(d):
            dirs.append(d)
    return dirs


def _cgroup_memory() -> dict[str, Any] | None:
    """Usage and limit of the tightest memory cgroup above this process."""
    best = None
    for version, d in _cgroup_dirs():
        if version == "v2":
            limit = _int(_read(d + "/memory.max")) if _read(d + "/memory.max") != "max\n" else None
            used = _int(_read(d + "/memory.current"))
            kills = _counter(_read(d + "/memory.events"), "oom_kill")
        else:
            limit = _int(_read(d + "/memory.limit_in_bytes"))
            used = _int(_read(d + "/memory.usage_in_bytes"))
            kills = _counter(_read(d + "/memory.oom_control"), "oom_kill")
        if not limit or limit >= _UNLIMITED or used is None:
            continue
        if best is None or limit < best["limit_bytes"]:
            best = {"used_bytes": used, "limit_bytes": limit, "source": f"cgroup {version}",
                    "oom_kills": kills}
    return best


def _rss() -> int | None:
    statm = (_read("/proc/self/statm") or "").split()
    return int(statm[1]) * os.sysconf("SC_PAGESIZE") if len(statm) > 1 else None


def memory_state(resources_bytes: int | None) -> dict[str, Any] | None:
    """The memory figure closest to its limit: the cgroup's, or this process's
    RSS against @resources(memory=...). None when no limit is known."""
    states = []
    cg = _cgroup_memory()
    if cg:
        states.append(cg)
    rss = _rss()
    if resources_bytes and rss is not None:
        states.append({"used_bytes": rss, "limit_bytes": resources_bytes, "source": "@resources"})
    return max(states, key=lambda s: s["used_bytes"] / s["limit_bytes"]) if states else None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _memory_line(mem: dict[str, Any]) -> str:
    used, limit = mem["used_bytes"], mem["limit_bytes"]
    same = "GiB" if limit >= 2**30 else "MiB"
    u = f"{used / 2**30:.1f}" if same == "GiB" else f"{used / 2**20:.0f}"
    return f"memory was at {u} of {_gib(limit)} ({mem['source']} limit) at the last update"


def live_notes(info: dict[str, Any]) -> list[str]:
    """What the live card says about itself (the first of its META notes)."""
    hhmmss = time.strftime("%H:%M:%S", time.gmtime(info["updated_unix_ns"] / 1e9))
    text = (f"Live card: running — updated {hhmmss} UTC, {info['elapsed_s']:.0f} s into the "
            "step. The final card replaces it when the step ends; if this one is still here "
            "after the step ended, it is the last snapshot taken while the step was running "
            "and no final card followed (the step was killed: SIGKILL, out of memory, an "
            "evicted pod or a lost machine).")
    notes = [text]
    mem = info.get("memory")
    if mem:
        line = _memory_line(mem)
        kills = (mem.get("oom_kills") or 0) - (info.get("oom_kills_at_start") or 0)
        if kills > 0:
            line += f"; the cgroup's OOM killer had struck {kills} time(s) during the step"
        notes.append("Live card: " + line + ".")
    return notes


# ---- where the card goes ----------------------------------------------------


def kill_safe_storage(storage: type) -> type:
    """`storage`, or for the local datastore one whose writes leave nothing in
    the card folders when the task is killed mid-write. Metaflow's local
    storage writes a temporary file beside the card, and its card listing
    raises on any name that is not a card's: an OOM kill during a live
    update (when one is most likely) left `get_cards`, `card get` and `card
    server` unable to list the task's cards. The temporary file goes one
    folder up (the task's folder, which no card listing reads)."""
    import tempfile

    from metaflow.plugins.datastores.local_storage import LocalStorage

    if not issubclass(storage, LocalStorage):
        return storage

    class KillSafeLocalStorage(storage):  # type: ignore[misc, valid-type]
        def save_bytes(self, path_and_bytes_iter: Any, overwrite: bool = False,
                       len_hint: int = 0) -> None:
            for path, obj in path_and_bytes_iter:
                full = self.full_uri(path)
                if isinstance(obj, tuple) or (not overwrite and os.path.exists(full)):
                    super().save_bytes([(path, obj)], overwrite=overwrite)
                    continue
                os.makedirs(os.path.dirname(full), exist_ok=True)
                data = obj.read()
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.dirname(full)),
                                           prefix=".mfp-live-")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.replace(tmp, full)
                except BaseException:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
                    raise

    return KillSafeLocalStorage



class CardTarget:
    """The final card's own location in the card datastore, found once the
    card decorator has given the card its uuid (its task_pre_step runs right
    after ours)."""

    def __init__(self, find_card_deco: Callable[[], Any], pathspec: str, card_type: str) -> None:
        self._find = find_card_deco
        self._pathspec = pathspec
        self._type = card_type
        self._ds: Any = None
        self._uuid: str | None = None
        self._id: str | None = None

    def ready(self) -> bool:
        if self._ds is not None:
            return True
        deco = self._find()
        if deco is None or not getattr(deco, "_card_uuid", None):
            return False
        from metaflow.datastore import FlowDataStore
        from metaflow.plugins.cards.card_datastore import CardDatastore

        fds = deco._flow_datastore
        # As `card create` does: the card root of this datastore type.
        root = CardDatastore.get_storage_root(fds.TYPE) or fds.datastore_root
        cards = FlowDataStore(fds.flow_name, environment=None,
                              storage_impl=kill_safe_storage(type(fds._storage_impl)),
                              ds_root=root)
        self._ds = CardDatastore(cards, pathspec=self._pathspec)
        self._uuid, self._id = deco._card_uuid, deco._user_set_card_id
        return True

    def write(self, html: str, token: str, data: dict[str, Any]) -> None:
        self._ds.save_card(self._uuid, self._type, html, card_id=self._id, overwrite=True)
        # The runtime "data" update card viewers poll: a new reload token
        # makes them reload the card.
        self._ds.save_data(self._uuid, self._type,
                           {"reload_token": token, "data": data, "created_on": time.time()},
                           card_id=self._id)


# ---- the thread -------------------------------------------------------------


class LiveCard:
    """Rewrites the card with the profile so far until stop()."""

    def __init__(self, profiler: Any, interval: float, target: CardTarget,
                 render: Callable[[bytes, str], str], meta: dict[str, Any],
                 resources_bytes: int | None, log: Callable[[str], None]) -> None:
        self._profiler = profiler
        self._interval = interval
        self._target = target
        self._render = render
        self._meta = meta
        self._resources = resources_bytes
        self._log = log
        self._stop = threading.Event()
        self._stopped = False
        self._write_lock = threading.Lock()
        self._t0 = time.monotonic()
        self._seq = 0
        self._failures = 0
        self._ladder = MemoryLadder()
        start = memory_state(resources_bytes)
        self._oom_at_start = (start or {}).get("oom_kills")
        self.updates = 0
        self.busy_s = 0.0  # CPU time of this thread spent on updates
        self._thread = threading.Thread(target=self._run, name="profile_card live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop and wait for an update in progress, so no late write can
        overwrite the final card."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._write_lock.acquire(timeout=timeout):
            self._log("the last live update is still being written; it may replace the final card")

    def _run(self) -> None:
        from metaflow_profiler.profiler import exclude_this_thread

        exclude_this_thread()  # the card is about the step, not about itself
        next_at = self._t0 + FIRST_UPDATE_S
        while not self._stop.is_set():
            now = time.monotonic()
            mem = memory_state(self._resources)
            urgent = mem is not None and self._ladder.due(mem["used_bytes"] / mem["limit_bytes"])
            if urgent or now >= next_at:
                if not self._update(mem, "memory" if urgent else "interval"):
                    return
                next_at = time.monotonic() + next_interval(self._interval, now - self._t0)
            self._stop.wait(min(poll_period(mem), max(0.05, next_at - time.monotonic())))

    def _update(self, mem: dict[str, Any] | None, reason: str) -> bool:
        """One update; False when the thread should give up."""
        if not self._target_ready():
            return self._failures < MAX_FAILURES
        cpu0 = time.thread_time()
        try:
            self._seq += 1
            info: dict[str, Any] = {
                "state": "running", "seq": self._seq, "reason": reason,
                "updated_unix_ns": time.time_ns(),
                "elapsed_s": round(time.monotonic() - self._t0, 3),
                "interval_s": self._interval,
            }
            if mem:
                info["memory"] = mem
                info["oom_kills_at_start"] = self._oom_at_start
            meta = dict(self._meta, live=info, notes=live_notes(info))
            data = self._profiler.snapshot(meta)
            if data is None:
                self._log("this backend takes no snapshots: the card appears when the step ends")
                return False
            token = f"live-{self._seq}"
            html = self._render(data, token)
            with self._write_lock:
                if self._stop.is_set():
                    return False
                self._target.write(html, token, {"live": info})
            self.updates += 1
            self._failures = 0
            return True
        except Exception as exc:  # never the step's problem
            self._failures += 1
            if self._failures == 1:
                self._log(f"live card update failed: {type(exc).__name__}: {exc}")
            return self._failures < MAX_FAILURES
        finally:
            self.busy_s += time.thread_time() - cpu0

    def _target_ready(self) -> bool:
        try:
            return self._target.ready()
        except Exception as exc:
            self._failures += 1
            if self._failures == 1:
                self._log(f"live card: no card datastore: {type(exc).__name__}: {exc}")
            return False


# ---- the decorator's entry points ------------------------------------------


def _resources_bytes(decorators: list) -> int | None:
    for d in decorators:
        if d.name == "resources":
            try:
                mb = float(d.attributes.get("memory") or 0)
            except (TypeError, ValueError):
                return None
            return int(mb * 2**20) if mb > 0 else None
    return None


def cprofile_sees_every_thread(backend: str) -> bool:
    """cProfile on 3.12+ listens through sys.monitoring, which reports every
    thread's calls, into one call stack: the live card's thread became the
    caller of the step's functions (`hot`, called 50 times by the step, shown
    46 times under that thread's Event.wait, and once 20 calls lost). So
    no live card there (the final card says so)."""
    return backend == "cprofile" and sys.version_info >= (3, 12)


NO_LIVE_WITH_CPROFILE = ("no live card with profiler='cprofile' on Python 3.12+: cProfile there "
                         "records every thread's calls as one, so another thread's calls would be "
                         "taken for the step's (the program's own threads' too)")


def start(profiler: Any, interval: float, *, flow_name: str, run_id: str, step_name: str,
          task_id: str, decorators: list, find_card: Callable[[], Any], meta: dict[str, Any],
          log: Callable[[str], None]) -> LiveCard | None:
    """Start the live card of a running step, or None when it is off."""
    if not interval or profiler is None or cprofile_sees_every_thread(profiler.backend):
        return None
    from .cards.profile_card.card import render_card

    pathspec = f"{flow_name}/{run_id}/{step_name}/{task_id}"
    target = CardTarget(find_card, pathspec, "profile_card")
    live = LiveCard(profiler, interval, target,
                    lambda data, token: render_card(data, pathspec, token, level=LIVE_ZLIB_LEVEL),
                    meta,
                    _resources_bytes(decorators), log)
    live.start()
    return live
