"""Assemble the self-contained profile card (one HTML file).

The viewer (HTML template, CSS, plain JS) lives in the repository folder
``viewer/``, installed as the package ``metaflow_profiler._viewer``. The
profile bytes travel inside the page as base64(zlib(bytes)); the browser
inflates them with DecompressionStream. Nothing here imports metaflow, and
the page loads nothing from the network.

Each viewer file is an ES module with static ``import { a, b } from
"./x.js";`` lines and one ``export { ... };`` statement. The card's CSP
allows inline scripts only, so the modules are linked here: every file
becomes a function scope that receives what it imports and returns what it
exports, in an order computed from the imports. The declarations are
checked (a missing file or name, an export that the file does not define,
a cycle) so a wrong one fails when the card is built, not in a browser.
The entry is ``app.js``'s ``boot``; every file is included, so a new panel
is a new file in ``viewer/panels/`` (see viewer/README.md).
"""

from __future__ import annotations

import base64
import html
import json
import posixpath
import re
import zlib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{\{(TITLE|TITLE_JSON|ERROR_JSON|OPTIONS_JSON|PARTS_JSON|DATA|CSS|JS)\}\}")
_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"([^"]+)";[ \t]*$', re.M)
_EXPORT = re.compile(r"^export\s*\{([^}]*)\};[ \t]*$", re.M)
_OTHER_MODULE_SYNTAX = re.compile(r"^(import|export)\b", re.M)
_NAME = re.compile(r"^[A-Za-z_$][\w$]*$")
_ENTRY = ("app.js", "boot")


class ViewerModuleError(ValueError):
    """A viewer file's imports or exports do not hold together."""


@dataclass
class Module:
    path: str  # relative to viewer/, "/"-separated
    source: str
    imports: dict[str, list[str]] = field(default_factory=dict)  # module path -> names
    exports: list[str] = field(default_factory=list)


def _viewer_root():
    try:
        root = files("metaflow_profiler._viewer")
        if root.joinpath("card.html").is_file():
            return root
    except ModuleNotFoundError:
        pass
    # source checkout / editable install: repo/viewer next to repo/src
    return Path(__file__).resolve().parents[2] / "viewer"


def _walk(node, prefix=""):
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        rel = prefix + child.name
        if child.is_dir():
            if not child.name.startswith(("_", ".")):
                yield from _walk(child, rel + "/")
        elif child.name.endswith(".js"):
            yield rel, child.read_text(encoding="utf-8")


def _names(text: str, where: str) -> list[str]:
    out = [n.strip() for n in text.split(",") if n.strip()]
    for n in out:
        if not _NAME.match(n):
            raise ViewerModuleError(f"{where}: {n!r} is not a plain name (no 'as' renames)")
    return out


def _defines(source: str, name: str) -> bool:
    pat = rf"^(?:async\s+)?function\s+{re.escape(name)}\s*\(|^(?:var|let|const)\s+{re.escape(name)}\b"
    return re.search(pat, source, re.M) is not None


def parse_module(path: str, source: str) -> Module:
    m = Module(path, source)
    for imp in _IMPORT.finditer(source):
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), imp.group(2)))
        if not imp.group(2).startswith("."):
            raise ViewerModuleError(f"{path}: import {imp.group(2)!r} is not a relative path")
        m.imports.setdefault(target, []).extend(_names(imp.group(1), path))
    exports = _EXPORT.findall(source)
    if len(exports) > 1:
        raise ViewerModuleError(f"{path}: more than one export statement")
    if exports:
        m.exports = _names(exports[0], path)
    other = _OTHER_MODULE_SYNTAX.search(_EXPORT.sub("", _IMPORT.sub("", source)))
    if other:
        raise ViewerModuleError(
            f"{path}: only 'import {{ .. }} from \"..\";' and one 'export {{ .. }};' ({other.group(0)})"
        )
    for name in m.exports:
        if not _defines(source, name):
            raise ViewerModuleError(f"{path}: exports {name!r} but defines no top-level function or var")
    return m


def link_order(modules: dict[str, Module]) -> list[str]:
    """Modules ordered so that each comes after everything it imports."""
    for m in modules.values():
        for target, names in m.imports.items():
            if target not in modules:
                raise ViewerModuleError(f"{m.path}: imports {target!r}, which is not a viewer file")
            missing = [n for n in names if n not in modules[target].exports]
            if missing:
                raise ViewerModuleError(f"{m.path}: {target} does not export {', '.join(missing)}")
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(path: str, trail: list[str]) -> None:
        if state.get(path) == 2:
            return
        if state.get(path) == 1:
            raise ViewerModuleError("import cycle: " + " -> ".join([*trail, path]))
        state[path] = 1
        for target in sorted(modules[path].imports):
            visit(target, [*trail, path])
        state[path] = 2
        order.append(path)

    for path in sorted(modules):
        visit(path, [])
    return order


def link(sources: dict[str, str]) -> str:
    """One strict script defining every module, then calling the entry."""
    modules = {p: parse_module(p, s) for p, s in sources.items()}
    entry, start = _ENTRY
    if entry not in modules or start not in modules[entry].exports:
        raise ViewerModuleError(f"the viewer's entry {entry} must export {start}")
    parts = ['(function () {\n"use strict";\nvar modules = {};\n']
    for path in link_order(modules):
        m = modules[path]

        def binding(imp: re.Match, m: Module = m) -> str:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(m.path), imp.group(2)))
            names = _names(imp.group(1), m.path)
            return "var " + ", ".join(f"{n} = modules[{json.dumps(target)}].{n}" for n in names) + ";"

        body = _IMPORT.sub(binding, m.source)
        ret = "return {" + ", ".join(f"{n}: {n}" for n in m.exports) + "};"
        body = _EXPORT.sub(ret, body) if m.exports else body + "\nreturn {};"
        parts.append(f"modules[{json.dumps(path)}] = (function () {{\n{body}\n}})();\n")
    parts.append(f"modules[{json.dumps(entry)}].{start}();\n}})();")
    return "".join(parts)


_cache: dict[str, str] = {}


def _assets() -> dict[str, str]:
    if not _cache:
        root = _viewer_root()
        sources = dict(_walk(root))
        script = link(sources)
        if "</script" in script.lower():
            raise ViewerModuleError("viewer JavaScript must not contain '</script'")
        _cache["JS"] = script
        _cache["CSS"] = root.joinpath("card.css").read_text(encoding="utf-8")
        _cache["HTML"] = root.joinpath("card.html").read_text(encoding="utf-8")
    return _cache


def _json_for_script(value: object) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' left literal."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _uv(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        b = data[pos]  # IndexError past the end
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos
    raise ValueError("varint longer than 10 bytes")


_SAMPLES = 7
# viewer/decode.js's LAZY_SAMPLES: past this many samples the card draws its
# first view before it decodes SAMPLES. Below it the viewer needs them all
# at once, and the stream is not split (a flush costs deflate its window).
LAZY_SAMPLES = 200_000


def _samples_columns(data: bytes) -> tuple[int, int] | None:
    """Where SAMPLES' columns are in the profile: (just after its count, its
    end), or None (no more than LAZY_SAMPLES samples, no SAMPLES, or bytes
    that are not a section table: the viewer's error card says what is
    wrong with them)."""
    if not data.startswith(b"MFPROF"):
        return None
    try:
        _, pos = _uv(data, 6)
        while pos < len(data):
            tag, pos = _uv(data, pos)
            length, pos = _uv(data, pos)
            if pos + length > len(data):
                return None
            if tag == _SAMPLES:
                count, start = _uv(data, pos)
                return (start, pos + length) if count > LAZY_SAMPLES and start <= pos + length else None
            pos += length
    except (IndexError, ValueError):
        return None
    return None


def encode_payload(profile_bytes: bytes, level: int = 9) -> tuple[str, dict | None]:
    """base64(zlib(bytes, level)), the form the viewer reads from #mfp-data,
    and where in it SAMPLES' columns are ({"samples": [start, end]},
    compressed offsets, for #mfp-parts). The stream is flushed (Z_FULL_FLUSH)
    at both ends of the columns, so the viewer inflates the rest apart —
    what its first view needs, a tenth of a big profile's bytes — and the
    columns after its first frame. It is still one zlib stream of the
    profile, byte for byte."""
    cols = _samples_columns(profile_bytes)
    if cols is None:
        return base64.b64encode(zlib.compress(profile_bytes, level)).decode("ascii"), None
    z = zlib.compressobj(level)
    parts = [z.compress(profile_bytes[: cols[0]]) + z.flush(zlib.Z_FULL_FLUSH)]
    parts.append(z.compress(profile_bytes[cols[0] : cols[1]]) + z.flush(zlib.Z_FULL_FLUSH))
    parts.append(z.compress(profile_bytes[cols[1] :]) + z.flush())
    start = len(parts[0])
    where = {"samples": [start, start + len(parts[1])]}
    return base64.b64encode(b"".join(parts)).decode("ascii"), where


def render_html(profile_bytes: bytes | None, *, title: str = "", error: str | None = None,
                level: int = 9, fold_imports: bool = True) -> str:
    """Return the card as one HTML document.

    ``profile_bytes`` is a profile in the format of docs/FORMAT.md. With
    ``None`` (or bytes the viewer cannot decode) the page shows an error
    card that says why, including ``error`` when given. ``level`` is zlib's:
    the live card uses 6 (level 9 took 15x the CPU for 1 % less on a
    profile of 30 s, bench/RESULTS.md). ``fold_imports`` is where the
    card's "Fold imports" toggle starts (Profile.fold_imports).
    """
    assets = _assets()
    data, parts = encode_payload(profile_bytes, level) if profile_bytes is not None else ("", None)
    values = {
        "TITLE": html.escape(title or "Profile"),
        "TITLE_JSON": _json_for_script(title or ""),
        "ERROR_JSON": _json_for_script(error),
        "OPTIONS_JSON": _json_for_script({"fold_imports": bool(fold_imports)}),
        "DATA": data,
        "PARTS_JSON": _json_for_script(parts),
        "CSS": assets["CSS"],
        "JS": assets["JS"],
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], assets["HTML"])
