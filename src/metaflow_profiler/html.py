"""Assemble the self-contained profile card (one HTML file).

The viewer (HTML template, CSS, plain JS) lives in the repository folder
``viewer/``, installed as the package ``metaflow_profiler._viewer``. The
profile bytes travel inside the page as base64(zlib(bytes)); the browser
inflates them with DecompressionStream. Nothing here imports metaflow, and
the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import json
import re
import zlib
from pathlib import Path

# Order matters: later files use functions of earlier ones.
_JS_FILES = (
    "util.js",
    "decode.js",
    "model.js",
    "flame.js",
    "stackchart.js",
    "timeline.js",
    "app.js",
)
_PLACEHOLDER = re.compile(r"\{\{(TITLE|TITLE_JSON|ERROR_JSON|DATA|CSS|JS)\}\}")
_cache: dict[str, str] = {}


def _viewer_file(name: str) -> str:
    if name in _cache:
        return _cache[name]
    text = None
    try:
        from importlib.resources import files

        text = files("metaflow_profiler._viewer").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        text = None
    if text is None:
        # source checkout / editable install: repo/viewer next to repo/src
        path = Path(__file__).resolve().parents[2] / "viewer" / name
        text = path.read_text(encoding="utf-8")
    _cache[name] = text
    return text


def _json_for_script(value: object) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' left literal."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def encode_payload(profile_bytes: bytes) -> str:
    """base64(zlib(bytes, 9)): the form the viewer reads from #mfp-data."""
    return base64.b64encode(zlib.compress(profile_bytes, 9)).decode("ascii")


def render_html(profile_bytes: bytes | None, *, title: str = "", error: str | None = None) -> str:
    """Return the card as one HTML document.

    ``profile_bytes`` is a profile in the format of docs/FORMAT.md. With
    ``None`` (or bytes the viewer cannot decode) the page shows an error
    card that says why, including ``error`` when given.
    """
    js = "\n".join(_viewer_file(name) for name in _JS_FILES)
    if "</script" in js.lower():
        raise ValueError("viewer JavaScript must not contain '</script'")
    script = '(function () {\n"use strict";\n' + js + "\n})();"
    values = {
        "TITLE": html.escape(title or "Profile"),
        "TITLE_JSON": _json_for_script(title or ""),
        "ERROR_JSON": _json_for_script(error),
        "DATA": encode_payload(profile_bytes) if profile_bytes is not None else "",
        "CSS": _viewer_file("card.css"),
        "JS": script,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _viewer_file("card.html"))
