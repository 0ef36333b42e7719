"""The profile format (docs/FORMAT.md) in pure Python: a Builder and decode()
with the same interface as the C engine's (metaflow_profiler._native).

Used only where the compiled engine cannot load (a worker with another
Python minor version or platform than the code package was built on), so
that such a worker still writes and reads profiles and renders cards.
Small rather than fast: tests check it against the C encoder and decoder.
"""

from __future__ import annotations

from typing import Any

MAGIC = b"MFPROF"
VERSION = 1
META, STRINGS, FUNCS, FRAMES, STACKS, THREADS, SAMPLES, TOTALS, TIMELINE, MEMORY = range(1, 11)
PROCESSES, PROCESS_MAP, HEAP_EVENTS, LEAKS = 11, 12, 13, 14
KNOWN = (*range(META, MEMORY + 1), PROCESSES, PROCESS_MAP, HEAP_EVENTS, LEAKS)
DEFAULT_MAX_SAMPLES = 1 << 20  # as native/profile/store.h


def _uv(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _sv(out: bytearray, v: int) -> None:
    _uv(out, ((v << 1) ^ (v >> 63)) & (2**64 - 1))


def _str(out: bytearray, s: str) -> None:
    b = s.encode("utf-8", "surrogatepass")
    _uv(out, len(b))
    out += b


def _us(ns: int) -> int:
    return ns // 1000


def _us_round(ns: int) -> int:
    return ns // 1000 + (ns % 1000 >= 500)


class Builder:
    """Fills a profile from Python; interning and SAMPLES decimation as in C."""

    def __init__(self, max_samples: int = 0) -> None:
        self._cap = max_samples or DEFAULT_MAX_SAMPLES
        self._strings: dict[str, int] = {"": 0}
        self._funcs: dict[tuple[int, int, int, int], int] = {}
        self._frames: dict[tuple[int, int], int] = {}
        self._stacks: dict[tuple[int, int], int] = {}
        self._threads: dict[int, list[int]] = {}  # tid -> [index, name, flags]
        self._samples: list[list[int]] = []  # [t_ns, stack, thread, weight_ns, flags]
        self._totals: dict[tuple[int, int, int], list[int]] = {}
        self._mems: list[tuple[int, int, int, int]] = []
        self._events: list[tuple[int, int, int, int | None]] = []  # stack, bytes, t_alloc, t_free
        self._leaks: dict[int, int] = {}
        self._series: list[tuple[int, int, int, list[int], list[int]]] = []
        self._stride = 1
        self._seen: dict[int, int] = {}  # per thread: samples seen
        self._newest: dict[int, list[int]] = {}  # per thread: its newest SAMPLES record

    def string(self, s: str) -> int:
        return self._strings.setdefault(s, len(self._strings))

    def func(self, name: int, file: int, line: int, kind: int) -> int:
        return self._funcs.setdefault((name, file, line, kind), len(self._funcs))

    def frame(self, func: int, line: int) -> int:
        return self._frames.setdefault((func, line), len(self._frames))

    def stack(self, parent: int, frame: int) -> int:
        return self._stacks.setdefault((parent, frame), len(self._stacks))

    def thread(self, tid: int, name: int, flags: int) -> int:
        row = self._threads.get(tid)
        if row is None:
            row = self._threads[tid] = [len(self._threads), name, flags]
        else:
            row[1] = name or row[1]
            row[2] |= flags
        return row[0]

    def total(self, stack: int, thread: int, flags: int, count: int, weight_ns: int) -> None:
        row = self._totals.setdefault((stack, thread, flags), [0, 0])
        row[0] += count
        row[1] += weight_ns

    def sample(self, t_ns: int, stack: int, thread: int, weight_ns: int, flags: int) -> None:
        self.total(stack, thread, flags, 1, weight_ns)
        if self._samples and t_ns < self._samples[-1][0]:
            t_ns = self._samples[-1][0]
        k = self._seen.get(thread, 0)
        self._seen[thread] = k + 1
        if k % self._stride == 0 and len(self._samples) >= self._cap:
            self._halve()
        if k % self._stride == 0 or thread not in self._newest:
            rec = [t_ns, stack, thread, weight_ns, flags]
            self._samples.append(rec)
            self._newest[thread] = rec
        else:
            self._newest[thread][3] += weight_ns

    def _halve(self) -> None:
        """Per thread, every 2nd record joins the one before it (FORMAT.md)."""
        kept, odd = [], {}
        for rec in self._samples:
            th = rec[2]
            if odd.get(th):
                odd[th][3] += rec[3]
                odd[th] = None
            else:
                kept.append(rec)
                odd[th] = rec
        self._samples = kept
        self._newest = {}
        for rec in kept:
            self._newest[rec[2]] = rec
        self._stride *= 2

    def series(self, name: str, unit: str, scale: int) -> int:
        self._series.append((self.string(name), self.string(unit), scale, [], []))
        return len(self._series) - 1

    def point(self, series: int, t_ns: int, value: int) -> None:
        self._series[series][3].append(t_ns)
        self._series[series][4].append(value)

    def memory(self, stack: int, live: int, alloc: int, count: int) -> None:
        self._mems.append((stack, live, alloc, count))

    def heap_event(self, stack: int, size: int, t_alloc_ns: int, t_free_ns: int | None) -> None:
        if self._events and t_alloc_ns < self._events[-1][2]:  # in t_alloc order, as the store
            t_alloc_ns = self._events[-1][2]
        if t_free_ns is not None:
            t_free_ns = max(t_free_ns, t_alloc_ns)
        self._events.append((stack, size, t_alloc_ns, t_free_ns))

    def leak(self, stack: int, live: int) -> None:
        self._leaks[stack] = self._leaks.get(stack, 0) + live

    def encode(self, meta_json: str) -> bytes:
        out = bytearray(MAGIC)
        _uv(out, VERSION)
        for tag, payload in self._sections(meta_json):
            _uv(out, tag)
            _uv(out, len(payload))
            out += payload
        return bytes(out)

    def _sections(self, meta_json: str):
        def table(rows: list, cols: list) -> bytes:
            b = bytearray()
            _uv(b, len(rows))
            for col in cols:
                for row in rows:
                    _uv(b, col(row))
            return bytes(b)

        b = bytearray()
        _str(b, meta_json)
        yield META, bytes(b)
        b = bytearray()
        _uv(b, len(self._strings))
        for s in self._strings:
            _str(b, s)
        yield STRINGS, bytes(b)
        yield FUNCS, table(list(self._funcs), [lambda r, i=i: r[i] for i in range(4)])
        yield FRAMES, table(list(self._frames), [lambda r, i=i: r[i] for i in range(2)])
        stacks = list(self._stacks)
        rows = [(i, parent, frame) for i, (parent, frame) in enumerate(stacks)]
        yield STACKS, table(rows, [lambda r: 0 if r[1] < 0 else r[0] - r[1], lambda r: r[2]])
        threads = sorted(((row[0], tid, row[1], row[2]) for tid, row in self._threads.items()))
        yield THREADS, table(threads, [lambda r: r[1], lambda r: r[2], lambda r: r[3]])
        b = bytearray()
        _uv(b, len(self._samples))
        prev = 0
        for rec in self._samples:
            _uv(b, _us(rec[0]) - prev)
            prev = _us(rec[0])
        for i, conv in ((1, int), (2, int), (3, _us_round), (4, int)):
            for rec in self._samples:
                _uv(b, conv(rec[i]))
        yield SAMPLES, bytes(b)
        totals = [(*k, *v) for k, v in self._totals.items()]
        yield TOTALS, table(totals, [lambda r: r[0], lambda r: r[1], lambda r: r[2],
                                     lambda r: r[3], lambda r: _us_round(r[4])])
        b = bytearray()
        _uv(b, len(self._series))
        for name, unit, scale, ts, vs in self._series:
            for v in (name, unit, scale, len(ts)):
                _uv(b, v)
            prev = 0
            for t in ts:
                _uv(b, max(0, t // 1_000_000 - prev))
                prev = max(prev, t // 1_000_000)
            pv = 0
            for v in vs:
                _sv(b, v - pv)
                pv = v
        yield TIMELINE, bytes(b)
        yield MEMORY, table(self._mems, [lambda r, i=i: r[i] for i in range(4)])
        if self._events:  # left out when empty, as the C encoder does
            b = bytearray()
            _uv(b, len(self._events))
            for i in (0, 1):
                for ev in self._events:
                    _uv(b, ev[i])
            prev = 0
            for ev in self._events:
                _uv(b, _us(ev[2]) - prev)
                prev = _us(ev[2])
            for ev in self._events:  # 0: still live; else 1 + µs lived
                _uv(b, 0 if ev[3] is None else 1 + _us(ev[3]) - _us(ev[2]))
            yield HEAP_EVENTS, bytes(b)
        if self._leaks:
            yield LEAKS, table(list(self._leaks.items()), [lambda r: r[0], lambda r: r[1]])


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.d, self.p, self.end = data, pos, len(data) if end is None else end

    def uv(self) -> int:
        v = 0
        for i in range(10):
            if self.p >= self.end:
                raise ValueError("truncated varint")
            b = self.d[self.p]
            self.p += 1
            if i == 9 and b > 1:
                raise ValueError("varint overflows 64 bits")
            v |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return v
        raise ValueError("varint longer than 10 bytes")

    def sv(self) -> int:
        u = self.uv()
        v = (u >> 1) ^ -(u & 1)
        return v - 2**64 if v >= 2**63 else v

    def count(self, cols: int) -> int:
        n = self.uv()
        if n * cols > self.end - self.p:
            raise ValueError("row count larger than the section can hold")
        return n

    def raw(self, n: int) -> bytes:
        if n > self.end - self.p:
            raise ValueError("string runs past its section")
        self.p += n
        return bytes(self.d[self.p - n:self.p])

    def columns(self, names: tuple[str, ...], bounds: dict[str, int]) -> dict:
        """A table; bounds: column -> rows of the table it indexes (or 2**32
        for a value that must fit 32 bits, as the C reader's get_u32)."""
        n = self.count(len(names))
        out = {}
        for name in names:
            col = [self.uv() for _ in range(n)]
            limit = bounds.get(name)
            if limit is not None and any(v >= limit for v in col):
                raise ValueError(f"{name} out of range")
            out[name] = col
        return out


U32 = 2**32


def _ns(v: int, by: int) -> int:
    if v * by >= 2**64:
        raise ValueError("time or weight overflows 64 bits of ns")
    return v * by


def decode(data: bytes) -> dict[str, Any]:
    """The tables of a profile, as _native.decode returns them; ValueError if corrupt."""
    try:
        return _decode(bytes(data))
    except ValueError as exc:
        raise ValueError(f"not a valid profile: {exc}") from None


def _decode(data: bytes) -> dict[str, Any]:
    if not data.startswith(MAGIC):
        raise ValueError("no MFPROF magic")
    r = _Reader(data, len(MAGIC))
    if r.uv() != VERSION:
        raise ValueError("unknown format version")
    sections: dict[int, _Reader] = {}
    while r.p < r.end:
        tag, length = r.uv(), r.uv()
        if length > r.end - r.p:
            raise ValueError("section runs past the end")
        if tag in KNOWN:  # readers skip the tags they do not know
            if tag in sections:
                raise ValueError(f"section {tag} appears twice")
            sections[tag] = _Reader(data, r.p, r.p + length)
        r.p += length
    def sec(tag: int) -> _Reader:
        return sections.get(tag) or _Reader(b"\x00")  # a missing section is an empty one

    meta = ""
    if META in sections:
        m = sections[META]
        meta = m.raw(m.uv()).decode("utf-8", "replace")
    s = sec(STRINGS)
    strings = [s.raw(s.uv()).decode("utf-8", "replace") for _ in range(s.count(1))] or [""]
    if strings[0] != "":
        raise ValueError("string 0 is not empty")
    ns = len(strings)
    funcs = sec(FUNCS).columns(("name", "file", "line", "kind"),
                               {"name": ns, "file": ns, "line": U32, "kind": U32})
    frames = sec(FRAMES).columns(("func", "line"), {"func": len(funcs["name"]), "line": U32})
    raw = sec(STACKS).columns(("parent_delta", "frame"), {"frame": len(frames["func"])})
    parents = []
    for i, delta in enumerate(raw["parent_delta"]):
        if delta > i:
            raise ValueError("stack parent out of range")
        parents.append(i - delta if delta else -1)
    nst = len(parents)
    threads = sec(THREADS).columns(("tid", "name", "flags"), {"name": ns, "flags": U32})
    nth = len(threads["tid"])
    sm = sec(SAMPLES).columns(("dt_us", "stack", "thread", "weight_us", "flags"),
                              {"stack": nst, "thread": nth, "flags": U32})
    t, t_ns = 0, []
    for dt in sm.pop("dt_us"):
        t += dt
        t_ns.append(_ns(t, 1000))
    samples = {"t_ns": t_ns, "stack": sm["stack"], "thread": sm["thread"],
               "weight_ns": [_ns(w, 1000) for w in sm["weight_us"]], "flags": sm["flags"]}
    to = sec(TOTALS).columns(("stack", "thread", "flags", "count", "weight_us"),
                             {"stack": nst, "thread": nth, "flags": U32})
    to["weight_ns"] = [_ns(w, 1000) for w in to.pop("weight_us")]
    memory = sec(MEMORY).columns(("stack", "live_bytes", "alloc_bytes", "alloc_count"),
                                 {"stack": nst})
    he = sec(HEAP_EVENTS).columns(("stack", "bytes", "dt_us", "life_us"), {"stack": nst})
    t, t_alloc, t_free = 0, [], []
    for dt, life in zip(he.pop("dt_us"), he.pop("life_us")):
        t += dt
        t_alloc.append(_ns(t, 1000))
        t_free.append(_ns(t + life - 1, 1000) if life else None)  # 0: still live at the end
    heap_events = {"stack": he["stack"], "bytes": he["bytes"], "t_alloc_ns": t_alloc,
                   "t_free_ns": t_free}
    leaks = sec(LEAKS).columns(("stack", "live_bytes"), {"stack": nst})
    processes, thread_process, memory_process = _processes(
        sec, ns, nth, len(memory["stack"]), PROCESS_MAP in sections)
    tl = sec(TIMELINE)
    series = []
    for _ in range(tl.count(4)):
        name, unit, scale = tl.uv(), tl.uv(), tl.uv()
        if name >= ns or unit >= ns or scale >= U32:
            raise ValueError("series name, unit or scale out of range")
        n = tl.count(2)
        acc, ts = 0, []
        for _ in range(n):
            acc += tl.uv()
            ts.append(_ns(acc, 1_000_000))
        v, vs = 0, []
        for _ in range(n):
            v = (v + tl.sv()) % 2**64  # wraps like the writer's uint64 deltas
            vs.append(v - 2**64 if v >= 2**63 else v)
        series.append({"name": name, "unit": unit, "scale": scale, "t_ns": ts, "value": vs})
    for rd in sections.values():
        if rd.p != rd.end:
            raise ValueError("section has bytes after its content")
    return {"meta": meta, "strings": strings, "funcs": funcs, "frames": frames,
            "stacks": {"parent": parents, "frame": raw["frame"]}, "threads": threads,
            "samples": samples, "totals": to, "memory": memory, "series": series,
            "heap_events": heap_events, "leaks": leaks, "processes": processes,
            "thread_process": thread_process, "memory_process": memory_process, "decimation": 1}


def _processes(sec: Any, ns: int, nth: int, nmem: int, mapped: bool) -> tuple[list, list, list]:
    """PROCESSES and PROCESS_MAP (tags 11, 12): the rows, and the process of
    every thread and memory row (0 when not mapped)."""
    pr = sec(PROCESSES).columns(("pid", "ppid", "name", "flags", "start_us", "duration_us",
                                 "cpu_us", "rss_peak_bytes", "heap_peak_bytes"),
                                {"name": ns, "flags": U32})
    rows = []
    for i in range(len(pr["pid"])):
        z = pr["start_us"][i]
        rows.append({"pid": pr["pid"][i], "ppid": pr["ppid"][i], "name": pr["name"][i],
                     "flags": pr["flags"][i], "start_ns": ((z >> 1) ^ -(z & 1)) * 1000,
                     "duration_ns": _ns(pr["duration_us"][i], 1000),
                     "cpu_ns": _ns(pr["cpu_us"][i], 1000),
                     "rss_peak_bytes": pr["rss_peak_bytes"][i],
                     "heap_peak_bytes": pr["heap_peak_bytes"][i]})
    pm = sec(PROCESS_MAP)
    maps = []
    for rows_of in (nth, nmem):
        n = pm.count(1) if mapped else 0
        if n > rows_of:
            raise ValueError("process map longer than its table")
        col = [pm.uv() for _ in range(n)]
        if any(v >= len(rows) for v in col):
            raise ValueError("process map: process index out of range")
        maps.append(col + [0] * (rows_of - n))
    return rows, maps[0], maps[1]
