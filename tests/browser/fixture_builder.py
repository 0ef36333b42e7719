"""Throwaway stand-in for metaflow_profiler._native.Builder (same methods).

It writes docs/FORMAT.md bytes so the browser tests can run before the C
engine lands. Delete this file once `metaflow_profiler._native.Builder`
exists: the encoder must not be written twice.
"""

from __future__ import annotations


def _uv(out: bytearray, v: int) -> None:
    if v < 0:
        raise ValueError("negative uv")
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _sv(out: bytearray, v: int) -> None:
    _uv(out, (v << 1) if v >= 0 else ((-v) << 1) - 1)


def _str(out: bytearray, s: str) -> None:
    b = s.encode("utf-8")
    _uv(out, len(b))
    out += b


class Builder:
    def __init__(self) -> None:
        self._strings: dict[str, int] = {"": 0}
        self._funcs: dict[tuple, int] = {}
        self._frames: dict[tuple, int] = {}
        self._stacks: dict[tuple, int] = {}
        self._threads: dict[int, list] = {}
        self._samples: list[tuple] = []
        self._totals: dict[tuple, list] = {}
        self._series: list[list] = []
        self._memory: dict[int, list] = {}

    def string(self, s: str) -> int:
        return self._strings.setdefault(s, len(self._strings))

    def func(self, name: int, file: int, line: int, kind: int) -> int:
        return self._funcs.setdefault((name, file, line, kind), len(self._funcs))

    def frame(self, func: int, line: int) -> int:
        return self._frames.setdefault((func, line), len(self._frames))

    def stack(self, parent: int, frame: int) -> int:
        return self._stacks.setdefault((parent, frame), len(self._stacks))

    def thread(self, tid: int, name: int, flags: int) -> int:
        if tid not in self._threads:
            self._threads[tid] = [len(self._threads), name, flags]
        return self._threads[tid][0]

    def sample(self, t_ns: int, stack: int, thread: int, weight_ns: int, flags: int) -> None:
        self._samples.append((t_ns, stack, thread, weight_ns, flags))
        t = self._totals.setdefault((stack, thread, flags), [0, 0])
        t[0] += 1
        t[1] += weight_ns

    def series(self, name: str, unit: str, scale: int) -> int:
        self._series.append([self.string(name), self.string(unit), scale, []])
        return len(self._series) - 1

    def point(self, series: int, t_ns: int, value: int) -> None:
        self._series[series][3].append((t_ns, value))

    def memory(self, stack: int, live: int, alloc: int, count: int) -> None:
        m = self._memory.setdefault(stack, [0, 0, 0])
        m[0] += live
        m[1] += alloc
        m[2] += count

    def encode(self, meta_json: str) -> bytes:
        out = bytearray(b"MFPROF")
        _uv(out, 1)

        def section(tag: int, body: bytearray) -> None:
            _uv(out, tag)
            _uv(out, len(body))
            out.extend(body)

        b = bytearray()
        _str(b, meta_json)
        section(1, b)
        b = bytearray()
        _uv(b, len(self._strings))
        for s in sorted(self._strings, key=self._strings.__getitem__):
            _str(b, s)
        section(2, b)
        funcs = sorted(self._funcs, key=self._funcs.__getitem__)
        b = bytearray()
        _uv(b, len(funcs))
        for col in range(4):
            for f in funcs:
                _uv(b, f[col])
        section(3, b)
        frames = sorted(self._frames, key=self._frames.__getitem__)
        b = bytearray()
        _uv(b, len(frames))
        for col in range(2):
            for f in frames:
                _uv(b, f[col])
        section(4, b)
        stacks = sorted(self._stacks, key=self._stacks.__getitem__)
        b = bytearray()
        _uv(b, len(stacks))
        for i, (parent, _) in enumerate(stacks):
            _uv(b, 0 if parent < 0 else i - parent)
        for _, frame in stacks:
            _uv(b, frame)
        section(5, b)
        threads = sorted(self._threads.items(), key=lambda kv: kv[1][0])
        b = bytearray()
        _uv(b, len(threads))
        for tid, _ in threads:
            _uv(b, tid)
        for _, (_, name, _) in threads:
            _uv(b, name)
        for _, (_, _, flags) in threads:
            _uv(b, flags)
        section(6, b)
        b = bytearray()
        _uv(b, len(self._samples))
        prev = 0
        for s in self._samples:
            t_us = s[0] // 1000
            _uv(b, t_us - prev)
            prev = t_us
        for s in self._samples:
            _uv(b, s[1])
        for s in self._samples:
            _uv(b, s[2])
        for s in self._samples:
            _uv(b, s[3] // 1000)
        for s in self._samples:
            _uv(b, s[4])
        section(7, b)
        b = bytearray()
        _uv(b, len(self._totals))
        keys = list(self._totals)
        for col in range(3):
            for k in keys:
                _uv(b, k[col])
        for k in keys:
            _uv(b, self._totals[k][0])
        for k in keys:
            _uv(b, self._totals[k][1] // 1000)
        section(8, b)
        if self._series:
            b = bytearray()
            _uv(b, len(self._series))
            for name, unit, scale, pts in self._series:
                _uv(b, name)
                _uv(b, unit)
                _uv(b, scale)
                _uv(b, len(pts))
                prev = 0
                for t_ns, _ in pts:
                    t_ms = t_ns // 1_000_000
                    _uv(b, t_ms - prev)
                    prev = t_ms
                prev = 0
                for _, v in pts:
                    _sv(b, v - prev)
                    prev = v
            section(9, b)
        if self._memory:
            b = bytearray()
            _uv(b, len(self._memory))
            keys = list(self._memory)
            for k in keys:
                _uv(b, k)
            for col in range(3):
                for k in keys:
                    _uv(b, self._memory[k][col])
            section(10, b)
        return bytes(out)
