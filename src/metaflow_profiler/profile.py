"""Profile: the decoded profile format (docs/FORMAT.md) and the questions a
user asks of it — stats, hottest functions, memory at peak — plus saving,
the HTML card, and exports to other tools."""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from ._format import (
    FUNC_SYNTHETIC,
    FUNC_THREAD,
    PROCESS_PARTIAL,
    PROCESS_ROOT,
    SAMPLE_ON_CPU,
    THREAD_MAIN,
)
from .native import decode


class FunctionStat(NamedTuple):
    name: str
    filename: str
    line: int
    self_s: float
    total_s: float
    samples: int


class FunctionDiff(NamedTuple):
    """One function of Profile.diff: its time in the baseline and in this run.
    Times are inclusive (the function and its callees); shares are of each
    profile's whole sampled time; self_* exclude callees."""

    name: str
    filename: str
    before_s: float
    after_s: float
    delta_s: float
    before_share: float
    after_share: float
    before_self_s: float
    after_self_s: float


class LineStat(NamedTuple):
    """Time of one source line of a function (Profile.lines)."""

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


# Timeline series → stats key and the factor to the unit stats() reports:
# MB and MB/s are 10^6 bytes (the card labels its binary units MiB).
_MB = 1e-6
_SERIES_STATS = {
    "cpu_pct": ("cpu_pct", 1.0),
    "rss_bytes": ("rss_polled_mb", _MB),
    "rss_peak_bytes": ("rss_kernel_mb", _MB),
    "cgroup_mem_bytes": ("cgroup_mem_mb", _MB),
    "cgroup_mem_limit_bytes": ("cgroup_mem_limit_mb", _MB),
    "children_rss_bytes": ("children_rss_polled_mb", _MB),
    "disk_read_Bps": ("disk_read_mbps", _MB),
    "disk_write_Bps": ("disk_write_mbps", _MB),
    "net_recv_Bps": ("net_recv_mbps", _MB),
    "net_sent_Bps": ("net_sent_mbps", _MB),
    "sock_recv_Bps": ("sock_recv_mbps", _MB),
    "sock_sent_Bps": ("sock_sent_mbps", _MB),
}
_AVERAGED = ("cpu_pct", "rss_bytes")
_MAGIC = b"MFPROF"

# META keys the readers use, and what they must hold (docs/FORMAT.md).
_NUMBER = (int, float)
_JSON = {str: "string", list: "array", dict: "object", bool: "boolean"}
_META_TYPES: dict[str, tuple[type, ...]] = {
    "backend": (str,), "python": (str,), "title": (str,), "counts": (str,), "weights": (str,),
    "focus": (str,), "sampler_mode": (str,), "duration_ns": _NUMBER, "start_unix_ns": _NUMBER,
    "interval_ns": _NUMBER, "samples_taken": _NUMBER, "samples_dropped": _NUMBER,
    "samples_decimation": _NUMBER, "notes": (list,), "drop_reasons": (dict,),
    "timeline": (dict,), "limits": (dict,), "memory": (dict,), "error": (dict,),
    "entry": (dict,), "step_failed": (bool,), "rss": (dict,), "network": (dict,),
}


def _module_of(path: str) -> str:
    """The module a file holds, as `import` names it: the part after
    site-packages (or the standard library's folder), a package's
    __init__ being the package."""
    p = path.replace("\\", "/")
    m = re.search(r".*/(?:site|dist)-packages/", p) or re.search(r".*/lib/python\d+\.\d+/", p)
    p = p[m.end():] if m else p.rsplit("/", 1)[-1]
    parts = p.split("/")
    parts[-1] = parts[-1].split(".", 1)[0]
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(x for x in parts if x) or path


def _check_meta(meta: dict[str, Any]) -> None:
    """ValueError naming the first META value of the wrong type."""
    def bad(key: str, value: Any, want: str) -> ValueError:
        return ValueError(f"not a valid profile: META {key} must be {want}, "
                          f"got {type(value).__name__} {value!r:.60}")

    for key, types in _META_TYPES.items():
        v = meta.get(key)
        if v is not None and (not isinstance(v, types) or (isinstance(v, bool) and bool not in types)):
            raise bad(key, v, "a number" if types is _NUMBER else f"a JSON {_JSON[types[0]]}")
    for part in ("peaks", "averages"):
        values = (meta.get("timeline") or {}).get(part) or {}
        if not isinstance(values, dict):
            raise bad(f"timeline.{part}", values, "an object")
        for name, v in values.items():
            if isinstance(v, bool) or not isinstance(v, _NUMBER):
                raise bad(f"timeline.{part}.{name}", v, "a number")

# Section tags (docs/FORMAT.md) this module handles itself: a baseline is
# attached and read by moving whole sections, without decoding them.
_META, _SAMPLES, _TIMELINE, _MEMORY, BASELINE = 1, 7, 9, 10, 15
# What a comparison reads of the baseline's META: the card its duration and
# date, the Python readers what its counts and weights are and where its
# program starts.
_BASELINE_META = ("duration_ns", "start_unix_ns", "counts", "weights", "entry")


def _read_uv(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("not a valid profile: truncated section header")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _uv(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _sections(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, payload) of each section, in order."""
    if data[:6] != b"MFPROF":
        raise ValueError("not a valid profile: bad magic")
    _, pos = _read_uv(data, 6)
    out = []
    while pos < len(data):
        tag, pos = _read_uv(data, pos)
        n, pos = _read_uv(data, pos)
        if pos + n > len(data):
            raise ValueError(f"not a valid profile: section {tag} runs past the end")
        out.append((tag, data[pos:pos + n]))
        pos += n
    return out


def _join(sections: Sequence[tuple[int, bytes]]) -> bytes:
    body = b"".join(_uv(tag) + _uv(len(p)) + p for tag, p in sections)
    return b"MFPROF" + _uv(1) + body


def _table(rows: Sequence[Sequence[int]], ncols: int | None = None) -> bytes:
    """A section of columns: the row count, then each column in turn."""
    ncols = len(rows[0]) if rows else (ncols or 0)
    return _uv(len(rows)) + b"".join(_uv(r[c]) for c in range(ncols) for r in rows)


def _row_tuples(columns: dict[str, list[int]]) -> list[tuple[int, ...]]:
    return list(zip(*columns.values()))


def _appended(have: Any, rows: Any) -> tuple[list[int], list[Any]]:
    """Index in `have` (an iterable of keys), extended, of each of rows, and
    the rows `have` lacks, in the order they were first needed."""
    index: dict[Any, int] = {}
    n = 0
    for n, k in enumerate(have, 1):
        index.setdefault(k, n - 1)
    extra: list[Any] = []
    out = []
    for k in rows:
        if k not in index:
            index[k] = n + len(extra)
            extra.append(k)
        out.append(index[k])
    return out, extra


def _table_sections(strings: list[str], funcs: list, frames: list, stacks: list,
                    first_stack: int) -> list[tuple[int, bytes]]:
    """STRINGS, FUNCS, FRAMES, STACKS of these rows; stack parents are
    indices counted from first_stack (the rows appended after that many)."""
    text = [x.encode("utf-8", "surrogatepass") for x in strings]
    return [(2, _uv(len(text)) + b"".join(_uv(len(x)) + x for x in text)),
            (3, _table(funcs, 4)), (4, _table(frames, 2)),
            (5, _table([(first_stack + i - p if p >= 0 else 0, fr)
                        for i, (p, fr) in enumerate(stacks)], 2))]


def _meta_section(meta: dict[str, Any]) -> bytes:
    text = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    return _uv(len(text)) + text


class Profile:
    """An immutable profile. Made by Profiler.stop() or Profile.from_bytes()."""

    def __init__(self, data: bytes, tables: dict[str, Any], meta: dict[str, Any]) -> None:
        self._bytes = data
        self._t = tables
        self.meta = meta
        self._cache: tuple[list[int], list[int], list[list[int]], list[int]] | None = None
        self._synthetic: list[str] = []
        self._fold = True

    @property
    def fold_imports(self) -> bool:
        """Whether the readers show import machinery as one "import <module>"
        frame (the default) or frame by frame."""
        return self._fold

    @fold_imports.setter
    def fold_imports(self, on: bool) -> None:
        self._fold = bool(on)
        self._cache = None

    # ---- bytes and files ----
    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """Decode; ValueError saying why when the bytes are not a valid profile."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected profile bytes, got {type(data).__name__}")
        data = bytes(data)
        tables = decode(data)
        try:
            meta = json.loads(tables["meta"]) if tables["meta"] else {}
        except ValueError as exc:
            raise ValueError(f"not a valid profile: META is not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ValueError("not a valid profile: META is not a JSON object")
        _check_meta(meta)
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
        """Read a saved profile; ValueError when the file is not one (its
        first bytes are checked before the rest is read: /dev/zero ends)."""
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC))
            if head != _MAGIC:
                raise ValueError(f"not a valid profile: {os.fspath(path)!r} does not start with "
                                 f"{_MAGIC.decode()}")
            return cls.from_bytes(head + f.read())

    # ---- questions ----
    # Every question is answered from the stack tree in one pass over its
    # nodes (a parent always precedes its children), never by walking each
    # stack to its root: deep recursion makes that quadratic.
    def _func_key(self, func: int) -> tuple[str, str, int]:
        f, s = self._t["funcs"], self._t["strings"]
        n = len(f["name"])
        if func >= n:  # a folded import (see _tree)
            return self._synthetic[func - n], "", 0
        return s[f["name"][func]], s[f["file"][func]], f["line"][func]

    def _tree(self) -> tuple[list[int], list[int], list[list[int]], list[int]]:
        """(func of each node, parent of each node with the launcher cut
        off, children of each node, roots). META "entry" names the profiled
        program's first frame (python -m metaflow_profiler run): in a stack
        that reaches it, the frames above it (the CLI, runpy) are dropped."""
        if self._cache is None:
            parent = self._t["stacks"]["parent"]
            node_func = [self._t["frames"]["func"][fr] for fr in self._t["stacks"]["frame"]]
            entry = self.meta.get("entry") or {}
            names, files = self._t["funcs"]["name"], self._t["funcs"]["file"]
            s = self._t["strings"]
            is_entry = [s[names[f]] == entry.get("name") and s[files[f]] == entry.get("file")
                        for f in range(len(names))] if entry else None
            eparent = list(parent)
            if is_entry is not None:
                below = [False] * len(parent)  # an entry frame is this node or above it
                for i, p in enumerate(parent):
                    mine = is_entry[node_func[i]]
                    if mine and not (p >= 0 and below[p]):
                        eparent[i] = -1
                    below[i] = mine or (p >= 0 and below[p])
            if self.fold_imports:
                self._fold_imports(node_func, eparent)
            kids: list[list[int]] = [[] for _ in parent]
            roots = []
            for i, p in enumerate(eparent):
                (kids[p] if p >= 0 else roots).append(i)
            self._cache = (node_func, eparent, kids, roots)
        return self._cache

    def _fold_imports(self, node_func: list[int], eparent: list[int]) -> None:
        """A chain of import machinery frames (<frozen importlib._bootstrap...>)
        becomes one frame "import <module>", named by the file its chain
        runs (a package's __init__ is the package). Every node of a chain
        hangs where its first one does, as that one function, so sums by
        function, line and stack are those of one frame."""
        s, files = self._t["strings"], self._t["funcs"]["file"]
        boot = [s[f].startswith("<frozen importlib._bootstrap") for f in files]
        parent = self._t["stacks"]["parent"]
        head = [-1] * len(parent)  # the chain a machinery node belongs to
        modules: dict[int, set[str]] = defaultdict(set)
        for i, p in enumerate(parent):
            f = node_func[i]
            if boot[f]:
                head[i] = head[p] if p >= 0 and head[p] >= 0 else i
            elif p >= 0 and head[p] >= 0:
                modules[head[p]].add(_module_of(s[files[f]]))
                eparent[i] = head[p]
        synthetic: dict[str, int] = {}
        n = len(files)
        self._synthetic = []
        for i, h in enumerate(head):
            if h < 0:
                continue
            name = "import " + (", ".join(sorted(modules[h])) or "(finding and loading)")
            if name not in synthetic:
                synthetic[name] = n + len(self._synthetic)
                self._synthetic.append(name)
            node_func[i] = synthetic[name]
            if h != i:
                eparent[i] = eparent[h]

    def _outermost(self, key: list[Any]) -> list[bool]:
        """Per node: its key (None = not counted) appears on no ancestor, so
        that recursion counts a stack once."""
        _, _, kids, roots = self._tree()
        first = [False] * len(key)
        active: dict[Any, int] = defaultdict(int)
        todo = [(r, False) for r in reversed(roots)]
        while todo:
            node, leaving = todo.pop()
            k = key[node]
            if leaving:
                active[k] -= 1
                continue
            if k is not None:
                first[node] = active[k] == 0
                active[k] += 1
                todo.append((node, True))
            todo.extend((c, False) for c in reversed(kids[node]))
        return first

    def _subtree(self, stacks: list[int], values: list[int]) -> tuple[list[int], list[int]]:
        """Per node: the value of rows ending there, and of rows at or below it."""
        _, eparent, _, _ = self._tree()
        own = [0] * len(eparent)
        for stack, v in zip(stacks, values):
            own[stack] += v
        sub = list(own)
        for i in range(len(sub) - 1, -1, -1):
            p = eparent[i]
            if p >= 0:
                sub[p] += sub[i]
        return own, sub

    def _by_key(self, key: list[Any], stacks: list[int], values: list[int]) -> tuple[dict, dict]:
        """Self and total value per key of the leaf / of any frame on the stack."""
        own, sub = self._subtree(stacks, values)
        first = self._outermost(key)
        self_v: dict[Any, int] = defaultdict(int)
        total_v: dict[Any, int] = defaultdict(int)
        for i, k in enumerate(key):
            if k is None:
                continue
            self_v[k] += own[i]
            if first[i]:
                total_v[k] += sub[i]
        return self_v, total_v

    def _by_function(self, stacks: list[int], values: list[int]) -> tuple[dict, dict]:
        """Self and total value per function; recursion counts once per stack."""
        return self._by_key(self._tree()[0], stacks, values)

    def _rows(self, on_cpu: bool, pid: int | None = None) -> tuple[list[int], list[int], list[int]]:
        tot = self._t["totals"]
        rows = [i for i, f in enumerate(tot["flags"]) if f & SAMPLE_ON_CPU or not on_cpu]
        if pid is not None:
            mine = self._threads_of(pid)
            rows = [i for i in rows if tot["thread"][i] in mine]
        return ([tot["stack"][i] for i in rows], [tot["weight_ns"][i] for i in rows],
                [tot["count"][i] for i in rows])

    def functions(self, on_cpu: bool = False, pid: int | None = None) -> list[FunctionStat]:
        """Every function sampled, by total (inclusive) wall time, hottest first.
        on_cpu=True counts only samples where the thread was running on a CPU;
        pid counts only the threads of that process (see processes())."""
        stacks, weights, counts = self._rows(on_cpu, pid)
        self_w, total_w = self._by_function(stacks, weights)
        self_c, total_c = self._by_function(stacks, counts)
        # A deterministic profile counts calls: a function's own, not its callees'.
        count = self_c if self.meta.get("counts") == "calls" else total_c
        rows = [
            FunctionStat(*self._func_key(f), self_w[f] / 1e9, total_w[f] / 1e9, count[f])
            for f in total_w
        ]
        rows.sort(key=lambda r: (-r.total_s, -r.self_s, r.name))
        return rows

    def lines(self, function: str | FunctionStat | None = None,
              on_cpu: bool = False) -> list[LineStat]:
        """Time by source line (the line each frame was executing), hottest
        first: of one function (a FunctionStat, or a qualified name; a bare
        name matches Class.name too when nothing matches it exactly), or of
        every function when None. self_s: the line was the innermost Python
        line; total_s: the line was on the stack (a line of a recursive
        function counts once per stack). Line 0: not known."""
        node_func, _, _, _ = self._tree()
        fr_line = self._t["frames"]["line"]
        node_line = [fr_line[fr] for fr in self._t["stacks"]["frame"]]
        wanted = self._funcs_named(function)
        key = [(f, ln) if wanted is None or f in wanted else None
               for f, ln in zip(node_func, node_line)]
        stacks, weights, counts = self._rows(on_cpu)
        self_w, total_w = self._by_key(key, stacks, weights)
        self_c, total_c = self._by_key(key, stacks, counts)
        count = self_c if self.meta.get("counts") == "calls" else total_c
        out = []
        for (f, ln), total in total_w.items():
            name, file, _ = self._func_key(f)
            out.append(LineStat(name, file, ln, self_w[(f, ln)] / 1e9, total / 1e9, count[(f, ln)]))
        out.sort(key=lambda r: (-r.total_s, -r.self_s, r.name, r.line))
        return out

    def _funcs_named(self, function: str | FunctionStat | None) -> set[int] | None:
        if function is None:
            return None
        self._tree()
        n = len(self._t["funcs"]["name"]) + len(self._synthetic)
        if isinstance(function, FunctionStat):
            return {f for f in range(n) if self._func_key(f) == tuple(function[:3])}
        if not isinstance(function, str):
            raise TypeError(f"function must be a name or a FunctionStat, got {type(function).__name__}")
        exact = {f for f in range(n) if self._func_key(f)[0] == function}
        return exact or {f for f in range(n) if self._func_key(f)[0].rsplit(".", 1)[-1] == function}

    def _by_identity(self, on_cpu: bool) -> tuple[dict, dict, float]:
        """Self and total seconds per (name, file), and the whole sampled time.
        The first line is left out of the key so that edits above a function
        do not make it a different function; a redefinition (two functions,
        one identity) on a stack counts once."""
        stacks, weights, _ = self._rows(on_cpu)
        # _func_key, not the FUNCS table: a folded import is a node whose
        # function is not in the table.
        self_k, total_k = self._by_key([self._func_key(fn)[:2] for fn in self._tree()[0]], stacks, weights)
        return ({k: v / 1e9 for k, v in self_k.items()}, {k: v / 1e9 for k, v in total_k.items()},
                sum(weights) / 1e9)

    def diff(self, baseline: Profile, on_cpu: bool = False, by: str = "total") -> list[FunctionDiff]:
        """How each function's time changed from `baseline` to this profile,
        biggest change first: of inclusive time (by="total"; a slower
        function's callers come before it), or of self time (by="self": where
        the added time was spent). Functions are matched by qualified name
        and file; one whose file moved (another checkout or code package) is
        matched by name and file name when that is unique."""
        if by not in ("total", "self"):
            raise ValueError(f'by must be "total" or "self", got {by!r}')
        b_self, b_tot, b_all = baseline._by_identity(on_cpu)
        a_self, a_tot, a_all = self._by_identity(on_cpu)
        pairs = _match(list(b_tot), list(a_tot))
        rows = []
        for bk, ak in pairs:
            before, after = b_tot.get(bk, 0.0), a_tot.get(ak, 0.0)
            name, filename = ak or bk
            rows.append(FunctionDiff(
                name, filename, before, after, after - before,
                before / b_all if b_all else 0.0, after / a_all if a_all else 0.0,
                b_self.get(bk, 0.0), a_self.get(ak, 0.0)))
        if by == "self":
            rows.sort(key=lambda r: (-abs(r.after_self_s - r.before_self_s), -abs(r.delta_s), r.name))
        else:
            rows.sort(key=lambda r: (-abs(r.delta_s), -abs(r.after_self_s - r.before_self_s), r.name))
        return rows

    def with_baseline(self, baseline: Profile | None, compare: dict[str, Any]) -> Profile:
        """This profile carrying what it is compared with: META `compare`
        (describes the baseline, or says why there is none) and section
        BASELINE: the baseline's TOTALS, its threads, the META keys a
        comparison reads, and only those rows of its tables this profile
        lacks (the code only the baseline ran), so the card grows by its
        TOTALS, not its SAMPLES nor its tables. Replaces an earlier baseline."""
        body = [(t, p) for t, p in _sections(self._bytes) if t not in (_META, BASELINE)]
        secs = [(_META, _meta_section(dict(self.meta, compare=compare))), *body]
        if baseline is not None:
            secs.append((BASELINE, self._baseline_section(baseline)))
        return Profile.from_bytes(_join(secs))

    def _baseline_section(self, base: Profile) -> bytes:
        t, b = self._t, base._t
        smap, strings = _appended(t["strings"], b["strings"])
        f, bf = t["funcs"], b["funcs"]
        fmap, funcs = _appended(zip(f["name"], f["file"], f["line"], f["kind"]),
                                ((smap[n], smap[fl], ln, k) for n, fl, ln, k in
                                 zip(bf["name"], bf["file"], bf["line"], bf["kind"])))
        fr, bfr = t["frames"], b["frames"]
        frmap, frames = _appended(zip(fr["func"], fr["line"]),
                                  ((fmap[fn], ln) for fn, ln in zip(bfr["func"], bfr["line"])))
        st, bst = t["stacks"], b["stacks"]
        known: dict[tuple[int, int], int] = {}
        for i, k in enumerate(zip(st["parent"], st["frame"])):
            known.setdefault(k, i)
        stmap: list[int] = []
        stacks: list[tuple[int, int]] = []
        for parent, frame in zip(bst["parent"], bst["frame"]):  # parents come first
            k = (stmap[parent] if parent >= 0 else -1, frmap[frame])
            if k not in known:
                known[k] = len(st["parent"]) + len(stacks)
                stacks.append(k)
            stmap.append(known[k])
        th, tot = b["threads"], b["totals"]
        meta = {k: base.meta[k] for k in _BASELINE_META if k in base.meta}
        return _join([
            (_META, _meta_section(dict(meta, tables="appended"))),
            *_table_sections(strings, funcs, frames, stacks, len(st["parent"])),
            (6, _table(list(zip(th["tid"], [smap[n] for n in th["name"]], th["flags"])))),
            (8, _table(list(zip([stmap[x] for x in tot["stack"]], tot["thread"], tot["flags"],
                                tot["count"], [w // 1000 for w in tot["weight_ns"]])))),
        ])

    def with_meta(self, changes: dict[str, Any]) -> Profile:
        """This profile with META updated by `changes` (facts known only after
        the stop, e.g. what a step used beside what it asked for)."""
        body = [(t, p) for t, p in _sections(self._bytes) if t != _META]
        return Profile.from_bytes(_join([(_META, _meta_section(dict(self.meta, **changes))), *body]))

    def baseline(self) -> Profile | None:
        """The profile attached by with_baseline (TOTALS only), or None."""
        for tag, payload in _sections(self._bytes):
            if tag == BASELINE:
                return self._read_baseline(payload)
        return None

    def _read_baseline(self, payload: bytes) -> Profile:
        """BASELINE as a profile of its own: its appended table rows after
        this profile's (a BASELINE without META tables="appended", from
        before, is one already)."""
        from .pyformat import _Reader

        secs = dict(_sections(payload))
        meta = Profile.from_bytes(_join([(_META, secs.get(_META, b"\0"))])).meta
        if meta.pop("tables", None) != "appended":
            return Profile.from_bytes(payload)
        from .native import Builder

        t = self._t
        try:
            r = _Reader(secs.get(2, b"\0"))
            strings = t["strings"] + [r.raw(r.uv()).decode("utf-8", "replace")
                                      for _ in range(r.count(1))]
            f, fr, st = t["funcs"], t["frames"], t["stacks"]
            funcs = list(zip(f["name"], f["file"], f["line"], f["kind"]))
            funcs += _row_tuples(_Reader(secs.get(3, b"\0")).columns(("name", "file", "line", "kind"), {}))
            frames = list(zip(fr["func"], fr["line"]))
            frames += _row_tuples(_Reader(secs.get(4, b"\0")).columns(("func", "line"), {}))
            parent, frame_of = list(st["parent"]), list(st["frame"])
            more = _Reader(secs.get(5, b"\0")).columns(("delta", "frame"), {})
            for d, fr_ in zip(more["delta"], more["frame"]):
                if d > len(parent):
                    raise ValueError("stack parent out of range")
                parent.append(len(parent) - d if d else -1)
                frame_of.append(fr_)
            th = _Reader(secs.get(6, b"\0")).columns(("tid", "name", "flags"), {})
            tot = _Reader(secs.get(8, b"\0")).columns(
                ("stack", "thread", "flags", "count", "weight_us"), {})
            # only the stacks its TOTALS reach, and what they name (the
            # outer's other rows are not the baseline's)
            need = set()
            for x in tot["stack"]:
                while x >= 0 and x not in need:
                    need.add(x)
                    x = parent[x]
            b = Builder()
            new: dict[int, int] = {}
            for i in sorted(need):
                fn, line = frames[frame_of[i]]
                name, file, fline, kind = funcs[fn]
                node = b.frame(b.func(b.string(strings[name]), b.string(strings[file]), fline, kind),
                               line)
                new[i] = b.stack(new[parent[i]] if parent[i] >= 0 else -1, node)
            tids = [b.thread(tid, b.string(strings[n]), fl)
                    for tid, n, fl in zip(th["tid"], th["name"], th["flags"])]
            for row in zip(*tot.values()):
                b.total(new[row[0]], tids[row[1]], row[2], row[3], row[4] * 1000)
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"not a valid profile: BASELINE: {exc}") from None
        return Profile.from_bytes(b.encode(json.dumps(meta)))

    @classmethod
    def merge(cls, profiles: Sequence[Profile], labels: Sequence[str] | None = None) -> Profile:
        """One profile of several (the tasks of a foreach, say), made by the
        engine's merge (native/profile/merge.c, the one that brings child
        processes back): each input is a process of its own named by its
        label (an input that followed child processes keeps them), on one
        clock from the inputs' start times, so TOTALS, MEMORY, SAMPLES,
        HEAP_EVENTS and LEAKS all come along; META `merged` is a row per
        input (label, duration, peak RSS, top function). TIMELINE is left
        out: each task polled its own machine."""
        from .native import HOW_TO_GET, MISSING, engine

        if not profiles:
            raise ValueError("nothing to merge")
        labels = [str(x) for x in labels] if labels is not None else [
            f"#{i + 1}" for i in range(len(profiles))]
        if len(labels) != len(profiles):
            raise ValueError("one label per profile")
        for key, default in (("counts", "samples"), ("weights", "wall_time")):
            kinds = {p.meta.get(key, default) for p in profiles}
            if len(kinds) > 1:
                raise ValueError(f"cannot merge profiles whose {key} differ: {sorted(kinds)}")
        if engine is None:
            raise RuntimeError(f"merging profiles needs the compiled engine: {MISSING}; "
                               f"to get it, {HOW_TO_GET}")
        starts = [int(p.meta["start_unix_ns"]) if "start_unix_ns" in p.meta else None
                  for p in profiles]
        t0 = min((s for s in starts if s is not None), default=None)
        inputs = [(p._bytes, s - t0 if s is not None and t0 is not None else 0, p._as_process(label))
                  for p, s, label in zip(profiles, starts, labels)]
        ends = [s + int(p.meta.get("duration_ns", 0))
                for p, s in zip(profiles, starts) if s is not None]
        first = profiles[0].meta
        meta: dict[str, Any] = {
            k: first[k] for k in ("backend", "python", "counts", "weights", "focus", "interval_ns")
            if k in first and all(p.meta.get(k) == first[k] for p in profiles)
        }
        meta.update(
            title=f"{len(profiles)} profiles merged",
            duration_ns=(max(ends) - t0) if t0 is not None
            else max(p.meta.get("duration_ns", 0) for p in profiles),
            samples_taken=sum(p.meta.get("samples_taken", 0) for p in profiles),
            samples_dropped=sum(p.meta.get("samples_dropped", 0) for p in profiles),
            step_failed=any(p.meta.get("step_failed") for p in profiles),
            merged=[p._merge_row(label) for p, label in zip(profiles, labels)],
            notes=[f"Merged from {len(profiles)} profiles, each a process of its own on one "
                   "clock from their start times; no resource timeline."],
        )
        if t0 is not None:
            meta["start_unix_ns"] = t0
        decimation = max(p.meta.get("samples_decimation", 1) for p in profiles)
        if decimation > 1:
            meta["samples_decimation"] = decimation
        events = sum(len(p._t["heap_events"]["stack"]) for p in profiles)
        if events:
            # the loosest input's rule holds for all: shorter-lived ones may be missing
            meta["memory"] = {"events": events, "events_min_life_us": max(
                (p.meta.get("memory") or {}).get("events_min_life_us", 0) for p in profiles)}
        merged, bad = engine.merge(engine.Builder().encode("{}"), inputs, meta=json.dumps(meta))
        if bad:  # each input decoded once already; never expected
            raise ValueError(f"not a valid profile: input {bad[0] + 1} did not decode")
        return cls.from_bytes(merged)

    def _as_process(self, label: str) -> tuple[int, int, str, int, int, int, int, int]:
        """This profile as one process of a merged one (module.c's process tuple)."""
        cpu_s = ((self.meta.get("timeline") or {}).get("totals") or {}).get("cpu_s", 0)
        heap = (self.meta.get("memory") or {}).get("peak_bytes", 0)
        return (0, 0, label, PROCESS_ROOT, int(self.meta.get("duration_ns", 0)), int(cpu_s * 1e9),
                self._peak_rss_bytes() or 0, int(heap) if isinstance(heap, (int, float)) else 0)

    def _merge_row(self, label: str) -> dict[str, Any]:
        """This profile's line in a merged profile's table of inputs."""
        tot, kind = self._t["totals"], self._t["funcs"]["kind"]
        # On-CPU self time where the profile knows it: a thread that waits
        # through the whole task (a heartbeat) would top a wall-time ranking.
        stacks, weights, _ = self._rows(on_cpu=any(f & SAMPLE_ON_CPU for f in tot["flags"]))
        self_w, _ = self._by_function(stacks, weights)
        # thread roots and <GC>-like frames are not "a function" to blame
        # (a folded import, numbered past the table, is a function of ours)
        funcs = [fn for fn in self_w
                 if fn >= len(kind) or kind[fn] not in (FUNC_THREAD, FUNC_SYNTHETIC)]
        top = max(funcs, key=lambda fn: self_w[fn], default=None)
        row: dict[str, Any] = {
            "label": label,
            "duration_ns": self.meta.get("duration_ns", 0),
            "samples": sum(tot["count"]),
            "step_failed": bool(self.meta.get("step_failed", False)),
        }
        peak = self._peak_rss_bytes()
        if peak is not None:
            row["peak_rss_bytes"] = peak
        if top is not None:
            name, filename, _ = self._func_key(top)
            row["top"] = {"name": name, "file": filename, "self_ns": self_w[top]}
        return row

    def _peak_rss_bytes(self) -> int | None:
        st = self.stats()
        mb = [st[k] for k in ("peak_rss_mb", "peak_rss_kernel_mb") if k in st]
        rss = [round(v / _MB) for v in mb]
        mem_peak = (self.meta.get("memory") or {}).get("rss_peak_bytes")
        if isinstance(mem_peak, int):
            rss.append(mem_peak)
        return max(rss) if rss else None

    def memory_functions(self) -> list[MemoryStat]:
        """Every function holding sampled memory at the heap peak, by total bytes."""
        mem = self._t["memory"]
        self_b, total_b = self._by_function(mem["stack"], mem["live_bytes"])
        rows = [MemoryStat(*self._func_key(f), self_b[f], total_b[f]) for f in total_b]
        rows.sort(key=lambda r: (-r.total_bytes, -r.self_bytes, r.name))
        return rows

    def threads(self) -> list[dict[str, Any]]:
        """Every thread sampled; "pid" is its process's (0 in a one-process profile)."""
        th, s = self._t["threads"], self._t["strings"]
        procs = self._t.get("processes") or []
        owner = self._t.get("thread_process") or [0] * len(th["tid"])
        return [
            {"tid": tid, "name": s[name], "main": bool(flags & THREAD_MAIN),
             "pid": procs[owner[i]]["pid"] if procs else 0}
            for i, (tid, name, flags) in enumerate(zip(th["tid"], th["name"], th["flags"]))
        ]

    def processes(self) -> list[dict[str, Any]]:
        """The processes of a profile that followed child processes (PROCESSES,
        docs/FORMAT.md), the profiled one first; [] for a one-process profile."""
        s = self._t["strings"]
        return [
            {"pid": p["pid"], "ppid": p["ppid"], "name": s[p["name"]],
             "root": bool(p["flags"] & PROCESS_ROOT), "partial": bool(p["flags"] & PROCESS_PARTIAL),
             "start_s": p["start_ns"] / 1e9,
             "duration_s": p["duration_ns"] / 1e9, "cpu_s": p["cpu_ns"] / 1e9,
             "rss_peak_bytes": p["rss_peak_bytes"], "heap_peak_bytes": p["heap_peak_bytes"]}
            for p in self._t.get("processes") or []
        ]

    def _threads_of(self, pid: int) -> set[int]:
        procs = self._t.get("processes") or []
        owner = self._t.get("thread_process") or []
        want = {i for i, p in enumerate(procs) if p["pid"] == pid}
        n = len(self._t["threads"]["tid"])
        if not procs:
            return set(range(n)) if pid in (0, self.meta.get("pid")) else set()
        return {t for t in range(n) if (owner[t] if t < len(owner) else 0) in want}

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
        if "avg_rss_polled_mb" in out:
            out["avg_rss_mb"] = out.pop("avg_rss_polled_mb")
        # The headline peak: the kernel's for the profiled span where known
        # (META rss, native/timeline), else the largest RSS polled.
        rss = m.get("rss") or {}
        for key, polled in (("peak_bytes", "peak_rss_polled_mb"),
                            ("children_peak_bytes", "peak_children_rss_polled_mb")):
            value = rss.get(key)
            name = polled.replace("_polled", "")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = value * _MB
            elif polled in out:
                out[name] = out[polled]
        if "peak_source" in rss:
            out["peak_rss_source"] = rss["peak_source"]
        for name, value in (tl.get("totals") or {}).items():
            out[f"total_{name}"] = value
        for key, value in (m.get("limits") or {}).items():
            out[f"limit_{key}"] = value
        procs = self.processes()
        kids = [p for p in procs if not p["root"]]
        if len(procs) > 1:  # a merged profile has a root per input
            out["processes"] = len(procs)
        if kids:
            out["children_processes"] = len(kids)
            out["children_cpu_s"] = sum(p["cpu_s"] for p in kids)
            out["children_peak_rss_mb"] = max(p["rss_peak_bytes"] for p in kids) / 2**20
            out["children_partial"] = sum(p["partial"] for p in kids)
        short = (m.get("children") or {}).get("short")
        if short:  # ended before their profiler started: counted, not profiled
            out["children_short"] = short
        return out

    def _count_key(self) -> str:
        return "calls" if self.meta.get("counts") == "calls" else "samples"

    # ---- outputs ----
    def to_html(self, path: str | os.PathLike[str] | None = None, title: str = "") -> str:
        """The self-contained card Metaflow shows; also written to path when given."""
        from .html import render_html

        page = render_html(self._bytes, title=title or self.meta.get("title", ""),
                           fold_imports=self._fold)
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

    def _path_funcs(self, stack: int) -> list[int]:
        """Functions of a stack node, leaf first (launcher frames cut off)."""
        node_func, eparent, _, _ = self._tree()
        out = []
        while stack != -1:
            out.append(node_func[stack])
            stack = eparent[stack]
        return out

    def _collapsed(self) -> str:
        """One line per stack, root first: "a;b;c count". A name that several
        functions share (every file's <module>) keeps its file and line."""
        s, funcs, tot = self._t["strings"], self._t["funcs"], self._t["totals"]
        self._tree()
        names = [s[n].replace(";", ":") for n in funcs["name"]]
        shared = {n for n, k in Counter(names).items() if k > 1}
        label = [f"{n} ({s[f]}:{ln})" if n in shared and s[f] else n
                 for n, f, ln in zip(names, funcs["file"], funcs["line"])]
        label += [n.replace(";", ":") for n in self._synthetic]
        lines: dict[str, int] = defaultdict(int)
        for stack, n in zip(tot["stack"], tot["count"]):
            lines[";".join(label[f] for f in reversed(self._path_funcs(stack)))] += n
        return "".join(f"{k} {v}\n" for k, v in sorted(lines.items()))

    def _speedscope(self) -> dict[str, Any]:
        s, funcs, tot = self._t["strings"], self._t["funcs"], self._t["totals"]
        self._tree()
        frames = [
            {"name": s[n], "file": s[f], "line": ln}
            for n, f, ln in zip(funcs["name"], funcs["file"], funcs["line"])
        ] + [{"name": n, "file": "", "line": 0} for n in self._synthetic]
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


def _match(before: list, after: list) -> list[tuple[Any, Any]]:
    """Pairs (before key, after key) of (name, file) identities; None on the
    side where a function is missing. Exact identity first; then a name
    with the same file name, when exactly one such function is left on each
    side (the same code checked out or unpacked somewhere else)."""
    after_set = set(after)
    pairs = [(k, k) for k in before if k in after_set]
    matched = {k for k, _ in pairs}
    left_b = [k for k in before if k not in matched]
    left_a = [k for k in after if k not in matched]

    def by_base(keys: list) -> dict:
        out: dict = defaultdict(list)
        for k in keys:
            out[(k[0], os.path.basename(k[1]))].append(k)
        return out

    bb, ba = by_base(left_b), by_base(left_a)
    moved = {}
    for base, ks in bb.items():
        if len(ks) == 1 and len(ba.get(base, ())) == 1:
            moved[ks[0]] = ba[base][0]
    pairs += list(moved.items())
    taken = set(moved.values())
    pairs += [(k, None) for k in left_b if k not in moved]
    pairs += [(None, k) for k in left_a if k not in taken]
    return pairs
